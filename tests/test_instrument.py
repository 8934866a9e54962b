"""Responses, folding and grouping, against independent numpy computations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xspecvae as xv
from xspecvae.instrument import builtin_pn_area


def random_response(n_energy=300, n_channel=600, storage="auto", seed=0):
    """A banded redistribution with empty corners, so tiling has something to skip."""
    rng = np.random.default_rng(seed)
    edges = np.geomspace(0.1, 12.0, n_energy + 1)
    lo = np.linspace(0.0, 12.0, n_channel + 1)
    centre = np.sqrt(edges[1:] * edges[:-1])
    mid = 0.5 * (lo[1:] + lo[:-1])
    matrix = np.exp(-0.5 * ((mid[None, :] - centre[:, None]) / 0.15) ** 2)
    matrix *= rng.uniform(0.5, 1.0, matrix.shape)
    matrix[matrix < 1e-4] = 0
    arf = rng.uniform(10, 1000, n_energy)
    return xv.Response(edges, lo[:-1], lo[1:], matrix, arf, storage=storage)


def reference_fold(response, flux, exposure=1.0, arf=None):
    area = response.arf if arf is None else arf
    dense = response.matrix.astype(np.float64)
    return np.asarray(exposure)[..., None] * ((np.asarray(flux, float) * area) @ dense)


@pytest.mark.parametrize("storage", ["dense", "tiled"])
def test_fold_matches_dense_float64(storage):
    response = random_response(storage=storage)
    assert response.storage == storage
    flux = np.random.default_rng(1).uniform(0, 1, (5, response.n_energy))
    with jax.enable_x64(True):
        counts = np.asarray(response.fold(flux, 300.0))
    np.testing.assert_allclose(counts, reference_fold(response, flux, 300.0), rtol=1e-12)
    counts32 = np.asarray(response.fold(flux, 300.0))
    assert counts32.dtype == np.float32
    np.testing.assert_allclose(counts32, reference_fold(response, flux, 300.0), rtol=1e-5)


def test_auto_storage_tiles_only_large_sparse_matrices():
    assert random_response(n_channel=600).storage == "tiled"
    assert random_response(n_channel=200).storage == "dense"  # small grids: one matrix is faster
    full = random_response(n_channel=600)
    full_dense = xv.Response(
        full.energy_edges, full.channel_lo, full.channel_hi, np.ones_like(full.matrix), full.arf
    )
    assert full_dense.storage == "dense"  # nothing to skip


def test_fold_shapes_exposure_and_arf():
    response = random_response()
    flux = np.random.default_rng(2).uniform(0, 1, (2, 3, response.n_energy))
    exposure = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    arf = np.random.default_rng(3).uniform(1, 2, (2, 3, response.n_energy))
    counts = np.asarray(response.fold(flux, exposure, arf=arf))
    assert counts.shape == (2, 3, response.n_channel)
    np.testing.assert_allclose(counts, reference_fold(response, flux, exposure, arf), rtol=1e-5)
    single = np.asarray(response.fold(flux[0, 0]))
    assert single.shape == (response.n_channel,)
    np.testing.assert_allclose(single, reference_fold(response, flux[0, 0]), rtol=1e-5)


def test_fold_under_jit_vmap_and_grad():
    response = random_response()
    flux = jnp.asarray(np.random.default_rng(4).uniform(0, 1, (4, response.n_energy)))
    exposure = jnp.array([1.0, 10.0, 100.0, 1000.0])
    batched = jax.jit(jax.vmap(response.fold))(flux, exposure)
    np.testing.assert_allclose(batched, response.fold(flux, exposure), rtol=1e-6)
    grad = jax.grad(lambda f: response.fold(f).sum())(flux[0])
    expected = response.arf * response.matrix.astype(np.float64).sum(axis=1)
    np.testing.assert_allclose(grad, expected, rtol=1e-5)


def test_grouping_from_ogip_columns():
    grouping = np.array([1, -1, -1, 1, -1, 1, 1, -1, -1, 1])
    quality = np.array([0, 0, 0, 0, 2, 0, 0, 0, 0, 5])
    g = xv.Grouping.from_ogip(grouping, quality)
    np.testing.assert_array_equal(g.start, [0, 5, 6])  # bins holding a bad channel dropped
    np.testing.assert_array_equal(g.stop, [3, 6, 9])
    counts = np.arange(10)
    np.testing.assert_array_equal(g.apply(counts), [0 + 1 + 2, 5, 6 + 7 + 8])
    ungrouped = xv.Grouping.from_ogip(np.zeros(4, int))
    np.testing.assert_array_equal(ungrouped.apply(np.arange(4)), np.arange(4))


def test_grouping_apply_is_an_exact_sum_on_any_leading_shape():
    g = xv.Grouping(np.array([2, 10, 11]), np.array([7, 11, 20]), 25)
    values = np.random.default_rng(5).integers(0, 50, (3, 4, 25))
    out = g.apply(values)
    assert out.dtype == values.dtype and out.shape == (3, 4, 3)
    np.testing.assert_array_equal(out[..., 0], values[..., 2:7].sum(-1))
    np.testing.assert_array_equal(out[..., 2], values[..., 11:20].sum(-1))
    with pytest.raises(ValueError, match="overlap"):
        xv.Grouping(np.array([0, 4]), np.array([5, 8]), 10)
    with pytest.raises(ValueError, match="expected 25 channels"):
        g.apply(np.zeros(24))


def test_grouping_from_energy():
    lo = np.arange(0, 10.0, 0.5)
    g = xv.Grouping.from_energy(lo, lo + 0.5, np.array([1.0, 2.0, 5.0]))
    np.testing.assert_array_equal(g.start, [2, 4])
    np.testing.assert_array_equal(g.stop, [4, 10])


def test_regroup_equals_grouping_the_folded_counts():
    response = random_response()
    g = xv.Grouping.from_resolution(response, 1.0, 10.0)
    analysis = response.regroup(g)
    assert analysis.n_channel == g.n_groups
    assert 1.0 <= analysis.channel_lo[0] and analysis.channel_hi[-1] <= 10.0
    # energies are cut to the rows that reach the kept bins; the dropped rows reach none
    first = np.searchsorted(response.energy_edges, analysis.energy_edges[0])
    kept = slice(first, first + analysis.n_energy)
    np.testing.assert_allclose(
        analysis.energy_edges, response.energy_edges[first : first + analysis.n_energy + 1]
    )
    outside = np.ones(response.n_energy, bool)
    outside[kept] = False
    assert outside.any() and not g.apply(response.matrix)[outside].any()
    flux = np.random.default_rng(6).uniform(0, 1, (3, response.n_energy))
    with jax.enable_x64(True):
        direct = np.asarray(analysis.fold(flux[:, kept], 50.0))
        full = np.asarray(response.fold(flux, 50.0))
    np.testing.assert_allclose(direct, g.apply(full), rtol=1e-6)


def test_resolution_grouping_bins_are_no_narrower_than_fwhm():
    response = xv.builtin_pn_response()
    g = xv.Grouping.from_resolution(response, 0.2, 12.0)
    lo, hi = response.channel_lo[g.start], response.channel_hi[g.stop - 1]
    fwhm = np.interp(lo, response.energy_centres, response.fwhm())
    assert np.all(hi - lo >= fwhm - 1e-9)
    assert np.all(hi[:-1] - lo[:-1] < fwhm[:-1] + 0.0051)  # and not wider than needed
    assert lo[0] == pytest.approx(0.2, abs=0.005) and hi[-1] == pytest.approx(12.0, abs=0.2)
    half = xv.Grouping.from_resolution(response, 0.2, 12.0, oversample=2.0)
    assert 1.8 * g.n_groups <= half.n_groups <= 2.2 * g.n_groups


def test_resolution_grouping_starts_bins_at_breaks():
    response = xv.builtin_pn_response()
    plain = xv.Grouping.from_resolution(response, 0.2, 12.0)
    g = xv.Grouping.from_resolution(response, 0.2, 12.0, breaks=(0.32, 6.0))
    lo = response.channel_lo
    for energy in (0.32, 6.0):
        start = int(np.searchsorted(lo, energy - 1e-6))
        assert start in g.start and start not in plain.start
    # a bin too narrow before a break joins the one before: every bin still >= FWHM but the
    # ones before breaks, none narrower than half of it
    width = response.channel_hi[g.stop - 1] - lo[g.start]
    fwhm = np.interp(lo[g.start], response.energy_centres, response.fwhm())
    assert np.all(width >= 0.5 * fwhm) and np.sum(width < fwhm - 1e-9) <= 2
    assert abs(g.n_groups - plain.n_groups) <= 2


def test_builtin_response_physics():
    response = xv.builtin_pn_response()
    rows = response.matrix.astype(np.float64).sum(axis=1)
    inside = (response.energy_centres > 0.3) & (response.energy_centres < 14.0)
    np.testing.assert_allclose(rows[inside], 1.0, atol=1e-4)  # redistribution conserves photons
    fwhm = response.fwhm()
    assert np.interp(1.0, response.energy_centres, fwhm) == pytest.approx(0.097, abs=0.01)
    assert np.interp(6.4, response.energy_centres, fwhm) == pytest.approx(0.15, abs=0.01)
    # a narrow line lands where it should
    line = np.zeros(response.n_energy)
    i = np.searchsorted(response.energy_edges, 6.4) - 1
    line[i] = 1.0
    counts = np.asarray(response.fold(line))
    centre = 0.5 * (response.channel_lo + response.channel_hi)
    assert np.sum(counts * centre) / counts.sum() == pytest.approx(
        response.energy_centres[i], abs=0.003
    )
    area = builtin_pn_area([0.2, 1.0, 2.1, 2.4, 6.0, 10.0])
    assert np.all(np.diff(area[[0, 1]]) > 0) and area[3] < 0.8 * area[2]  # rise; Au M edge


def test_response_validation():
    with pytest.raises(ValueError, match="increasing"):
        xv.Response([1.0, 0.5, 2.0], [0.0], [1.0], np.ones((2, 1)))
    with pytest.raises(ValueError, match="storage"):
        xv.Response([1.0, 2.0], [0.0], [1.0], np.ones((1, 1)), storage="sparse")
    response = random_response()
    with pytest.raises(ValueError, match="grouping is for 5 channels"):
        response.regroup(xv.Grouping(np.array([0]), np.array([5]), 5))
