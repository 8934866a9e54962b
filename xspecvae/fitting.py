"""Classical fits of one spectrum, the baseline a reconstruction is judged against.

An absorbed XSPEC-like model (:data:`MODELS`: ``tbabs*powerlaw``, ``tbabs*diskbb``,
``tbabs*(diskbb+powerlaw)``) is folded through the spectrum's own ARF, RMF and exposure on the
pack's grids, exactly as the VAE folds its spectra, and fitted by minimising the likelihood's
statistic (W-stat, or C-stat with the background known) with L-BFGS-B from several starts, in
float64. :func:`fit_latent` fits the VAE's decoder the same way: its latent optimised for the
one source instead of read off the encoder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from itertools import product

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import minimize

from xspecvae.absorption import CrossSection, absorption
from xspecvae.catalog import PER_SOURCE, Pack
from xspecvae.likelihood import LIKELIHOODS
from xspecvae.physics import diskbb, powerlaw
from xspecvae.vae import VAE, step_owner

__all__ = ["MODELS", "Fit", "SpectralModel", "fit", "fit_latent"]


@dataclass(frozen=True, eq=False)
class SpectralModel:
    """An absorbed additive model: ``photons(edges, sigma, *parameters)`` (photons/cm^2/s per
    bin), its parameter names (XSPEC's units: ``nh`` 1e22 cm^-2, temperatures keV, norms as
    XSPEC), bounds, which are fitted in log, which are normalisations (set from the counts at
    each start), and the starting values of the others (every combination is tried)."""

    photons: object
    names: tuple[str, ...]
    bounds: tuple[tuple[float, float], ...]
    log: tuple[bool, ...]
    norms: tuple[int, ...]
    starts: dict

    def unpack(self, theta: jax.Array) -> list:
        return [jnp.exp(t) if lg else t for t, lg in zip(theta, self.log)]

    def counts(self, theta: jax.Array, data: dict[str, jax.Array]) -> jax.Array:
        """Expected source counts per channel: the photons folded by ``data["response"]``."""
        return self.photons(data["edges"], data["sigma"], *self.unpack(theta)) @ data["response"]


def _pl(edges: jax.Array, sigma: jax.Array, nh: jax.Array, gamma: jax.Array, norm: jax.Array):
    return absorption(sigma, nh) * powerlaw(edges, gamma, norm)


def _disk(edges: jax.Array, sigma: jax.Array, nh: jax.Array, t_in: jax.Array, norm: jax.Array):
    return absorption(sigma, nh) * diskbb(edges, t_in, norm)


def _disk_pl(
    edges: jax.Array,
    sigma: jax.Array,
    nh: jax.Array,
    t_in: jax.Array,
    disk_norm: jax.Array,
    gamma: jax.Array,
    pl_norm: jax.Array,
):
    return absorption(sigma, nh) * (
        diskbb(edges, t_in, disk_norm) + powerlaw(edges, gamma, pl_norm)
    )


_NH, _NORM, _T = (1e-4, 1e3), (1e-12, 1e12), (0.02, 10.0)
MODELS = {
    "powerlaw": SpectralModel(
        _pl,
        ("nh", "gamma", "norm"),
        (_NH, (-3.0, 10.0), _NORM),
        (True, False, True),
        (2,),
        {0: (0.01, 0.3, 3.0), 1: (1.0, 2.0, 3.5)},
    ),
    "diskbb": SpectralModel(
        _disk,
        ("nh", "t_in", "norm"),
        (_NH, _T, _NORM),
        (True, True, True),
        (2,),
        {0: (0.01, 0.3, 3.0), 1: (0.2, 1.0, 2.5)},
    ),
    "diskbb+powerlaw": SpectralModel(
        _disk_pl,
        ("nh", "t_in", "disk_norm", "gamma", "pl_norm"),
        (_NH, _T, _NORM, (-3.0, 10.0), _NORM),
        (True, True, True, False, True),
        (2, 4),
        {0: (0.03, 0.5), 1: (0.2, 1.0, 2.5), 3: (2.0,)},
    ),
}


_FAILED = 1e300  # the value scipy is given where the statistic is not finite

#: L-BFGS-B to the bottom of the long valleys of degenerate components (disc against power law)
_TOLERANCE = {"ftol": 1e-13, "gtol": 1e-7, "maxiter": 5000}


@dataclass(frozen=True)
class Fit:
    """The best fit: ``parameters`` and their 1-sigma ``errors`` (from the curvature of the
    statistic; NaN where it is not positive definite), the ``statistic`` and ``dof`` (good
    channels less free parameters), the expected source counts per channel (``source``) and
    the total in the source region with the background profiled (``total``)."""

    model: str
    parameters: dict
    errors: dict
    statistic: float
    dof: int
    source: np.ndarray
    total: np.ndarray


def fit(
    pack: Pack,
    row: int,
    model: str = "powerlaw",
    *,
    cross_section: CrossSection | None = None,
    likelihood: str = "wstat",
) -> Fit:
    """Fit ``model`` (a key of :data:`MODELS`) to spectrum ``row`` of ``pack``; absorption by
    ``cross_section`` (e.g. ``CrossSection.from_fits("xsect_tbabs_wilm.fits")``; Morrison &
    McCammon when None)."""
    spec = MODELS[model]
    cross_section = cross_section or CrossSection.morrison_mccammon()
    with jax.enable_x64(True):
        data = _spectrum(pack, row, cross_section)
        objective = _objective(spec.counts, likelihood)
        good = np.asarray(data["good"])
        net = float(np.sum((data["n"] - data["alpha"] * data["b"])[good]))
        bounds = [np.log(b) if lg else b for b, lg in zip(spec.bounds, spec.log)]
        best = None
        for start in _starts(spec):
            theta = np.array([np.log(v) if lg else v for v, lg in zip(start, spec.log)])
            for i in spec.norms:  # each component starts with its share of the net counts
                alone = np.where(np.isin(np.arange(len(theta)), spec.norms), -np.inf, theta)
                alone[i] = 0.0
                one = float(np.sum(np.asarray(objective.counts(jnp.asarray(alone), data))[good]))
                theta[i] = np.log(max(net, 1.0) / len(spec.norms) / max(one, 1e-300))
            theta = np.clip(theta, *np.transpose(bounds))
            result = minimize(
                objective.bind(data),
                theta,
                jac=True,
                method="L-BFGS-B",
                bounds=bounds,
                options=_TOLERANCE,
            )
            if best is None or result.fun < best.fun:
                best = result
        if best.fun >= _FAILED or not good.any():
            raise ArithmeticError(f"{pack.path} row {row}: {model} has no finite fit")
        theta = jnp.asarray(best.x)
        values = [float(v) for v in spec.unpack(theta)]
        errors = _errors(objective, theta, data, values, spec.log)
        source, total = (np.asarray(f(theta, data)) for f in (objective.counts, objective.total))
    return Fit(
        model,
        dict(zip(spec.names, values)),
        dict(zip(spec.names, errors)),
        float(best.fun),
        int(good.sum()) - len(spec.names),
        source,
        total,
    )


def fit_latent(vae: VAE, pack: Pack, row: int) -> Fit:
    """The VAE's decoder used as a spectral model and fitted to spectrum ``row``: the latent
    (``z`` and ``log_norm``) of maximum likelihood, from the encoder's posterior mean, with
    the decoder fixed. ``dof`` is the good channels less the latent's dimensions."""
    one = pack.read(np.array([row]))
    batch = {k: jnp.asarray(v) for k, v in one.items() if k in PER_SOURCE}
    q = vae.with_refinement(0).posterior(batch)  # the optimiser below does the rest
    counts = _decoder_counts(step_owner(vae))
    objective = _objective(counts, vae.config.likelihood)
    operands = vae.with_rmfs(pack.rmf).operands()
    data = {**_observed(one), "batch": batch, "params": vae.params, "operands": operands}
    start = np.concatenate([np.asarray(q.z_loc[0]), np.asarray(q.norm_loc)]).astype(np.float64)
    result = minimize(objective.bind(data), start, jac=True, method="L-BFGS-B", options=_TOLERANCE)
    theta = jnp.asarray(result.x, jnp.float32)
    return Fit(
        "decoder",
        {"z": result.x[:-1], "log_norm": float(result.x[-1])},
        {},
        float(objective.statistic(theta, data)),
        int(np.sum(data["good"])) - len(start),
        np.asarray(objective.counts(theta, data)),
        np.asarray(objective.total(theta, data)),
    )


