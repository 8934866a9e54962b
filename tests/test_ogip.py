"""OGIP readers on small synthetic files: every convention, every error."""

import contextlib
import re

import numpy as np
import pytest
from astropy.io import fits
from ogipfiles import gzipped, write_arf, write_pha, write_pha2, write_rmf

import xspecvae as xv
from xspecvae.ogip import locate

N_CHAN = 30


@contextlib.contextmanager
def problem(pattern):
    """Expect an OGIPError whose problem (the text after the path) matches ``pattern``."""
    with pytest.raises(xv.OGIPError) as err:
        yield err
    assert re.search(pattern, err.value.problem), err.value.problem


def banded_matrix(n_energy=40, n_channel=N_CHAN, seed=0):
    """A redistribution with zero blocks and a second group per row (a shoulder)."""
    rng = np.random.default_rng(seed)
    matrix = np.zeros((n_energy, n_channel))
    for i in range(n_energy):
        centre = int(i * (n_channel - 1) / (n_energy - 1))
        lo, hi = max(0, centre - 2), min(n_channel, centre + 3)
        matrix[i, lo:hi] = rng.uniform(0.1, 1.0, hi - lo)
        if centre > 8 and i % 3 == 0:
            matrix[i, 0:3] = rng.uniform(0.01, 0.05, 3)
    return (matrix / matrix.sum(axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def rmf_parts():
    edges = np.linspace(0.1, 10.1, 41)
    channel_edges = np.linspace(0.0, 10.5, N_CHAN + 1)
    return banded_matrix(), edges, channel_edges


def counts_vector(n=N_CHAN):
    return np.arange(n) % 7


# ---------------------------------------------------------------------------------------------
# PHA


def test_counts_spectrum_keywords(tmp_path):
    path = write_pha(
        tmp_path / "src.pha",
        counts_vector(),
        keywords={
            "EXPOSURE": 2500.0,
            "BACKSCAL": 0.25,
            "AREASCAL": 0.9,
            "HDUCLAS2": "TOTAL",
            "RESPFILE": "resp.rmf",
            "ANCRFILE": "NONE",
            "BACKFILE": "bkg.pha",
            "SRC_RA": 10.5,
            "SRC_DEC": -20.25,
            "RA_OBJ": 1.0,
            "DEC_OBJ": 2.0,
            "QUALITY": 0,
            "GROUPING": 0,
            "FILTER": "Thin1",
        },
        primary={"OBJECT": "NGC 1", "DATE-OBS": "2015-06-02T10:34:37", "OBS_ID": "0760940101"},
    )
    pha = xv.read_pha(path)
    np.testing.assert_array_equal(pha.counts, counts_vector())
    assert not pha.is_rate and pha.exposure == 2500.0
    assert pha.backscal == 0.25 and pha.areascal == pytest.approx(0.9)
    assert pha.kind == "TOTAL" and pha.poisserr
    assert pha.respfile == "resp.rmf" and pha.ancrfile is None and pha.backfile == "bkg.pha"
    assert (pha.ra, pha.dec) == (10.5, -20.25)  # the source, not the pointing
    assert pha.object == "NGC 1" and pha.obs_id == "0760940101" and pha.filter == "Thin1"
    assert pha.mjd_obs == pytest.approx(57175.44071, abs=1e-4)  # 2015-06-02T10:34:37 TT
    assert pha.first_channel == 0 and pha.n_channel == N_CHAN
    np.testing.assert_array_equal(pha.quality, 0)
    np.testing.assert_array_equal(pha.grouping, 0)


def test_rate_spectrum_is_multiplied_by_exposure(tmp_path):
    rate = np.linspace(0.0, 0.3, N_CHAN)
    pha = xv.read_pha(write_pha(tmp_path / "r.pha", rate, rate=True, keywords={"EXPOSURE": 40.0}))
    assert pha.is_rate
    np.testing.assert_allclose(pha.counts, rate.astype(np.float32) * 40.0)


def test_columns_instead_of_keywords(tmp_path):
    quality = np.zeros(N_CHAN, int)
    quality[:3] = 1
    grouping = np.where(np.arange(N_CHAN) % 2 == 0, 1, -1)
    backscal = np.full(N_CHAN, 0.5)
    backscal[:3] = 0.0  # allowed where quality is bad
    areascal = np.linspace(0.5, 1.0, N_CHAN)
    stat_err = np.full(N_CHAN, 2.0)
    path = write_pha(
        tmp_path / "c.pha",
        counts_vector(),
        columns={
            "QUALITY": quality,
            "GROUPING": grouping,
            "BACKSCAL": backscal,
            "AREASCAL": areascal,
            "STAT_ERR": stat_err,
        },
        keywords={"BACKSCAL": None, "AREASCAL": None, "POISSERR": False, "MJD-OBS": 55000.5},
        first_channel=1,
    )
    pha = xv.read_pha(path)
    np.testing.assert_array_equal(pha.quality, quality)
    np.testing.assert_array_equal(pha.grouping, grouping)
    np.testing.assert_allclose(pha.backscal, backscal)
    np.testing.assert_allclose(pha.areascal, areascal, rtol=1e-6)
    np.testing.assert_array_equal(pha.stat_err, stat_err)
    assert not pha.poisserr and pha.mjd_obs == 55000.5
    assert pha.first_channel == 1 and pha.channel[-1] == N_CHAN


def test_net_spectrum_may_be_negative(tmp_path):
    counts = counts_vector() - 3
    keywords = {"HDUCLAS2": "NET", "POISSERR": False}
    pha = xv.read_pha(
        write_pha(
            tmp_path / "n.pha", counts, keywords=keywords, columns={"STAT_ERR": np.ones(N_CHAN)}
        )
    )
    assert pha.kind == "NET" and pha.counts.min() < 0
    with problem("negative counts"):
        xv.read_pha(write_pha(tmp_path / "t.pha", counts))


def test_type_ii_rows(tmp_path):
    counts = np.arange(3 * N_CHAN).reshape(3, N_CHAN)
    path = write_pha2(
        tmp_path / "p2.pha", counts, exposure=[10.0, 20.0, 30.0], backscal=[1.0, 2.0, 3.0]
    )
    second = xv.read_pha(path, row=1)
    np.testing.assert_array_equal(second.counts, counts[1])
    assert second.exposure == 20.0 and second.backscal == 2.0 and second.row == 1
    assert second.first_channel == 1
    rows = xv.read_pha_rows(path)
    assert [r.exposure for r in rows] == [10.0, 20.0, 30.0]
    np.testing.assert_array_equal(np.stack([r.counts for r in rows]), counts)
    with problem("choose a row"):
        xv.read_pha(path)
    with problem("out of range"):
        xv.read_pha(path, row=3)
    assert isinstance(xv.read_ogip(path), list)


@pytest.mark.parametrize(
    "named,on_disk",
    [
        ("bkg.pha", "bkg.pha"),
        ("bkg.pha", "bkg.pha.gz"),
        ("BKG.FTZ", "bkg.ftz"),
        ("P01BGSPEC0001.FTZ", "P01BGSPEC0001"),
        ("/elsewhere/on/another/disk/bkg.pha", "bkg.pha"),
    ],
)
def test_named_files_are_found_beside_the_spectrum(tmp_path, named, on_disk):
    (tmp_path / on_disk).write_bytes(b"x")
    pha = xv.read_pha(write_pha(tmp_path / "s.pha", counts_vector(), keywords={"BACKFILE": named}))
    assert pha.locate("backfile") == tmp_path / on_disk


def test_missing_named_file_is_none(tmp_path):
    pha = xv.read_pha(
        write_pha(tmp_path / "s.pha", counts_vector(), keywords={"BACKFILE": "b.pha"})
    )
    assert pha.locate("backfile") is None and pha.locate("respfile") is None
    assert locate(tmp_path / "no-such-dir", "b.pha") is None


def test_compressed_spectrum(tmp_path):
    path = gzipped(write_pha(tmp_path / "s.pha", counts_vector()), ".FTZ")
    np.testing.assert_array_equal(xv.read_pha(path).counts, counts_vector())


# ---------------------------------------------------------------------------------------------
# RMF and ARF


@pytest.mark.parametrize("layout", ["vla", "fixed"])
@pytest.mark.parametrize("first_channel,tlmin", [(0, "auto"), (1, "auto"), (0, None), (1, None)])
def test_rmf_matrix_round_trip(tmp_path, rmf_parts, layout, first_channel, tlmin):
    matrix, edges, channel_edges = rmf_parts
    path = write_rmf(
        tmp_path / "r.rmf",
        matrix,
        edges,
        channel_edges,
        layout=layout,
        first_channel=first_channel,
        tlmin=tlmin,
    )
    rmf = xv.read_rmf(path)
    np.testing.assert_array_equal(rmf.matrix, matrix)  # no shift: offsets from the file
    assert rmf.first_channel == first_channel and not rmf.includes_arf
    np.testing.assert_allclose(rmf.energy_lo, edges[:-1], rtol=1e-6)
    np.testing.assert_allclose(rmf.e_max, channel_edges[1:], rtol=1e-6)


def test_rmf_scalar_columns_and_compression(tmp_path):
    edges = np.linspace(1.0, 2.0, 11)
    matrix = np.zeros((10, 12), np.float32)
    for i in range(10):
        matrix[i, i : i + 3] = [0.25, 0.5, 0.25]
    path = gzipped(
        write_rmf(
            tmp_path / "s.rmf",
            matrix,
            edges,
            np.linspace(0.9, 2.1, 13),
            layout="scalar",
            first_channel=1,
        )
    )
    np.testing.assert_array_equal(xv.read_rmf(path).matrix, matrix)


def test_rmf_tlmin_disagreeing_with_ebounds(tmp_path, rmf_parts):
    path = write_rmf(tmp_path / "r.rmf", *rmf_parts, first_channel=0, tlmin=1)
    with problem("TLMIN of F_CHAN is 1 but EBOUNDS channels start at 0"):
        xv.read_rmf(path)


def test_rsp_is_recognised(tmp_path, rmf_parts):
    matrix, edges, channel_edges = rmf_parts
    full = write_rmf(tmp_path / "full.rsp", matrix, edges, channel_edges, hduclas3="FULL")
    area = write_rmf(
        tmp_path / "area.rsp",
        matrix * 500,
        edges,
        channel_edges,
        extname="SPECRESP MATRIX",
        hduclas3="DETECTOR",
    )
    assert xv.read_rmf(full).includes_arf and xv.read_rmf(area).includes_arf
    assert isinstance(xv.read_ogip(area), xv.ogip.Rmf)


def test_arf_and_matching(tmp_path, rmf_parts):
    matrix, edges, channel_edges = rmf_parts
    rmf = xv.read_rmf(write_rmf(tmp_path / "r.rmf", matrix, edges, channel_edges))
    arf = xv.read_arf(write_arf(tmp_path / "a.arf", edges, np.linspace(100, 200, 40)))
    np.testing.assert_allclose(arf.specresp, np.linspace(100, 200, 40), rtol=1e-6)
    pha = xv.read_pha(write_pha(tmp_path / "s.pha", counts_vector()))
    xv.check_match(pha, rmf, arf)
    other = xv.read_arf(write_arf(tmp_path / "o.arf", edges * 1.01, np.ones(40)))
    with problem("ARF energy grid") as err:
        xv.check_match(pha, rmf, other)
    assert str(tmp_path / "o.arf") in str(err.value) and "r.rmf" in str(err.value)
    short = xv.read_pha(write_pha(tmp_path / "short.pha", counts_vector(N_CHAN - 1)))
    with problem("29 channels but RMF"):
        xv.check_match(short, rmf)
    shifted = xv.read_pha(write_pha(tmp_path / "one.pha", counts_vector(), first_channel=1))
    with problem("channels start at 1"):
        xv.check_match(shifted, rmf)


def test_background_ratio(tmp_path):
    src = xv.read_pha(
        write_pha(
            tmp_path / "s.pha",
            counts_vector(),
            keywords={"BACKSCAL": 2.0, "EXPOSURE": 100.0, "AREASCAL": 1.0},
        )
    )
    scal = np.full(N_CHAN, 8.0)
    bkg = xv.read_pha(
        write_pha(
            tmp_path / "b.pha",
            counts_vector(),
            columns={"BACKSCAL": scal},
            keywords={"BACKSCAL": None, "EXPOSURE": 50.0, "AREASCAL": 0.5},
        )
    )
    np.testing.assert_allclose(xv.background_ratio(src, bkg), 2.0 * 100 / (8.0 * 50 * 0.5))


# ---------------------------------------------------------------------------------------------
# Errors


def test_missing_and_not_fits(tmp_path):
    with problem("file not found"):
        xv.read_pha(tmp_path / "absent.pha")
    text = tmp_path / "notes.txt"
    text.write_text("SIMPLE? no, just words\n" * 100)
    with problem("not a readable FITS file"):
        xv.read_rmf(text)
    with problem("not a regular file"):
        xv.read_arf(tmp_path)


def test_truncated(tmp_path):
    path = write_pha(tmp_path / "s.pha", np.arange(2000))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 4000])
    with problem("truncated"):
        xv.read_pha(path)
    gz = gzipped(write_pha(tmp_path / "t.pha", np.arange(2000)))
    gz.write_bytes(gz.read_bytes()[:-30])
    with problem("truncated"):
        xv.read_pha(gz)


