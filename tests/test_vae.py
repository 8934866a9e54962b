"""The generative model and the guide: folding per source, the flux scale, the numpyro sites,
and the pure-JAX VAE agreeing with what SVI trains."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest
from numpyro import handlers
from numpyro.infer.util import log_density

from xspecvae.likelihood import cstat, wstat
from xspecvae.networks import DecoderOutput
from xspecvae.vae import (
    VAE,
    Config,
    ModelArrays,
    expected_counts,
    guide,
    model,
    photon_flux,
    rough_log_rate,
    thin,
    thinned_copies,
)

# without lines: the refinement's curvature is checked against the exact one (below), which
# the Gauss-Newton approximation matches for this smooth decoder
SMALL = Config(
    n_templates=4, decoder_width=16, decoder_depth=1, encoder_width=8, encoder_blocks=1, lines=False
)
E, C, R, B = 60, 12, 2, 5


@pytest.fixture(scope="module")
def inst():
    rng = np.random.default_rng(0)
    edges = np.geomspace(0.2, 12.0, E + 1)
    rmf = rng.uniform(0, 1, (R, E, C)) * (rng.uniform(0, 1, (R, E, C)) < 0.4)
    sigma = 2e-22 * (edges[:-1] / 1.0) ** -2.5 * 1e22
    return ModelArrays(
        jnp.asarray(edges, jnp.float32),
        jnp.asarray(sigma, jnp.float32),
        jnp.asarray(rmf, jnp.float32),
        jnp.asarray(np.linspace(10.0, 400.0, E), jnp.float32),
        jnp.asarray([-4.0, 2.0]),
    )


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(1)
    good = np.ones((B, C), bool)
    good[:, 0] = False
    return {
        "counts": jnp.asarray(rng.poisson(20, (B, C)), jnp.float32),
        "background": jnp.asarray(rng.poisson(5, (B, C)), jnp.float32),
        "alpha": jnp.full((B, C), 0.2),
        "good": jnp.asarray(good),
        "exposure": jnp.asarray(rng.uniform(1e4, 5e4, B)),
        "arf": jnp.asarray(rng.uniform(50, 500, (B, E)), jnp.float32),
        "rmf_index": jnp.asarray([0, 1, 1, 0, 1], jnp.int32),
    }


def test_each_source_is_folded_through_its_own_rmf_arf_and_exposure(inst, batch):
    flux = np.random.default_rng(2).uniform(0, 1e-4, (B, E))
    got = np.asarray(expected_counts(jnp.asarray(flux, jnp.float32), batch, inst))
    rmf, arf = np.asarray(inst.rmf, np.float64), np.asarray(batch["arf"], np.float64)
    exposure, index = np.asarray(batch["exposure"]), np.asarray(batch["rmf_index"])
    ref = np.stack([exposure[i] * (flux[i] * arf[i]) @ rmf[index[i]] for i in range(B)])
    np.testing.assert_allclose(got, ref, rtol=1e-5)


def test_photon_flux_gives_the_count_rate_through_the_reference_area(inst):
    emission = jnp.ones((2, E))
    nh = jnp.asarray([0.0, 1.0])
    decoded = DecoderOutput(emission, jnp.ones((2, 3)), nh, jnp.zeros(2), jnp.zeros((2, 0)))
    log_norm = jnp.asarray([-3.0, -5.0])
    flux = np.asarray(photon_flux(decoded, log_norm, inst), np.float64)
    area = np.asarray(inst.area, np.float64)
    np.testing.assert_allclose(flux @ area, np.exp([-3.0, -5.0]), rtol=1e-5)
    widths = np.diff(np.asarray(inst.energy_edges, np.float64))
    np.testing.assert_allclose(flux[0] / flux[0].sum(), widths / widths.sum(), rtol=1e-5)
    shares = flux / flux.sum(1, keepdims=True)
    assert shares[1, 0] < 0.5 * shares[0, 0] and shares[1, -1] > shares[0, -1]


def test_rough_log_rate_counts_good_channels_only(batch):
    expected = np.log(np.asarray(batch["counts"])[:, 1:].sum(1) / np.asarray(batch["exposure"]))
    np.testing.assert_allclose(rough_log_rate(batch), expected, rtol=1e-5)


def trained_params(inst, batch, config):
    """SVI parameters after initialisation (the values do not matter for these tests), the
    initial pass compiled as ``train`` does it."""
    svi = numpyro.infer.SVI(
        lambda b: model(b, inst, config, 100),
        lambda b: guide(b, inst, config, 100),
        numpyro.optim.Adam(1e-3),
        numpyro.infer.TraceMeanField_ELBO(),
    )
    return svi.get_params(jax.jit(svi.init)(jax.random.key(0), batch))


@pytest.fixture(scope="module")
def small_params(inst, batch):
    return trained_params(inst, batch, SMALL)


@pytest.mark.parametrize("likelihood", ["wstat", "cstat"])
def test_sites_subsampling_and_the_pure_vae_agree(inst, batch, likelihood):
    config = Config(**{**SMALL.__dict__, "likelihood": likelihood})
    params = trained_params(inst, batch, config)
    vae = VAE(config, params, inst).with_refinement(0)  # the guide: the encoder alone

    guided = handlers.trace(handlers.seed(handlers.substitute(guide, params), 3)).get_trace(
        batch, inst, config, 100
    )
    q = vae.posterior(batch)
    np.testing.assert_allclose(guided["z"]["fn"].base_dist.loc, q.z_loc, rtol=1e-6)
    np.testing.assert_allclose(guided["log_norm"]["fn"].loc, q.norm_loc, rtol=1e-6)
    assert guided["z"]["value"].shape == (B, config.latent_dim)

    latents = {"z": guided["z"]["value"], "log_norm": guided["log_norm"]["value"]}
    conditioned = handlers.seed(handlers.condition(handlers.substitute(model, params), latents), 0)
    lp, trace = log_density(conditioned, (batch, inst, config, 100), {}, {})
    site = trace["counts"]
    _, source = vae.decode(latents["z"], latents["log_norm"], batch)
    law = {"wstat": wstat, "cstat": cstat}[likelihood]
    expected = law(source, batch["alpha"], batch["counts"], batch["background"], batch["good"])
    obs = jnp.stack([batch["counts"], batch["background"]], -1)
    np.testing.assert_allclose(site["fn"].log_prob(obs), expected.log_prob(obs), rtol=1e-5)
    if likelihood == "cstat":
        np.testing.assert_array_equal(site["fn"].background, batch["background"])
    assert site["scale"] == pytest.approx(100 / B)  # minibatch of 5 out of 100 sources
    priors = (
        jax.scipy.stats.norm.logpdf(latents["z"]).sum()
        + jax.scipy.stats.norm.logpdf(latents["log_norm"], *inst.norm_prior).sum()
    )
    np.testing.assert_allclose(lp, 100 / B * (priors + expected.log_prob(obs).sum()), rtol=1e-5)


def test_kl_weight_scales_the_latent_terms_only(inst, batch, small_params):
    params = small_params
    trace = handlers.trace(handlers.seed(handlers.substitute(model, params), 0)).get_trace(
        batch, inst, SMALL, 100, kl_weight=0.25
    )
    assert trace["z"]["scale"] == pytest.approx(0.25 * 100 / B)
    assert trace["counts"]["scale"] == pytest.approx(100 / B)


def test_config_and_rmfs_are_checked(inst, batch, small_params):
    with pytest.raises(ValueError, match="likelihood must be one of"):
        Config(likelihood="chi2")
    vae = VAE(SMALL, small_params, inst)
    assert vae.with_rmfs(np.zeros((3, E, C))).inst.rmf.shape == (3, E, C)
    assert vae.with_rmfs(np.asarray(inst.rmf)) is vae  # the same RMFs: the same VAE
    with pytest.raises(ValueError, match="RMFs of shape"):
        vae.with_rmfs(np.zeros((1, E, C + 1)))


def test_free_bits_charge_the_shortfall_of_each_dimension(inst, batch, small_params):
    params = small_params
    q = VAE(SMALL, params, inst).with_refinement(0).posterior(batch)
    kl = np.mean(0.5 * (q.z_loc**2 + q.z_scale**2 - 1) - np.log(q.z_scale), 0)  # (D,)

    def factor(free_bits, kl_weight=1.0):
        traced = handlers.trace(handlers.seed(handlers.substitute(guide, params), 0))
        site = traced.get_trace(batch, inst, SMALL, 100, kl_weight, free_bits)["free_bits"]
        return float(site["fn"].log_prob(site["value"]))

    assert factor(0.0) == 0.0
    for bits in (float(kl.min()) + 1e-3, float(kl.max()) + 1.0):
        expected = 100 * np.clip(bits - kl, 0, None).sum()
        np.testing.assert_allclose(factor(bits), expected, rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(factor(bits, 0.5), 0.5 * expected, rtol=1e-4, atol=1e-3)


def negative_elbo(vae, batch, q, n_draws=256, seed=11):
    """-ELBO per source (B,) up to a constant: Monte Carlo deviance / 2 + analytic KL, of the
    posterior's diagonal Gaussian (``conditional``)."""
    d = vae.config.latent_dim
    eps = jax.random.normal(jax.random.key(seed), (n_draws, d + 1))
    loc = jnp.concatenate([q.z_loc, q.norm_loc[:, None]], -1)

    @jax.jit
    @jax.vmap
    def deviance(e):
        x = loc + q.conditional * e
        _, source = vae.decode(x[:, :d], x[:, d], batch)
        fit = wstat(source, batch["alpha"], batch["counts"], batch["background"], batch["good"])
        return fit.deviance(jnp.stack([batch["counts"], batch["background"]], -1))

    m, s = np.asarray(vae.inst.norm_prior, np.float64)
    scale = np.asarray(q.conditional, np.float64)
    zs, ns = scale[:, :d], scale[:, d]
    kl = 0.5 * np.sum(np.asarray(q.z_loc) ** 2 + zs**2 - 1, 1) - np.sum(np.log(zs), 1)
    nl = np.asarray(q.norm_loc, np.float64)
    kl += np.log(s / ns) + (ns**2 + (nl - m) ** 2) / (2 * s**2) - 0.5
    return 0.5 * np.mean(deviance(eps), 0) + kl


