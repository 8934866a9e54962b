"""The posterior of every source, and what is read off it.

:func:`encode` runs a trained :class:`~xspecvae.vae.VAE` over a pack: the guide's posterior
(loc and scale of ``z`` and ``log_norm``), the decoder's column and redshift at the posterior
mean, the fit there (expected counts, the model's SNR, the fit statistic) and the ELBO.

Every source is a diagonal Gaussian ``q_i = N(mu_i, diag sigma_i^2)`` of the shape latent.
:func:`divergence` gives the closed forms between two of them (:data:`DIVERGENCES`);
:class:`Index` finds the nearest posteriors of a query among a whole table under any of them;
:func:`trajectories` follows sources observed several times; :func:`anomalies` ranks sources
by misfit and by the emptiness of their neighbourhood. How good all this is on labelled
catalogues is measured in :mod:`xspecvae.evaluation`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import lru_cache, partial
from types import ModuleType

import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from xspecvae.catalog import PER_SOURCE, Pack, PackError, hardness_ratios
from xspecvae.likelihood import LIKELIHOODS, PoissonPair
from xspecvae.physics import band_share
from xspecvae.vae import VAE, photon_flux, step_owner

__all__ = [
    "DEFAULT_DIVERGENCE",
    "DIVERGENCES",
    "Index",
    "STEP_DIVERGENCE",
    "anomalies",
    "compared_widths",
    "conditional_widths",
    "divergence",
    "encode",
    "model_batches",
    "neighbours",
    "of_table",
    "trajectories",
]


def encode(
    vae: VAE,
    pack: Pack,
    rows: npt.ArrayLike | None = None,
    *,
    batch_size: int = 1024,
    n_draws: int = 4,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Posterior and fit of the ``rows`` of ``pack`` (all when None), as columns:

    ``z_loc``, ``z_scale`` (N, D) (marginal widths), ``z_conditional`` (N, D) (each dimension's
    width with the others at the mean); ``norm_loc``, ``norm_scale`` (of ``log_norm``, the log count
    rate through the reference response); at the posterior mean: ``nh`` (1e22 cm^-2),
    ``redshift``, ``coefficients`` (N, K) (the DeepONet branch's template weights),
    ``line_ew`` (N, L) (rest-frame equivalent widths, keV, of the decoder's lines at the
    energies of ``vae.config.line_energies``; only for a model with lines),
    ``photon_flux`` (absorbed, 0.2-12 keV, photons/cm^2/s), ``hardness`` (of that flux,
    ``(H - S) / (H + S)`` for :data:`HARD` and :data:`SOFT`: free of the instrument, the x axis
    of a hardness-intensity diagram), ``source_counts`` and ``total_counts`` (expected in the
    source region, good channels), ``snr`` (``source / sqrt(total)``), ``statistic`` (the
    likelihood's deviance: W-stat, or C-stat with the background known) and ``dof`` (good
    channels); over ``n_draws`` draws of the posterior (seeded by ``seed``): ``elbo`` (nats)
    and ``misfit``, ``(E_q[deviance] + 2 KL) / dof``, twice the ELBO's shortfall from the
    saturated model per channel: about 1 for a spectrum the model explains, large for one it
    cannot (per channel rather than per count, so that faint spectra are not penalised for
    their few counts). From the data: ``hr`` (N, 4), the 4XMM hardness ratios
    (:func:`~xspecvae.catalog.hardness_ratios`).
    The pack must be on the model's grids; its own shared RMFs are used.
    """
    operands = on_model_grids(vae, pack).operands()
    step = _encoder(step_owner(vae), n_draws)
    key = jax.random.key(seed)
    parts = []
    for start, n, batch in model_batches(vae, pack, rows, batch_size, progress, "encode"):
        out = step(
            vae.params, operands, {k: batch[k] for k in PER_SOURCE}, jax.random.fold_in(key, start)
        )
        hr = hardness_ratios(batch, pack.grid.channel_lo, pack.grid.channel_hi)
        parts.append({k: np.asarray(v)[:n] for k, v in {**out, "hr": hr}.items()})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def on_model_grids(vae: VAE, pack: Pack) -> VAE:
    """``vae`` with ``pack``'s shared RMFs, refused unless the pack is on the model's grids."""
    if not vae.learnt_on(pack.grid.energy_edges) or pack.rmf.shape[1:] != vae.inst.rmf.shape[1:]:
        raise PackError(
            pack.path,
            "is not on the grids of the model (its energies or channels differ): pack it with "
            "--grids-of the pack the run was trained on",
        )
    return vae.with_rmfs(pack.rmf)


