"""Physical spectra and absorption against independent integrals."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from astropy import constants, units
from astropy.io import fits
from scipy.integrate import quad
from scipy.special import k0e, zeta

from xspecvae.absorption import CrossSection, absorption, partial_covering
from xspecvae.ogip import OGIPError
from xspecvae.physics import (
    PLASMA_LINES,
    blackbody,
    bremsstrahlung,
    diskbb,
    gaussian_line,
    plasma,
    powerlaw,
    redshifted,
)


def integrate(density, edges):
    return np.array(
        [
            quad(density, lo, hi, epsabs=0, epsrel=1e-12, limit=200)[0]
            for lo, hi in zip(edges[:-1], edges[1:])
        ]
    )


def f32(edges):
    """Edges exactly representable in float32, so that float32 and float64 see the same bins."""
    return np.asarray(edges, dtype=np.float32).astype(float)


COARSE = f32(np.geomspace(0.05, 15.0, 31))  # E_hi/E_lo = 1.21
FINE = f32(np.geomspace(0.05, 15.0, 301))  # E_hi/E_lo = 1.019
TEMPERATURES = [0.03, 0.4, 5.0, 50.0]  # keV
DISKBB_TEMPERATURES = [0.05, 0.3, 1.5, 4.0]


# Independent float64 densities (photons/cm^2/s/keV)


def bbody_density(e, kT):
    x = e / kT
    return 8.0525 * e**2 / kT**4 * np.exp(-x) / -np.expm1(-x)


def bremss_density(e, kT):
    # XSPEC bremss with n_He/n_H = 0.085 and the Born Gaunt factor sqrt(3)/pi e^(x/2) K0(x/2)
    x = e / kT
    return 1.34 * math.sqrt(3) / math.pi * k0e(x / 2) * math.exp(-x) / (math.sqrt(kT) * e)


# (8 pi / 3) * 2 / (h^3 c^2) * (km / 10 kpc)^2 in photons/cm^2/s/keV^3, from astropy
DISKBB_C = (
    8 * math.pi / 3 * 2 / (constants.h**3 * constants.c**2) * (units.km / (10 * units.kpc)) ** 2
).to_value(units.cm**-2 / units.s / units.keV**3)


def diskbb_density(e, t_in):
    # sum of blackbodies over the disc, T = t_in * t, t = (r/r_in)^-3/4 in (0, 1]
    def inner(t):
        x = e / (t_in * t)
        return t ** (-11 / 3) * math.exp(-x) / -math.expm1(-x) if x < 700 else 0.0

    return DISKBB_C * e**2 * quad(inner, 0, 1, epsabs=0, epsrel=1e-12, limit=200)[0]


@pytest.mark.parametrize("index", [-1.0, 0.0, 1.0, 1.0 + 1e-9, 1.9, 3.5])
def test_powerlaw_integral(index):
    edges = np.geomspace(0.2, 12.0, 200)
    with jax.enable_x64(True):
        got = np.asarray(powerlaw(edges, index, 2.5))
    np.testing.assert_allclose(got, integrate(lambda e: 2.5 * e**-index, edges), rtol=1e-9)


def test_powerlaw_gradient_in_the_index_at_index_1():
    """At index 1 (slope 0) the derivative of each bin's integral in the index is
    -int ln(E) E^-1 dE = -(ln^2 E_hi - ln^2 E_lo) / 2, not 0."""
    edges = np.geomspace(0.2, 12.0, 30)
    with jax.enable_x64(True):
        got = np.asarray(jax.jacfwd(lambda g: powerlaw(edges, g))(1.0))
    expected = -(np.log(edges[1:]) ** 2 - np.log(edges[:-1]) ** 2) / 2
    np.testing.assert_allclose(got, expected, rtol=1e-9)


def test_powerlaw_float32_narrow_bins_and_broadcasting():
    edges = np.linspace(1.0, 1.01, 11).astype(np.float32).astype(float)  # 1 eV bins
    got = np.asarray(powerlaw(edges, np.array([1.5, 2.0]), np.array([1.0, 3.0])))
    assert got.shape == (2, 10) and got.dtype == np.float32
    expected = [integrate(lambda e: e**-1.5, edges), integrate(lambda e: 3.0 * e**-2.0, edges)]
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def check(model, density, edges, temperatures, x64=True):
    """float32 within 1e-4 and float64 (``x64``) within 1e-8 of quad, on bins holding > 1e-6
    of the total; every bin finite and >= 0."""
    temperatures = np.asarray(temperatures)
    got32 = np.asarray(model(edges, temperatures))
    assert got32.dtype == np.float32 and got32.shape == (len(temperatures), len(edges) - 1)
    assert np.all(np.isfinite(got32)) and np.all(got32 >= 0)
    if x64:
        with jax.enable_x64(True):
            got64 = np.asarray(model(edges, temperatures))
        assert got64.dtype == np.float64
    for row, kT in enumerate(temperatures):
        ref = integrate(lambda e, kT=kT: density(e, kT), edges)
        significant = ref > 1e-6 * ref.sum()
        np.testing.assert_allclose(got32[row, significant], ref[significant], rtol=1e-4)
        if x64:
            np.testing.assert_allclose(got64[row], ref, rtol=1e-8, atol=1e-12 * ref.sum())


# float64 on the coarse grid (bins up to E_hi/E_lo = 1.21, the harder case for the
# quadrature), float32 on both


@pytest.mark.parametrize("edges", [COARSE, FINE], ids=["coarse", "fine"])
def test_blackbody_against_quadrature(edges):
    check(blackbody, bbody_density, edges, TEMPERATURES, x64=edges is COARSE)


@pytest.mark.parametrize("edges", [COARSE, FINE], ids=["coarse", "fine"])
def test_bremsstrahlung_against_quadrature(edges):
    check(bremsstrahlung, bremss_density, edges, TEMPERATURES, x64=edges is COARSE)


@pytest.mark.parametrize("edges", [COARSE, FINE[::5]], ids=["coarse", "fine"])
def test_diskbb_against_nested_quadrature(edges):
    check(diskbb, diskbb_density, edges, DISKBB_TEMPERATURES, x64=edges is COARSE)


def test_blackbody_totals():
    """Photons 8.0525 * 2 zeta(3) norm / kT; energy 8.0525 * pi^4/15 norm (L39/D10^2)."""
    edges = np.geomspace(1e-4, 300.0, 3001)
    mid = np.sqrt(edges[:-1] * edges[1:])
    kT = np.array([0.1, 1.0, 4.0])
    with jax.enable_x64(True):
        flux = np.asarray(blackbody(edges, kT, 2.0))
    np.testing.assert_allclose(flux.sum(-1), 8.0525 * 2 * zeta(3) * 2.0 / kT, rtol=1e-6)
    np.testing.assert_allclose((flux * mid).sum(-1), 8.0525 * np.pi**4 / 15 * 2.0, rtol=1e-4)


def test_diskbb_energy_flux_is_stefan_boltzmann():
    """norm = (R_in/km / (D/10 kpc))^2: energy flux 2 sigma_SB T_in^4 (R_in/D)^2."""
    edges = np.geomspace(1e-4, 100.0, 3001)
    mid = np.sqrt(edges[:-1] * edges[1:])
    t_in = 1.3
    with jax.enable_x64(True):
        flux = np.asarray(diskbb(edges, t_in, 1.0))
    temperature = (t_in * units.keV / constants.k_B).to(units.K)
    expected = (
        2 * constants.sigma_sb * temperature**4 * (units.km / (10 * units.kpc)) ** 2
    ).to_value(units.keV / units.cm**2 / units.s)
    assert np.sum(flux * mid) == pytest.approx(expected, rel=1e-4)
    # low-energy slope E^-2/3 (photons) far below t_in
    low = np.asarray(diskbb(np.array([1e-3, 1.001e-3, 1e-2, 1.001e-2]), t_in))
    assert low[0] / low[2] / 1e-3 * 1e-2 == pytest.approx(10 ** (2 / 3), rel=1e-3)


# Gaussian line


def normal_density(e, centre, sigma):
    return math.exp(-0.5 * ((e - centre) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))


def normal_bins(edges, centre, sigma):
    def pdf(e):
        return normal_density(e, centre, sigma)

    return np.array(
        [
            quad(
                pdf, lo, hi, epsabs=0, epsrel=1e-13, points=[centre] if lo < centre < hi else None
            )[0]
            for lo, hi in zip(edges[:-1], edges[1:])
        ]
    )


def test_gaussian_line_against_quadrature():
    # five grids of 40 bins (one batched call), float32 edges and widths
    grids = [
        np.geomspace(3.0, 12.0, 41),  # bins of ~4 sigma, wings to 70 sigma
        np.linspace(6.3, 6.5, 41),  # narrow bins, 0.1 sigma
        np.linspace(6.45, 6.8, 41),  # one wing, 1 to 8 sigma, 0.18 sigma bins
        np.linspace(6.0, 6.8, 41),  # bins of 50 sigma
        np.linspace(6.40001, 6.40005, 41),  # 1e-6 keV bins near the centre
    ]
    sigma = [0.05, 0.05, 0.05, 0.0004, 0.01]
    grids, sigma = f32(np.stack(grids)), f32(np.array(sigma, dtype=float))
    centre = float(np.float32(6.4))
    got32 = np.asarray(gaussian_line(grids, centre, sigma, 1.0))
    with jax.enable_x64(True):
        got64 = np.asarray(gaussian_line(grids, centre, sigma, 1.0))
    assert np.all(np.isfinite(got32)) and np.all(got32 >= 0)
    for edges, width, row32, row64 in zip(grids, sigma, got32, got64):
        ref = normal_bins(edges, centre, width)
        kept = ref > 1e-30
        np.testing.assert_allclose(row32[kept], ref[kept], rtol=1e-4)
        np.testing.assert_allclose(row64[kept], ref[kept], rtol=1e-8)


def test_gaussian_line_total_and_tiny_sigma():
    inside = np.searchsorted(FINE, 6.4) - 1
    edge = FINE[inside]  # a centre on a bin edge
    centre = np.array([6.4, 6.4, 6.4, edge])
    sigma = np.array([0.1, 1e-9, 0.0, 1e-6])
    norm = np.array([2.5, 3.0, 3.0, 1.0])
    flux = np.asarray(gaussian_line(FINE, centre, sigma, norm))
    assert np.all(np.isfinite(flux))
    np.testing.assert_allclose(flux.sum(-1), norm, rtol=1e-5)  # the grid holds every line
    np.testing.assert_allclose(flux[1:3, inside], 3.0, rtol=1e-6)  # one bin holds the line
    np.testing.assert_allclose(flux[3, inside - 1 : inside + 1], 0.5, rtol=1e-5)  # halves
    # derivatives of every bin by centre and width, also for vanishing widths
    jacobian = jax.jit(jax.vmap(jax.jacfwd(lambda e, s: gaussian_line(FINE, e, s), (0, 1))))
    by_centre, by_sigma = (np.asarray(d) for d in jacobian(centre, sigma))
    assert np.all(np.isfinite(by_centre)) and np.all(np.isfinite(by_sigma))
    # the flux in a bin moves with the centre: the density difference at its edges
    lo, hi = FINE[inside], FINE[inside + 1]
    expected = normal_density(lo, 6.4, 0.1) - normal_density(hi, 6.4, 0.1)
    assert by_centre[0, inside] == pytest.approx(expected, rel=1e-3)
    assert abs(by_centre[0].sum()) < 1e-3 * np.abs(by_centre[0]).sum()  # total unchanged


# Shapes


@pytest.mark.parametrize(
    ("model", "params", "rest"),
    [
        (powerlaw, [-1.0, 0.0, 1.7, 3.0], ()),
        (blackbody, TEMPERATURES, ()),
        (diskbb, DISKBB_TEMPERATURES, ()),
        (bremsstrahlung, TEMPERATURES, ()),
        (plasma, [0.3, 1.0, 5.0, 9.0], ()),
        (gaussian_line, [0.5, 1.0, 6.4, 9.0], (0.1,)),
    ],
    ids=["powerlaw", "blackbody", "diskbb", "bremsstrahlung", "plasma", "gaussian_line"],
)
def test_broadcasting(model, params, rest):
    n = len(COARSE) - 1
    params = np.array(params)
    grids = np.stack([COARSE, COARSE * 1.1, COARSE * 1.2, COARSE * 1.3])

    def shape(*a):
        return jax.eval_shape(model, *a).shape

    assert shape(COARSE, params[0], *rest) == (n,)
    assert shape(grids, params[0], *rest) == (4, n)
    assert shape(COARSE, params[:, None], *rest, np.ones((2, 1, 1))) == (2, 4, 1, n)
    # (4,) parameters on one grid, against batched edges (one grid per row) with norms (2, 1)
    many = np.asarray(model(COARSE, params, *rest))
    assert many.shape == (4, n) and np.all(np.isfinite(many))
    batched = np.asarray(model(grids, params, *rest, np.array([[1.0], [2.0]])))
    assert batched.shape == (2, 4, n)
    np.testing.assert_allclose(batched[0, 0], many[0], rtol=1e-6)
    np.testing.assert_allclose(batched[1, 0], 2.0 * many[0], rtol=1e-6)
    np.testing.assert_allclose(batched[1, 3], 2.0 * model(grids[3], params, *rest)[3], rtol=1e-6)
    assert not np.allclose(batched[0, 3], many[3])  # the grid matters


# Redshift


def test_redshifted_powerlaw_is_zpowerlw():
    """int_{E_lo(1+z)}^{E_hi(1+z)} K E^-g dE / (1+z) = (1+z)^-g int_{E_lo}^{E_hi} K E^-g dE."""
    z = np.array([0.0, 0.3, 2.0])
    got = np.asarray(redshifted(powerlaw, FINE, z, 1.8, 2.0))
    assert got.shape == (3, len(FINE) - 1)
    expected = (1 + z)[:, None] ** -1.8 * np.asarray(powerlaw(FINE, 1.8, 2.0))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_redshifted_line_and_continuum():
    z = 0.25
    line = np.asarray(redshifted(gaussian_line, FINE, z, 6.4, 1e-6, 2.0))
    assert line.sum() == pytest.approx(2.0 / (1 + z), rel=1e-6)  # zgauss: K / (1+z)
    assert FINE[np.argmax(line)] <= 6.4 / (1 + z) < FINE[np.argmax(line) + 1]
    # blackbody at z: density 8.0525 (E(1+z))^2 / (kT^4 (exp(E(1+z)/kT) - 1))
    with jax.enable_x64(True):
        got = np.asarray(redshifted(blackbody, COARSE, z, np.array(TEMPERATURES)))[2]
    expected = integrate(lambda e: bbody_density(e * (1 + z), TEMPERATURES[2]), COARSE)
    np.testing.assert_allclose(got, expected, rtol=1e-8, atol=1e-12 * expected.sum())


# Plasma


def band(edges, flux, lo, hi):
    keep = (edges[:-1] >= lo) & (edges[1:] <= hi)
    return flux[..., keep].sum(-1)


PLASMA_TEMPERATURES = [0.3, 1.0, 5.0, 9.0]


def test_plasma_lines_follow_temperature():
    kT = np.array(PLASMA_TEMPERATURES)
    total = np.asarray(plasma(FINE, kT))[[0, 2]]  # 0.3 and 5 keV
    continuum = np.asarray(bremsstrahlung(FINE, kT))[[0, 2]]
    fe_k = band(FINE, total, 6.6, 6.85) / band(FINE, continuum, 6.6, 6.85)
    o_vii = band(FINE, total, 0.56, 0.59) / band(FINE, continuum, 0.56, 0.59)
    o_viii = band(FINE, total, 0.64, 0.67) / band(FINE, continuum, 0.64, 0.67)
    assert fe_k[1] > 3.0 and fe_k[0] < 1.01  # Fe XXV: strong at 5 keV, absent at 0.3 keV
    assert o_vii[0] > 3.0 and o_viii[0] > 3.0  # O VII, O VIII strong at 0.3 keV
    assert o_vii[1] < 1.01 and o_viii[1] < 1.01  # and gone at 5 keV
    assert np.all(total >= continuum * (1 - 1e-6))


def test_plasma_abundance_scales_the_lines_only():
    kT = np.array(PLASMA_TEMPERATURES)
    abundance = np.array([[0.0], [0.5], [1.0]])
    flux = np.asarray(plasma(COARSE, kT, 2.0, abundance))
    assert flux.shape == (3, 4, len(COARSE) - 1)
    continuum = 2.0 * np.asarray(bremsstrahlung(COARSE, kT))
    np.testing.assert_allclose(flux[0], continuum, rtol=1e-6)  # no metals, no lines
    half, one = (flux[1:] - continuum).sum(-1)
    assert np.all(one > 0.005 * continuum.sum(-1))
    np.testing.assert_allclose(half, 0.5 * one, rtol=1e-3)
    fe = np.flatnonzero(np.isclose(PLASMA_LINES[:, 0], 6.7))
    assert len(fe) == 1 and PLASMA_LINES[fe[0], 3] >= 0.5  # EW ~0.5-1 keV at solar abundance


def test_plasma_line_fluxes_follow_the_table():
    """plasma - bremsstrahlung holds abundance * EW(kT) * continuum density at each line, EW
    from the table's bell in ln kT: all lines together over the grid (the Fe L lines overlap
    Ne IX and Ne X), and line by line within 5 sigma for the isolated ones."""
    energy, sigma, peak, ew_peak, below, above = PLASMA_LINES.T
    # the lines the issue names: O VII, O VIII, Ne IX, Ne X, Mg XI, Mg XII, Si, S, Fe XXV
    for centre in (0.574, 0.654, 0.922, 1.022, 1.352, 1.473, 1.865, 2.46, 6.7):
        assert np.min(np.abs(energy - centre)) < 0.01, centre
    kT = np.array([0.3, 1.0, 4.0])
    abundance = np.array([[0.3], [1.0]])
    log_ratio = np.log(kT[:, None] / peak)
    width = np.where(kT[:, None] < peak, below, above)
    ew = ew_peak * np.exp(-0.5 * (log_ratio / width) ** 2)  # (kT, line)
    density = np.array([[2.0 * bremss_density(e, t) for e in energy] for t in kT])
    expected = abundance[..., None] * ew * density  # (abundance, kT, line), photons/cm^2/s
    edges = np.linspace(0.2, 10.0, 9801)  # 1 eV bins
    with jax.enable_x64(True):
        lines = np.asarray(plasma(edges, kT, 2.0, abundance) - bremsstrahlung(edges, kT, 2.0))
    np.testing.assert_allclose(lines.sum(-1), expected.sum(-1), rtol=1e-8)
    # isolated: every other line is more than 6 of its sigmas away from the 5-sigma window
    clear = np.abs(energy[:, None] - energy) > 5 * sigma[:, None] + 6 * sigma
    np.fill_diagonal(clear, True)
    isolated = np.flatnonzero(clear.all(1))
    assert {1.865, 2.46, 6.7} <= set(energy[isolated])
    for i in isolated:
        window = band(edges, lines, energy[i] - 5 * sigma[i], energy[i] + 5 * sigma[i])
        np.testing.assert_allclose(window, expected[..., i], rtol=1e-5, err_msg=energy[i])


def test_plasma_fe_l_moves_with_temperature():
    """The Fe L complex is lines by ion, not one blend: its flux-weighted centroid moves from
    Fe XVII (~0.8 keV) in a 0.3 keV corona to Fe XXIII-XXIV (~1.1 keV) at 2 keV, and its
    strongest line at 0.4 keV is Fe XVII's 15 A (0.82 keV), separate from Fe XVIII's (0.87
    keV) on this 1 eV grid."""
    edges = np.linspace(0.2, 2.0, 1801)
    energy = 0.5 * (edges[1:] + edges[:-1])
    kT = np.array([0.3, 0.4, 1.0, 2.0])
    lines = np.asarray(plasma(edges, kT) - bremsstrahlung(edges, kT))
    window = (energy > 0.70) & (energy < 1.20)
    no_ne = window & (np.abs(energy - 0.922) > 0.02) & (np.abs(energy - 1.022) > 0.02)
    centroid = (lines[:, no_ne] * energy[no_ne]).sum(1) / lines[:, no_ne].sum(1)
    assert centroid[0] < 0.85 and centroid[-1] > 1.05, centroid
    assert np.all(np.diff(centroid) > 0), centroid
    peak = energy[window][np.argmax(lines[1, window])]
    assert abs(peak - 0.820) < 0.005, peak
    assert lines[1, np.argmin(np.abs(energy - 0.845))] < 0.3 * lines[1, window].max()


# Absorption


def test_morrison_mccammon_at_1kev():
    mm = CrossSection.morrison_mccammon()
    sigma = mm.on(np.array([0.99, 1.01]))
    assert sigma.dtype == np.float64 and sigma.shape == (1,)
    assert sigma[0] == pytest.approx(2.4e-22, rel=0.05)  # literature: 2.4e-22 cm^2 at 1 keV
    assert mm.at(1.0) == pytest.approx((120.6 + 169.3 - 47.7) * 1e-24, rel=1e-9)
    transmission = np.asarray(absorption(mm.on(np.array([0.995, 1.005])), 1.0))
    assert transmission[0] == pytest.approx(np.exp(-2.4), rel=0.1)
    # the oxygen K edge: a bin across it is between the values on either side
    below, across, above = mm.on(np.array([0.52, 0.525, 0.54, 0.545]))
    assert above > below and below < across < above


def test_morrison_mccammon_matches_the_wabs_table(xmm):
    wabs = CrossSection.from_fits(xmm / "absorption" / "xsect_wabs_angr.fits")
    mm = CrossSection.morrison_mccammon()
    edges = np.geomspace(0.1, 10.0, 301)
    steps = [0.1, 0.284, 0.4, 0.532, 0.707, 0.867, 1.303, 1.84, 2.471, 3.21, 4.038, 7.111, 8.331]
    # bins away from the segment boundaries (absorption edges)
    clear = np.searchsorted(steps, edges[:-1]) == np.searchsorted(steps, edges[1:])
    np.testing.assert_allclose(mm.on(edges)[clear], wabs.on(edges)[clear], rtol=2e-3)


def test_tbabs_table_from_the_real_file(xmm):
    path = xmm / "absorption" / "xsect_tbabs_wilm.fits"
    tbabs = CrossSection.from_fits(path)
    assert "TBABS" in tbabs.name and np.all(np.diff(tbabs.energy) > 0)
    at_1kev = tbabs.on(np.array([0.995, 1.005]))[0]
    # stored in units of 1e-22 cm^2 (labelled cm^2): read as cm^2 per H atom. Wilms abundances
    # give less absorption than Anders & Grevesse (MM83): 1.74e-22 against 2.42e-22 at 1 keV.
    assert 1.6e-22 < at_1kev < 1.9e-22
    assert at_1kev < CrossSection.morrison_mccammon().at(1.0)
    nh = np.array([0.0, 0.1, 1.0, 10.0])
    transmission = np.asarray(absorption(tbabs.on(FINE), nh))
    assert transmission.shape == (4, len(FINE) - 1)
    np.testing.assert_array_equal(transmission[0], 1.0)
    assert np.all(np.diff(transmission, axis=0) <= 0)  # more column, less light
    assert np.all(transmission[1:, -1] > transmission[1:, 100])  # harder light gets through


def test_absorption_and_partial_covering():
    sigma = CrossSection.morrison_mccammon().on(COARSE)
    nh = np.array([0.5, 3.0])
    full = np.asarray(absorption(sigma, nh))
    np.testing.assert_allclose(full, np.exp(-nh[:, None] * 1e22 * sigma), rtol=1e-5, atol=1e-30)
    np.testing.assert_allclose(partial_covering(sigma, nh, 1.0), full, rtol=1e-6)
    np.testing.assert_allclose(partial_covering(sigma, nh, 0.0), 1.0)
    covered = np.asarray(partial_covering(sigma, nh, np.array([0.25, 0.75])))
    np.testing.assert_allclose(
        covered, np.array([[0.25], [0.75]]) * full + [[0.75], [0.25]], rtol=1e-6
    )
    d = jax.grad(lambda n: jnp.sum(absorption(sigma, n)))(1.0)
    assert np.isfinite(d) and d < 0


def test_cross_section_file_errors(tmp_path):
    text = tmp_path / "notes.fits"
    text.write_text("not a FITS file\n")
    with pytest.raises(OGIPError, match="notes.fits"):
        CrossSection.from_fits(text)
    with pytest.raises(OGIPError, match="not found"):
        CrossSection.from_fits(tmp_path / "absent.fits")
    energy_only = tmp_path / "energy_only.fits"
    fits.BinTableHDU.from_columns([fits.Column("ENERGY", "E", array=np.arange(1.0, 5.0))]).writeto(
        energy_only
    )
    with pytest.raises(OGIPError, match="energy_only.fits.*ENERGY and SIGMA") as info:
        CrossSection.from_fits(energy_only)
    assert info.value.path == str(energy_only)


@pytest.mark.parametrize(("unit", "values"), [("cm^2", 2e-22), ("1e-22 cm^2", 2.0), ("", 2.0)])
def test_cross_section_units(tmp_path, unit, values):
    path = tmp_path / "table.fits"
    energy = np.geomspace(0.1, 10.0, 50)
    columns = [
        fits.Column("ENERGY", "D", unit="keV", array=energy),
        fits.Column("SIGMA", "D", unit=unit or None, array=values * energy**-2.5),
    ]
    fits.BinTableHDU.from_columns(columns, name="MYABS").writeto(path)
    table = CrossSection.from_fits(path)
    assert table.name == "MYABS"
    assert table.at(1.0) == pytest.approx(2e-22, rel=1e-9)
    assert table.at(20.0) == pytest.approx(2e-22 * 20.0**-2.5, rel=1e-9)  # log-log extrapolation


# Gradients


@pytest.mark.parametrize(
    "model", [blackbody, bremsstrahlung, diskbb, plasma], ids=lambda m: m.__name__
)
def test_temperature_gradients(model):
    """jax.grad by kT finite for kT in 0.03..50 keV on 0.05..15 keV, also for a log-likelihood
    with bins where the model is ~0, and close to finite differences (float32, step 1%)."""
    edges = np.geomspace(0.05, 15.0, 121)
    kT = np.geomspace(0.03, 50.0, 12)
    probe = [2, 6, 10]
    kT = np.concatenate([kT, kT[probe] * 0.99, kT[probe] * 1.01])

    def log_counts(t):
        return jnp.sum(jnp.log(model(edges, t, 1e3) + 1e-30))

    values, grads = jax.jit(jax.vmap(jax.value_and_grad(log_counts)))(jnp.asarray(kT))
    values, grads = np.asarray(values, dtype=float), np.asarray(grads)
    assert np.all(np.isfinite(grads)) and np.all(np.isfinite(values)) and np.all(grads != 0)
    numeric = (values[15:] - values[12:15]) / (0.02 * kT[probe])
    np.testing.assert_allclose(grads[probe], numeric, rtol=1e-2)
