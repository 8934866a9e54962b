"""The probabilistic model: generative model and amortized guide.

The model of a source: shape latent ``z ~ N(0, I)`` and log count rate ``log_norm``; the
DeepONet turns ``z`` into an emission spectrum with a column and a redshift; the absorbed
spectrum is folded through the source's ARF, exposure and RMF; the counts in the source and
background regions follow the W-statistic (background profiled) or the C-statistic
(background known) of :mod:`xspecvae.likelihood`. The guide is the Mixer encoder. Batches
are dicts of arrays as served by :meth:`xspecvae.catalog.Pack.batches`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.typing import ArrayLike
from numpyro.contrib.module import flax_module

from xspecvae.absorption import CrossSection
from xspecvae.laplace import levenberg_marquardt, marginal_widths, where_rows
from xspecvae.likelihood import LIKELIHOODS
from xspecvae.networks import LINE_SETS, DecoderOutput, DeepONet, EncoderOutput, MixerEncoder

if TYPE_CHECKING:
    from xspecvae.catalog import Pack

# ---------------------------------------------------------------------------------------------
# The generative model and the guide


@dataclass(frozen=True)
class Config:
    """Sizes and choices of the VAE (saved with every checkpoint)."""

    latent_dim: int = 16
    n_templates: int = 24
    decoder_width: int = 128
    decoder_depth: int = 3
    max_redshift: float = 3.0
    redshift_offset: float = -5.0  # the redshift starts at sigmoid(offset) * max_redshift
    lines: bool = True  # narrow lines at atomic energies
    line_set: int = max(LINE_SETS)  # which energies: networks.LINE_SETS
    fourier: int = 0  # Fourier features of the trunk (0: none), up to max_frequency
    max_frequency: float = 64.0
    n_trunk: int = 512
    patch: int = 4
    encoder_width: int = 64
    encoder_blocks: int = 2
    likelihood: str = "wstat"  # or "cstat"
    # inference (not training): Levenberg-Marquardt steps on each source's posterior from the
    # encoder's (0: the encoder alone)
    refine_steps: int = 10

    def __post_init__(self) -> None:
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {sorted(LIKELIHOODS)}")
        if self.line_set not in LINE_SETS:
            raise ValueError(f"line_set must be one of {sorted(LINE_SETS)}")

    @property
    def line_energies(self) -> tuple[float, ...]:
        """Rest energies (keV) of the decoder's lines (none without ``lines``)."""
        return LINE_SETS[self.line_set] if self.lines else ()

    def decoder(self, energy_edges: np.ndarray) -> DeepONet:
        top = float(np.log(energy_edges[-1] * (1 + self.max_redshift)))
        return DeepONet(
            n_templates=self.n_templates,
            width=self.decoder_width,
            depth=self.decoder_depth,
            max_redshift=self.max_redshift,
            redshift_offset=self.redshift_offset,
            log_energy_range=(float(np.log(energy_edges[0])), top),
            n_trunk=self.n_trunk,
            fourier=self.fourier,
            max_frequency=self.max_frequency,
            lines=self.line_energies,
        )

    def encoder(self) -> MixerEncoder:
        return MixerEncoder(
            latent_dim=self.latent_dim,
            patch=self.patch,
            width=self.encoder_width,
            n_blocks=self.encoder_blocks,
        )


class ModelArrays(NamedTuple):
    """The fixed arrays of the model for one pack section: the model energy grid, its
    photoelectric cross-sections (1e-22 cm^2 per H atom, so ``nh`` in 1e22 cm^-2 multiplies
    them directly), the shared RMFs, the reference response that defines the flux scale
    (``area``: a typical ARF times the share of each energy's photons that the RMFs put in the
    analysis channels, cm^2) and the prior of ``log_norm``."""

    energy_edges: jax.Array  # (E + 1,)
    sigma22: jax.Array  # (E,)
    rmf: jax.Array  # (R, E, C)
    area: jax.Array  # (E,)
    norm_prior: jax.Array  # (2,): loc, scale of log_norm (log counts/s)

    @classmethod
    def from_pack(
        cls,
        pack: Pack,
        arf: ArrayLike,
        norm_prior: ArrayLike,
        cross_section: CrossSection | None = None,
    ) -> ModelArrays:
        """From an open :class:`~xspecvae.catalog.Pack`, the reference ``arf`` (E,) (the mean
        ARF of the training rows) and the prior; Morrison & McCammon absorption by default."""
        edges = pack.grid.energy_edges
        cross_section = cross_section or CrossSection.morrison_mccammon()
        share = np.asarray(pack.rmf, np.float64).sum(-1).mean(0)
        return cls(
            jnp.asarray(edges, jnp.float32),
            jnp.asarray(cross_section.on(edges) * 1e22, jnp.float32),
            jnp.asarray(pack.rmf, jnp.float32),
            jnp.asarray(np.asarray(arf, np.float64) * share, jnp.float32),
            jnp.asarray(norm_prior, jnp.float32),
        )


