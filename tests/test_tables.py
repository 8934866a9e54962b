"""Catalogue tables: FITS and Parquet, vector and string columns, header keywords, atomic."""

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from xspecvae.tables import identity_columns, read_table, write_table


@pytest.mark.parametrize("name", ["t.fits", "t.fits.gz", "t.parquet"])
def test_tables_round_trip(tmp_path, name):
    rng = np.random.default_rng(0)
    columns = {
        "source_id": np.arange(5),
        "obs_id": np.array(["0760940101", "0760940101", "1", "22", "333"]),
        "ra": rng.uniform(0, 360, 5),
        "z_loc": rng.normal(size=(5, 16)).astype(np.float32),
    }
    path = write_table(columns, tmp_path / "sub" / name, header={"RUN": "demo", "NDIM": 16})
    back = read_table(path)
    assert list(back) == list(columns)
    for k, v in columns.items():
        np.testing.assert_array_equal(back[k], v)
    assert read_table(path, with_header=True)[1]["RUN"] == "demo"
    table = Table.read(path)  # what a user (or TOPCAT) opens
    assert table.meta["RUN"] == "demo" and table["z_loc"].shape == (5, 16)
    if name.startswith("t.fits"):
        with fits.open(path) as hdul:
            assert hdul[1].header["NDIM"] == 16 and hdul[1].columns["z_loc"].format == "16E"
    assert [p.name for p in path.parent.iterdir()] == [name]  # no temporary left


def test_unequal_columns_are_refused(tmp_path):
    with pytest.raises(ValueError, match="different lengths"):
        write_table({"a": np.arange(3), "b": np.arange(4)}, tmp_path / "x.fits")
    assert not (tmp_path / "x.fits").exists()


def test_identity_columns_take_what_the_pack_has():
    meta = {"source_id": np.arange(4), "obs_id": np.array(list("abcd")), "offaxis": np.ones(4)}
    got = identity_columns(meta, [3, 1])
    assert list(got) == ["source_id", "obs_id"] and list(got["obs_id"]) == ["d", "b"]
