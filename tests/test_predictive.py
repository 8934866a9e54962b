"""Posterior predictive checks: draws around a source and from the prior, their replicates,
the ArviZ data, the calibration of the fit statistic and the plot."""

import jax
import matplotlib.pyplot as plt
import numpy as np
import pytest

from xspecvae import predictive
from xspecvae.catalog import PER_SOURCE, Pack
from xspecvae.likelihood import LIKELIHOODS, profile_background
from xspecvae.predictive import calibration, draw, inference_data, plot_checks
from xspecvae.run import load_run
from xspecvae.vae import VAE, step_owner

# One batch and one number of draws everywhere: every new shape is a compilation (seconds).
S = 64  # draws per source
ROWS = np.arange(100, 132)  # row numbers that are not positions


@pytest.fixture(scope="module")
def vae(small_run):
    return load_run(small_run)[0]


@pytest.fixture(scope="module")
def pack(small_pack):
    with Pack(small_pack) as pack:
        yield pack


@pytest.fixture(scope="module")
def batch(pack):
    return pack.read(ROWS)


@pytest.fixture(scope="module")
def guide(vae, batch):
    """The guide's posterior of the batch, and the expected counts at its mean."""
    q = jax.jit(vae.posterior)(batch)
    return q, np.asarray(jax.jit(vae.decode)(q.z_loc, q.norm_loc, batch)[1])


@pytest.fixture(scope="module")
def posterior(vae, batch):
    return draw(vae, batch, S, jax.random.key(0))


@pytest.fixture(scope="module")
def prior(vae, batch):
    return draw(vae, batch, S, jax.random.key(1), prior=True)


def test_draws_have_the_documented_shapes_and_are_reproducible(vae, batch, posterior, prior):
    B, C = batch["counts"].shape
    D = vae.config.latent_dim
    shapes = {"z": (S, B, D), "log_norm": (S, B)}
    shapes |= {k: (S, B, C) for k in ("source", "background", "counts_rep", "background_rep")}
    for drawn in (posterior, prior):
        assert {k: v.shape for k, v in drawn.items()} == shapes
        assert all(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in drawn.values())
        assert all(np.isfinite(v).all() for v in drawn.values())
        for k in ("counts_rep", "background_rep"):
            assert drawn[k].min() >= 0 and np.array_equal(drawn[k], np.round(drawn[k]))
    again = draw(vae, batch, S, jax.random.key(0))
    assert all(np.array_equal(posterior[k], again[k]) for k in posterior)
    other = draw(vae, batch, S, jax.random.key(2))
    assert not np.array_equal(posterior["z"], other["z"])
    assert not np.array_equal(posterior["counts_rep"], other["counts_rep"])


def test_posterior_draws_concentrate_around_the_guide_and_prior_draws_do_not(
    vae, pack, guide, posterior, prior
):
    def check_normal(x, loc, scale):
        """Every mean within 5 standard errors; pooled, standardised: mean 0, variance 1."""
        x, loc, scale = np.asarray(x), np.asarray(loc), np.asarray(scale)
        assert np.all(np.abs(x.mean(0) - loc) < 5 * scale / np.sqrt(S))
        t = (x - loc) / scale
        assert abs(t.mean()) < 5 / np.sqrt(t.size) and abs(t.var() - 1) < 5 * np.sqrt(2 / t.size)

    q = guide[0]
    check_normal(posterior["z"], q.z_loc, q.z_scale)
    check_normal(posterior["log_norm"], q.norm_loc, q.norm_scale)
    # the prior: N(0, I) and N(*norm_prior), whatever the data
    check_normal(prior["z"], 0.0, 1.0)
    check_normal(prior["log_norm"], *vae.inst.norm_prior)
    assert np.all(prior["log_norm"].std(0) > 5 * posterior["log_norm"].std(0))
    elsewhere = draw(vae, pack.read(ROWS - 50), S, jax.random.key(1), prior=True)
    np.testing.assert_array_equal(elsewhere["z"], prior["z"])
    np.testing.assert_array_equal(elsewhere["log_norm"], prior["log_norm"])
    assert not np.allclose(elsewhere["source"], prior["source"])  # other responses
    # the spectra: near one another around a source, spread over decades from the prior
    assert np.all(np.log(posterior["source"].sum(-1)).std(0) < 0.3)
    assert np.all(np.log(prior["source"].sum(-1)).std(0) > 1.0)


