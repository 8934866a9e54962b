"""Simulation throughput: a labelled population simulated and packed, on the built-in response
and on real ones (the sdY6 RMF, the NGC 7793 pn ARF vignetted per source, the pn FWC
background, the tbabs cross-sections).

Run: ``python -m pytest benchmarks``. The reference does the least any simulator must: a
power law per source, its ARF, a dense fold through the same regrouped RMF and Poisson draws,
in numpy, without writing anything.
"""

import numpy as np
import pytest

from xspecvae.catalog import Grid
from xspecvae.instrument import builtin_pn_response
from xspecvae.simulator import simulate_pack

N = 16_384


def real_files(xmm):
    return dict(
        rmfs=[xmm / "responses/epn_e3_ef20_sdY6_v19.0.rmf"],
        arf=xmm / "ngc7793_ulx4/PN.arf",
        background=xmm / "background/PN_FWC.fits.gz",
        absorption=xmm / "absorption/xsect_tbabs_wilm.fits",
    )


@pytest.mark.parametrize("responses", ["built-in", "real"])
def test_simulate_xspecvae(benchmark, record, xmm, tmp_path, responses):
    files = real_files(xmm) if responses == "real" else {}
    path = tmp_path / "sim.h5"

    def run():
        simulate_pack(path, N, seed=1, resume=False, progress=False, **files)

    benchmark.pedantic(run, rounds=2, iterations=1)
    record(benchmark, "simulate and pack", f"xspecvae simulate_pack ({responses} responses)", N)


def test_simulate_numpy_reference(benchmark, record):
    response = builtin_pn_response()
    grid = Grid.from_response("pn", response)
    matrix = grid.regroup(response).astype(np.float32)
    edges = grid.energy_edges
    centre, width = np.sqrt(edges[1:] * edges[:-1]), np.diff(edges)
    arf = grid.cut(response.arf).astype(np.float32)
    rng = np.random.default_rng(0)

    def run():
        for _ in range(0, N, 4096):
            index = rng.normal(1.9, 0.3, (4096, 1))
            flux = (1e-4 * centre**-index * width).astype(np.float32)
            expected = (flux * arf) @ matrix * np.float32(3e4)
            rng.poisson(expected)

    benchmark.pedantic(run, rounds=3, iterations=1)
    record(benchmark, "simulate and pack", "numpy reference: power law, fold, Poisson", N)