def parameter_mismatch(config: Config, inst: ModelArrays, params: dict) -> str | None:
    """What is wrong with ``params`` for a VAE of ``config`` on ``inst`` (names or shapes that
    the networks would not make), or None when they fit."""
    key, edges = jax.random.key(0), np.asarray(inst.energy_edges)
    channels = jnp.zeros((1, inst.rmf.shape[-1], 3))
    encoder = jax.eval_shape(config.encoder().init, key, channels, jnp.zeros((1, 3)))
    decoder = jax.eval_shape(
        config.decoder(edges).init, key, jnp.zeros((1, config.latent_dim)), _log_centres(edges)
    )
    expected = {"encoder$params": encoder["params"], "decoder$params": decoder["params"]}
    want = {jax.tree_util.keystr(k): v.shape for k, v in jax.tree.leaves_with_path(expected)}
    have = {jax.tree_util.keystr(k): np.shape(v) for k, v in jax.tree.leaves_with_path(params)}
    for name in sorted(want.keys() | have.keys()):
        if want.get(name) != have.get(name):
            return f"parameter {name} is {have.get(name)}, the model's {want.get(name)}"
    return None


def rough_log_rate(batch: dict) -> jax.Array:
    """log(counts / exposure) per source (good channels): where the posterior of ``log_norm``
    is centred before the encoder's correction, and what its prior is fitted to."""
    counts = jnp.sum(jnp.asarray(batch["counts"]) * batch["good"], -1)
    return jnp.log(jnp.maximum(counts, 1.0) / jnp.asarray(batch["exposure"]))


def photon_flux(decoded: DecoderOutput, log_norm: jax.Array, inst: ModelArrays) -> jax.Array:
    """Photons/cm^2/s per model energy bin (B, E): the decoder's emission integrated over each
    bin (midpoint) and absorbed by its column, scaled so that ``exp(log_norm)`` is its count
    rate through the reference response ``inst.area`` (counts/s in the analysis channels).

    The flux scale is set where the instrument sees photons, not over the whole model grid
    (which reaches 0.05 keV): so ``log_norm`` is about ``log(counts / exposure)`` whatever the
    shape, and the two are nearly independent in the posterior."""
    widths = jnp.diff(inst.energy_edges)
    shape = decoded.emission * widths * jnp.exp(-decoded.nh[:, None] * inst.sigma22)
    rate = jnp.sum(shape * inst.area, -1, keepdims=True)
    return jnp.exp(log_norm)[:, None] * shape / jnp.maximum(rate, 1e-30)


def expected_counts(flux: jax.Array, batch: dict, inst: ModelArrays) -> jax.Array:
    """Expected source counts per channel (B, C): ``exposure * (flux * arf) @ rmf[rmf_index]``.
    Every source is folded through each of the R shared RMFs and its own one kept (R is small)."""
    folded = jnp.einsum("be,rec->brc", flux * batch["arf"], inst.rmf)
    own = jnp.take_along_axis(folded, batch["rmf_index"][:, None, None], axis=1)[:, 0]
    return batch["exposure"][:, None] * own


def thin(key: jax.Array, batch: dict, fraction: ArrayLike) -> dict:
    """The same spectra seen for ``fraction`` (B,) (or a scalar) of their exposure: each
    source- and background-region count kept with that probability (binomial thinning: for
    Poisson counts, exactly a shorter observation of the same source and background), the
    exposure scaled; ``alpha``, ARFs and RMFs unchanged. Pure JAX."""
    fraction = jnp.broadcast_to(jnp.asarray(fraction, jnp.float32), jnp.shape(batch["exposure"]))
    p = fraction[:, None]
    keys = jax.random.split(key, 2)
    out = dict(batch)
    for k, name in zip(keys, ("counts", "background")):
        values = jnp.asarray(batch[name])
        out[name] = jax.random.binomial(k, jnp.round(values), p).astype(values.dtype)
    out["exposure"] = (batch["exposure"] * fraction).astype(jnp.asarray(batch["exposure"]).dtype)
    return out


