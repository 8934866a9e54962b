"""Pack throughput: ingesting real pipeline products, and serving minibatches from a pack.

Run: ``python -m pytest benchmarks``. Ingestion packs the 112 pn spectra of observation
0760940101 (spectrum, background and ARF per source, .FTZ), copied into 4 folders (448
spectra, 1344 files), with the sdY6 RMF standing in for the canned RMFs that are absent; the
reference reads the same three files per source with astropy alone (the floor any ingestion
pays). Minibatches are drawn from a pack of 16,384 rows; the reference reads random rows one
by one from HDF5.
"""

import gzip
import shutil

import h5py
import numpy as np
import pytest
from astropy.io import fits

from xspecvae.catalog import Grid, Pack, PackWriter
from xspecvae.instrument import builtin_pn_response
from xspecvae.products import ingest

SUBSTITUTE = {"epn_e3_ef20_sdY?.rmf": "epn_e3_ef20_sdY6_v19.0.rmf"}
COPIES = 4
N_PN = 112 * COPIES


@pytest.fixture(scope="module")
def pn_products(xmm, tmp_path_factory):
    """The 112 pn sources' spectra, backgrounds and ARFs (copies, without the MOS and RGS), in
    COPIES folders: N_PN spectra in all."""
    root = tmp_path_factory.mktemp("pn")
    for copy in range(COPIES):
        (root / str(copy)).mkdir()
        for path in (xmm / "pps_0760940101").glob("*PNS003*.FTZ"):
            shutil.copy(path, root / str(copy) / path.name)
    return root


@pytest.mark.parametrize("jobs", [1, 2])
def test_ingest_xspecvae(benchmark, record, xmm, pn_products, tmp_path, jobs):
    def run():
        result = ingest(
            [pn_products],
            tmp_path / "p.h5",
            rmf_dirs=[xmm / "responses"],
            substitutes=SUBSTITUTE,
            jobs=jobs,
            resume=False,
            progress=False,
        )
        assert result.packed["pn"] == N_PN

    benchmark.pedantic(run, rounds=2, iterations=1)
    record(
        benchmark, "ingest pn products", f"xspecvae pack ({jobs} process{'es' * (jobs > 1)})", N_PN
    )


def test_ingest_numpy_reference(benchmark, record, pn_products):
    spectra = sorted(pn_products.glob("*/*PNS003SRSPEC*.FTZ"))
    assert len(spectra) == N_PN

    def run():
        for path in spectra:
            for name, extension, column in (
                (path.name, "SPECTRUM", "COUNTS"),
                (path.name.replace("SRSPEC", "BGSPEC"), "SPECTRUM", "COUNTS"),
                (path.name.replace("SRSPEC", "SRCARF"), "SPECRESP", "SPECRESP"),
            ):
                with fits.open(gzip.open(path.parent / name)) as hdul:
                    np.asarray(hdul[extension].data[column])

    benchmark.pedantic(run, rounds=2, iterations=1)
    record(benchmark, "ingest pn products", "numpy reference: astropy reads only", N_PN)


N_ROWS, BATCH = 16_384, 256


@pytest.fixture(scope="module")
def pack_path(tmp_path_factory):
    response = builtin_pn_response()
    grid = Grid.from_response("pn", response)
    path = tmp_path_factory.mktemp("pack") / "p.h5"
    rng = np.random.default_rng(0)
    with PackWriter(path) as writer:
        writer.add_grid(grid)
        writer.add_rmf("pn", "builtin", grid.regroup(response))
        for start in range(0, N_ROWS, 4096):
            n = 4096
            writer.append(
                "pn",
                counts=rng.poisson(3.0, (n, grid.n_channel)),
                background=rng.poisson(1.0, (n, grid.n_channel)),
                alpha=np.full((n, grid.n_channel), 0.1),
                exposure=rng.uniform(5e3, 1e5, n),
                arf=rng.uniform(0, 1200, (n, grid.n_energy)),
                rmf_index=np.zeros(n, int),
                meta=dict(
                    source_id=np.arange(start, start + n),
                    obs_id=np.full(n, "0000000000"),
                    mjd=np.zeros(n),
                    ra=np.zeros(n),
                    dec=np.zeros(n),
                    label=np.full(n, ""),
                    file=np.full(n, ""),
                ),
            )
    return path


@pytest.mark.parametrize("mode", ["streamed", "loaded"])
def test_batches_xspecvae(benchmark, record, pack_path, mode):
    with Pack(pack_path) as pack:
        if mode == "loaded":
            pack.load()
        rng = np.random.default_rng(0)
        benchmark.pedantic(lambda: sum(1 for _ in pack.batches(BATCH, rng)), rounds=3, iterations=1)
    record(benchmark, f"shuffled epoch of {N_ROWS} rows", f"xspecvae Pack.batches ({mode})", N_ROWS)


def test_batches_numpy_reference(benchmark, record, pack_path):
    with h5py.File(pack_path) as f:
        group = f["instruments/pn"]
        names = ("counts", "background", "alpha", "good", "exposure", "arf", "rmf_index")
        order = np.random.default_rng(0).permutation(N_ROWS)[:256]

        def run():
            for row in order:
                for name in names:
                    group[name][row]

        benchmark.pedantic(run, rounds=1, iterations=1)
    # the reference reads 256 random rows one at a time (rates compare)
    record(benchmark, f"shuffled epoch of {N_ROWS} rows", "numpy reference: h5py row by row", 256)
