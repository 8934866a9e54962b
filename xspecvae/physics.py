"""Physical photon spectra, in JAX (absorption: :mod:`xspecvae.absorption`).

Additive models return photons/cm^2/s per energy bin: ``energy_edges`` are bin edges in keV,
shape ``(n + 1,)`` or batched ``(..., n + 1)``; parameters broadcast over leading axes; the
result has shape ``(..., n)``. The models are ``jax.jit``-compiled pure functions (vmap and grad
safe, float32 friendly, float64 under ``jax.enable_x64``; values that underflow give zero
gradients, never NaN). Densities (photons/cm^2/s/keV) follow XSPEC's conventions where stated.

- :func:`powerlaw`, :func:`blackbody` (``bbody``), :func:`diskbb`, :func:`bremsstrahlung`
  (``bremss``), :func:`gaussian_line` (``gaussian``), :func:`plasma` (a documented
  approximation of a collisional plasma, *not* APEC) and :func:`redshifted` (z-models).
- :data:`FLUX_BAND` and :func:`band_share`: the analysis band and the share of bins inside it.

Smooth densities are integrated over each bin by 8-point Gauss-Legendre in log E: in float64
the relative error of bins holding > 1e-6 of the flux is < 1e-13 for bins with
E_hi/E_lo <= 1.4, < 1e-10 for E_hi/E_lo <= 2 and ~1e-7 for E_hi/E_lo = 3 (blackbody, any kT);
in float32 it is ~1e-6, set by rounding. The power law and the Gaussian line are integrated in
closed form.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import erfc
from jax.typing import ArrayLike
from scipy.special import gamma as _gamma_fn
from scipy.special import k0e as _k0e_fn
from scipy.special import k1e as _k1e_fn
from scipy.special import zeta as _zeta_fn

__all__ = [
    "powerlaw",
    "blackbody",
    "diskbb",
    "bremsstrahlung",
    "gaussian_line",
    "plasma",
    "redshifted",
    "PLASMA_LINES",
    "FLUX_BAND",
    "band_share",
]

# ---------------------------------------------------------------------------------------------
# Bin integration


#: The EPIC band of 4XMM (keV): the default analysis band, the band of the catalogue's and the
#: model's fluxes and of the simulator's truth, and the energy axis of every figure.
FLUX_BAND = (0.2, 12.0)


def band_share(
    energy_edges: ArrayLike, lo: float = FLUX_BAND[0], hi: float = FLUX_BAND[1]
) -> np.ndarray:
    """Share of each energy bin inside [lo, hi] keV (a flux per bin times it, summed, is the
    flux in the band)."""
    edges = np.asarray(energy_edges, np.float64)
    overlap = np.clip(np.minimum(edges[1:], hi) - np.maximum(edges[:-1], lo), 0.0, None)
    return overlap / np.diff(edges)


_NODES = 8  # Gauss-Legendre nodes per bin (in log E)
_GL_X, _GL_W = np.polynomial.legendre.leggauss(_NODES)
_GL_X = 0.5 * (_GL_X + 1.0)  # on [0, 1]
_GL_W = 0.5 * _GL_W


def _f(x: np.ndarray):
    """A numpy constant as a JAX array of the default float type (float64 under x64)."""
    return jnp.asarray(x, dtype=jnp.result_type(float))


def _bins(energy_edges: ArrayLike):
    """Lower edges and log widths log(E_hi/E_lo) (exact for narrow bins)."""
    edges = jnp.asarray(energy_edges)
    lo = edges[..., :-1]
    return lo, jnp.log1p(jnp.diff(edges, axis=-1) / lo)


def _integrate(
    density: Callable[..., jax.Array], energy_edges: ArrayLike, *params, at: jax.Array | None = None
):
    """Integral of ``density(E, *params)`` over every bin, Gauss-Legendre in log E.

    ``params`` broadcast over the leading axes and are handed to ``density`` with one
    trailing axis (energies). With ``at`` (energies, 1-d), returns also the density there,
    from the same evaluation: ``(integrals, densities)``."""
    lo, width = _bins(energy_edges)
    params = [jnp.asarray(p) for p in params]
    lead = jnp.broadcast_shapes(lo.shape[:-1], *(p.shape for p in params))
    n = lo.shape[-1]
    nodes = lo[..., None] * jnp.exp(width[..., None] * _f(_GL_X))
    energy = jnp.broadcast_to(nodes, (*lead, n, _NODES)).reshape(*lead, n * _NODES)
    if at is not None:
        energy = jnp.concatenate([energy, jnp.broadcast_to(at, (*lead, len(at)))], axis=-1)
    values = density(energy, *(p[..., None] for p in params))
    weighted = (energy * values)[..., : n * _NODES].reshape(*lead, n, _NODES)
    integral = jnp.sum(_f(_GL_W) * weighted, axis=-1) * width
    return integral if at is None else (integral, values[..., n * _NODES :])


# ---------------------------------------------------------------------------------------------
# Continua


@jax.jit
def powerlaw(energy_edges: ArrayLike, index: ArrayLike, norm: ArrayLike = 1.0) -> jax.Array:
    """Power law ``norm * E**-index`` (photons/cm^2/s/keV at 1 keV) integrated exactly over
    the bins between consecutive ``energy_edges`` (keV). ``index`` and ``norm`` broadcast
    over leading axes: result (..., n_bins)."""
    lo, width = _bins(energy_edges)  # width = log(E_hi/E_lo), exact for narrow bins
    slope = 1.0 - jnp.asarray(index)[..., None]
    # E_lo^s (exp(s w) - 1) / s, with expm1 for narrow bins and, near s = 0, its series (so
    # that the derivative in the index is right there too; error ~ (s w)^3 / 24)
    x = slope * width
    small = jnp.abs(x) < 1e-3
    safe = jnp.where(small, 1.0, slope)
    series = width * (1.0 + x / 2.0 + x * x / 6.0)
    integral = jnp.where(small, series, jnp.expm1(safe * width) / safe)
    integral = integral * jnp.exp(slope * jnp.log(lo))
    return jnp.asarray(norm)[..., None] * integral


# Densities are written as norm * exp(log density): no overflow of exp(E/kT), values that
# underflow to 0 where E >> kT, and gradients 0 (never inf * 0) there even under the huge
# cotangents of a log-likelihood.


def _log_planck(x: jax.Array):
    """log(1 / (exp(x) - 1)) for x > 0, without overflow."""
    return -x - jnp.log(-jnp.expm1(-x))


def _blackbody_density(energy: jax.Array, kT: jax.Array, norm: jax.Array):
    log_shape = 2.0 * jnp.log(energy) - 4.0 * jnp.log(kT) + _log_planck(energy / kT)
    return 8.0525 * norm * jnp.exp(log_shape)


@jax.jit
def blackbody(energy_edges: ArrayLike, kT: ArrayLike, norm: ArrayLike = 1.0) -> jax.Array:
    """Blackbody, XSPEC ``bbody``: ``8.0525 norm E^2 / (kT^4 (exp(E/kT) - 1))``
    photons/cm^2/s/keV, ``norm = L39 / D10^2`` (luminosity 1e39 erg/s, distance 10 kpc).

    Parameters
    ----------
    energy_edges : (..., n + 1) keV.
    kT : temperature, keV.
    norm : normalisation.

    Returns
    -------
    (..., n) photons/cm^2/s per bin. The photon total is ``8.0525 * 2 zeta(3) norm / kT``.
    """
    return _integrate(_blackbody_density, energy_edges, kT, norm)


# Multicolour disc. Photon flux of a face-on disc at distance D with T(r) = T_in (r/r_in)^-3/4:
#   F(E) = cos i / D^2 * int_{r_in}^inf 2 pi r dr * 2 E^2 / (h^3 c^2) / (exp(E/kT(r)) - 1)
#        = C * norm * T_in^(8/3) * E^(-2/3) * G(E / T_in),   G(a) = int_a^inf u^(5/3) / (e^u - 1) du
# (substituting u = E/kT(r)), with norm = (r_in/km / (D/10 kpc))^2 cos i and
#   C = (8 pi / 3) * 2 / (h^3 c^2) * (1 km / 10 kpc)^2 = 2.768e-3 photons/cm^2/s/keV^3.
# The energy flux is then 2 sigma_SB T_in^4 (r_in / D)^2 cos i (Mitsuda et al. 1984).
_H_KEV_S = 4.135667696e-18  # Planck constant, keV s
_C_CM_S = 2.99792458e10  # speed of light, cm/s
_KM_PER_10KPC = 1e5 / 3.0856775814913673e22  # 1 km / 10 kpc
_DISKBB_C = 8.0 * math.pi / 3.0 * 2.0 / (_H_KEV_S**3 * _C_CM_S**2) * _KM_PER_10KPC**2
_G0 = float(_gamma_fn(8.0 / 3.0) * _zeta_fn(8.0 / 3.0))  # G(0) = Gamma(8/3) zeta(8/3)


def _bernoulli_series(n: int) -> np.ndarray:
    """B_k / k! for k < n (B_1 = -1/2): u / (e^u - 1) = sum_k B_k u^k / k!."""
    b = [Fraction(1)]
    for m in range(1, n):
        b.append(-sum(math.comb(m + 1, k) * b[k] for k in range(m)) / (m + 1))
    return np.array([float(bk / math.factorial(k)) for k, bk in enumerate(b)])


# G(a) in three pieces, each accurate to ~1e-13 in float64:
# - a < 2: G(0) minus int_0^a, whose integrand u^(2/3) u/(e^u - 1) is a Bernoulli series
#   (converges for a < 2 pi; (2/2pi)^26 ~ 1e-13);
# - 2 <= a < 30: G = e^-a a^(5/3) f(a), f(a) = int_0^inf e^-v (1 + v/a)^(5/3) / (1 - e^-(a+v)) dv,
#   a Chebyshev series in ln a fitted at import to 60-node Gauss-Laguerre values of f;
# - a >= 30: the asymptotic series f(a) ~ sum_n n! binom(5/3, n) a^-n (16 terms; the
#   neglected 1/(1 - e^-(a+v)) is 1 + O(e^-30)).
_G_SPLIT, _G_FAR = 2.0, 30.0
_G_BERNOULLI = _bernoulli_series(26)
# int_0^a u^(5/3) / (e^u - 1) du = a^(5/3) sum_k B_k / k! a^k / (k + 5/3) (highest power first)
_G_HEAD = (_G_BERNOULLI / (np.arange(len(_G_BERNOULLI)) + 5.0 / 3.0))[::-1]
_G_ASYMPTOTIC = np.cumprod([1.0] + [5.0 / 3.0 - n for n in range(15)])[::-1]


def _diskbb_f_chebyshev(degree: int = 26, points: int = 300) -> np.ndarray:
    x = np.cos(np.pi * (np.arange(points) + 0.5) / points)
    a = _G_SPLIT * (_G_FAR / _G_SPLIT) ** (0.5 * (x + 1.0))  # x = -1 at a = 2, 1 at a = 30
    v, w = np.polynomial.laguerre.laggauss(60)
    a = a[:, None]
    f = np.sum(w * (1.0 + v / a) ** (5.0 / 3.0) / -np.expm1(-(a + v)), axis=1)
    return np.polynomial.chebyshev.chebfit(x, f, degree)


# as a power series in x (coefficients <= 1.3: Horner is as accurate), highest power first
_G_POLY = np.polynomial.chebyshev.cheb2poly(_diskbb_f_chebyshev())[::-1]


def _horner(coefficients: np.ndarray, x: jax.Array):
    """Polynomial with ``coefficients`` highest power first, unrolled (cheap to compile)."""
    result = float(coefficients[0])
    for c in coefficients[1:]:
        result = result * x + float(c)
    return result


@jax.custom_jvp
def _diskbb_log_g(a: jax.Array):
    """log G(a), G(a) = int_a^inf u^(5/3) / (e^u - 1) du, for a > 0 (derivative exact:
    dG/da = -a^(5/3) / (e^a - 1))."""
    near = jnp.clip(a, 1e-30, _G_SPLIT)
    g_near = _G0 - near ** (5.0 / 3.0) * _horner(_G_HEAD, near)
    mid = jnp.clip(a, _G_SPLIT, _G_FAR)
    f_mid = _horner(_G_POLY, 2.0 * jnp.log(mid / _G_SPLIT) / math.log(_G_FAR / _G_SPLIT) - 1.0)
    far = jnp.maximum(a, _G_FAR)
    f_far = _horner(_G_ASYMPTOTIC, 1.0 / far)
    big = jnp.maximum(a, _G_SPLIT)
    log_tail = -big + 5.0 / 3.0 * jnp.log(big) + jnp.log(jnp.where(a < _G_FAR, f_mid, f_far))
    return jnp.where(a < _G_SPLIT, jnp.log(g_near), log_tail)


@_diskbb_log_g.defjvp
def _diskbb_log_g_jvp(primals: tuple[jax.Array], tangents: tuple[jax.Array]):
    (a,), (da,) = primals, tangents
    log_g = _diskbb_log_g(a)
    slope = -jnp.exp(5.0 / 3.0 * jnp.log(a) + _log_planck(a) - log_g)
    return log_g, slope * da


def _diskbb_density(energy: jax.Array, t_in: jax.Array, norm: jax.Array):
    log_shape = 8.0 / 3.0 * jnp.log(t_in) - 2.0 / 3.0 * jnp.log(energy)
    return _DISKBB_C * norm * jnp.exp(log_shape + _diskbb_log_g(energy / t_in))


@jax.jit
def diskbb(energy_edges: ArrayLike, t_in: ArrayLike, norm: ArrayLike = 1.0) -> jax.Array:
    """Multicolour disc blackbody (XSPEC ``diskbb`` shape): blackbodies with
    T(r) = T_in (r/r_in)^-3/4 from r_in to infinity.

    Density ``C norm T_in^(8/3) E^(-2/3) G(E/T_in)`` with ``G(a) = int_a^inf u^(5/3)/(e^u-1) du``
    and ``C = (8 pi/3) (2/(h^3 c^2)) (km/10 kpc)^2 = 2.768e-3``, i.e. XSPEC's definition
    ``norm = (R_in/km / (D/10 kpc))^2 cos i``; the energy flux is
    ``2 sigma_SB T_in^4 (R_in/D)^2 cos i``. Derived from that definition, not compared with
    XSPEC's own code.

    Parameters
    ----------
    energy_edges : (..., n + 1) keV.
    t_in : inner disc temperature, keV.
    norm : normalisation.

    Returns
    -------
    (..., n) photons/cm^2/s per bin.
    """
    return _integrate(_diskbb_density, energy_edges, t_in, norm)


# Bremsstrahlung Gaunt factor: Born approximation averaged over a Maxwellian,
# g(x) = sqrt(3)/pi * exp(x/2) K0(x/2), x = E/kT (e.g. Rybicki & Lightman 1979, sec. 5.2):
# within roughly 10-20% of Karzas & Latter (1961) for kT >~ 1 keV, cruder at lower temperatures.
# exp(y) K0(y) and exp(y) K1(y) (for the derivative, K0' = -K1): for y < 2 the power series
# (Abramowitz & Stegun 9.6.13 and 9.6.11, (y/2)^2 <= 1 and 13 terms: complete to 1e-16); for
# y >= 2 power series in 4/y - 1 of sqrt(y) exp(y) K(y), fitted at import to scipy's k0e and
# k1e (Chebyshev). Relative error < 1e-14 in float64.
_K_TERMS = 13
_FACT = np.array([float(math.factorial(k)) for k in range(_K_TERMS + 1)])
_HARMONIC = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, _K_TERMS + 1))])  # H_k
# K0 = -(ln(y/2) + gamma) I0 + sum_k H_k t^k / (k!)^2,  I0 = sum_k t^k / (k!)^2,  t = y^2/4
_I0_POLY = (1.0 / _FACT[:-1] ** 2)[::-1]  # highest power first
_K0_POLY = (_HARMONIC[:-1] / _FACT[:-1] ** 2)[::-1]
# K1 = 1/y + ln(y/2) I1 - y/4 sum_k (psi(k+1) + psi(k+2)) t^k / (k! (k+1)!),
# I1 = y/2 sum_k t^k / (k! (k+1)!),  psi(k+1) = H_k - gamma
_I1_POLY = (1.0 / (_FACT[:-1] * _FACT[1:]))[::-1]
_K1_POLY = ((_HARMONIC[:-1] + _HARMONIC[1:] - 2.0 * np.euler_gamma) / (_FACT[:-1] * _FACT[1:]))[
    ::-1
]


def _scaled_bessel_fit(
    function: Callable[[np.ndarray], np.ndarray], degree: int = 18, points: int = 400
) -> np.ndarray:
    """sqrt(y) function(y) on y >= 2 as a power series in x = 4/y - 1, highest power first."""
    x = np.cos(np.pi * (np.arange(points) + 0.5) / points)
    y = 4.0 / (x + 1.0)
    fit = np.polynomial.chebyshev.chebfit(x, np.sqrt(y) * function(y), degree)
    return np.polynomial.chebyshev.cheb2poly(fit)[::-1]  # coefficients <= 1.4: Horner is exact


_K0E_POLY = _scaled_bessel_fit(_k0e_fn)
_K1E_POLY = _scaled_bessel_fit(_k1e_fn)
_HELIUM = 1.0 + 4.0 * 0.085  # n_He/n_H = 0.085, Z^2 = 4 (XSPEC bremss)


def _exp_k(y: jax.Array, order: int):
    """exp(y) K_order(y) for y > 0, order 0 or 1."""
    small = jnp.clip(y, 1e-30, 2.0)
    t = (0.5 * small) ** 2
    log_half = jnp.log(0.5 * small)
    if order == 0:
        k = -(log_half + np.euler_gamma) * _horner(_I0_POLY, t) + _horner(_K0_POLY, t)
    else:
        k = 1.0 / small + 0.5 * small * (
            log_half * _horner(_I1_POLY, t) - 0.5 * _horner(_K1_POLY, t)
        )
    large = jnp.maximum(y, 2.0)
    scaled = _horner(_K0E_POLY if order == 0 else _K1E_POLY, 4.0 / large - 1.0) / jnp.sqrt(large)
    return jnp.where(y < 2.0, jnp.exp(small) * k, scaled)


@jax.custom_jvp
def _log_exp_k0(y: jax.Array):
    """log(exp(y) K0(y)); derivative 1 - K1(y)/K0(y)."""
    return jnp.log(_exp_k(y, 0))


@_log_exp_k0.defjvp
def _log_exp_k0_jvp(primals: tuple[jax.Array], tangents: tuple[jax.Array]):
    (y,), (dy,) = primals, tangents
    k0 = _exp_k(y, 0)
    return jnp.log(k0), (1.0 - _exp_k(y, 1) / k0) * dy


def _bremsstrahlung_density(energy: jax.Array, kT: jax.Array, norm: jax.Array):
    # g(x) exp(-x) with the Born Gaunt factor g(x) = sqrt(3)/pi exp(x/2) K0(x/2), x = E/kT
    x = energy / kT
    log_shape = _log_exp_k0(0.5 * x) - x - 0.5 * jnp.log(kT) - jnp.log(energy)
    return _HELIUM * math.sqrt(3.0) / math.pi * norm * jnp.exp(log_shape)


@jax.jit
def bremsstrahlung(energy_edges: ArrayLike, kT: ArrayLike, norm: ArrayLike = 1.0) -> jax.Array:
    """Thermal bremsstrahlung, XSPEC ``bremss`` normalisation:
    ``norm (1 + 4 * 0.085) g(E, kT) kT^-1/2 E^-1 exp(-E/kT)`` photons/cm^2/s/keV with
    ``norm = 3.02e-15 / (4 pi D^2) int n_e n_H dV`` (cm^-5) and n_He/n_H = 0.085.

    The Gaunt factor is the Maxwellian-averaged Born approximation
    ``g = sqrt(3)/pi exp(x/2) K0(x/2)``, ``x = E/kT`` (XSPEC uses Kellogg et al. 1975 fits to
    Karzas & Latter; the two differ by up to ~20 %, more at kT < 1 keV).

    Returns
    -------
    (..., n) photons/cm^2/s per bin.
    """
    return _integrate(_bremsstrahlung_density, energy_edges, kT, norm)


# ---------------------------------------------------------------------------------------------
# Lines


_SQRT2 = math.sqrt(2.0)
_SIGMA_MIN = 1e-12  # keV: narrower lines are this narrow (one bin, finite gradients)
_GL4_X, _GL4_W = np.polynomial.legendre.leggauss(4)


def _normal_interval(a: jax.Array, b: jax.Array):
    """P(a < X < b) for standard normal X and a <= b, from erfc(|a|/sqrt2) and erfc(|b|/sqrt2):
    tails are differences of two small numbers (no cancellation of CDF values near 1)."""
    ea = erfc(jnp.abs(a) / _SQRT2)
    eb = erfc(jnp.abs(b) / _SQRT2)
    tail = 0.5 * jnp.where(a >= 0, ea - eb, eb - ea)  # both edges on one side of the centre
    return jnp.where((a >= 0) | (b <= 0), tail, 1.0 - 0.5 * (ea + eb))


@jax.jit
def gaussian_line(
    energy_edges: ArrayLike, line_energy: ArrayLike, sigma: ArrayLike, norm: ArrayLike = 1.0
) -> jax.Array:
    """Gaussian line (XSPEC ``gaussian``) of total flux ``norm`` photons/cm^2/s, centre
    ``line_energy`` and width ``sigma`` (keV), integrated exactly over each bin.

    Bins wide compared with the line use differences of erfc on the near side of the centre
    (accurate far in the wings); narrow bins (width * (1 + |distance to the centre|) < 1/2,
    both in units of sigma) use 4-point Gauss-Legendre of the density (no cancellation).
    ``sigma`` below 1e-12 keV is taken as 1e-12 keV: the line falls in one bin. Fe K-alpha
    fluorescence is ``gaussian_line(e, 6.4, sigma, flux)``.

    Returns
    -------
    (..., n) photons/cm^2/s per bin.
    """
    edges = jnp.asarray(energy_edges)
    centre = jnp.asarray(line_energy)[..., None]
    sigma = jnp.maximum(jnp.asarray(sigma), _SIGMA_MIN)[..., None]
    a = (edges[..., :-1] - centre) / sigma
    b = (edges[..., 1:] - centre) / sigma
    exact = _normal_interval(a, b)
    # narrow bins: E_hi - E_lo and E_lo - centre are exact in floating point near the line
    width = jnp.diff(edges, axis=-1) / sigma
    mid = a + 0.5 * width
    narrow = width * (1.0 + jnp.abs(mid)) < 0.5
    half = 0.5 * jnp.where(narrow, width, 0.0)
    x = jnp.clip(mid, -40.0, 40.0)[..., None] + half[..., None] * _f(_GL4_X)
    pdf = jnp.exp(-0.5 * x**2) / math.sqrt(2.0 * math.pi)
    quadrature = 0.5 * width * jnp.sum(_f(_GL4_W) * pdf, axis=-1)
    return jnp.asarray(norm)[..., None] * jnp.where(narrow, quadrature, exact)


# Approximate collisional-plasma lines at solar abundance (NOT APEC: hand-set to be roughly
# APEC-like). Each row: centre (keV), Gaussian sigma (keV), peak temperature kT_peak (keV),
# peak equivalent width EW_peak (keV, against the bremsstrahlung continuum at the line),
# widths of the bell in ln kT below and above the peak. EW(kT) = EW_peak exp(-(ln(kT/kT_peak)
# / width)^2 / 2), width = below or above. The Fe L complex is one row per ion (or per group
# of an ion's strongest lines), peaking near the ion's equilibrium temperature: its centroid
# moves from ~0.8 keV at kT 0.3 to ~1.1 keV at kT 2, the CCD thermometer of coronae and groups.
PLASMA_LINES = np.array(
    [
        # E      sigma   kT_peak EW_peak below above
        [0.368, 0.005, 0.13, 0.10, 0.50, 0.60],  # C VI Ly-alpha
        [0.500, 0.005, 0.18, 0.04, 0.50, 0.60],  # N VII Ly-alpha
        [0.574, 0.005, 0.17, 0.15, 0.50, 0.60],  # O VII He-like triplet (0.561-0.574)
        [0.654, 0.005, 0.30, 0.15, 0.60, 0.70],  # O VIII Ly-alpha
        [0.775, 0.005, 0.30, 0.025, 0.60, 0.70],  # O VIII Ly-beta
        [0.727, 0.008, 0.40, 0.45, 0.45, 0.45],  # Fe XVII 3s-2p (16.8-17.1 A)
        [0.820, 0.008, 0.40, 0.90, 0.45, 0.45],  # Fe XVII 3d-2p (15.0, 15.3 A)
        [0.870, 0.008, 0.55, 0.55, 0.35, 0.40],  # Fe XVIII (14.2, 14.4 A)
        [0.917, 0.010, 0.68, 0.50, 0.35, 0.40],  # Fe XIX (13.5 A)
        [0.966, 0.010, 0.86, 0.45, 0.35, 0.40],  # Fe XX (12.8 A)
        [1.010, 0.010, 0.97, 0.35, 0.35, 0.40],  # Fe XXI (12.3 A)
        [1.053, 0.010, 1.09, 0.35, 0.35, 0.45],  # Fe XXII, Fe XXIII (11.8 A)
        [1.129, 0.010, 1.36, 0.15, 0.35, 0.45],  # Fe XXIII (11.0 A)
        [1.110, 0.010, 1.72, 0.10, 0.35, 0.50],  # Fe XXIV (11.2 A)
        [1.168, 0.010, 1.72, 0.18, 0.35, 0.50],  # Fe XXIV (10.6 A)
        [0.922, 0.005, 0.35, 0.05, 0.50, 0.60],  # Ne IX He-like triplet
        [1.022, 0.005, 0.60, 0.06, 0.50, 0.70],  # Ne X Ly-alpha
        [1.352, 0.005, 0.60, 0.05, 0.50, 0.70],  # Mg XI He-like triplet
        [1.473, 0.005, 1.00, 0.04, 0.50, 0.80],  # Mg XII Ly-alpha
        [1.865, 0.005, 1.00, 0.12, 0.50, 0.80],  # Si XIII He-like triplet
        [2.006, 0.005, 2.00, 0.06, 0.50, 0.90],  # Si XIV Ly-alpha
        [2.460, 0.005, 1.50, 0.08, 0.50, 0.80],  # S XV He-like triplet
        [2.623, 0.005, 3.00, 0.04, 0.50, 0.90],  # S XVI Ly-alpha
        [6.700, 0.020, 4.00, 0.80, 0.45, 1.20],  # Fe XXV He-like triplet (6.64-6.70)
        [6.970, 0.010, 12.0, 0.25, 0.60, 1.20],  # Fe XXVI Ly-alpha
    ]
)


def _equivalent_width(kT: jax.Array):
    """EW (keV) of each line in :data:`PLASMA_LINES` at solar abundance: (..., n_lines)."""
    _, _, peak, ew, below, above = _f(PLASMA_LINES.T)
    x = jnp.log(kT / peak)
    return ew * jnp.exp(-0.5 * (x / jnp.where(x < 0, below, above)) ** 2)


@jax.jit
def plasma(
    energy_edges: ArrayLike, kT: ArrayLike, norm: ArrayLike = 1.0, abundance: ArrayLike = 1.0
) -> jax.Array:
    """Hot optically thin plasma, an approximation (not APEC): :func:`bremsstrahlung`
    continuum plus the Gaussian lines of :data:`PLASMA_LINES` (C, N, O, Fe L by ion, Ne, Mg, Si,
    S, Fe K).

    Line flux = ``abundance * EW(kT) * continuum density at the line``, with ``EW(kT)`` a
    bell in ln kT per line (documented table). ``norm`` as :func:`bremsstrahlung`;
    ``abundance`` relative to solar (metals only; the continuum does not change).

    Returns
    -------
    (..., n) photons/cm^2/s per bin.
    """
    edges = jnp.asarray(energy_edges)
    kT = jnp.asarray(kT)
    centre, width = _f(PLASMA_LINES[:, 0]), _f(PLASMA_LINES[:, 1])
    # the continuum over the bins and its density at the lines, in one evaluation
    continuum, at_lines = _integrate(_bremsstrahlung_density, edges, kT, norm, at=centre)
    flux = jnp.asarray(abundance)[..., None] * _equivalent_width(kT[..., None]) * at_lines
    lines = gaussian_line(edges[..., None, :], centre, width, flux)
    return continuum + jnp.sum(lines, axis=-2)


def redshifted(
    model: Callable[..., jax.Array], energy_edges: ArrayLike, z: ArrayLike, *args, **kwargs
) -> jax.Array:
    """``model`` at redshift ``z``: evaluated on the rest-frame edges ``E (1 + z)`` and
    divided by ``1 + z`` (time dilation).

    The observed density is the rest-frame density at ``E (1 + z)``, per observed keV, as in
    XSPEC's z-models: ``redshifted(powerlaw, e, z, g, K)`` is ``zpowerlw``
    (``K [E (1+z)]^-g``, which equals ``(1 + z)^-g powerlaw(e, g, K)``) and a redshifted
    ``gaussian_line`` is ``zgauss`` (total flux ``K / (1 + z)``). ``z`` broadcasts over leading
    axes: result (..., n)."""
    scale = 1.0 + jnp.asarray(z)[..., None]
    return model(jnp.asarray(energy_edges) * scale, *args, **kwargs) / scale