def model_batches(
    vae: VAE, pack: Pack, rows: npt.ArrayLike | None, batch_size: int, progress: bool, desc: str
) -> Iterator[tuple[int, int, dict[str, np.ndarray]]]:
    """The ``rows`` of ``pack`` (all when None) for a jitted step of ``vae``: after checking
    that the pack is on the model's energy grid, yields ``(start, n, batch)`` for every
    ``batch_size`` rows from ``start``, the last batch padded by repeating its last row so
    that all have one shape (``n`` of its rows are real; ``batch["row"]`` says which)."""
    on_model_grids(vae, pack)
    rows = np.arange(len(pack)) if rows is None else np.asarray(rows)
    for start in tqdm(range(0, len(rows), batch_size), disable=not progress, desc=desc):
        chunk = rows[start : start + batch_size]
        yield start, len(chunk), pack.read(np.pad(chunk, (0, batch_size - len(chunk)), mode="edge"))


#: Bands (keV) of the model's hardness ``(H - S) / (H + S)`` in :func:`encode`.
SOFT, HARD = (0.5, 2.0), (2.0, 12.0)


@lru_cache(maxsize=4)
def _encoder(vae: VAE, n_draws: int) -> Callable:
    """The jitted step of :func:`encode` for the models of ``vae``'s configuration and energy
    grid (:func:`~xspecvae.vae.step_owner`; compiled once per batch size: parameters and
    instrument arrays are arguments)."""
    likelihood = LIKELIHOODS[vae.config.likelihood]
    edges = vae.inst.energy_edges
    bands = [band_share(edges), band_share(edges, *SOFT), band_share(edges, *HARD)]
    in_band = jnp.asarray(np.stack(bands, -1), jnp.float32)

    @jax.jit
    def step(params: dict, operands: dict, batch: dict[str, jax.Array], key: jax.Array):
        model = vae.with_operands(params, operands)
        q = model.posterior(batch)
        decoded, source = model.decode(q.z_loc, q.norm_loc, batch)
        flux = photon_flux(decoded, q.norm_loc, model.inst) @ in_band  # (B, 3)
        soft, hard = flux[:, 1], flux[:, 2]
        n, b, good = batch["counts"], batch["background"], batch["good"]
        observed = jnp.stack([n, b], -1)
        fit = likelihood(source, batch["alpha"], n, b, good)
        total = jnp.sum(jnp.where(good, fit.rates[..., 0], 0.0), -1)
        expected = jnp.sum(jnp.where(good, source, 0.0), -1)

        z, log_norm = q.sample(key, n_draws)
        drawn = jax.vmap(lambda zs, ls: model.decode(zs, ls, batch)[1])(z, log_norm)
        deviance = jax.vmap(lambda s: likelihood(s, batch["alpha"], n, b, good).deviance(observed))(
            drawn
        ).mean(0)
        kl = q.kl(model.inst.norm_prior)
        saturated = PoissonPair(n, 0.0, b, good).log_prob(observed)
        dof = good.sum(-1)
        return {
            **{k: v for k, v in q._asdict().items() if k != "conditional"},
            "z_conditional": q.conditional[:, :-1],
            "nh": decoded.nh,
            "redshift": decoded.redshift,
            "coefficients": decoded.coefficients,
            **({"line_ew": decoded.line_ew} if decoded.line_ew.shape[-1] else {}),
            "photon_flux": flux[:, 0],
            "hardness": (hard - soft) / jnp.maximum(hard + soft, 1e-30),
            "source_counts": expected,
            "total_counts": total,
            "snr": expected / jnp.sqrt(jnp.maximum(total, 1e-30)),
            "statistic": fit.deviance(observed),
            "dof": dof,
            "elbo": saturated - 0.5 * deviance - kl,
            "misfit": (deviance + 2.0 * kl) / jnp.maximum(dof, 1),
        }

    return step


