"""The HDF5 catalogue pack: grids, writing, reading, shuffled batches, resume, schema."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from xspecvae.catalog import (
    CHUNK_ROWS,
    SCHEMA_VERSION,
    Grid,
    Pack,
    PackError,
    PackWriter,
    append_pack,
    match_positions,
)
from xspecvae.errors import InputError
from xspecvae.instrument import Response, builtin_pn_response
from xspecvae.ogip import OGIPError


@pytest.fixture(scope="module")
def response():
    return builtin_pn_response(n_energy=300)


@pytest.fixture(scope="module")
def grid(response):
    return Grid.from_response("pn", response)


def rows(grid, n, start=0, seed=0, label="AGN"):
    """A batch of ``n`` fake rows for ``grid``."""
    rng = np.random.default_rng(seed + start)
    c, e = grid.n_channel, grid.n_energy
    return dict(
        counts=rng.poisson(5.0, (n, c)),
        background=rng.poisson(2.0, (n, c)),
        alpha=rng.uniform(0.05, 0.3, (n, 1)) * np.ones((n, c)),
        exposure=rng.uniform(1e3, 1e5, n),
        arf=rng.uniform(0, 500, (n, e)),
        rmf_index=np.zeros(n, int),
        meta=dict(
            source_id=np.arange(start, start + n),
            obs_id=np.array([f"{k:010d}" for k in range(start, start + n)]),
            mjd=rng.uniform(51000, 60000, n),
            ra=rng.uniform(0, 360, n),
            dec=rng.uniform(-90, 90, n),
            label=np.array([label] * n),
            file=np.array([f"spec{k}.fits" for k in range(start, start + n)]),
        ),
        truth=dict(nh=rng.uniform(0, 1, n)),
    )


def write(path, grid, response, sizes=(100, 60), **kw):
    with PackWriter(path, provenance={"test": True}, **kw) as writer:
        writer.add_grid(grid)
        writer.add_rmf("pn", "builtin", grid.regroup(response))
        start = 0
        for size in sizes:
            writer.append("pn", **rows(grid, size, start))
            start += size
    return path


def test_grid_regroup_equals_folding_then_grouping(response, grid):
    matrix = grid.regroup(response)
    assert matrix.shape == (grid.n_energy, grid.n_channel)
    assert np.all(np.diff(grid.channel_lo) > 0) and grid.channel_lo[0] >= 0.195
    flux = np.random.default_rng(1).uniform(0, 1, response.n_energy)
    full = np.asarray(response.fold(flux, arf=np.ones(response.n_energy)), dtype=float)
    on_grid = grid.cut(flux) @ matrix.astype(float)
    np.testing.assert_allclose(on_grid, grid.group(full), rtol=1e-5)


def test_grid_refuses_a_response_of_another_shape(response, grid):
    other = builtin_pn_response(n_energy=400)
    with pytest.raises(ValueError, match="energy grid differs"):
        grid.regroup(other)
    narrow = Response(
        response.energy_edges,
        response.channel_lo[:2000],
        response.channel_hi[:2000],
        response.matrix[:, :2000],
    )
    with pytest.raises(ValueError, match="2000 channels"):
        grid.regroup(narrow)


def test_round_trip(tmp_path, response, grid):
    path = write(tmp_path / "p.h5", grid, response)
    expected = [rows(grid, 100, 0), rows(grid, 60, 100)]
    with Pack(path) as pack:
        assert pack.n == len(pack) == 160 and pack.instrument == "pn"
        assert pack.grid.same_as(grid) and pack.rmf_names == ["builtin"]
        np.testing.assert_array_equal(pack.rmf[0], grid.regroup(response))
        data = pack.read()
        for name in ("counts", "background", "alpha", "exposure", "arf"):
            want = np.concatenate([e[name] for e in expected])
            np.testing.assert_allclose(data[name], want, rtol=1e-6)
        assert data["good"].all()
        assert list(pack.meta["file"][98:102]) == [f"spec{k}.fits" for k in range(98, 102)]
        assert pack.meta["obs_id"][5] == "0000000005"
        np.testing.assert_array_equal(pack.meta["counts"], data["counts"].sum(axis=1))
        np.testing.assert_array_equal(pack.meta["background"], data["background"].sum(axis=1))
        np.testing.assert_allclose(
            pack.truth["nh"], np.concatenate([e["truth"]["nh"] for e in expected])
        )
        assert pack.provenance == {"test": True}
        (folded,) = pack.responses()
        assert folded.n_channel == grid.n_channel and folded.n_energy == grid.n_energy
    with h5py.File(path) as file:  # per-source arrays in compressed chunks of rows
        for name in ("counts", "arf", "exposure", "meta/source_id"):
            dataset = file["instruments/pn"][name]
            assert dataset.compression == "gzip" and dataset.chunks[0] >= CHUNK_ROWS


def test_read_keeps_the_requested_order(tmp_path, response, grid):
    with Pack(write(tmp_path / "p.h5", grid, response)) as pack:
        everything = pack.read()
        picked = pack.read(np.array([150, 3, 77, 3]))
        np.testing.assert_array_equal(picked["row"], [150, 3, 77, 3])
        np.testing.assert_array_equal(picked["counts"], everything["counts"][[150, 3, 77, 3]])


@pytest.mark.parametrize("loaded", [False, True])
def test_batches_cover_every_row_once_in_shuffled_order(tmp_path, response, grid, loaded):
    path = write(tmp_path / "p.h5", grid, response, sizes=(CHUNK_ROWS * 2 + 37,))
    with Pack(path) as pack:
        if loaded:
            pack.load()
        everything = pack.read()
        rng = np.random.default_rng(0)
        batches = list(pack.batches(100, rng, window=1, drop_last=False))
        seen = np.concatenate([b["row"] for b in batches])
        assert sorted(seen) == list(range(pack.n))
        assert not np.array_equal(seen, np.sort(seen))
        assert all(len(b["row"]) == 100 for b in batches[:-1])
        for batch in batches[:3]:
            np.testing.assert_array_equal(batch["counts"], everything["counts"][batch["row"]])
        dropped = list(pack.batches(100, rng, window=1))
        assert sum(len(b["row"]) for b in dropped) == pack.n - pack.n % 100


def test_writing_is_atomic_and_resumable(tmp_path, response, grid):
    path = tmp_path / "p.h5"
    writer = PackWriter(path)
    writer.add_grid(grid)
    writer.add_rmf("pn", "builtin", grid.regroup(response))
    writer.append("pn", **rows(grid, 50, 0))
    assert not path.exists() and writer.partial.exists()
    # an interrupted append: some datasets grown, the commit never made
    group = writer.file["instruments/pn"]
    group["counts"].resize(80, axis=0)
    group["meta/file"].resize(80, axis=0)
    writer.file.close()

    resumed = PackWriter(path, resume=True)
    assert list(resumed.committed("pn")) == [f"spec{k}.fits" for k in range(50)]
    resumed.add_grid(grid)  # same grid: accepted
    resumed.append("pn", **rows(grid, 30, 50))
    resumed.close()
    assert path.exists() and not resumed.partial.exists()
    with Pack(path) as pack:
        assert pack.n == 80
        assert pack.read()["counts"].shape == (80, grid.n_channel)
        assert pack.meta["file"][-1] == "spec79.fits"


def test_a_fresh_writer_ignores_a_partial_file(tmp_path, response, grid):
    path = tmp_path / "p.h5"
    writer = PackWriter(path)
    writer.add_grid(grid)
    writer.file.close()
    assert PackWriter(path, resume=False).grid("pn") is None
    (tmp_path / "p.h5.partial").write_bytes(b"not hdf5 at all")  # killed mid-write
    assert PackWriter(path, resume=True).grid("pn") is None


def test_a_writer_resumes_only_its_own_work_and_keeps_it_on_errors(tmp_path, response, grid):
    path = tmp_path / "p.h5"
    with pytest.raises(KeyboardInterrupt), PackWriter(path, provenance={"inputs": ["a"]}) as w:
        w.add_grid(grid)
        w.add_rmf("pn", "builtin", grid.regroup(response))
        w.append("pn", **rows(grid, 5, 0))
        raise KeyboardInterrupt
    assert w.partial.exists() and not path.exists()  # kept for the next run
    with PackWriter(path, provenance={"inputs": ["b"]}, resume=True) as other:
        assert other.grid("pn") is None  # another command's partial file: started afresh
        other.abandon()
    assert not other.partial.exists() and not path.exists()


def test_append_checks_shapes_and_columns(tmp_path, response, grid):
    with PackWriter(tmp_path / "p.h5") as writer:
        writer.add_grid(grid)
        writer.add_rmf("pn", "builtin", grid.regroup(response))
        bad = rows(grid, 4)
        bad["counts"] = bad["counts"][:, :-1]
        with pytest.raises(ValueError, match="counts has shape"):
            writer.append("pn", **bad)
        bad = rows(grid, 4)
        bad["rmf_index"] = np.ones(4, int)
        with pytest.raises(ValueError, match="past the stored RMFs"):
            writer.append("pn", **bad)
        bad = rows(grid, 4)
        del bad["meta"]["label"]
        with pytest.raises(ValueError, match="label"):
            writer.append("pn", **bad)
        writer.append("pn", **rows(grid, 4))
        bad = rows(grid, 4, 4)
        bad["truth"]["kT"] = np.ones(4)
        with pytest.raises(ValueError, match="truth columns"):
            writer.append("pn", **bad)
        other = Grid.from_response("pn", response, emax=10.0)
        with pytest.raises(ValueError, match="different pn grid"):
            writer.add_grid(other)


def test_old_or_foreign_files_are_refused_clearly(tmp_path, response, grid):
    path = write(tmp_path / "p.h5", grid, response)
    with h5py.File(path, "r+") as f:
        f.attrs["schema_version"] = SCHEMA_VERSION - 1
    with pytest.raises(PackError, match="schema version 0") as err:
        Pack(path)
    assert err.value.path == str(path) and "rebuild" in err.value.problem
    # a pack is not an OGIP file: its errors are input errors of their own kind
    assert isinstance(err.value, InputError) and not isinstance(err.value, OGIPError)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = 1
    with pytest.raises(PackError, match="not an xspecvae pack"):
        Pack(foreign)
    text = tmp_path / "notes.h5"
    text.write_text("hello")
    with pytest.raises(PackError, match="cannot open as HDF5"):
        Pack(text)


def test_sections_must_be_chosen_when_several(tmp_path, response, grid):
    path = tmp_path / "p.h5"
    mos = Grid.from_response("mos1", response, emax=10.0)
    with PackWriter(path) as writer:
        for g in (grid, mos):
            writer.add_grid(g)
            writer.add_rmf(g.instrument, "builtin", g.regroup(response))
            writer.append(g.instrument, **rows(g, 5))
    with pytest.raises(PackError, match="choose one"):
        Pack(path)
    with pytest.raises(PackError, match="no 'rgs1' section"):
        Pack(path, "rgs1")
    with Pack(path, "mos1") as pack:
        assert pack.n == 5 and pack.grid.channel_hi[-1] <= 10.01


def test_append_pack_remaps_rmf_indices(tmp_path, response, grid):
    first = write(tmp_path / "a.h5", grid, response, sizes=(20,))
    second = tmp_path / "b.h5"
    with PackWriter(second) as writer:
        writer.add_grid(grid)
        writer.add_rmf("pn", "other", 2 * grid.regroup(response))
        writer.add_rmf("pn", "builtin", grid.regroup(response))
        batch = rows(grid, 10, 20)
        batch["rmf_index"] = np.array([0, 1] * 5)
        writer.append("pn", **batch)
    append_pack(first, second)
    with Pack(first) as pack:
        assert pack.n == 30 and pack.rmf_names == ["builtin", "other"]
        index = pack.read()["rmf_index"]
        np.testing.assert_array_equal(index[20:], [1, 0] * 5)
        np.testing.assert_allclose(pack.rmf[1], 2 * pack.rmf[0], rtol=1e-6)
        assert pack.meta["file"][25] == "spec25.fits"


def test_a_different_rmf_under_a_taken_name_is_kept_apart(tmp_path, response, grid):
    matrix = grid.regroup(response)
    with PackWriter(tmp_path / "p.h5") as writer:
        writer.add_grid(grid)
        indices = [writer.add_rmf("pn", "PN.rmf", m) for m in (matrix, 2 * matrix, matrix)]
        assert indices == [0, 1, 0]
        assert writer.add_rmf("pn", "PN.rmf", 3 * matrix) == 2
    with Pack(tmp_path / "p.h5") as pack:
        assert pack.rmf_names == ["PN.rmf", "PN.rmf (2)", "PN.rmf (3)"]
        np.testing.assert_allclose(pack.rmf[2], 3 * pack.rmf[0], rtol=1e-6)


def test_match_positions():
    arcsec = 1 / 3600
    ra = np.array([10.0, 10 + 2 * arcsec, 10 + 4 * arcsec, 10 + 60 * arcsec, np.nan, 0.0, 359.9999])
    dec = np.array([20.0, 20.0, 20.0, 20.0, 20.0, 0.0, 0.0])
    ids = match_positions(ra, dec, radius_arcsec=2.5)
    # a chain of friends, a lone source, an unknown position, and a pair across RA = 0
    np.testing.assert_array_equal(ids, [0, 0, 0, 1, 2, 3, 3])
    assert len(set(match_positions(ra, dec, radius_arcsec=0.5)[:3])) == 3