def thinned_copies(key: jax.Array, batch: dict, share: float, least: float = 50.0) -> dict:
    """Training augmentation: a random ``share`` of the rows of ``batch`` replaced by
    :func:`thin` copies, each kept for a fraction of its exposure drawn log-uniformly between
    ``least / counts`` and 1 (so that its counts fall log-uniformly between ``least`` and its
    own), so that every bright spectrum also teaches the encoder its fainter versions."""
    chosen_key, fraction_key, thin_key = jax.random.split(key, 3)
    n = jnp.asarray(batch["exposure"]).shape[0]
    counts = jnp.sum(jnp.where(batch["good"], batch["counts"], 0.0), -1)
    lowest = jnp.log(jnp.clip(least / jnp.maximum(counts, 1.0), 0.0, 1.0))
    fraction = jnp.exp(lowest * jax.random.uniform(fraction_key, (n,)))
    fraction = jnp.where(jax.random.uniform(chosen_key, (n,)) < share, fraction, 1.0)
    return thin(thin_key, batch, fraction)


def encoder_inputs(batch: dict) -> tuple[jax.Array, jax.Array]:
    """Per-channel features (B, C, 3): log1p of source and of scaled background counts, and
    the channel's share of the source counts times C (the shape, free of the flux scale); zero
    in bad channels. Global features (B, 3), about centred on a typical catalogue source: log
    exposure / 30 ks, log total counts / 1000, log mean ARF / 300 cm^2."""
    good = batch["good"]
    counts = jnp.where(good, batch["counts"], 0.0)
    total = jnp.sum(counts, -1, keepdims=True)
    share = counts.shape[-1] * counts / jnp.maximum(total, 1.0)
    scaled_background = batch["alpha"] * batch["background"]
    channels = jnp.stack([jnp.log1p(counts), jnp.log1p(scaled_background), share], -1)
    channels = jnp.where(good[..., None], channels, 0.0)
    globals_ = jnp.stack(
        [
            jnp.log(batch["exposure"] / 3e4),
            jnp.log1p(total[:, 0]) - jnp.log(1e3),
            jnp.log(jnp.maximum(batch["arf"].mean(-1), 1e-3) / 300.0),
        ],
        -1,
    )
    return channels, globals_


