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
    path = write_table(
        columns, tmp_path / "sub" / name, extname="POSTERIORS", header={"RUN": "demo", "NDIM": 16}
    )
    back = read_table(path)
    assert list(back) == list(columns)
    for k, v in columns.items():
        np.testing.assert_array_equal(back[k], v)
    assert read_table(path, with_header=True)[1]["RUN"] == "demo"
    table = Table.read(path)  # what a user (or TOPCAT) opens: 4XMM's names, units
    assert table.meta["RUN"] == "demo" and table["z_loc"].shape == (5, 16)
    assert table.colnames[:3] == ["SRCID", "OBS_ID", "RA"] and table["RA"].unit == "deg"
    if name.startswith("t.fits"):
        with fits.open(path) as hdul:
            assert hdul[1].header["NDIM"] == 16 and hdul[1].columns["z_loc"].format == "16E"
    assert [p.name for p in path.parent.iterdir()] == [name]  # no temporary left


def test_unequal_columns_are_refused(tmp_path):
    with pytest.raises(ValueError, match="different lengths"):
        write_table({"x": np.arange(3), "y": np.arange(4)}, tmp_path / "x.fits", extname="MAP")
    assert not (tmp_path / "x.fits").exists()


def test_identity_columns_take_what_the_pack_has():
    meta = {"source_id": np.arange(4), "obs_id": np.array(list("abcd")), "offaxis": np.ones(4)}
    got = identity_columns(meta, [3, 1])
    assert list(got) == ["source_id", "catalogue_id", "obs_id"] and list(got["obs_id"]) == [
        "d",
        "b",
    ]
    assert not got["catalogue_id"].any()  # no catalogue: every id is the package's own


def test_every_column_has_a_unit_and_a_description_in_the_file(tmp_path):
    columns = {
        "source_id": np.arange(2),
        "catalogue_id": np.array([True, False]),
        "nh": np.ones(2),
        "photon_flux": np.ones(2),
        "mjd": np.ones(2),
        "z_loc": np.ones((2, 3)),
        "diskbb_powerlaw_pl_norm_err": np.ones(2),
        "powerlaw_nh": np.ones(2),
    }
    path = write_table(columns, tmp_path / "t.fits", extname="FITS", header={"RUN": "r"})
    header = fits.getheader(path, "FITS")
    names = [header[f"TTYPE{i}"] for i in range(1, header["TFIELDS"] + 1)]
    units = {n: header.get(f"TUNIT{i}") for i, n in enumerate(names, 1)}
    comments = {n: header[f"TCOMM{i}"] for i, n in enumerate(names, 1)}
    assert names[:2] == ["SRCID", "SRCID_CAT"] and header["CREATOR"].startswith("xspecvae ")
    assert units["nh"] == units["powerlaw_nh"] == "10**22 cm-2" and units["mjd"] == "d"
    assert units["photon_flux"] == "ph s-1 cm-2"
    assert units["diskbb_powerlaw_pl_norm_err"] == "ph keV-1 s-1 cm-2"
    assert "1-sigma error" in comments["diskbb_powerlaw_pl_norm_err"]
    assert all(comments.values()) and header["DATE"] and header["RUN"] == "r"
    with pytest.raises(KeyError, match="no unit or description"):
        write_table({"mystery": np.ones(2)}, tmp_path / "m.fits", extname="X")