# ---------------------------------------------------------------------------------------------
# Posterior geometry

#: Closed forms between diagonal Gaussians ``a = N(m_a, s_a^2)`` and ``b``, summed over
#: dimensions: ``kl`` is KL(a || b) (a the query), ``kl_reverse`` KL(b || a), ``kl_symmetric``
#: their sum (Jeffreys), ``bhattacharyya`` the Bhattacharyya distance, ``hellinger`` the
#: Hellinger distance ``sqrt(1 - exp(-bhattacharyya))`` (in [0, 1]), ``wasserstein`` the
#: 2-Wasserstein distance ``sqrt(|m_a - m_b|^2 + |s_a - s_b|^2)``, ``euclidean`` the distance of
#: the means alone. ``match`` is not a divergence but the evidence that two sources share one
#: latent value: ``-log`` of the Bayes factor ``int q_a q_b / p dz`` (``p = N(0, I)`` the prior;
#: the same question as cross-matching two catalogues, Budavari & Szalay 2008). It divides the
#: prior out of both posteriors, so a faint source, whose posterior is pulled towards the
#: prior, is compared by what its counts say and not by how little they say: a posterior equal
#: to the prior matches everything at 0; two narrow, overlapping ones match far below 0.
#: Scales are capped at 1 (the prior's) for it. Dividing the prior out per dimension is exact
#: for the conditional widths (the curvature's diagonal, ``z_conditional``), not for the
#: marginal ones of a correlated posterior (``z_scale``): :class:`Index` compares the
#: conditional ones under ``match`` (with the marginal ones, its purity fell from 0.656 to
#: 0.438 on a model trained on the simulation; benchmarks/RESULTS.md).
#: ``predictive`` asks which source's posterior best predicts the query's counts: ``-log`` of
#: ``int L_a(z) q_b(z) dz`` relative to its value for a point at the query's best fit, where
#: ``L_a = q_a / p`` is the query's likelihood (the prior divided out of its conditional widths,
#: ``L_a = N(mu_a, 1 / lambda_a)``, ``lambda_a = 1 / c_a^2 - 1``) and ``q_b`` the neighbour's
#: posterior (its marginal widths): per dimension
#: ``[lambda_a (mu_a - m_b)^2 / (1 + lambda_a s_b^2) + log(1 + lambda_a s_b^2)] / 2``, >= 0,
#: 0 only for a point posterior at ``mu_a``. Dimensions the query's counts do not tell (a
#: likelihood precision under 1e-3 of the prior's, e.g. a posterior as wide as the prior,
#: whose centre would lie far outside the population) count for nothing. A faint query is
#: compared by what its counts say, not pulled to the prior's centre, and its nearest are the
#: sources that predict those counts, the well-measured ones first (as the posterior
#: predictive of a fit would rank them).
DIVERGENCES = (
    "kl",
    "kl_reverse",
    "kl_symmetric",
    "bhattacharyya",
    "hellinger",
    "wasserstein",
    "euclidean",
    "match",
    "predictive",
)
#: The divergence of similarity searches unless one is named: on the independent catalogues of
#: benchmarks/latent_quality.py its neighbours were purer than any other's in every run (by
#: 0.03-0.05 over the symmetric KL, the talk's choice; benchmarks/RESULTS.md, issue 13).
DEFAULT_DIVERGENCE = "predictive"
#: The divergence of trajectories' steps and of anomalies' isolation unless one is named: how
#: far two posteriors lie apart, symmetric. ``predictive`` told state changes from flux-only
#: changes worse (AUC 0.66 against 0.80), and by isolation it ranked the bright members of a
#: class the model never saw lower (median percentile 5.8 % against 1.1 %; the faint ones
#: higher; benchmarks/RESULTS.md).
STEP_DIVERGENCE = "kl_symmetric"
_MIN_PRECISION = 1e-3  # of a likelihood under ``predictive``: below, its counts tell nothing


