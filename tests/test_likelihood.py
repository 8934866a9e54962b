"""Likelihood (W-statistic, C-statistic, PoissonPair) against XSPEC's formulas and scipy."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest
from numpyro.infer.util import log_density
from scipy.special import gammaln
from scipy.stats import poisson

from xspecvae.likelihood import PoissonPair, cstat, profile_background, wstat, wstat_value


def xspec_w(S, B, t_s, t_b, m):
    """XSPEC manual, Appendix B, "Poisson data with Poisson background (cstat)", per bin.

    S, B: source and background counts; t_s, t_b: exposure (x area) times; m: model source
    rate. Returns W_i such that W = sum_i W_i (the manual's 2 included).
    """
    S, B, t_s, t_b, m = np.broadcast_arrays(
        *(np.asarray(x, np.float64) for x in (S, B, t_s, t_b, m))
    )
    t = t_s + t_b
    out = np.empty(S.shape)
    for i in np.ndindex(S.shape):
        s, b, ts, tb, mi, tt = S[i], B[i], t_s[i], t_b[i], m[i], t[i]
        if s == 0:
            w = ts * mi - b * np.log(tb / tt)
        elif b == 0:
            if mi < s / tt:
                w = -tb * mi - s * np.log(ts / tt)
            else:
                w = ts * mi + s * (np.log(s) - np.log(ts * mi) - 1)
        else:
            d = np.sqrt((tt * mi - s - b) ** 2 + 4 * tt * b * mi)
            f = (s + b - tt * mi + d) / (2 * tt)
            w = (
                ts * mi
                + tt * f
                - s * np.log(ts * mi + ts * f)
                - b * np.log(tb * f)
                - s * (1 - np.log(s))
                - b * (1 - np.log(b))
            )
        out[i] = 2 * w
    return out


def random_channels(rng, size):
    """Counts with many zeros, small and large; alpha in [0.01, 10]; s in [1e-6, 1e4]."""

    def counts():
        lam = 10 ** rng.uniform(-1, 4, size)
        return np.where(rng.random(size) < 0.35, 0, rng.poisson(lam)).astype(float)

    s = 10 ** rng.uniform(-6, 4, size)
    alpha = 10 ** rng.uniform(-2, 1, size)
    return s, alpha, counts(), counts()


def test_wstat_value_matches_xspec_formula():
    rng = np.random.default_rng(1)
    s, alpha, n, b = random_channels(rng, (4, 500))
    # XSPEC's variables: any t_s, then t_b = t_s / alpha and m = s / t_s.
    t_s = 10 ** rng.uniform(2, 5, s.shape)
    t_b, m = t_s / alpha, s / t_s
    ref = xspec_w(n, b, t_s, t_b, m)
    # every branch of the manual's formula is exercised
    assert (n == 0).sum() > 100 and (b == 0).sum() > 100
    assert ((b == 0) & (n > 0) & (m < n / (t_s + t_b))).sum() > 20
    assert ((b == 0) & (n > 0) & (m >= n / (t_s + t_b))).sum() > 20
    with jax.enable_x64(True):
        per_source = np.asarray(wstat_value(s, alpha, n, b))
        per_channel = np.asarray(
            wstat_value(s[..., None], alpha[..., None], n[..., None], b[..., None])
        )
    assert per_source.shape == (4,)
    np.testing.assert_allclose(per_source, ref.sum(-1), rtol=1e-6)
    np.testing.assert_allclose(per_channel, ref, rtol=1e-6, atol=1e-8)


def model_channels(rng, size):
    """Counts drawn around a model: s in [1e-2, 1e3], alpha in [0.01, 10], mu_b in [1e-2, 1e3]."""
    s = 10 ** rng.uniform(-2, 3, size)
    alpha, mu_b = 10 ** rng.uniform(-2, 1, size), 10 ** rng.uniform(-2, 3, size)
    return s, alpha, rng.poisson(s + alpha * mu_b) * 1.0, rng.poisson(mu_b) * 1.0


def test_wstat_value_float32_accuracy():
    # a good fit (W ~ number of channels): float32 keeps W to ~1e-5 relative
    rng = np.random.default_rng(2)
    s, alpha, n, b = model_channels(rng, (4, 1000))
    ref = xspec_w(n, b, 1.0, 1.0 / alpha, s).sum(-1)
    assert np.all(np.abs(ref / 1000 - 1) < 0.2)
    got = np.asarray(wstat_value(*(jnp.asarray(x, jnp.float32) for x in (s, alpha, n, b))))
    np.testing.assert_allclose(got, ref, rtol=2e-5)


def test_deviance_is_log_prob_ratio_to_saturated():
    rng = np.random.default_rng(3)
    s, alpha, n, b = random_channels(rng, (3, 200))
    with jax.enable_x64(True):
        d = wstat(s, alpha, n, b)
        v = jnp.stack([n, b], -1)
        saturated = PoissonPair(jnp.zeros_like(s), jnp.zeros_like(s), b)  # rates = (0, b)
        sat_lp = saturated.log_prob(jnp.stack([jnp.zeros_like(n), b], -1)) + poisson.logpmf(
            n, n
        ).sum(-1)
        np.testing.assert_allclose(d.deviance(v), -2 * (d.log_prob(v) - sat_lp), rtol=1e-9)


def test_profile_background_is_the_maximiser():
    rng = np.random.default_rng(4)
    s, alpha, n, b = random_channels(rng, (3000,))
    s[:300] = 0.0
    alpha[300:600] = 0.0
    with jax.enable_x64(True):
        mu = profile_background(s, alpha, n, b)
        v = jnp.stack([n, b], -1)[:, None]

        def lp(mu_b):
            return PoissonPair(s[:, None], alpha[:, None], mu_b[:, None]).log_prob(v)

        best = lp(mu)
        for f in (1 - 1e-3, 1 + 1e-3):
            assert np.all(best >= lp(mu * f) - 1e-12 * np.abs(best))
    np.testing.assert_array_equal(mu[300:600], b[300:600])  # alpha = 0: mu_b = b
    np.testing.assert_allclose(mu[:300], (n + b)[:300] / (1 + alpha[:300]), rtol=1e-12)


def test_profile_background_float32_stable_and_finite():
    rng = np.random.default_rng(5)
    s, alpha, n, b = random_channels(rng, (5000,))
    # cancellation-prone corner of the naive root: q << 0, small b s
    s[:50], alpha[:50], n[:50], b[:50] = 1e4, 1.0, 0.0, 1.0
    with jax.enable_x64(True):
        ref = np.asarray(profile_background(s, alpha, n, b))
    got = np.asarray(profile_background(*(jnp.asarray(x, jnp.float32) for x in (s, alpha, n, b))))
    assert np.all(np.isfinite(got)) and np.all(got >= 0)
    np.testing.assert_allclose(got, ref, rtol=5e-5, atol=1e-30)
    grid = np.array([0.0, 1e-8, 1.0, 1e4], np.float32)
    mesh = [g.ravel() for g in np.meshgrid(grid, grid, grid, grid)]
    assert np.all(np.isfinite(profile_background(*mesh)))
    assert np.all(np.isfinite(wstat_value(*(m[:, None] for m in mesh))))


def test_gradient_matches_finite_difference_of_profile_likelihood():
    rng = np.random.default_rng(6)
    s, alpha, n, b = model_channels(rng, (400,))
    assert (n == 0).sum() > 10 and (b == 0).sum() > 10
    with jax.enable_x64(True):
        v = jnp.stack([n, b], -1)[:, None]

        def loglik(s_):  # per-channel log-likelihood, background fully profiled
            return wstat(s_[:, None], alpha[:, None], n[:, None], b[:, None]).log_prob(v)

        def half_w(s_):  # same s-dependence, without the large lgamma constants (for FD)
            return -0.5 * wstat(s_[:, None], alpha[:, None], n[:, None], b[:, None]).deviance(v)

        grad = jax.grad(lambda s_: loglik(s_).sum())(jnp.asarray(s))
        h = 1e-4 * s
        fd = (half_w(s + h) - half_w(s - h)) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-8)


def test_cstat_is_cash_without_background():
    rng = np.random.default_rng(7)
    s, alpha, n, b = random_channels(rng, (2, 300))

    def cash(S, tm):  # XSPEC manual, "Poisson data (cstat)"
        return 2 * np.sum(tm - S + np.where(S > 0, S * (np.log(np.maximum(S, 1)) - np.log(tm)), 0))

    with jax.enable_x64(True):
        v = jnp.stack([n, b], -1)
        no_bkg = cstat(s, alpha, n, np.zeros_like(b)).deviance(jnp.stack([n, 0 * b], -1))
        zero_alpha = cstat(s, 0.0, n, b).deviance(v)
        known = cstat(s, alpha, n, b)
        lp = known.log_prob(v)
    for i in range(2):
        np.testing.assert_allclose(no_bkg[i], cash(n[i], s[i]), rtol=1e-9)
        np.testing.assert_allclose(zero_alpha[i], cash(n[i], s[i]), rtol=1e-9)
    ref = poisson.logpmf(n, s + alpha * b).sum(-1) + poisson.logpmf(b, b).sum(-1)
    np.testing.assert_allclose(lp, ref, rtol=1e-10)
    assert known.batch_shape == (2,) and known.event_shape == (300, 2)


def test_sample_shapes_and_means():
    src = jnp.array([[0.5, 3.0, 40.0], [0.0, 1.0, 2.0]])
    alpha = jnp.array([[0.1, 1.0, 2.0], [0.5, 0.0, 0.2]])
    mu_b = jnp.array([[2.0, 0.5, 10.0], [4.0, 7.0, 0.0]])
    d = PoissonPair(src, alpha, mu_b)
    assert d.batch_shape == (2,) and d.event_shape == (3, 2)
    x = d.sample(jax.random.key(0), (20000,))
    assert x.shape == (20000, 2, 3, 2) and x.dtype == jnp.float32
    rates = jnp.stack([src + alpha * mu_b, mu_b], -1)
    sigma = jnp.sqrt(rates / x.shape[0])
    assert np.all(np.abs(x.mean(0) - rates) <= 5 * sigma + 1e-6)
    assert np.all(x[..., 1, 2, 1] == 0)  # zero rate -> zero counts


def test_mask_zeroes_bad_channels():
    rng = np.random.default_rng(8)
    s, alpha, n, b = random_channels(rng, (2, 50))
    good = rng.random((2, 50)) < 0.7
    s_bad = np.where(good, s, 1e30)  # whatever sits in bad channels is ignored
    v = jnp.stack([n, b], -1)
    masked = wstat(s_bad, alpha, n, b, good=good)
    per_channel = wstat(s[..., None], alpha[..., None], n[..., None], b[..., None]).log_prob(
        v[..., None, :]
    )
    np.testing.assert_allclose(
        masked.log_prob(v), np.where(good, per_channel, 0).sum(-1), rtol=1e-5
    )
    w = np.asarray(wstat_value(s[..., None], alpha[..., None], n[..., None], b[..., None]))
    np.testing.assert_allclose(masked.deviance(v), np.where(good, w, 0).sum(-1), rtol=1e-5)


def test_plate_and_log_density():
    rng = np.random.default_rng(9)
    s, alpha, n, b = random_channels(rng, (5, 30))
    obs = jnp.stack([n, b], -1)

    def model(likelihood):
        with numpyro.plate("sources", 5):
            numpyro.sample("counts", likelihood(s, alpha, n, b), obs=obs)

    for likelihood in (wstat, cstat):
        total, trace = log_density(model, (likelihood,), {}, {})
        np.testing.assert_allclose(total, likelihood(s, alpha, n, b).log_prob(obs).sum(), rtol=1e-6)
        assert trace["counts"]["fn"].batch_shape == (5,)
    # posterior predictive draws through the plate
    pred = numpyro.infer.Predictive(lambda: model(wstat), num_samples=3)
    assert pred(jax.random.key(1))["counts"].shape == (3, 5, 30, 2)


@pytest.mark.parametrize("likelihood", [wstat, cstat])
def test_slightly_negative_source_is_finite(likelihood):
    s = jnp.array([-1e-3, -1e-7, 0.0, -1e-3, -1e-3, 2.0])
    alpha = jnp.array([0.5, 0.0, 0.5, 0.0, 1.0, 0.3])
    n = jnp.array([3.0, 1.0, 2.0, 0.0, 0.0, 1.0])
    b = jnp.array([0.0, 0.0, 0.0, 0.0, 0.0, 4.0])
    v = jnp.stack([n, b], -1)

    def lp(s_):
        return likelihood(s_, alpha, n, b).log_prob(v)

    assert np.isfinite(lp(s))
    assert np.all(np.isfinite(jax.grad(lp)(s)))
    assert np.isfinite(likelihood(s, alpha, n, b).deviance(v))


def test_float_counts_non_integer_tolerated():
    d = PoissonPair(jnp.array([2.0]), jnp.array([0.5]), jnp.array([3.0]))
    lp = d.log_prob(jnp.array([[2.5, 3.0]]))  # no support check: continuous extension
    ref = 2.5 * np.log(3.5) - 3.5 - gammaln(3.5) + poisson.logpmf(3, 3.0)
    np.testing.assert_allclose(lp, ref, rtol=1e-6)


@pytest.mark.parametrize("likelihood", [wstat, cstat])
def test_deviance_gradient_is_finite_with_empty_channels(likelihood):
    """Fits minimise the deviance directly: channels with n = 0 or b = 0 must not give NaN."""
    n = jnp.array([0.0, 3.0, 0.0, 7.0])
    b = jnp.array([0.0, 0.0, 2.0, 1.0])
    alpha = jnp.full(4, 0.2)
    v = jnp.stack([n, b], -1)

    def deviance(s):
        return likelihood(s, alpha, n, b).deviance(v)

    s = jnp.array([0.5, 2.0, 1e-3, 6.0])
    grad = jax.grad(deviance)(s)
    step = 1e-3
    numeric = [
        (deviance(s.at[i].add(step)) - deviance(s.at[i].add(-step))) / (2 * step) for i in range(4)
    ]
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad, numeric, rtol=2e-2, atol=1e-3)