def test_missing_extension_and_column(tmp_path, rmf_parts):
    path = write_arf(tmp_path / "a.arf", np.linspace(1, 2, 5), np.ones(4))
    with problem("no SPECTRUM extension"):
        xv.read_pha(path)
    with problem("no MATRIX or SPECRESP MATRIX extension"):
        xv.read_rmf(path)
    rmf = write_rmf(tmp_path / "r.rmf", *rmf_parts)
    with fits.open(rmf) as hdul:
        del hdul[2]
        hdul.writeto(tmp_path / "noebounds.rmf")
    with problem("no EBOUNDS extension"):
        xv.read_rmf(tmp_path / "noebounds.rmf")
    with problem("missing column COUNTS or RATE"):
        xv.read_pha(write_pha(tmp_path / "s.pha", counts_vector(), drop=("COUNTS",)))
    with problem("missing column CHANNEL"):
        xv.read_pha(write_pha(tmp_path / "c.pha", counts_vector(), drop=("CHANNEL",)))


@pytest.mark.parametrize(
    "keywords,columns,message",
    [
        ({"EXPOSURE": 0.0}, {}, "EXPOSURE must be positive"),
        ({"EXPOSURE": -5.0}, {}, "EXPOSURE must be positive"),
        ({"EXPOSURE": "long"}, {}, "EXPOSURE is not a number"),
        ({"EXPOSURE": None}, {}, "EXPOSURE is not a number"),
        ({"BACKSCAL": 0.0}, {}, "BACKSCAL must be positive"),
        ({"BACKSCAL": -1.0}, {}, "BACKSCAL must be positive"),
        ({"AREASCAL": 0.0}, {}, "AREASCAL must be positive"),
        ({"BACKSCAL": None}, {"BACKSCAL": np.zeros(N_CHAN)}, "BACKSCAL column must be positive"),
    ],
)
def test_bad_keywords(tmp_path, keywords, columns, message):
    path = write_pha(tmp_path / "s.pha", counts_vector(), keywords=keywords, columns=columns)
    with problem(message) as err:
        xv.read_pha(path)
    assert err.value.path == str(path) and str(err.value).startswith(str(path))