def divergence(
    name: str,
    loc_a: npt.ArrayLike,
    scale_a: npt.ArrayLike,
    loc_b: npt.ArrayLike,
    scale_b: npt.ArrayLike,
) -> np.ndarray | jax.Array:
    """Divergence ``name`` (:data:`DIVERGENCES`) between diagonal Gaussians, over the last axis;
    arrays broadcast, numpy in float64 (or jax arrays in their own dtype). ``a`` is the query;
    which widths to give each side: :func:`compared_widths`."""
    xp = jnp if isinstance(loc_a, jax.Array) or isinstance(loc_b, jax.Array) else np
    if xp is np:
        loc_a, scale_a, loc_b, scale_b = (
            np.asarray(x, np.float64) for x in (loc_a, scale_a, loc_b, scale_b)
        )
    return _divergence(xp, name, loc_a, scale_a**2, loc_b, scale_b**2)


def _divergence(
    xp: ModuleType,
    name: str,
    ma: np.ndarray | jax.Array,
    va: np.ndarray | jax.Array,
    mb: np.ndarray | jax.Array,
    vb: np.ndarray | jax.Array,
):
    d2 = (ma - mb) ** 2
    if name == "kl":
        return 0.5 * xp.sum((va + d2) / vb - 1.0 + xp.log(vb / va), -1)
    if name == "kl_reverse":
        return 0.5 * xp.sum((vb + d2) / va - 1.0 + xp.log(va / vb), -1)
    if name == "kl_symmetric":
        return 0.5 * xp.sum(((va - vb) ** 2 + d2 * (va + vb)) / (va * vb), -1)
    if name in ("bhattacharyya", "hellinger"):
        # log((va + vb) / 2 / sqrt(va vb)) / 2, written so that it is >= 0 in floating point
        spread = 0.25 * xp.log1p((va - vb) ** 2 / (4.0 * va * vb))
        db = xp.sum(0.25 * d2 / (va + vb) + spread, -1)
        return db if name == "bhattacharyya" else xp.sqrt(-xp.expm1(-db))
    if name == "wasserstein":
        return xp.sqrt(xp.sum(d2 + (xp.sqrt(va) - xp.sqrt(vb)) ** 2, -1))
    if name == "euclidean":
        return xp.sqrt(xp.sum(d2, -1))
    if name == "match":  # -log int N(m_a, v_a) N(m_b, v_b) / N(0, 1), per dimension, summed
        va, vb = xp.minimum(va, 1.0), xp.minimum(vb, 1.0)
        pa, pb = 1.0 / va, 1.0 / vb
        a = pa + pb - 1.0  # >= 1 with both variances <= 1
        exponent = (pa * ma**2 + pb * mb**2 - pa * pb * d2) / a
        return xp.sum(0.5 * xp.log(va + vb - va * vb) - 0.5 * exponent, -1)
    if name == "predictive":  # va: the query's conditional variances, vb: marginal ones
        precision = 1.0 / va - 1.0  # of the query's likelihood
        told = precision > _MIN_PRECISION  # the dimensions its counts tell
        precision = xp.where(told, precision, 1.0)
        spread = precision * vb
        d2 = (ma / va / precision - mb) ** 2  # from the likelihood's centre
        terms = precision * d2 / (1.0 + spread) + xp.log1p(spread)
        return 0.5 * xp.sum(xp.where(told, terms, 0.0), -1)
    raise ValueError(f"unknown divergence {name!r}; known: {', '.join(DIVERGENCES)}")


