"""The readers and folding on the real XMM-Newton files of ../shared/data/xmm."""

import re

import jax
import numpy as np
import pytest
from astropy.io import fits

import xspecvae as xv
from xspecvae.instrument import builtin_pn_area

RMFS = [
    "responses/epn_e3_ef20_sdY6_v19.0.rmf",
    "responses/pn_sas16.rmf",
    "responses/epn_ff20_dY9.rmf",
    "ngc7793_ulx4/PN.rmf",
]
SDY6 = "responses/epn_e3_ef20_sdY6_v19.0.rmf"


def reference_matrix(path):
    """The dense redistribution, row by row and group by group, straight from the FITS
    columns: an independent float64 reading. Column = F_CHAN - first EBOUNDS channel."""
    with fits.open(path) as hdul:
        table = hdul["MATRIX"] if "MATRIX" in hdul else hdul["SPECRESP MATRIX"]
        first = int(hdul["EBOUNDS"].data["CHANNEL"][0])
        n_channel = len(hdul["EBOUNDS"].data)
        matrix = np.zeros((len(table.data), n_channel))
        for i, row in enumerate(table.data):
            f_chan = np.atleast_1d(row["F_CHAN"])
            n_chan = np.atleast_1d(row["N_CHAN"])
            values = np.atleast_1d(row["MATRIX"]).astype(np.float64)
            k = 0
            for g in range(int(row["N_GRP"])):
                start = int(f_chan[g]) - first
                matrix[i, start : start + n_chan[g]] = values[k : k + n_chan[g]]
                k += n_chan[g]
    return matrix


@pytest.fixture(scope="module")
def sdy6(xmm):
    return xv.read_rmf(xmm / SDY6)


def test_every_pn_product_of_the_observation_reads(xmm, sdy6):
    folder = xmm / "pps_0760940101"
    spectra = sorted(folder.glob("P0760940101PNS003SRSPEC*.FTZ"))
    assert len(spectra) == 112
    for path in spectra:
        src = xv.read_pha(path)
        assert src.instrument == "EPN" and src.kind == "TOTAL" and src.exposure > 0
        assert src.n_channel == 4096 and src.first_channel == 0
        assert np.all(src.counts >= 0) and np.all(src.counts == np.round(src.counts))
        assert re.fullmatch(r"epn_e3_ef20_sdY[1-9]\.rmf", src.respfile), src.respfile
        assert np.isfinite(src.ra) and np.isfinite(src.mjd_obs)
        bkg = xv.read_pha(src.locate("backfile"))
        arf = xv.read_arf(src.locate("ancrfile"))
        assert src.locate("backfile").name.replace("BGSPEC", "SRSPEC") == path.name
        assert bkg.kind == "TOTAL" and bkg.n_channel == 4096
        xv.check_match(src, sdy6, arf)  # channels and the ARF energy grid fit the canned RMF
        alpha = xv.background_ratio(src, bkg)
        expected = (
            fits.getval(path, "BACKSCAL", 1)
            * fits.getval(path, "EXPOSURE", 1)
            / (
                fits.getval(src.locate("backfile"), "BACKSCAL", 1)
                * fits.getval(src.locate("backfile"), "EXPOSURE", 1)
            )
        )
        np.testing.assert_allclose(alpha, expected, rtol=1e-12)
    for kind in ("BGSPEC", "SRCARF"):
        assert len(sorted(folder.glob(f"P0760940101PNS003{kind}*.FTZ"))) == 112


def test_source_positions_are_the_sources_not_the_pointing(xmm):
    path = xmm / "pps_0760940101/P0760940101PNS003SRSPEC0001.FTZ"
    pha = xv.read_pha(path)
    assert pha.ra == pytest.approx(fits.getval(path, "SRC_RA", 1))
    assert pha.ra != pytest.approx(fits.getval(path, "RA_OBJ", 0))
    assert pha.date_obs == "2015-06-02T10:34:37" and pha.obs_id == "0760940101"


@pytest.mark.parametrize("name", RMFS)
def test_rmf_matrix_equals_independent_reading(xmm, name):
    rmf = xv.read_rmf(xmm / name)
    np.testing.assert_array_equal(rmf.matrix, reference_matrix(xmm / name).astype(np.float32))
    assert rmf.first_channel == 0 and not rmf.includes_arf


@pytest.mark.parametrize("storage", ["tiled", "dense"])
@pytest.mark.parametrize("name", RMFS)
def test_folding_equals_dense_float64(xmm, name, storage):
    rmf = xv.read_rmf(xmm / name)
    response = xv.Response.from_ogip(rmf, storage=storage)
    dense = reference_matrix(xmm / name)
    rng = np.random.default_rng(0)
    flux = rng.uniform(0, 1, (6, rmf.n_energy)) * np.geomspace(1, 1e-3, rmf.n_energy)
    expected = 3e4 * (flux @ dense)
    with jax.enable_x64(True):
        exact = np.asarray(response.fold(flux, 3e4))
    reached = expected != 0
    np.testing.assert_array_equal(exact[~reached], 0.0)
    np.testing.assert_allclose(exact[reached], expected[reached], rtol=1e-6)
    # float32, the default: error bounded relative to the sum of |terms| (dY9 has negative
    # matrix elements, so some channels cancel)
    single = np.asarray(response.fold(flux, 3e4))
    scale = 3e4 * (flux @ np.abs(dense))
    assert np.all(np.abs(single - expected) <= 1e-5 * scale)