@pytest.mark.parametrize("which", ["posterior", "prior"])
def test_replicates_are_poisson_around_their_rates(which, batch, request):
    drawn = request.getfixturevalue(which)
    rates = {
        "counts_rep": np.clip(drawn["source"], 0, None) + batch["alpha"] * drawn["background"],
        "background_rep": drawn["background"],
    }
    for name, rate in rates.items():
        keep = rate > 2
        assert keep.sum() > 10_000
        residual = (drawn[name] - rate)[keep] / np.sqrt(rate[keep])
        assert abs(residual.mean()) < 0.02
        assert abs(residual.var() - 1) < 0.03
    # a faint channel too: its share of zeros is exp(-rate) on average
    small = (rates["counts_rep"] > 0.2) & (rates["counts_rep"] < 1.0)
    zeros, expected = drawn["counts_rep"][small] == 0, np.exp(-rates["counts_rep"][small])
    assert abs(zeros.mean() - expected.mean()) < 5 * np.sqrt(expected.mean() / small.sum())


def test_backgrounds_are_profiled_for_wstat_and_observed_for_prior_draws(
    vae, batch, posterior, prior
):
    assert vae.config.likelihood == "wstat"
    n, b, alpha = batch["counts"], batch["background"], batch["alpha"]
    profiled = np.asarray(profile_background(posterior["source"], alpha, n, b))
    np.testing.assert_allclose(posterior["background"], profiled, rtol=1e-5, atol=1e-6)
    assert np.abs(profiled - b).max() > 1.0  # the test means something
    np.testing.assert_array_equal(prior["background"], np.broadcast_to(b, prior["source"].shape))


def test_inference_data_holds_the_draws_and_the_data(vae, pack, batch, posterior):
    centres = 0.5 * (pack.grid.channel_lo + pack.grid.channel_hi)
    ids = [f"src-{r}" for r in batch["row"]]
    idata = inference_data(posterior, batch, ids=ids, channel_energy=centres)
    assert set(idata.groups()) == {
        "posterior",
        "posterior_predictive",
        "observed_data",
        "constant_data",
    }
    B, C = batch["counts"].shape
    D = vae.config.latent_dim
    expected = {
        "posterior": {
            "z": (("chain", "draw", "source", "latent"), (1, S, B, D)),
            "log_norm": (("chain", "draw", "source"), (1, S, B)),
        },
        "posterior_predictive": {
            k: (("chain", "draw", "source", "channel"), (1, S, B, C))
            for k in ("counts", "background")
        },
        "observed_data": {k: (("source", "channel"), (B, C)) for k in ("counts", "background")},
        "constant_data": {
            "alpha": (("source", "channel"), (B, C)),
            "good": (("source", "channel"), (B, C)),
            "exposure": (("source",), (B,)),
        },
    }
    for group, variables in expected.items():
        data = idata[group]
        assert set(data.data_vars) == set(variables)
        for name, (dims, shape) in variables.items():
            assert (data[name].dims, data[name].shape) == (dims, shape), (group, name)
    assert list(idata.posterior["source"].values) == ids
    np.testing.assert_array_equal(idata.observed_data["channel"].values, centres)
    np.testing.assert_array_equal(idata.posterior["latent"].values, np.arange(D))
    np.testing.assert_array_equal(idata.posterior["z"].values[0], posterior["z"])
    rep = idata.posterior_predictive
    np.testing.assert_array_equal(rep["counts"].values[0], posterior["counts_rep"])
    np.testing.assert_array_equal(rep["background"].values[0], posterior["background_rep"])
    np.testing.assert_array_equal(idata.observed_data["counts"].values, batch["counts"])
    np.testing.assert_array_equal(idata.constant_data["good"].values, batch["good"])
    np.testing.assert_array_equal(idata.constant_data["exposure"].values, batch["exposure"])
    one = idata.sel(source="src-103")
    np.testing.assert_array_equal(one.observed_data["counts"].values, batch["counts"][3])
    np.testing.assert_array_equal(one.posterior["log_norm"].values[0], posterior["log_norm"][:, 3])
    # by default: the batch's row numbers and channel indices
    plain = inference_data(posterior, batch)
    np.testing.assert_array_equal(plain.posterior["source"].values, ROWS)
    np.testing.assert_array_equal(plain.observed_data["channel"].values, np.arange(C))
    with pytest.raises(ValueError, match="unique"):
        inference_data(posterior, batch, ids=["a"] * B)


def test_calibration_gives_reproducible_p_values_per_row(vae, pack):
    rows = np.arange(48)  # two batches, the second padded
    out = calibration(vae, pack, rows, n_draws=S, batch_size=len(ROWS))
    assert set(out) == {"p_value", "statistic", "statistic_rep", "misfit", "dof", "row"}
    assert all(v.shape == (48,) for v in out.values())
    np.testing.assert_array_equal(out["row"], rows)
    p = out["p_value"]
    np.testing.assert_array_equal(out["misfit"], p < 0.01)
    assert np.all((p >= 0) & (p <= 1)) and np.allclose(p * S, np.round(p * S))
    np.testing.assert_array_equal(out["dof"], pack.read(rows)["good"].sum(-1))
    # replicates of the model fit it: their statistic is about one per degree of freedom
    assert 0.8 < np.median(out["statistic_rep"] / out["dof"]) < 1.3
    assert np.all(out["statistic"] > 0)
    # a row's draws depend on the seed and its row number only, not on the batching
    shuffled = np.random.default_rng(0).permutation(rows)
    again = calibration(vae, pack, shuffled, n_draws=S, batch_size=len(ROWS))
    order = np.argsort(shuffled)
    for k in out:
        np.testing.assert_allclose(again[k][order], out[k], rtol=1e-5)
    other = calibration(vae, pack, rows[: len(ROWS)], n_draws=S, batch_size=len(ROWS), seed=1)
    assert not np.allclose(other["statistic_rep"], out["statistic_rep"][: len(ROWS)])