@pytest.mark.parametrize("bad", [-1.0, np.nan, np.inf])
def test_bad_counts(tmp_path, bad):
    counts = counts_vector().astype(float)
    counts[5] = bad
    message = "negative counts" if bad == -1.0 else "non-finite counts"
    with problem(message):
        xv.read_pha(write_pha(tmp_path / "s.pha", counts))


def test_bad_rmf_groups(tmp_path, rmf_parts):
    path = write_rmf(tmp_path / "r.rmf", *rmf_parts, layout="fixed")
    with fits.open(path) as hdul:
        hdul["MATRIX"].data["F_CHAN"][3, 0] = 29  # a group running past the last channel
        hdul.writeto(tmp_path / "beyond.rmf")
        hdul["MATRIX"].data["F_CHAN"][3, 0] = 0
        hdul["EBOUNDS"].header["DETCHANS"] = 31
        hdul["MATRIX"].header["DETCHANS"] = 31
        hdul.writeto(tmp_path / "detchans.rmf")
    with problem("reach outside channels 0..29"):
        xv.read_rmf(tmp_path / "beyond.rmf")
    with problem("DETCHANS=31 but EBOUNDS has 30"):
        xv.read_rmf(tmp_path / "detchans.rmf")


def test_read_ogip_dispatch(tmp_path, rmf_parts):
    assert isinstance(xv.read_ogip(write_rmf(tmp_path / "r.rmf", *rmf_parts)), xv.ogip.Rmf)
    assert isinstance(xv.read_ogip(write_arf(tmp_path / "a.arf", [1, 2], [3])), xv.ogip.Arf)
    assert isinstance(xv.read_ogip(write_pha(tmp_path / "s.pha", [1, 2])), xv.ogip.Pha)
    table = fits.BinTableHDU.from_columns([fits.Column(name="X", format="E", array=[1.0])])
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(tmp_path / "t.fits")
    with problem("not an OGIP spectral file"):
        xv.read_ogip(tmp_path / "t.fits")