@lru_cache(maxsize=4)
def _decoder_counts(vae: VAE):
    """The decoder's counts of ``theta = (z, log_norm)`` for the models of ``vae``'s
    configuration and grid (:func:`~xspecvae.vae.step_owner`): parameters and instrument
    arrays come in ``data``, so it is compiled once for every model and pack of those shapes."""

    def counts(theta: jax.Array, data: dict):
        model = vae.with_operands(data["params"], data["operands"])
        return model.decode(theta[None, :-1], theta[-1:], data["batch"])[1][0]

    return counts


def _spectrum(pack: Pack, row: int, cross_section: CrossSection) -> dict:
    """What a classical fit of spectrum ``row`` needs (float64 under ``jax.enable_x64``): its
    counts, its folding matrix ``exposure * arf * rmf`` (E, C), the model energy grid and the
    cross-sections on it."""
    one = pack.read(np.array([row]))
    rmf = np.asarray(pack.rmf[int(one["rmf_index"][0])], np.float64)
    response = one["exposure"][0] * np.asarray(one["arf"][0], np.float64)[:, None] * rmf
    return {
        **_observed(one),
        "response": jnp.asarray(response),
        "edges": jnp.asarray(pack.grid.energy_edges, jnp.float64),
        "sigma": jnp.asarray(cross_section.on(pack.grid.energy_edges)),
    }


