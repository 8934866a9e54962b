"""Training and encoding throughput of the default VAE, on spectra simulated through the built-in
pn response (84 channels, 1160 model energies), on whatever devices JAX sees.

Run: ``python -m pytest benchmarks``. "SVI step" is one jitted step of ``train``
(:func:`~xspecvae.svi.checked_update`: encoder, decoder, folding, W-stat, analytic KL, free
bits, gradients, Adam, the finiteness check) on a batch already on the device, beside a bare
``svi.update``; "encode" is :func:`xspecvae.latent.encode` over a pack (posterior, decoder at
its mean, fit statistic, HDF5 reads included), with the encoder's posterior alone and refined
as by default. The reference is the floor of any model evaluated on the same spectra: a
dense float32 fold of given fluxes and the Poisson log-likelihood, in numpy.
"""

from functools import partial

import jax
import numpy as np
import pytest
from scipy.special import xlogy

from xspecvae.catalog import PER_SOURCE, Pack
from xspecvae.latent import encode
from xspecvae.simulator import simulate_pack
from xspecvae.svi import TrainOptions, checked_update, make_svi
from xspecvae.vae import VAE, Config, ModelArrays

N = 4096


@pytest.fixture(scope="module")
def pack(tmp_path_factory):
    path = simulate_pack(tmp_path_factory.mktemp("train") / "p.h5", N, seed=5, progress=False)
    with Pack(path) as p:
        yield p


@pytest.fixture(scope="module")
def svi_setup(pack):
    data = pack.load()
    inst = ModelArrays.from_pack(pack, data["arf"].mean(0), [-4.0, 2.0])
    svi = make_svi(inst, Config(), TrainOptions(), N, 10_000)
    return inst, svi, {k: data[k] for k in PER_SOURCE}


@pytest.mark.parametrize("bare", [False, True], ids=["train-step", "bare-update"])
@pytest.mark.parametrize("batch", [256, 1024])
def test_svi_step(benchmark, record, svi_setup, batch, bare):
    """``train``'s step, and beside it a bare ``svi.update`` (no KL weight, free bits or
    finiteness check): what those cost."""
    _, svi, data = svi_setup
    rows = {k: jax.device_put(v[:batch]) for k, v in data.items()}
    if bare:
        update, args = jax.jit(svi.update), ()
    else:  # the KL weight after its warm-up, the default free bits
        update, args = jax.jit(partial(checked_update, svi)), (1.0, TrainOptions().free_bits)
    state = jax.jit(svi.init)(jax.random.key(0), rows)
    state = jax.block_until_ready(update(state, rows, *args)[0])  # compile outside the timing

    def step():
        nonlocal state
        state, loss, *_ = update(state, rows, *args)
        loss.block_until_ready()

    benchmark.pedantic(step, rounds=10, iterations=3, warmup_rounds=1)
    name = "svi.update alone" if bare else "SVI step (default config)"
    record(benchmark, "VAE on 84 channels", f"xspecvae {name}", batch)
    benchmark.extra_info["steps_per_s"] = 1 / benchmark.stats.stats.mean


@pytest.mark.parametrize("steps", [0, Config().refine_steps], ids=["encoder", "refined"])
def test_encode(benchmark, record, svi_setup, pack, steps):
    """``encode`` with the encoder's posterior alone, and refined as by default (``steps``
    Levenberg-Marquardt steps per source): what the refinement costs."""
    inst, svi, data = svi_setup
    state = jax.jit(svi.init)(jax.random.key(0), {k: v[:256] for k, v in data.items()})
    vae = VAE(Config(), svi.get_params(state), inst).with_refinement(steps)
    encode(vae, pack, np.arange(1024))  # compile outside the timing
    benchmark.pedantic(lambda: encode(vae, pack), rounds=3, iterations=1)
    what = f"{steps} refinement steps" if steps else "encoder alone"
    record(benchmark, "VAE on 84 channels", f"xspecvae encode, {what} (batches of 1024)", N)


def test_fold_and_likelihood_numpy_reference(benchmark, record, svi_setup):
    inst, _, data = svi_setup
    matrix, arf = np.asarray(inst.rmf[0]), data["arf"][:1024]
    flux = np.random.default_rng(0).uniform(0, 1e-6, arf.shape).astype(np.float32)
    n, exposure = data["counts"][:1024], data["exposure"][:1024, None].astype(np.float32)

    def run():
        rate = (flux * arf) @ matrix * exposure
        return np.sum(xlogy(n, rate) - rate)

    benchmark(run)
    record(benchmark, "VAE on 84 channels", "numpy reference: fold + Poisson log-likelihood", 1024)