@pytest.mark.parametrize("name", [n for n in RMFS if "dY9" not in n])
def test_channel_offset_puts_lines_at_their_energy(xmm, name):
    """For each row 1-10 keV, the centroid of the main peak sits at the row's energy to well
    under one channel (5 eV): a channel offset off by one would move it by 5 eV."""
    rmf = xv.read_rmf(xmm / name)
    energy = 0.5 * (rmf.energy_lo + rmf.energy_hi)
    centre = 0.5 * (rmf.e_min + rmf.e_max)
    rows = np.flatnonzero((energy > 1) & (energy < 10))
    peak = rmf.matrix[rows].argmax(axis=1)
    window = peak[:, None] + np.arange(-15, 16)
    weights = np.take_along_axis(rmf.matrix[rows], window, axis=1)
    offsets = {}
    for shift in (0, 1):
        centroid = (weights * centre[window - shift]).sum(1) / weights.sum(1)
        offsets[shift] = np.median(np.abs(centroid - energy[rows]))
    assert offsets[0] < 0.001 and offsets[1] > 0.004


def test_old_rmf_without_tlmin_counts_channels_from_zero(xmm):
    """epn_ff20_dY9.rmf has no TLMIN on F_CHAN and EBOUNDS from 0; its spectrum (agn_pn)
    has channels 0..4095 and an ARF on its energy grid."""
    path = xmm / "responses/epn_ff20_dY9.rmf"
    with fits.open(path) as hdul:
        table = hdul["SPECRESP MATRIX"]
        assert not any(k.startswith("TLMIN") for k in table.header)
        assert hdul["EBOUNDS"].data["CHANNEL"][0] == 0
    rmf = xv.read_rmf(path)
    src = xv.read_pha(xmm / "agn_pn/pn_pi_src_bin10.ds")
    arf = xv.read_arf(xmm / "agn_pn/pn_pi_src.arf")
    xv.check_match(src, rmf, arf)
    assert src.counts.sum() == 4784 and src.backfile == "pn_pi_bgd.ds"
    assert src.locate("backfile") is None and src.locate("respfile") is None
    # a 6.4 keV line folds to a peak within 10 eV of its energy bin's centre
    response = xv.Response.from_ogip(rmf, arf)
    i = np.searchsorted(response.energy_edges, 6.4) - 1
    line = np.zeros(rmf.n_energy)
    line[i] = 1.0
    counts = np.asarray(response.fold(line))
    peak = 0.5 * (rmf.e_min + rmf.e_max)[counts.argmax()]
    assert peak == pytest.approx(response.energy_centres[i], abs=0.01)


def test_ngc7793_ulx4_backscale_ratio(xmm):
    folder = xmm / "ngc7793_ulx4"
    src = xv.read_pha(folder / "PN_spectrum_grp20.fits")
    bkg = xv.read_pha(src.locate("backfile"))
    assert src.locate("backfile") == folder / "PNbackground_spectrum.fits"
    header_src = fits.getheader(folder / "PN_spectrum_grp20.fits", "SPECTRUM")
    header_bkg = fits.getheader(folder / "PNbackground_spectrum.fits", "SPECTRUM")
    expected = (header_src["BACKSCAL"] * header_src["EXPOSURE"] * header_src["AREASCAL"]) / (
        header_bkg["BACKSCAL"] * header_bkg["EXPOSURE"] * header_bkg["AREASCAL"]
    )
    np.testing.assert_allclose(xv.background_ratio(src, bkg), expected, rtol=1e-12)
    assert expected == pytest.approx(2010100 / 6866200)
    rmf = xv.read_rmf(src.locate("respfile"))
    xv.check_match(src, rmf, xv.read_arf(src.locate("ancrfile")))
    grouping = xv.Grouping.from_ogip(src.grouping, src.quality)
    grouped = grouping.apply(src.counts)
    assert grouped.sum() == src.counts[src.quality == 0].sum()
    assert grouped[:-1].min() >= 20  # the file's grouping: at least 20 counts per bin


def test_other_instruments_and_conventions(xmm):
    rgs = xv.read_pha(xmm / "pps_0760940101/P0760940101R1S004SRSPEC1001.FTZ")
    assert rgs.kind == "NET" and not rgs.poisserr and rgs.counts.min() < 0
    assert rgs.first_channel == 1 and isinstance(rgs.areascal, np.ndarray)
    rgs_bkg = xv.read_pha(xmm / "pps_0760940101/P0760940101R1S004BGSPEC1001.FTZ")
    assert rgs_bkg.kind == "BKG" and isinstance(rgs_bkg.backscal, np.ndarray)
    fwc = xv.read_pha(xmm / "background/PN_FWC.fits.gz")
    assert fwc.is_rate and fwc.n_channel == 4096
    rate = fits.getdata(xmm / "background/PN_FWC.fits.gz", "SPECTRUM")["RATE"]
    np.testing.assert_allclose(fwc.counts, rate * fwc.exposure)
    mos = xv.read_pha(xmm / "mnlup_mos1/MNLup_2138_0670580101_EMOS1_S001_spec.15grp")
    assert mos.n_channel == 800 and mos.object == "MN Lup" and mos.quality.max() == 2
    assert mos.locate("respfile") is None and mos.locate("ancrfile") is not None


def test_builtin_area_approximates_a_real_pn_arf(xmm):
    arf = xv.read_arf(xmm / "ngc7793_ulx4/PN.arf")
    energy = 0.5 * (arf.energy_lo + arf.energy_hi)
    ratio = builtin_pn_area(energy) / arf.specresp
    smooth = ((energy > 0.6) & (energy < 1.8)) | ((energy > 2.5) & (energy < 10))
    assert np.all(np.abs(ratio[smooth] - 1) < 0.11)
    edges = (energy >= 1.8) & (energy <= 2.5)
    assert np.all(np.abs(ratio[edges] - 1) < 0.2)