def test_refined_posteriors_fit_better_than_the_encoders(inst, batch, small_params):
    """Semi-amortized inference: every source's ELBO rises (judged on draws the refinement did
    not use), a source's result does not depend on the rest of its batch, and 0 steps is the
    encoder alone."""
    vae = VAE(SMALL, small_params, inst).with_refinement(0)
    assert vae.with_refinement(0) is vae
    refined = vae.with_refinement(60)
    posterior = jax.jit(refined.posterior)
    q0, q1 = jax.jit(vae.posterior)(batch), posterior(batch)
    before, after = negative_elbo(vae, batch, q0), negative_elbo(vae, batch, q1)
    assert np.all(after <= before + 0.05)
    assert np.mean(before - after) > 1.0  # an untrained encoder leaves much to gain
    alone = posterior({k: v[2:3] for k, v in batch.items()})
    # float32 reductions are ordered differently for a batch of one and of many, and 60 steps
    # carry that rounding along (6e-4 seen on one CPU, 0 on another); a source coupled to its
    # batch would move by the size of a step, orders of magnitude more
    np.testing.assert_allclose(alone.z_loc[0], q1.z_loc[2], rtol=1e-3, atol=2e-3)
    np.testing.assert_allclose(alone.z_scale[0], q1.z_scale[2], rtol=1e-3, atol=2e-3)
    np.testing.assert_allclose(alone.conditional[0], q1.conditional[2], rtol=1e-3, atol=2e-3)


