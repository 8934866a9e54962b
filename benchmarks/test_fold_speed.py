"""Folding speed through the real pn RMF, ours against a dense numpy reference.

Run: ``python -m pytest benchmarks``. Full resolution is the canned RMF
``epn_e3_ef20_sdY6_v19.0.rmf`` (2067 energies x 4096 channels) with a real pipeline ARF; the
analysis grid is its regrouping onto 0.2-12 keV bins no narrower than the FWHM.
"""

import jax.numpy as jnp
import numpy as np
import pytest

import xspecvae as xv

BATCHES = [1, 64, 4096]


@pytest.fixture(scope="module")
def responses(xmm):
    rmf = xv.read_rmf(xmm / "responses/epn_e3_ef20_sdY6_v19.0.rmf")
    arf = xv.read_arf(xmm / "pps_0760940101/P0760940101PNS003SRCARF0001.FTZ")
    full = xv.Response.from_ogip(rmf, arf)
    analysis = full.regroup(xv.Grouping.from_resolution(full, 0.2, 12.0))
    return {
        "full 2067x4096": full,
        f"analysis {analysis.n_energy}x{analysis.n_channel}": analysis,
        "full, dense storage": xv.Response.from_ogip(rmf, arf, storage="dense"),
    }


def flux_for(response, batch):
    shape = (response.n_energy,) if batch == 1 else (batch, response.n_energy)
    return np.random.default_rng(0).uniform(0, 1e-3, shape).astype(np.float32)


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("case", ["full 2067x4096", "analysis", "full, dense storage"])
def test_fold_xspecvae(benchmark, record, responses, case, batch):
    name = next(k for k in responses if k.startswith(case))
    response = responses[name]
    flux = jnp.asarray(flux_for(response, batch))
    response.fold(flux, 1e4).block_until_ready()  # compile outside the timing
    benchmark(lambda: response.fold(flux, 1e4).block_until_ready())
    dense = case == "full, dense storage"
    group = "full 2067x4096" if dense else name
    record(
        benchmark,
        group,
        "xspecvae (dense storage)" if dense else f"xspecvae ({response.storage})",
        batch,
    )


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("case", ["full 2067x4096", "analysis"])
def test_fold_numpy_reference(benchmark, record, responses, case, batch):
    name = next(k for k in responses if k.startswith(case))
    response = responses[name]
    flux = flux_for(response, batch)
    matrix, arf = response.matrix, response.arf.astype(np.float32)
    benchmark(lambda: (flux * arf) @ matrix * np.float32(1e4))
    record(benchmark, name, "numpy dense float32 (BLAS)", batch)


def test_read_rmf(benchmark, xmm):
    benchmark.pedantic(
        xv.read_rmf, args=(xmm / "responses/epn_e3_ef20_sdY6_v19.0.rmf",), rounds=5, iterations=1
    )
    assert benchmark.stats.stats.mean < 1.0
