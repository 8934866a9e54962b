"""Classical fits recover the parameters of spectra simulated from the same models."""

import jax
import numpy as np
import pytest

from xspecvae.absorption import CrossSection, absorption
from xspecvae.catalog import Grid, Pack, PackWriter
from xspecvae.fitting import MODELS, fit, fit_latent
from xspecvae.instrument import builtin_pn_response
from xspecvae.likelihood import wstat_value
from xspecvae.physics import diskbb, powerlaw

TRUE = {
    "powerlaw": {"nh": 0.5, "gamma": 1.8, "norm": 2e-3},
    "diskbb+powerlaw": {"nh": 0.3, "t_in": 1.5, "disk_norm": 0.05, "gamma": 1.7, "pl_norm": 1e-3},
}


def _photons(edges, sigma, p):
    """The true photon spectrum, written out here (numpy in, float64)."""
    with jax.enable_x64(True):
        shape = powerlaw(edges, p["gamma"], p.get("norm", p.get("pl_norm")))
        if "t_in" in p:
            shape = shape + diskbb(edges, p["t_in"], p["disk_norm"])
        return np.asarray(absorption(sigma, p["nh"]) * shape)


def _simulated(path, truths, *, arf, exposure, alpha, background, seed):
    """A pack of one Poisson spectrum per parameter dict of ``truths`` through the built-in
    response (400 energies), the ARF ``arf(centres)``, with a flat ``background`` (counts per
    channel in the background region)."""
    response = builtin_pn_response(n_energy=400)
    grid = Grid.from_response("pn", response)
    rmf = grid.regroup(response).astype(np.float64)
    edges = grid.energy_edges
    sigma = CrossSection.morrison_mccammon().on(edges)
    area = arf(np.sqrt(edges[1:] * edges[:-1]))
    rng = np.random.default_rng(seed)
    n, c = len(truths), grid.n_channel
    level = np.full(c, float(background))
    counts, backgrounds = [], []
    for p in truths:
        source = exposure * (_photons(edges, sigma, p) * area) @ rmf
        counts.append(rng.poisson(source + alpha * level))
        backgrounds.append(rng.poisson(level))
    with PackWriter(path) as writer:
        writer.add_grid(grid)
        writer.add_rmf("pn", "builtin", rmf.astype(np.float32))
        writer.append(
            "pn",
            counts=counts,
            background=backgrounds,
            alpha=np.full((n, c), alpha),
            exposure=np.full(n, exposure),
            arf=np.tile(area, (n, 1)),
            rmf_index=np.zeros(n, int),
            meta=dict(
                source_id=np.arange(n),
                obs_id=np.array(["0"] * n),
                mjd=np.zeros(n),
                ra=np.zeros(n),
                dec=np.zeros(n),
                label=np.array([""] * n),
                file=np.array([f"{i}.fits" for i in range(n)]),
            ),
        )
    return path


@pytest.fixture(scope="module")
def pack(tmp_path_factory):
    """Two bright spectra (one per model of TRUE) with a flat background, Poisson noise."""
    path = _simulated(
        tmp_path_factory.mktemp("fit") / "fit.h5",
        list(TRUE.values()),
        exposure=40e3,
        alpha=0.1,
        background=30.0,
        seed=3,
        arf=lambda e: np.interp(e, [0.1, 1.5, 12.0], [200.0, 1200.0, 100.0]),
    )
    with Pack(path) as p:
        yield p


@pytest.mark.parametrize("row, model", list(enumerate(TRUE)))
def test_fit_recovers_the_true_parameters(pack, row, model):
    result = fit(pack, row, model)
    assert set(result.parameters) == set(MODELS[model].names)
    for name, value in TRUE[model].items():
        error = result.errors[name]
        assert np.isfinite(error) and error > 0, name
        assert abs(result.parameters[name] - value) < 4 * error, (name, result.parameters, error)
    assert result.dof == int(pack.read([row])["good"].sum()) - len(MODELS[model].names)
    assert 0.5 < result.statistic / result.dof < 1.6


def test_fit_is_at_least_as_good_as_the_truth_and_nested_models_order(pack):
    """The statistic at the fit is below the one at the true parameters; the two-component
    spectrum is fitted far better by the model that made it than by a power law alone."""
    edges = pack.grid.energy_edges
    sigma = CrossSection.morrison_mccammon().on(edges)
    one = pack.read([1])
    rmf = np.asarray(pack.rmf[0], np.float64)
    truth = (
        one["exposure"][0] * (_photons(edges, sigma, TRUE["diskbb+powerlaw"]) * one["arf"][0]) @ rmf
    )
    best = fit(pack, 1, "diskbb+powerlaw")
    with jax.enable_x64(True):
        args = (one["alpha"][0], one["counts"][0], one["background"][0], one["good"][0])
        at_truth = float(wstat_value(truth, *args))
    assert best.statistic <= at_truth + 1e-6
    assert fit(pack, 1, "powerlaw").statistic > best.statistic + 25.0
    np.testing.assert_allclose(best.source.sum(), truth.sum(), rtol=0.05)


def test_fit_latent_improves_on_the_encoder(small_run, small_pack):
    from xspecvae.latent import encode
    from xspecvae.run import load_run

    vae, _ = load_run(small_run)
    with Pack(small_pack) as p:
        row = int(np.argmax(p.meta["counts"]))
        amortized = float(encode(vae, p, rows=[row], batch_size=1)["statistic"][0])
        result = fit_latent(vae, p, row)
        n_good = int(p.read([row])["good"].sum())
    assert result.statistic < amortized - 1.0  # a 2-epoch encoder leaves much to gain
    assert result.parameters["z"].shape == (vae.config.latent_dim,)
    assert result.dof == n_good - vae.config.latent_dim - 1


def test_errors_count_the_profiled_background(tmp_path):
    """On a background-dominated spectrum the curvature must include the background's
    profiling: the Hessian's diagonal equals second differences of the statistic itself
    (every value of which profiles the background anew), where autodiff's is larger."""
    from xspecvae.fitting import _hessian, _objective, _spectrum

    path = _simulated(
        tmp_path / "bg.h5",
        [TRUE["powerlaw"]],
        arf=lambda e: np.full(e.shape, 500.0),
        exposure=20e3,
        alpha=0.5,
        background=400.0,
        seed=8,
    )
    with Pack(path) as p:
        result = fit(p, 0, "powerlaw")
        p_ = result.parameters
        theta = np.array([np.log(p_["nh"]), p_["gamma"], np.log(p_["norm"])])
        with jax.enable_x64(True):
            data = _spectrum(p, 0, CrossSection.morrison_mccammon())
            objective = _objective(MODELS["powerlaw"].counts, "wstat")
            hessian = _hessian(objective, theta, data)
            held = np.asarray(jax.hessian(objective.statistic)(jax.numpy.asarray(theta), data))

            def w(t):
                return float(objective.statistic(jax.numpy.asarray(t), data))

            h = 1e-3
            for i in range(3):
                step = np.eye(3)[i] * h
                curvature = (w(theta + step) - 2 * w(theta) + w(theta - step)) / h**2
                np.testing.assert_allclose(hessian[i, i], curvature, rtol=1e-3)
            assert held[2, 2] > 1.05 * hessian[2, 2]  # the background held fixed: too curved
    assert all(np.isfinite(e) and e > 0 for e in result.errors.values())
