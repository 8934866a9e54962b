"""DeepONet decoder and MixerEncoder: shapes, ranges, redshift interpolation, gradients."""

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from xspecvae.networks import LINE_EW_UNIT, LINES, DeepONet, MixerEncoder

LATENT = 6


def log_grid(n, lo=0.2, hi=12.0):
    return jnp.linspace(math.log(lo), math.log(hi), n)


def latents(batch):
    return jax.random.normal(jax.random.key(batch), (batch, LATENT))


def inputs(batch, n_channels, n_global=3):
    k1, k2 = jax.random.split(jax.random.key(batch * 1000 + n_channels))
    return jax.random.normal(k1, (batch, n_channels, 2)), jax.random.normal(k2, (batch, n_global))


def jit_apply(net):
    return jax.jit(net.apply, static_argnames="method")


@pytest.fixture(scope="module")
def dec():
    """Default DeepONet and its parameters (which depend on the latent size only)."""
    net = DeepONet()
    return net, jax.jit(net.init)(jax.random.key(0), latents(2), log_grid(10)), jit_apply(net)


@pytest.fixture(scope="module")
def enc():
    """Default MixerEncoder initialised for 69 channels (18 tokens, as for 70-72 channels)."""
    net = MixerEncoder()
    return net, jax.jit(net.init)(jax.random.key(0), *inputs(2, 69)), jit_apply(net)


def fit(loss, params, steps=50, lr=1e-2):
    """Adam on ``loss``; returns the first and last loss and the first gradients."""
    opt = optax.adam(lr)

    @jax.jit
    def step(p, s):
        value, grads = jax.value_and_grad(loss)(p)
        updates, s = opt.update(grads, s, p)
        return optax.apply_updates(p, updates), s, value, grads

    params, state, first, grads = step(params, opt.init(params))
    for _ in range(steps):
        params, state, last, _ = step(params, state)
    return float(first), float(last), grads


def assert_finite_and_used(grads):
    leaves = jax.tree.leaves(grads)
    assert leaves
    for g in leaves:
        assert np.all(np.isfinite(g)) and np.any(g != 0)


@pytest.mark.parametrize("batch,n_energy", [(1, 7), (4, 1160), (8, 300)])
def test_decoder_shapes_and_ranges(dec, batch, n_energy):
    net, params, apply = dec
    log_energy = log_grid(n_energy)
    out = apply(params, latents(batch), log_energy)
    assert out.emission.shape == (batch, n_energy)
    assert out.coefficients.shape == (batch, net.n_templates)
    assert out.nh.shape == out.redshift.shape == (batch,)
    for a in out:
        assert np.all(np.isfinite(a))
    assert np.all(out.emission >= 0) and np.all(out.coefficients >= 0) and np.all(out.nh >= 0)
    assert np.all((out.redshift >= 0) & (out.redshift <= net.max_redshift))
    templates = apply(params, log_energy, method=DeepONet.templates)
    assert templates.shape == (n_energy, net.n_templates) and np.all(templates >= 0)


def test_decoder_initial_output_is_smooth_positive_and_order_one(dec):
    net, params, apply = dec
    out = apply(params, latents(4), log_grid(1160))
    assert np.all(out.emission > 1e-2) and np.all(out.emission < 1e2)
    # Smooth: adjacent points of a fine grid (1160 points over 0.2-12 keV) differ by < 1%.
    assert np.max(np.abs(np.diff(np.log(out.emission), axis=1))) < 1e-2
    assert 0.03 < float(jnp.median(out.nh)) < 3.0
    assert float(out.redshift.max()) < 0.05  # Galactic until the data say otherwise


def wiggly(params):
    """Parameters whose trunk templates vary strongly with energy (as after training)."""
    trunk = dict(params["params"]["trunk"])
    for layer in ("Dense_0", "Dense_3"):
        trunk[layer] = jax.tree.map(lambda x: 3.0 * x, trunk[layer])
    return {"params": {**params["params"], "trunk": trunk}}