class Index:
    """A table of posteriors (locs and scales ``(N, D)``), searched by :meth:`search`: a scan of
    the whole table per query, jitted, in float32 (its speed: benchmarks/RESULTS.md).
    ``groups`` (N,) integers, e.g. source ids, let a search leave out the query's own group
    (its other observations). ``conditional`` (N, D): the conditional widths that ``match``
    compares instead of the scales (:func:`of_table`).
    """

    def __init__(
        self,
        loc: npt.ArrayLike,
        scale: npt.ArrayLike,
        groups: npt.ArrayLike | None = None,
        conditional: npt.ArrayLike | None = None,
    ) -> None:
        loc, scale = np.asarray(loc), np.asarray(scale)
        conditional = scale if conditional is None else np.asarray(conditional)
        if loc.ndim != 2 or loc.shape != scale.shape or scale.shape != conditional.shape:
            raise ValueError(f"locs {loc.shape} and scales {scale.shape} must both be (N, D)")
        self.loc = jnp.asarray(loc, jnp.float32)
        self.var = jnp.asarray(scale, jnp.float32) ** 2
        self.conditional_var = jnp.asarray(conditional, jnp.float32) ** 2
        groups = np.zeros(len(loc)) if groups is None else np.asarray(groups)
        self._group_names, codes = np.unique(groups, return_inverse=True)
        self.groups = jnp.asarray(codes, jnp.int32)

    def __len__(self) -> int:
        return self.loc.shape[0]

    def search(
        self,
        loc: npt.ArrayLike,
        scale: npt.ArrayLike,
        k: int = 10,
        *,
        divergence: str = DEFAULT_DIVERGENCE,
        keep: npt.ArrayLike | None = None,
        exclude_groups: npt.ArrayLike | None = None,
        conditional: npt.ArrayLike | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest posteriors of each query ``(Q, D)`` (or one ``(D,)``): their rows
        ``(Q, k)`` and divergences, nearest first. ``keep`` (N,) bool restricts the table
        (e.g. an SNR or instrument filter); ``exclude_groups`` (Q,) leaves out the rows of the
        query's group; ``conditional``: the queries' conditional widths, for ``match`` and
        ``predictive`` (without them, the marginal ones stand in: an approximation). Where
        fewer than ``k`` rows qualify, the rest are row -1, value inf."""
        if divergence not in DIVERGENCES:
            raise ValueError(f"unknown divergence {divergence!r}; known: {', '.join(DIVERGENCES)}")
        scale = compared_widths(divergence, scale, conditional)
        table_var = compared_widths(divergence, self.var, self.conditional_var, query=False)
        loc, scale = np.asarray(loc, np.float32), np.asarray(scale, np.float32)
        single = loc.ndim == 1
        loc, scale = np.atleast_2d(loc), np.atleast_2d(scale)
        keep = jnp.ones(len(self), bool) if keep is None else jnp.asarray(keep, bool)
        groups = np.full(len(loc), -1, np.int32)  # -1: no row's group
        if exclude_groups is not None:
            names = np.broadcast_to(np.asarray(exclude_groups), len(loc))
            where = np.clip(
                np.searchsorted(self._group_names, names), 0, len(self._group_names) - 1
            )
            known = self._group_names[where] == names
            groups[known] = where[known]
        k = min(k, len(self))
        chunk = max(1, 2**22 // len(self))
        rows, values = [], []
        for start in range(0, len(loc), chunk):
            part = slice(start, start + chunk)
            r, v = _search(
                self.loc,
                table_var,
                self.groups,
                keep,
                jnp.asarray(loc[part]),
                jnp.asarray(scale[part] ** 2),
                jnp.asarray(groups[part]),
                divergence,
                k,
            )
            rows.append(np.asarray(r))
            values.append(np.asarray(v))
        rows, values = np.concatenate(rows), np.concatenate(values).astype(np.float64)
        rows[~np.isfinite(values)] = -1
        return (rows[0], values[0]) if single else (rows, values)


def of_table(table: dict[str, np.ndarray], rows: np.ndarray | None = None) -> Index:
    """The :class:`Index` of the ``rows`` (default all) of an :func:`encode` table, grouped by
    ``source_id``, with its conditional widths (:func:`conditional_widths`)."""
    rows = slice(None) if rows is None else rows
    columns = (table["z_loc"], table["z_scale"], table["source_id"], conditional_widths(table))
    return Index(*(np.asarray(c)[rows] for c in columns))


def neighbours(
    table: dict[str, np.ndarray],
    query: int | dict[str, np.ndarray],
    k: int,
    *,
    divergence: str = DEFAULT_DIVERGENCE,
    keep: npt.ArrayLike | None = None,
    index: Index | None = None,
) -> dict[str, np.ndarray]:
    """The ``k`` nearest posteriors of an :func:`encode` table to ``query``, nearest first:
    ``rank``, ``row`` and ``divergence`` (fewer than ``k`` where fewer rows qualify).

    ``query``: a row of ``table`` (its source's other observations left out), or the one-row
    :func:`encode` table of a spectrum from elsewhere. ``keep`` (N,) bool limits the
    candidates; ``index``: ``of_table(table)``, when the caller keeps one."""
    if isinstance(query, dict):
        of, at, group = query, 0, None
    else:
        of, at, group = table, int(query), [np.asarray(table["source_id"])[int(query)]]
    rows, values = (of_table(table) if index is None else index).search(
        np.asarray(of["z_loc"])[at],
        np.asarray(of["z_scale"])[at],
        int(k),
        divergence=divergence,
        keep=keep,
        exclude_groups=group,
        conditional=conditional_widths(of)[at],
    )
    found = rows >= 0  # row -1: fewer than k rows qualify
    return {"rank": np.arange(1, found.sum() + 1), "row": rows[found], "divergence": values[found]}


def compared_widths(
    divergence: str,
    marginal: npt.ArrayLike,
    conditional: npt.ArrayLike | None,
    *,
    query: bool = True,
) -> np.ndarray | jax.Array:
    """The widths ``divergence`` compares on the ``query``'s side (else the table's): the
    ``conditional`` ones for ``match`` (whose division of the prior per dimension is exact for
    them only) and for the query of ``predictive`` (whose likelihood they give), when given;
    else the ``marginal`` ones."""
    wanted = divergence == "match" or (divergence == "predictive" and query)
    return conditional if wanted and conditional is not None else marginal


def conditional_widths(table: dict[str, np.ndarray]) -> np.ndarray:
    """The conditional widths of an :func:`encode` table, which ``match`` compares (and
    ``predictive`` on the query's side): the
    ``z_conditional`` column, or ``z_scale`` in tables made before 2026-12-06 (whose widths
    were the conditional ones)."""
    return np.asarray(table["z_conditional"] if "z_conditional" in table else table["z_scale"])


@partial(jax.jit, static_argnames=("name", "k"))
def _search(
    loc: jax.Array,
    var: jax.Array,
    groups: jax.Array,
    keep: jax.Array,
    query_loc: jax.Array,
    query_var: jax.Array,
    query_groups: jax.Array,
    name: str,
    k: int,
):
    by = "bhattacharyya" if name == "hellinger" else name  # same order; H saturates at 1

    def one(m: jax.Array, v: jax.Array, g: jax.Array):
        d = _divergence(jnp, by, m, v, loc, var)
        d = jnp.where(keep & (groups != g), d, jnp.inf)
        top, rows = jax.lax.top_k(-d, k)
        if by != name:
            return rows, jnp.where(jnp.isfinite(top), jnp.sqrt(-jnp.expm1(top)), jnp.inf)
        return rows, -top

    return jax.vmap(one)(query_loc, query_var, query_groups)


def trajectories(table: dict, *, divergence: str = STEP_DIVERGENCE) -> dict[str, np.ndarray]:
    """The sources of ``table`` (columns ``source_id``, ``mjd``, ``z_loc``, ``z_scale``) seen
    more than once, one row per observation ordered by source and time: ``row`` (in
    ``table``), ``source_id``, ``mjd``, ``epoch`` (1, 2, ...), ``n_epochs`` and ``step``, the
    divergence of the posterior from the previous epoch's (NaN at the first)."""
    source, mjd = np.asarray(table["source_id"]), np.asarray(table["mjd"])
    order = np.lexsort((mjd, source))
    _, count = np.unique(source[order], return_counts=True)
    n_epochs = np.repeat(count, count)
    order, n_epochs = order[n_epochs > 1], n_epochs[n_epochs > 1]
    same = source[order][1:] == source[order][:-1]  # the row continues the previous source
    start = np.maximum.accumulate(np.where(np.r_[True, ~same], np.arange(len(order)), 0))
    loc = np.asarray(table["z_loc"], np.float64)[order]
    scale, conditional = table["z_scale"], conditional_widths(table)
    query_var, other_var = (  # the earlier epoch is the query
        np.asarray(compared_widths(divergence, scale, conditional, query=q), np.float64)[order] ** 2
        for q in (True, False)
    )
    step = np.full(len(order), np.nan)
    earlier = (loc[:-1][same], query_var[:-1][same])
    later = (loc[1:][same], other_var[1:][same])
    step[1:][same] = _divergence(np, divergence, *earlier, *later)
    return {
        "row": order,
        "source_id": source[order],
        "mjd": mjd[order],
        "epoch": np.arange(len(order)) - start + 1,
        "n_epochs": n_epochs,
        "step": step,
    }


def anomalies(
    table: dict,
    *,
    k: int = 10,
    divergence: str = STEP_DIVERGENCE,
    reference: int = 20_000,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Two ways a source can be exotic, per row of an :func:`encode` table (with
    ``source_id``): ``misfit`` (the model explains it poorly, from :func:`encode`) and
    ``isolation``, the mean ``divergence`` to its ``k`` nearest posteriors among at most
    ``reference`` rows drawn at random (seeded; its own observations excluded). Ranks count
    from 1 (most anomalous); ``rank`` orders by the better of the two ranks (exotic either
    way), ties by the other."""
    n = len(table["z_loc"])
    rng = np.random.default_rng(seed)
    ref = np.sort(rng.choice(n, min(n, reference), replace=False))
    groups = np.asarray(table["source_id"])
    _, values = of_table(table, ref).search(
        table["z_loc"],
        table["z_scale"],
        k,
        divergence=divergence,
        exclude_groups=groups,
        conditional=conditional_widths(table),
    )
    isolation = np.nanmean(np.where(np.isfinite(values), values, np.nan), 1)
    misfit = np.asarray(table["misfit"], np.float64)
    ranks = {name: _rank(-x) for name, x in (("misfit", misfit), ("isolation", isolation))}
    best = np.minimum(ranks["misfit"], ranks["isolation"])
    either = best + np.maximum(ranks["misfit"], ranks["isolation"]) / (n + 1.0)  # ties: the other
    return {
        "misfit": misfit,
        "isolation": isolation,
        "misfit_rank": ranks["misfit"],
        "isolation_rank": ranks["isolation"],
        "rank": _rank(either),
    }


def _rank(values: np.ndarray) -> np.ndarray:
    """1 for the smallest value (NaN last), ties in order of rows."""
    values = np.where(np.isnan(values), np.inf, values)
    rank = np.empty(len(values), np.int64)
    rank[np.argsort(values, kind="stable")] = np.arange(1, len(values) + 1)
    return rank