def _observed(one: dict) -> dict:
    """What the statistic needs of one spectrum read from a pack (``Pack.read`` of one row)."""
    return {
        "n": jnp.asarray(one["counts"][0], float),
        "b": jnp.asarray(one["background"][0], float),
        "alpha": jnp.asarray(one["alpha"][0], float),
        "good": jnp.asarray(one["good"][0]),
    }


class _Objective:
    """The fit statistic of ``counts(theta, data)``, jitted once for every spectrum of the
    same shapes; :meth:`bind` gives scipy its function."""

    def __init__(self, counts: Callable[..., jax.Array], likelihood: str) -> None:
        make = LIKELIHOODS[likelihood]

        def pair(theta: jax.Array, data: dict):
            return make(counts(theta, data), data["alpha"], data["n"], data["b"], data["good"])

        def statistic(theta: jax.Array, data: dict):
            return pair(theta, data).deviance(jnp.stack([data["n"], data["b"]], -1))

        self.counts = jax.jit(counts)
        self.statistic = jax.jit(statistic)
        self.total = jax.jit(lambda theta, data: pair(theta, data).rates[..., 0])
        self._step = jax.jit(jax.value_and_grad(statistic))

    def bind(self, data: dict):
        dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32

        def value_and_grad(theta: np.ndarray):
            value, grad = self._step(jnp.asarray(theta, dtype), data)
            value, grad = float(value), np.asarray(grad, np.float64)
            if not (np.isfinite(value) and np.all(np.isfinite(grad))):
                return _FAILED, np.zeros_like(theta)
            return value, grad

        return value_and_grad


_objective = lru_cache(maxsize=16)(_Objective)


def _starts(spec: SpectralModel):
    shape = [i for i in range(len(spec.names)) if i not in spec.norms]
    for values in product(*(spec.starts[i] for i in shape)):
        start = [1.0] * len(spec.names)
        for i, v in zip(shape, values):
            start[i] = v
        yield start


def _errors(
    objective: _Objective,
    theta: jax.Array,
    data: dict,
    values: list[float],
    log: tuple[bool, ...],
) -> list[float]:
    """1-sigma errors: the covariance ``2 H^-1`` of the statistic's Hessian ``H``
    (:func:`_hessian`) in the fitted parameters (NaN unless ``H`` is positive definite),
    carried to log-fitted ones by ``d value = value d log value``."""
    hessian = _hessian(objective, theta, data)
    if not np.all(np.isfinite(hessian)) or np.linalg.eigvalsh(hessian).min() <= 0:
        return [float("nan")] * len(values)
    sd = np.sqrt(np.diag(2.0 * np.linalg.inv(hessian)))
    return [float(s * v if lg else s) for s, v, lg in zip(sd, values, log)]


def _hessian(objective: _Objective, theta: np.ndarray | jax.Array, data: dict) -> np.ndarray:
    """The statistic's Hessian by central differences of its gradient, which is exact with
    the background profiled (envelope theorem); autodiff's Hessian would hold the profiled
    background fixed and understate the errors of background-dominated spectra."""
    grad = objective.bind(data)
    theta = np.asarray(theta, np.float64)
    steps = 1e-4 * np.maximum(1.0, np.abs(theta))
    columns = []
    for i, h in enumerate(steps):
        up, down = theta.copy(), theta.copy()
        up[i] += h
        down[i] -= h
        columns.append((grad(up)[1] - grad(down)[1]) / (2 * h))
    hessian = np.array(columns)
    return 0.5 * (hessian + hessian.T)
