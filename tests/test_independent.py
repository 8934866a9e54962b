"""The independent PPS-product generator (benchmarks/independent.py): a small catalogue made
from the real XMM-Newton files, packed and fitted by the package as real products would be."""

import importlib.util
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from xspecvae.absorption import CrossSection
from xspecvae.catalog import Pack
from xspecvae.fitting import fit
from xspecvae.products import ingest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "independent.py"
_spec = importlib.util.spec_from_file_location("benchmarks_independent", _PATH)
independent = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = independent  # dataclasses look their module up
_spec.loader.exec_module(independent)

SINGLE, REPEATED, EPOCHS = 40, 5, 3


@pytest.fixture(scope="module")
def catalogue(xmm, tmp_path_factory):
    out = tmp_path_factory.mktemp("independent")
    ogip = independent.generate(
        out, single=SINGLE, repeated=REPEATED, epochs=EPOCHS, seed=11, data=xmm, progress=False
    )
    truth = fits.getdata(out / "truth.fits", "TRUTH")
    result = ingest([ogip], out / "pack.h5", rmf_dirs=[xmm / "responses"], jobs=1, progress=False)
    pack = Pack(result.pack_path)
    yield out, ogip, truth, result, pack
    pack.close()


def _rows(pack, truth):
    """Row of the pack of each truth row, joined on the SRSPEC name."""
    row_of = {Path(f).name: i for i, f in enumerate(pack.meta["file"])}
    return np.array([row_of[name] for name in truth["file"]])


def test_every_spectrum_is_packed(catalogue):
    _, ogip, truth, result, pack = catalogue
    n = SINGLE + REPEATED * EPOCHS
    assert len(truth) == n == pack.n == result.packed["pn"]
    assert not result.rejected
    status = {(r["role"], r["status"]) for r in result.report}
    assert status == {("source", "packed"), ("background", "used"), ("arf", "used")}
    assert len(list(ogip.glob("P*PNS003SRSPEC*.FTZ"))) == n
    assert len(pack.rmf_names) == 1  # one RMF, found from RESPFILE without its version suffix


def test_products_look_like_the_pipeline_s(catalogue, xmm):
    _, ogip, truth, _, _ = catalogue
    name = truth["file"][0]
    real = xmm / "pps_0760940101" / "P0760940101PNS003SRSPEC0001.FTZ"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # our own FITS writer: astropy must find nothing amiss
        with fits.open(ogip / name) as ours, fits.open(real) as theirs:
            ours.verify("exception")
            assert [h.name for h in ours[:3]] == [h.name for h in theirs[:3]]
            a, b = ours["SPECTRUM"], theirs["SPECTRUM"]
            assert a.columns.names == b.columns.names
            assert [c.format for c in a.columns] == [c.format for c in b.columns]
            for key in (
                "TELESCOP",
                "INSTRUME",
                "HDUCLASS",
                "HDUCLAS1",
                "HDUCLAS2",
                "CHANTYPE",
                "DETCHANS",
                "POISSERR",
                "TLMIN1",
            ):
                assert a.header[key] == b.header[key], key
            assert np.array_equal(a.data["QUALITY"], b.data["QUALITY"])  # channels 0-60 bad
            assert a.header["RESPFILE"] == "epn_e3_ef20_sdY6.rmf"
            assert a.header["BACKFILE"] == name.replace("SRSPEC", "BGSPEC")
            assert a.header["ANCRFILE"] == name.replace("SRSPEC", "SRCARF")
            counts = a.data["COUNTS"]
            assert counts.dtype.kind == "i" and not counts[:40].any() and not counts[2401:].any()
            assert ours[0].header["OBS_ID"] == name[1:11]


def test_meta_joins_the_truth(catalogue):
    _, _, truth, _, pack = catalogue
    names = {Path(f).name for f in pack.meta["file"]}
    assert names == set(truth["file"])
    rows = _rows(pack, truth)
    assert np.array_equal(pack.meta["obs_id"][rows].astype(str), truth["obs_id"])
    assert np.allclose(pack.meta["ra"][rows], truth["ra"], atol=1e-9)


