"""Reading the latent space: the hardness-ratio baseline, divergences between posteriors,
similarity search, trajectories and anomalies."""

import numpy as np
import pytest
from scipy.stats import norm

from xspecvae.catalog import BANDS_4XMM, band_matrix, hardness_ratios
from xspecvae.latent import (
    DIVERGENCES,
    STEP_DIVERGENCE,
    Index,
    anomalies,
    divergence,
    neighbours,
    trajectories,
)


def test_hardness_ratios_of_net_counts_in_the_4xmm_bands():
    edges = np.array([0.2, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 3.0, 4.5, 8.0, 12.0])
    lo, hi = edges[:-1], edges[1:]
    matrix = band_matrix(lo, hi)
    assert matrix.shape == (10, 5) and np.all(matrix.sum(1) == 1)
    np.testing.assert_array_equal(matrix.argmax(1), [0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
    counts = np.array([[10, 10, 30, 10, 5, 5, 0, 0, 8, 2], [0, 0, 0, 0, 0, 0, 0, 0, 0, 4.0]])
    background = np.full((2, 10), 4.0)
    alpha = np.full((2, 10), 0.5)
    good = np.ones((2, 10), bool)
    good[0, 0] = False  # a bad channel counts for nothing
    batch = {"counts": counts, "background": background, "alpha": alpha, "good": good}
    hr = hardness_ratios(batch, lo, hi)
    net = np.clip(counts - 2.0, 0, None) * good
    bands = np.array([[8.0, 36.0, 6.0, 0.0, 6.0], [0, 0, 0, 0, 2.0]])
    np.testing.assert_allclose(net @ matrix, bands)
    expected = [
        [(36 - 8) / 44, (6 - 36) / 42, (0 - 6) / 6, (6 - 0) / 6],
        [0.0, 0.0, 0.0, 1.0],  # empty bands: 0; net counts below zero: clipped
    ]
    np.testing.assert_allclose(hr, expected)
    assert len(BANDS_4XMM) == 5 and hr.shape == (2, 4)


def gaussians(rng, n, d):
    return rng.normal(0, 1.5, (n, d)), rng.uniform(0.2, 1.5, (n, d))


@pytest.mark.parametrize("seed", [0, 1])
def test_closed_forms_agree_with_monte_carlo(seed):
    rng = np.random.default_rng(seed)
    ma, mb = gaussians(rng, 1, 3)[0][0], gaussians(rng, 1, 3)[0][0]
    sa, sb = rng.uniform(0.3, 1.2, 3), rng.uniform(0.3, 1.2, 3)
    x = ma + sa * rng.standard_normal((400_000, 3))
    log_a = norm.logpdf(x, ma, sa).sum(1)
    log_b = norm.logpdf(x, mb, sb).sum(1)
    y = mb + sb * rng.standard_normal((400_000, 3))
    kl_ab = np.mean(log_a - log_b)
    kl_ba = np.mean(norm.logpdf(y, mb, sb).sum(1) - norm.logpdf(y, ma, sa).sum(1))
    bc = np.mean(np.exp(0.5 * (log_b - log_a)))  # E_a sqrt(b / a)
    # W2 of product measures: per dimension, the quantile coupling of sorted samples
    w2 = np.sqrt(np.sum(np.mean((np.sort(x, 0) - np.sort(y, 0)) ** 2, 0)))
    got = {n: divergence(n, ma, sa, mb, sb) for n in DIVERGENCES}
    np.testing.assert_allclose(got["kl"], kl_ab, rtol=0.03, atol=0.01)
    np.testing.assert_allclose(got["kl_reverse"], kl_ba, rtol=0.03, atol=0.01)
    np.testing.assert_allclose(got["kl_symmetric"], kl_ab + kl_ba, rtol=0.03, atol=0.02)
    np.testing.assert_allclose(got["bhattacharyya"], -np.log(bc), rtol=0.03, atol=0.01)
    np.testing.assert_allclose(got["hellinger"], np.sqrt(1 - bc), rtol=0.03, atol=0.01)
    np.testing.assert_allclose(got["wasserstein"], w2, rtol=0.02, atol=0.01)
    np.testing.assert_allclose(got["euclidean"], np.linalg.norm(ma - mb))
    # match: -log E_a[b / prior], the scales capped at the prior's
    ca, cb = np.minimum(sa, 1.0), np.minimum(sb, 1.0)
    xc = ma + ca * rng.standard_normal((400_000, 3))
    ratio = norm.logpdf(xc, mb, cb).sum(1) - norm.logpdf(xc).sum(1)
    np.testing.assert_allclose(got["match"], -np.log(np.mean(np.exp(ratio))), rtol=0.03, atol=0.02)
    # predictive: -log E_b[L_a(z) / max L_a], L_a = q_a / prior (a's widths: conditional ones,
    # below the prior's)
    ca = np.minimum(sa, 0.9)
    log_likelihood = norm.logpdf(y, ma, ca).sum(1) - norm.logpdf(y).sum(1)
    grid = np.linspace(-30, 30, 600_001)[:, None]
    best = np.max(norm.logpdf(grid, ma, ca) - norm.logpdf(grid), 0).sum()
    expected = -np.log(np.mean(np.exp(log_likelihood - best)))
    predictive = divergence("predictive", ma, ca, mb, sb)
    np.testing.assert_allclose(predictive, expected, rtol=0.03, atol=0.02)


def test_match_divides_the_prior_out():
    """A posterior equal to the prior matches everything at 0; a faint source's posterior (the
    likelihood of its counts times the prior) matches the bright source its likelihood points
    at better than one at the prior's centre, where the posterior itself sits nearer."""
    rng = np.random.default_rng(2)
    loc, scale = gaussians(rng, 20, 4)
    prior = (np.zeros(4), np.ones(4))
    np.testing.assert_allclose(divergence("match", *prior, loc, scale), 0.0, atol=1e-12)
    # a likelihood N(2, 3) in each dimension and the prior N(0, 1): posterior N(0.5, 0.75)
    faint = (np.full(4, 0.5), np.full(4, np.sqrt(0.75)))
    there, centre = (np.full(4, 2.0), np.full(4, 0.1)), (np.zeros(4), np.full(4, 0.1))
    assert divergence("match", *faint, *there) < divergence("match", *faint, *centre)
    bhattacharyya = lambda *pair: divergence("bhattacharyya", *faint, *pair)  # noqa: E731
    assert bhattacharyya(*there) > bhattacharyya(*centre)


def test_predictive_ranks_the_sources_that_predict_a_faint_sources_counts():
    """A faint source's likelihood N(2, 3) per dimension (posterior N(0.5, 0.75) under the
    prior N(0, 1)) is best predicted by a narrow posterior at 2, the likelihood's centre (0
    there, and only there), better than by one at the posterior's own mean or by a wide one at
    2; the divergence is never negative; a posterior equal to the prior is predicted equally
    well by everything."""
    faint = (np.full(4, 0.5), np.full(4, np.sqrt(0.75)))
    point = divergence("predictive", *faint, np.full(4, 2.0), np.full(4, 1e-6))
    assert point == pytest.approx(0.0, abs=1e-9)
    narrow = divergence("predictive", *faint, np.full(4, 2.0), np.full(4, 0.1))
    at_mean = divergence("predictive", *faint, np.full(4, 0.5), np.full(4, 0.1))
    wide = divergence("predictive", *faint, np.full(4, 2.0), np.full(4, 2.0))
    assert narrow < at_mean and narrow < wide
    rng = np.random.default_rng(8)
    loc, scale = gaussians(rng, 200, 4)
    assert np.all(divergence("predictive", *faint, loc, scale) >= 0)
    uninformed = divergence("predictive", np.zeros(4), np.ones(4), loc, scale)
    np.testing.assert_allclose(uninformed, 0.0, atol=1e-12)  # its counts tell nothing
    # nor does a dimension where the posterior is as wide as the prior but off its centre (an
    # encoder's): its likelihood would centre far outside the population
    query = (np.array([0.5, 1.0]), np.array([np.sqrt(0.75), 1.2]))
    told = (query[0][:1], query[1][:1])
    for loc_b, scale_b in (([2.0, -3.0], [0.1, 0.1]), ([2.0, 5.0], [0.1, 2.0])):
        got = divergence("predictive", *query, np.array(loc_b), np.array(scale_b))
        alone = divergence("predictive", *told, np.array(loc_b[:1]), np.array(scale_b[:1]))
        assert got == pytest.approx(alone)


def test_divergences_vanish_on_equal_posteriors_and_broadcast():
    rng = np.random.default_rng(3)
    loc, scale = gaussians(rng, 50, 4)
    not_distances = ("match", "predictive")  # evidence and prediction: not distances
    for name in (d for d in DIVERGENCES if d not in not_distances):
        same = divergence(name, loc, scale, loc, scale)
        np.testing.assert_allclose(same, 0.0, atol=1e-12)
        one_to_all = divergence(name, loc[:1], scale[:1], loc, scale)
        assert one_to_all.shape == (50,) and np.all(one_to_all[1:] > 0)
    # KL is not symmetric; its symmetrisation is
    a, b = (loc[0], scale[0]), (loc[1], scale[1])
    assert divergence("kl", *a, *b) != pytest.approx(divergence("kl", *b, *a))
    assert divergence("kl_symmetric", *a, *b) == pytest.approx(divergence("kl_symmetric", *b, *a))
    with pytest.raises(ValueError, match="unknown divergence"):
        divergence("cosine", *a, *b)


@pytest.mark.parametrize("name", DIVERGENCES)
def test_search_returns_the_brute_force_nearest(name):
    rng = np.random.default_rng(4)
    loc, scale = gaussians(rng, 3000, 16)
    conditional = scale * rng.uniform(0.2, 1.0, scale.shape)  # what match compares instead
    groups = rng.integers(0, 1000, 3000)
    index = Index(loc, scale, groups, conditional)
    queries = rng.choice(3000, 7, replace=False)
    keep = rng.random(3000) < 0.7
    rows, values = index.search(
        loc[queries],
        scale[queries],
        12,
        divergence=name,
        keep=keep,
        exclude_groups=groups[queries],
        conditional=conditional[queries],
    )
    query_widths = conditional if name in ("match", "predictive") else scale
    widths = conditional if name == "match" else scale
    for q, r, v in zip(queries, rows, values):
        d = divergence(name, loc[q], query_widths[q], loc, widths)
        d[~keep | (groups == groups[q])] = np.inf
        expected = np.argsort(d, kind="stable")[:12]
        np.testing.assert_allclose(v, d[expected], rtol=2e-4, atol=1e-5)
        assert len(set(r) & set(expected)) >= 11  # float32 may swap a near tie at the edge
    if name not in ("match", "predictive"):  # a source need not be its own best match
        one, value = index.search(loc[0], scale[0], 3, divergence=name)
        assert one.shape == (3,) and one[0] == 0 and value[0] == pytest.approx(0.0, abs=1e-4)


def test_search_pads_when_too_few_rows_qualify():
    loc, scale = np.zeros((5, 2)), np.ones((5, 2))
    keep = np.array([True, False, True, False, False])
    rows, values = Index(loc, scale).search(loc[0], scale[0], 4, keep=keep)
    assert sorted(rows[:2]) == [0, 2] and list(rows[2:]) == [-1, -1]
    assert np.all(np.isinf(values[2:]))
    with pytest.raises(ValueError, match="unknown divergence"):
        Index(loc, scale).search(loc[0], scale[0], divergence="l1")


def test_neighbours_of_a_row_and_of_a_spectrum_from_elsewhere():
    """One search for the command line, the report and the browser: a row's neighbours leave
    its source's other observations out; the same posterior given as a one-row table (a
    spectrum not in the table) finds that row first; ``keep`` and too few candidates."""
    rng = np.random.default_rng(5)
    loc, scale = gaussians(rng, 400, 6)
    table = {"z_loc": loc, "z_scale": scale, "source_id": np.arange(400) // 2}  # 2 epochs
    found = neighbours(table, 10, 5, divergence="bhattacharyya")
    d = divergence("bhattacharyya", loc[10], scale[10], loc, scale)
    d[[10, 11]] = np.inf  # row 10's source: rows 10 and 11
    np.testing.assert_array_equal(found["row"], np.argsort(d)[:5])
    np.testing.assert_allclose(found["divergence"], np.sort(d)[:5], rtol=2e-4, atol=1e-5)
    assert list(found["rank"]) == [1, 2, 3, 4, 5]
    elsewhere = {"z_loc": loc[10:11], "z_scale": scale[10:11]}
    alone = neighbours(table, elsewhere, 3, divergence="kl_symmetric")  # a distance
    assert alone["row"][0] == 10 and alone["divergence"][0] == pytest.approx(0.0, abs=1e-4)
    keep = np.zeros(400, bool)
    keep[[3, 200, 11]] = True
    few = neighbours(table, 10, 5, keep=keep)
    assert sorted(few["row"]) == [3, 200] and list(few["rank"]) == [1, 2]


def test_trajectories_order_epochs_and_measure_steps():
    rng = np.random.default_rng(6)
    source = np.array([7, 3, 7, 5, 3, 7])
    mjd = np.array([300.0, 20.0, 100.0, 1.0, 10.0, 200.0])
    loc, scale = gaussians(rng, 6, 4)
    got = trajectories({"source_id": source, "mjd": mjd, "z_loc": loc, "z_scale": scale})
    assert list(got["source_id"]) == [3, 3, 7, 7, 7]  # source 5 was seen once
    assert list(got["row"]) == [4, 1, 2, 5, 0]
    assert list(got["epoch"]) == [1, 2, 1, 2, 3] and list(got["n_epochs"]) == [2, 2, 3, 3, 3]
    assert np.isnan(got["step"][[0, 2]]).all()
    expected = divergence(STEP_DIVERGENCE, loc[2], scale[2], loc[5], scale[5])
    assert got["step"][3] == pytest.approx(expected)
    by_kl = trajectories(
        {"source_id": source, "mjd": mjd, "z_loc": loc, "z_scale": scale}, divergence="kl"
    )
    assert by_kl["step"][3] == pytest.approx(divergence("kl", loc[2], scale[2], loc[5], scale[5]))


def test_anomalies_rank_misfits_and_isolated_posteriors_first():
    rng = np.random.default_rng(7)
    loc, scale = rng.normal(0, 0.5, (400, 4)), np.full((400, 4), 0.2)
    loc[10] = 8.0  # far from everyone
    misfit = rng.uniform(0.9, 1.1, 400)
    misfit[20] = 5.0  # explained badly
    table = {"z_loc": loc, "z_scale": scale, "misfit": misfit, "source_id": np.arange(400)}
    got = anomalies(table, k=5, reference=300)
    assert got["isolation_rank"][10] == 1 and got["misfit_rank"][20] == 1
    assert sorted(got["rank"]) == list(range(1, 401))
    assert got["rank"][10] <= 30 and got["rank"][20] <= 30


def test_hellinger_search_ranks_by_bhattacharyya_where_it_saturates():
    rng = np.random.default_rng(8)
    loc, scale = rng.normal(0, 20, (500, 16)), np.full((500, 16), 0.1)  # H = 1.0 in float32
    rows, values = Index(loc, scale).search(loc[0], scale[0], 5, divergence="hellinger")
    by_b, _ = Index(loc, scale).search(loc[0], scale[0], 5, divergence="bhattacharyya")
    np.testing.assert_array_equal(rows, by_b)
    np.testing.assert_allclose(values[1:], 1.0)
    assert rows[0] == 0 and values[0] == pytest.approx(0.0, abs=1e-3)
    keep = np.zeros(500, bool)
    keep[:2] = True
    rows, values = Index(loc, scale).search(loc[0], scale[0], 4, divergence="hellinger", keep=keep)
    assert list(rows[2:]) == [-1, -1] and np.all(np.isinf(values[2:]))