def test_p_values_spread_on_data_from_the_model_and_vanish_on_a_misfit(batch, guide, posterior):
    """The model fixed at the posterior of the observed spectra (the tiny model misfits them:
    their own p-values are all 0): data drawn from it at the posterior mean get p-values spread
    over (0, 1); five times those source counts get p ~ 0."""
    source = guide[1]
    n, b, alpha, good = (batch[k] for k in ("counts", "background", "alpha", "good"))
    rates = np.asarray(LIKELIHOODS["wstat"](source, alpha, n, b, good).rates, np.float64)
    fake = np.random.default_rng(3).poisson(rates).astype(np.float32)

    def p_values(counts, background):
        data = {k: batch[k] for k in PER_SOURCE} | {"counts": counts, "background": background}
        return np.asarray(predictive._check("wstat", data, posterior)["p_value"])

    assert np.all(p_values(n, b) == 0)

    p = p_values(fake[..., 0], fake[..., 1])
    assert np.mean(p < 0.05) < 0.2 and 0.2 < np.median(p) < 0.8
    misfit = p_values(5 * fake[..., 0], fake[..., 1])
    assert np.mean(misfit < 0.05) > 0.95 and misfit.max() < 0.2


def test_cstat_replicates_only_the_source_region(batch, posterior):
    data = {k: batch[k] for k in PER_SOURCE}
    other = posterior | {"background_rep": 3 * posterior["background_rep"] + 7}
    for likelihood, ignored in (("cstat", True), ("wstat", False)):
        first, second = (predictive._check(likelihood, data, d) for d in (posterior, other))
        same = np.allclose(first["statistic_rep"], second["statistic_rep"])
        assert same == ignored, likelihood
        np.testing.assert_array_equal(first["statistic"], second["statistic"])


@pytest.mark.filterwarnings("ignore::matplotlib.MatplotlibDeprecationWarning")  # arviz internals
def test_plot_checks_draws_one_source_against_its_replicates(pack, batch, posterior, tmp_path):
    centres = 0.5 * (pack.grid.channel_lo + pack.grid.channel_hi)
    idata = inference_data(posterior, batch, channel_energy=centres)
    path = tmp_path / "ppc.png"
    figures_before = plt.get_fignums()
    fig = plot_checks(idata, path, source=3)
    assert plt.get_fignums() == figures_before
    content = path.read_bytes()
    assert content.startswith(b"\x89PNG") and len(content) > 10_000
    spectrum, ppc = fig.axes
    lines = {line.get_label(): line for line in spectrum.lines}
    np.testing.assert_array_equal(lines["observed"].get_xdata(), centres)
    np.testing.assert_array_equal(lines["observed"].get_ydata(), batch["counts"][3])
    mean = posterior["counts_rep"][:, 3].mean(0)
    np.testing.assert_allclose(lines["replicated mean"].get_ydata(), mean, rtol=1e-5)
    assert len(spectrum.collections) == 1  # the HDI band
    assert "source 103" in spectrum.get_title()
    # plot_ppc: the S replicates, the observed counts, their mean and a legend entry
    assert len(ppc.lines) == S + 3
    assert "Observed" in [line.get_label() for line in ppc.lines]


def test_a_model_of_the_same_configuration_reuses_the_step_with_its_own_arrays(vae, batch, prior):
    """Compiled steps are cached per configuration and energy grid (another run, or a copy for
    other RMFs, does not compile them again), and each model's own instrument arrays go in:
    prior draws of a model whose ``log_norm`` prior is shifted by 1 are shifted by exactly 1."""
    shift = np.array([1.0, 0.0], np.float32)
    shifted = VAE(vae.config, vae.params, vae.inst._replace(norm_prior=vae.inst.norm_prior + shift))
    assert step_owner(shifted) is step_owner(vae)
    assert step_owner(vae.with_refinement(3)) is not step_owner(vae)  # another configuration
    moved = draw(shifted, batch, S, jax.random.key(1), prior=True)
    np.testing.assert_allclose(moved["log_norm"], prior["log_norm"] + 1.0, atol=1e-5)
    np.testing.assert_array_equal(moved["z"], prior["z"])