def test_refinement_finds_the_maximum_a_posteriori_and_its_curvature(inst, batch, small_params):
    """The refined locations are the maxima of each source's posterior density found by an
    independent optimiser (scipy's BFGS on the same negative log posterior); the draws' scales
    are the inverse square roots of its curvature's diagonal there and the marginal standard
    deviations the square roots of its inverse's diagonal (the exact Hessian of that
    objective, which the Gauss-Newton curvature approximates for a Poisson likelihood)."""
    from scipy.optimize import minimize

    vae = VAE(SMALL, small_params, inst).with_refinement(30)
    q = jax.jit(vae.posterior)(batch)
    d = SMALL.latent_dim
    m, s = np.asarray(inst.norm_prior, np.float64)

    def objective(x, one):  # one source's batch, traced: one program for all five
        x = jnp.asarray(x, jnp.float32)[None]
        _, source = vae.decode(x[:, :d], x[:, d], one)
        fit = wstat(source, one["alpha"], one["counts"], one["background"], one["good"])
        deviance = fit.deviance(jnp.stack([one["counts"], one["background"]], -1))[0]
        return 0.5 * deviance + 0.5 * jnp.sum(x[0, :d] ** 2) + 0.5 * (x[0, d] - m) ** 2 / s**2

    value_and_grad = jax.jit(jax.value_and_grad(objective))
    hessian = jax.jit(jax.hessian(objective))
    for i in range(B):
        one = {k: v[i : i + 1] for k, v in batch.items()}
        refined = np.concatenate([q.z_loc[i], q.norm_loc[i : i + 1]]).astype(np.float64)
        fun = lambda x, one=one: tuple(np.asarray(v, np.float64) for v in value_and_grad(x, one))  # noqa: E731
        best = minimize(fun, refined + 0.3, jac=True, method="BFGS", options={"gtol": 1e-4})
        assert float(objective(refined, one)) <= best.fun + 0.01
        np.testing.assert_allclose(refined, best.x, atol=0.02)
        exact = np.asarray(hessian(refined, one), np.float64)
        sd = np.sqrt(np.diag(np.linalg.inv(exact)))
        np.testing.assert_allclose(np.r_[q.z_scale[i], q.norm_scale[i]], sd, rtol=0.1)
        np.testing.assert_allclose(q.conditional[i], np.diag(exact) ** -0.5, rtol=0.1)