class Posterior(NamedTuple):
    """Each source's Gaussian posterior: the means and marginal standard deviations of ``z``
    (B, D) and ``log_norm`` (B,), and the ``conditional`` standard deviations of both (B,
    D + 1, ``log_norm`` last; each coordinate's with the others held at their means), which
    the diagonal Gaussian of the ELBO and of the draws takes. The two are the same for the
    encoder's (mean-field) posterior; for a refined one (:func:`refine`, a Laplace
    approximation) the marginal ones are larger along a degeneracy of the spectrum (slope
    against column, say), where the latent dimensions are correlated."""

    z_loc: jax.Array
    z_scale: jax.Array
    norm_loc: jax.Array
    norm_scale: jax.Array
    conditional: jax.Array

    @property
    def loc(self) -> jax.Array:
        """The means of (``z``, ``log_norm``) side by side (B, D + 1)."""
        return jnp.concatenate([self.z_loc, self.norm_loc[:, None]], -1)

    def sample(self, key: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
        """``n`` draws of ``z`` (n, B, D) and of ``log_norm`` (n, B), from the same standard
        normal draws for every source (so that a source's do not depend on its batch)."""
        noise = jax.random.normal(key, (n, 1, self.loc.shape[-1]))
        draws = self.loc + self.conditional * noise
        return draws[..., :-1], draws[..., -1]

    def kl(self, norm_prior: jax.Array) -> jax.Array:
        """KL of the draws' Gaussian to the prior, N(0, I) on ``z`` and N(``norm_prior``) on
        ``log_norm``, per source."""
        prior_loc, prior_scale = norm_prior
        kl = jnp.sum(standard_normal_kl(self.z_loc, self.conditional[:, :-1]), -1)
        norm = standard_normal_kl(
            (self.norm_loc - prior_loc) / prior_scale, self.conditional[:, -1] / prior_scale
        )
        return kl + norm


def standard_normal_kl(loc: jax.Array, scale: jax.Array) -> jax.Array:
    """KL(N(loc, scale^2) || N(0, 1)), elementwise (KL is invariant under a common affine map,
    so a prior N(m, s^2) is this of ``((loc - m) / s, scale / s)``)."""
    return 0.5 * (loc**2 + scale**2 - 1.0) - jnp.log(scale)


def _posterior(encoder: Callable[..., EncoderOutput], batch: dict) -> Posterior:
    out = encoder(*encoder_inputs(batch))
    norm_loc = rough_log_rate(batch) + out.norm_loc
    scale = jnp.concatenate([out.z_scale, out.norm_scale[:, None]], -1)
    return Posterior(out.z_loc, out.z_scale, norm_loc, out.norm_scale, scale)


def _source_counts(
    decoder: Callable[..., DecoderOutput],
    z: jax.Array,
    log_norm: jax.Array,
    batch: dict,
    inst: ModelArrays,
):
    decoded = decoder(z, _log_centres(inst.energy_edges))
    return decoded, expected_counts(photon_flux(decoded, log_norm, inst), batch, inst)


def model(
    batch: dict,
    inst: ModelArrays,
    config: Config,
    n_sources: int,
    kl_weight: ArrayLike = 1.0,
    free_bits: ArrayLike = 0.0,
) -> None:
    """The generative model of a minibatch of ``batch`` rows out of ``n_sources``: shape latent
    ``z ~ N(0, I)`` and ``log_norm ~ N(prior)``; DeepONet decoder; absorption; folding through
    each source's ARF, exposure and RMF; source and background counts by ``config.likelihood``.
    ``kl_weight`` scales the latent terms (KL annealing); ``free_bits`` is the guide's."""
    decoder = flax_module(
        "decoder",
        config.decoder(np.asarray(inst.energy_edges)),
        jnp.zeros((1, config.latent_dim)),
        _log_centres(inst.energy_edges),
    )
    with numpyro.plate("sources", n_sources, subsample_size=batch["counts"].shape[0]):
        with numpyro.handlers.scale(scale=kl_weight):
            z = numpyro.sample("z", dist.Normal(jnp.zeros(config.latent_dim), 1.0).to_event(1))
            log_norm = numpyro.sample("log_norm", dist.Normal(*inst.norm_prior))
        _, source = _source_counts(decoder, z, log_norm, batch, inst)
        likelihood = LIKELIHOODS[config.likelihood]
        numpyro.sample(
            "counts",
            likelihood(source, batch["alpha"], batch["counts"], batch["background"], batch["good"]),
            obs=jnp.stack([batch["counts"], batch["background"]], -1),
        )


def guide(
    batch: dict,
    inst: ModelArrays,
    config: Config,
    n_sources: int,
    kl_weight: ArrayLike = 1.0,
    free_bits: ArrayLike = 0.0,
) -> None:
    """The amortized posterior: the Mixer encoder reads the counts and gives a diagonal
    Gaussian for ``z`` and one for ``log_norm`` (around :func:`rough_log_rate`).

    ``free_bits > 0`` (nats, a training device against posterior collapse; Kingma et al.
    2016): a latent dimension whose KL to the prior, averaged over the minibatch, is below
    ``free_bits`` costs ``free_bits`` in the loss, so using it up to that much is free (the
    loss is then an upper bound of the negative ELBO)."""
    channels, globals_ = encoder_inputs(batch)
    encoder = flax_module("encoder", config.encoder(), channels[:1], globals_[:1])
    q = _posterior(encoder, batch)
    with numpyro.plate("sources", n_sources, subsample_size=channels.shape[0]):
        with numpyro.handlers.scale(scale=kl_weight):
            numpyro.sample("z", dist.Normal(q.z_loc, q.z_scale).to_event(1))
            numpyro.sample("log_norm", dist.Normal(q.norm_loc, q.norm_scale))
    kl = standard_normal_kl(q.z_loc, q.z_scale)
    shortfall = jnp.clip(free_bits - kl.mean(0), 0.0).sum()  # 0 when free_bits = 0
    numpyro.factor("free_bits", kl_weight * n_sources * shortfall)  # adds to the loss


@dataclass(frozen=True, eq=False)
class VAE:
    """A trained VAE used outside numpyro: its :class:`Config`, the learnt parameters as SVI
    names them (``encoder$params``, ``decoder$params``) and the :class:`ModelArrays` arrays.
    The methods are pure JAX (jit them with the VAE closed over). VAEs compare and hash by
    identity."""

    config: Config
    params: dict
    inst: ModelArrays

    def posterior(self, batch: dict) -> Posterior:
        """The posterior of every source of ``batch``: the encoder's, refined by
        :func:`refine` when ``config.refine_steps > 0``."""
        encoder = self.config.encoder()
        q = _posterior(partial(encoder.apply, {"params": self.params["encoder$params"]}), batch)
        return refine(self, q, batch) if self.config.refine_steps > 0 else q

    def with_refinement(self, steps: int) -> VAE:
        """The same VAE whose :meth:`posterior` takes ``steps`` refinement steps."""
        if steps == self.config.refine_steps:
            return self
        return VAE(replace(self.config, refine_steps=int(steps)), self.params, self.inst)

    def decode(
        self, z: jax.Array, log_norm: jax.Array, batch: dict
    ) -> tuple[DecoderOutput, jax.Array]:
        """The decoder's output (:class:`DecoderOutput`) and the expected source counts
        (B, C) of latents ``z``, ``log_norm`` for the sources of ``batch``."""
        decoder = self.config.decoder(np.asarray(self.inst.energy_edges))
        apply = partial(decoder.apply, {"params": self.params["decoder$params"]})
        return _source_counts(apply, z, log_norm, batch, self.inst)

    def learnt_on(self, energy_edges: ArrayLike) -> bool:
        """Whether ``energy_edges`` are the model energy grid this VAE learnt."""
        edges = np.asarray(energy_edges)
        mine = np.asarray(self.inst.energy_edges)
        return edges.shape == mine.shape and np.allclose(edges, mine, rtol=1e-6)

    def operands(self) -> dict:
        """The instrument arrays a compiled step takes as arguments rather than as constants:
        all but the energy grid, from which the decoder and the band fluxes are built when
        traced. Models of one configuration and grid then share their compiled programs (see
        :func:`step_owner`)."""
        return {k: v for k, v in self.inst._asdict().items() if k != "energy_edges"}

    def with_operands(self, params: dict, operands: dict) -> VAE:
        """This VAE with ``params`` and the instrument arrays ``operands`` (traced in a step)."""
        return VAE(self.config, params, self.inst._replace(**operands))

    def with_rmfs(self, rmf: ArrayLike) -> VAE:
        """The same VAE for a pack whose shared RMFs (R, E, C) are other than training's (this
        very VAE, so that its compiled functions are reused, when they are the same)."""
        rmf = jnp.asarray(rmf, jnp.float32)
        if rmf.shape == self.inst.rmf.shape and bool(jnp.array_equal(rmf, self.inst.rmf)):
            return self
        if rmf.shape[1:] != self.inst.rmf.shape[1:]:
            raise ValueError(
                f"RMFs of shape {rmf.shape[1:]} for a model on {self.inst.rmf.shape[1:]}"
            )
        return VAE(self.config, self.params, self.inst._replace(rmf=rmf))


_OWNERS: dict[tuple, VAE] = {}


def step_owner(vae: VAE) -> VAE:
    """The first VAE seen of ``vae``'s configuration and energy grid: jitted steps that take
    parameters and :meth:`VAE.operands` as arguments are cached on it, so that every model of
    that configuration and grid (another run, a copy for other RMFs) reuses them in-process."""
    key = (vae.config, np.asarray(vae.inst.energy_edges).tobytes())
    if key not in _OWNERS and len(_OWNERS) >= 8:
        _OWNERS.clear()
    return _OWNERS.setdefault(key, vae)


def refine(vae: VAE, q: Posterior, batch: dict) -> Posterior:
    """Semi-amortized inference: each source's posterior ``q`` (the encoder's) replaced by a
    Laplace approximation found from it. ``vae.config.refine_steps`` Levenberg-Marquardt steps
    on the source's negative log posterior in (``z``, ``log_norm``) (half the deviance plus the
    prior), each with the Gauss-Newton curvature of the Poisson likelihood (Fisher information
    ``1 / rate`` of the source-region counts, background at its profile) and a damping of its
    own. The draws' diagonal Gaussian takes ``1 / sqrt`` of the curvature's diagonal at the
    optimum (the best diagonal Gaussian to a Gaussian posterior); a source keeps the encoder's
    posterior if that one has no better ELBO on 16 common draws (a mode in a valley narrower
    than the Gauss-Newton curvature says), so refining never lowers that ELBO. The marginal
    standard deviations (``z_scale``, ``norm_scale``) are those of the full Laplace covariance,
    the inverse of the curvature at the location kept: along a degeneracy several times the
    conditional ones, and what similarity searches compare (with the conditional ones, a
    thinned copy of a bright spectrum lay three times farther from its original than its
    widths said). The decoder is fixed. Sources do not interact; pure JAX (jit it)."""
    config, inst = vae.config, vae.inst
    dim = config.latent_dim
    likelihood = LIKELIHOODS[config.likelihood]
    n, b, alpha, good = (batch[k] for k in ("counts", "background", "alpha", "good"))
    observed = jnp.stack([n, b], -1)
    prior_loc, prior_scale = inst.norm_prior
    mean = jnp.zeros(dim + 1).at[dim].set(prior_loc)
    precision = jnp.ones(dim + 1).at[dim].set(prior_scale**-2.0)
    decoder = config.decoder(np.asarray(inst.energy_edges))
    apply = partial(decoder.apply, {"params": vae.params["decoder$params"]})

    def source_counts(theta: jax.Array):
        return _source_counts(apply, theta[:, :dim], theta[:, dim], batch, inst)[1]

    def half_deviance(source: jax.Array):  # (B,)
        return 0.5 * likelihood(source, alpha, n, b, good).deviance(observed)

    def objective(theta: jax.Array, source: jax.Array):
        return half_deviance(source) + 0.5 * jnp.sum(precision * (theta - mean) ** 2, -1)

    def curvature(theta: jax.Array):
        """Objective, gradient (B, K) and Gauss-Newton Hessian (B, K, K) at ``theta``."""
        source, jvp = jax.linearize(source_counts, theta)
        tangents = jnp.broadcast_to(jnp.eye(dim + 1)[:, None], (dim + 1, *theta.shape))
        jac = jax.vmap(jvp)(tangents)  # (K, B, C)
        slope = jax.grad(lambda s: half_deviance(s).sum())(source)
        rate = likelihood(source, alpha, n, b, good).rates[..., 0]
        fisher = jnp.where(good, 1.0 / jnp.maximum(rate, 1e-6), 0.0)
        grad = jnp.einsum("kbc,bc->bk", jac, slope) + precision * (theta - mean)
        hessian = jnp.einsum("kbc,bc,lbc->bkl", jac, fisher, jac) + jnp.diag(precision)
        return objective(theta, source), grad, hessian

    start = q.loc
    theta, at_theta, at_start = levenberg_marquardt(curvature, start, config.refine_steps)
    scale = jnp.diagonal(at_theta[2], axis1=1, axis2=2) ** -0.5

    def negative_elbo(loc: jax.Array, scale: jax.Array):  # (B,), on common draws
        p = q._replace(z_loc=loc[:, :dim], norm_loc=loc[:, dim], conditional=scale)
        z, log_norm = p.sample(jax.random.key(1), 16)
        draws = jnp.concatenate([z, log_norm[..., None]], -1)
        deviance = jax.vmap(lambda x: half_deviance(source_counts(x)))(draws).mean(0)
        return deviance + p.kl(inst.norm_prior)

    # both candidates in one vmapped pass (one copy of the decoder to compile, not two)
    pair = jax.vmap(negative_elbo)(jnp.stack([theta, start]), jnp.stack([scale, q.conditional]))
    better = pair[0] < pair[1]
    loc = where_rows(better, theta, start)
    scale = where_rows(better, scale, q.conditional)
    sd = marginal_widths(where_rows(better, at_theta[2], at_start[2]), scale)
    return Posterior(loc[:, :dim], sd[:, :dim], loc[:, dim], sd[:, dim], scale)


def _log_centres(edges: jax.Array) -> jax.Array:
    return 0.5 * (jnp.log(edges[1:]) + jnp.log(edges[:-1]))