def test_repeated_sources_share_a_source_id(catalogue):
    _, _, truth, _, pack = catalogue
    ids = pack.meta["source_id"][_rows(pack, truth)]
    # one pack source per truth source, and the other way round
    assert len(set(zip(truth["source"], ids))) == len(set(truth["source"])) == len(set(ids))
    repeated = sorted(set(truth["source"][truth["variability"] != "none"]))
    assert len(repeated) == REPEATED
    mjd = pack.meta["mjd"][_rows(pack, truth)]
    for s in repeated:
        mine = np.flatnonzero(truth["source"] == s)
        assert len(mine) == EPOCHS and len(set(ids[mine])) == 1
        assert len(set(truth["obs_id"][mine])) == EPOCHS
        order = mine[np.argsort(truth["epoch"][mine])]
        assert np.all(np.diff(mjd[order]) > 0)  # DATE-OBS later each time
    kinds = {truth["variability"][truth["source"] == s][0] for s in repeated}
    assert kinds == {"flux", "state"}


def test_net_counts_match_the_truth(catalogue):
    _, _, truth, _, pack = catalogue
    rows = _rows(pack, truth)
    batch = pack.read()
    net = np.sum((batch["counts"] - batch["alpha"] * batch["background"]) * batch["good"], 1)
    net = net[rows]
    assert truth["expected_net_counts"].min() >= 60 - 1e-6
    assert truth["expected_net_counts"].max() <= 20000 + 1e-6
    bright = np.argsort(truth["expected_net_counts"])[-10:]
    bright = bright[truth["label"][bright] != "sss"]  # supersoft counts are mostly below 0.5 keV
    ratio = net[bright] / truth["expected_net_counts"][bright]
    assert np.all((ratio > 0.5) & (ratio < 2.0)), ratio


def test_bright_agn_fit_recovers_its_photon_index(catalogue, xmm):
    _, _, truth, _, pack = catalogue
    rows = _rows(pack, truth)
    simple = (
        (truth["label"] == "agn")
        & (truth["nh_int"] < 1.0)
        & ~np.isfinite(truth["soft_excess_kt"])
        & (truth["expected_net_counts"] > 1500)
    )
    assert simple.any(), "the seed gives no bright unabsorbed AGN"
    i = np.flatnonzero(simple)[np.argmax(truth["expected_net_counts"][simple])]
    xs = CrossSection.from_fits(xmm / "absorption" / "xsect_tbabs_wilm.fits")
    result = fit(pack, int(rows[i]), "powerlaw", cross_section=xs)
    gamma, error = result.parameters["gamma"], result.errors["gamma"]
    assert np.isfinite(error) and error > 0
    assert abs(gamma - truth["gamma"][i]) < 3 * error, (gamma, error, truth["gamma"][i])
    assert result.statistic / result.dof < 2.0


def test_second_call_returns_the_catalogue_as_it_is(catalogue, xmm):
    out, ogip, _, _, _ = catalogue
    before = (out / "truth.fits").stat().st_mtime_ns
    again = independent.generate(
        out, single=SINGLE, repeated=REPEATED, epochs=EPOCHS, seed=11, data=xmm, progress=False
    )
    assert again == ogip
    assert (out / "truth.fits").stat().st_mtime_ns == before
    assert not list(out.glob(".independent-*"))  # no temporary folder left behind


def test_rmf_reader_takes_the_first_channel_from_the_file(xmm):
    # no TLMIN on F_CHAN, EBOUNDS from 0: the channels must still start at 0
    old = independent.read_rmf(xmm / "responses" / "epn_ff20_dY9.rmf")
    assert old.first_channel == 0 and old.channel[0] == 0
    assert old.matrix.shape == (len(old.e_lo), len(old.channel))
    canned = independent.read_rmf(xmm / "responses" / "epn_e3_ef20_sdY6_v19.0.rmf")
    assert canned.matrix.shape == (2067, 4096)
    assert np.allclose(canned.matrix.sum(1), 1.0, atol=2e-3)  # a redistribution matrix


def test_narrow_lines_keep_their_flux(xmm):
    xs = independent.CrossSection(xmm / "absorption" / "xsect_tbabs_wilm.fits")
    lo = np.linspace(5.0, 8.0, 301)
    grid = independent.EnergyGrid(lo[:-1], lo[1:], xs)
    for sigma in (0.0, 1e-4, 0.005, 0.05):
        line = grid.line(6.4013, sigma, 2.5)
        assert np.isclose(line.sum(), 2.5, rtol=1e-6)
    # the table says cm^2 but holds 1e-22 cm^2 per H atom: read in those units
    assert np.isclose(xs(1.0), 1.74, rtol=0.02)