def test_redshift_is_a_shift_of_the_rest_frame_templates(dec):
    _, params, _ = dec
    net = DeepONet(redshift_offset=-2.0)  # redshifts of 0.1-1 at initialisation
    apply = jit_apply(net)
    params, log_energy = wiggly(params), log_grid(300)
    out = apply(params, latents(8), log_energy)
    assert float(out.redshift.max()) > 0.1  # the check below is not vacuous
    shifted = log_energy[None, :] + jnp.log1p(out.redshift)[:, None]
    assert float(shifted.max()) < net.log_energy_range[1]  # inside the trunk grid
    t = apply(params, shifted, method=DeepONet.templates)  # (8, 300, K)
    expected = jnp.einsum("bek,bk->be", t, out.coefficients)
    np.testing.assert_allclose(out.emission, expected, rtol=1e-3)
    # The unshifted templates do not match: the shift matters at this precision.
    rest = out.coefficients @ apply(params, log_energy, method=DeepONet.templates).T
    assert np.max(np.abs(rest / out.emission - 1)) > 1e-2


def test_zero_max_redshift_is_a_plain_interpolation(dec):
    _, params, _ = dec
    net, params, log_energy = DeepONet(max_redshift=0.0), wiggly(params), log_grid(300)
    out = jax.jit(net.apply)(params, latents(8), log_energy)
    np.testing.assert_array_equal(out.redshift, 0.0)
    t = jax.jit(partial(net.apply, method=DeepONet.templates))(params, log_energy)
    np.testing.assert_allclose(out.emission, out.coefficients @ t.T, rtol=1e-3)


@pytest.mark.parametrize("energy", [6.4, 0.727, 0.368], ids=["Fe K-alpha", "Fe XVII", "C VI"])
def test_lines_are_narrow_at_their_redshifted_energy_with_the_flux_of_their_width(energy):
    """A line of equivalent width W (rest frame) on a continuum of density c at its energy:
    flux W c / (1 + z) in the observed frame (the continuum is stretched alike), centred at
    E / (1 + z), as narrow as the line width asks (much narrower than the pn resolution); the
    lowest line (C VI) too, at the edge of the lines' grid."""
    net = DeepONet(lines=LINES)
    z = latents(3)
    params = net.init(jax.random.key(1), z, log_grid(10))
    branch = params["params"]["branch"]
    last = sorted(k for k in branch if k.startswith("Dense"))[-1]
    bias = branch[last]["bias"]
    fe = LINES.index(energy)
    k = net.n_templates
    bias = bias.at[k + 2 :].set(-30.0).at[k + 2 + fe].set(33.0)  # that line only, 3 keV EW
    kernel = branch[last]["kernel"].at[:, k + 2 :].set(0.0)  # line outputs: their bias alone
    params = {
        "params": {**params["params"], "branch": {**branch, last: {"kernel": kernel, "bias": bias}}}
    }
    edges = np.geomspace(0.2, 12.0, 4001)
    log_centres = jnp.asarray(0.5 * np.log(edges[1:] * edges[:-1]))
    out = jax.jit(net.apply)(params, z, log_centres)
    np.testing.assert_allclose(out.line_ew[:, fe], 30.0 * LINE_EW_UNIT, rtol=1e-5)  # offset -3
    assert np.all(np.delete(out.line_ew, fe, axis=1) < 1e-10)
    shifted = log_centres[None, :] + jnp.log1p(out.redshift)[:, None]
    continuum = jnp.einsum(
        "bek,bk->be", net.apply(params, shifted, method=DeepONet.templates), out.coefficients
    )
    line = np.asarray(out.emission - continuum) * np.diff(edges)  # flux per bin
    at = net.apply(params, jnp.full((1,), math.log(energy)), method=DeepONet.templates)[0]
    density = np.asarray(out.coefficients @ at)  # rest-frame continuum at the line
    centre = energy / (1 + np.asarray(out.redshift))
    near = np.abs(np.sqrt(edges[1:] * edges[:-1])[None] - centre[:, None]) < 0.05 * centre[:, None]
    np.testing.assert_allclose((line * near).sum(1), 3.0 * density / (1 + out.redshift), rtol=2e-3)
    assert np.all(np.abs(line * ~near).sum(1) < 1e-3 * (line * near).sum(1))
    mean = (line * np.sqrt(edges[1:] * edges[:-1])).sum(1) / line.sum(1)
    np.testing.assert_allclose(mean, centre, rtol=1e-3)
    spread = np.sqrt(
        (line * np.log(np.sqrt(edges[1:] * edges[:-1]) / centre[:, None]) ** 2).sum(1) / line.sum(1)
    )
    np.testing.assert_allclose(spread, net.line_width, rtol=0.05)  # 26 eV at 6.4 keV, 1.5 at C VI