def test_thinning_is_a_shorter_exposure_of_the_same_spectrum():
    rng = np.random.default_rng(3)
    rate = np.array([40.0, 400.0, 4000.0, 0.0])
    n = 4000
    batch = {
        "counts": rng.poisson(rate, (n, 4)).astype(np.float32),
        "background": rng.poisson(rate[::-1], (n, 4)).astype(np.float32),
        "exposure": np.full(n, 1e4),
        "alpha": np.full((n, 4), 0.1),
    }
    thinned = {k: np.asarray(v) for k, v in thin(jax.random.key(0), batch, 0.1).items()}
    np.testing.assert_allclose(thinned["exposure"], 1e3)
    assert np.all(thinned["counts"] <= batch["counts"]) and thinned["counts"].dtype == np.float32
    # Poisson with a tenth of the rate: mean and variance both rate / 10
    for name, r in (("counts", rate), ("background", rate[::-1])):
        np.testing.assert_allclose(thinned[name].mean(0), r / 10, rtol=0.05, atol=0.05)
        np.testing.assert_allclose(thinned[name].var(0), r / 10, rtol=0.08, atol=0.05)
    np.testing.assert_array_equal(thinned["alpha"], batch["alpha"])
    per_row = thin(jax.random.key(1), batch, np.linspace(0, 1, n))
    assert per_row["counts"][0].sum() == 0 and per_row["exposure"][-1] == 1e4
    np.testing.assert_array_equal(per_row["counts"][-1], batch["counts"][-1])  # all kept


def test_thinned_copies_span_the_counts_down_to_the_least():
    rng = np.random.default_rng(4)
    n = 2000
    batch = {
        "counts": jnp.asarray(rng.poisson(500.0, (n, 10)), jnp.float32),  # about 5,000 counts
        "background": jnp.zeros((n, 10)),
        "good": jnp.ones((n, 10), bool),
        "exposure": jnp.full(n, 2e4),
    }
    out = thinned_copies(jax.random.key(3), batch, 0.5, least=50.0)
    total = np.asarray(out["counts"]).sum(1)
    changed = np.asarray(out["exposure"]) < 2e4
    assert 0.45 < changed.mean() < 0.55
    np.testing.assert_array_equal(np.asarray(out["counts"])[~changed], batch["counts"][~changed])
    # log-uniform between 50 and 5,000 counts: as many below 500 as above
    assert total[changed].min() >= 20
    assert np.mean(total[changed] < 500) == pytest.approx(0.5, abs=0.06)
    ratio = total[changed] / np.asarray(batch["counts"]).sum(1)[changed]
    thinned = np.asarray(out["exposure"])[changed] / 2e4
    np.testing.assert_allclose(ratio, thinned, rtol=0.5, atol=0.01)