@pytest.mark.parametrize("batch,n_channels", [(1, 70), (5, 69), (5, 72)])
def test_encoder_shapes_and_scales(enc, batch, n_channels):
    net, params, apply = enc
    out = apply(params, *inputs(batch, n_channels))
    assert out.z_loc.shape == out.z_scale.shape == (batch, net.latent_dim)
    assert out.norm_loc.shape == out.norm_scale.shape == (batch,)
    for a in out:
        assert np.all(np.isfinite(a))
    assert np.all(out.z_scale >= net.min_scale) and np.all(out.norm_scale >= net.min_scale)


def test_encoder_padding_is_zeros_at_the_end(enc):
    _, params, apply = enc
    channels, globals_ = inputs(5, 69)
    padded = jnp.pad(channels, ((0, 0), (0, 3), (0, 0)))  # 72 channels, same 18 tokens
    a = apply(params, channels, globals_)
    b = apply(params, padded, globals_)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-6)
    # Non-zero padding would change the result: the padded channels are read.
    c = apply(params, padded.at[:, -1].set(1.0), globals_)
    assert not np.allclose(a.z_loc, c.z_loc, atol=1e-4)


def test_networks_act_per_source(enc, dec):
    (_, eparams, eapply), (_, dparams, dapply) = enc, dec
    perm = jnp.array([3, 0, 4, 1, 2])
    channels, globals_ = inputs(5, 72)
    a = eapply(eparams, channels, globals_)
    b = eapply(eparams, channels[perm], globals_[perm])
    for x, y in zip(a, b):
        np.testing.assert_allclose(x[perm], y, rtol=1e-5, atol=1e-6)
    perm = jnp.array([3, 0, 7, 4, 1, 6, 2, 5])
    z, log_energy = latents(8), log_grid(300)
    a = dapply(dparams, z, log_energy)
    b = dapply(dparams, z[perm], log_energy)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x[perm], y, rtol=1e-5, atol=1e-7)


def test_decoder_gradients_and_learning_power_laws(dec):
    _, params, apply = dec
    log_energy = log_grid(100)
    gamma = jnp.linspace(0.5, 3.0, 16)
    z = jnp.zeros((16, LATENT)).at[:, 0].set(gamma - 1.75)
    target = -gamma[:, None] * log_energy[None, :]  # log of E^-gamma

    def loss(p):
        out = apply(p, z, log_energy)
        residual = jnp.log(out.emission) - target
        residual = residual - residual.mean(axis=1, keepdims=True)  # shape only
        return jnp.mean(residual**2) + 1e-3 * jnp.mean(out.nh + out.redshift)

    first, last, grads = fit(loss, params)
    assert_finite_and_used(grads)
    assert last < 0.2 * first


def test_encoder_gradients_and_learning_a_regression(enc):
    _, params, apply = enc
    channels, globals_ = inputs(32, 69)
    target = channels[:, :, 0].mean(axis=1, keepdims=True) + globals_[:, :1]

    def loss(p):
        out = apply(p, channels, globals_)
        scales = jnp.mean(jnp.log(out.z_scale)) + jnp.mean(jnp.log(out.norm_scale))
        return jnp.mean((out.z_loc - target) ** 2) + jnp.mean((out.norm_loc - 1) ** 2) + scales**2

    first, last, grads = fit(loss, params)
    assert_finite_and_used(grads)
    assert last < 0.2 * first


def test_min_scale_is_a_floor(enc):
    net, params, apply = enc
    x = inputs(5, 69)
    floored = jit_apply(MixerEncoder(min_scale=2.0))(params, *x)
    assert np.all(floored.z_scale >= 2.0) and np.all(floored.norm_scale >= 2.0)
    out = apply(params, *x)
    np.testing.assert_allclose(floored.z_scale - out.z_scale, 2.0 - net.min_scale, rtol=1e-5)
