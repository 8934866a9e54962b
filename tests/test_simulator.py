"""The population simulator and the OGIP writers."""

from collections import Counter

import numpy as np
import pytest
from scipy.stats import kstest

from xspecvae import physics, simulator
from xspecvae.absorption import CrossSection, absorption, partial_covering
from xspecvae.catalog import Grid, Pack, match_positions
from xspecvae.instrument import Response, builtin_pn_response
from xspecvae.ogip import (
    OGIPError,
    background_ratio,
    read_arf,
    read_pha,
    read_rmf,
    write_arf,
    write_pha,
    write_rmf,
)
from xspecvae.simulator import (
    CLASS_FRACTIONS,
    SOURCE_COUNTS,
    TRUTH,
    making,
    simulate_pack,
    vignetting,
    write_ogip,
)

RMF = "responses/epn_e3_ef20_sdY6_v19.0.rmf"
ARF = "ngc7793_ulx4/PN.arf"
PER_ROW = ("counts", "background", "alpha", "good", "exposure", "arf", "rmf_index")


def load(path):
    with Pack(path) as pack:
        return pack.load(), pack.meta, pack.truth, pack


@pytest.fixture(scope="module")
def population(tmp_path_factory):
    """The default setup (built-in response), 3000 spectra in three chunks."""
    path = tmp_path_factory.mktemp("population") / "population.h5"
    simulate_pack(path, 3000, seed=1, chunk=1024, progress=False)
    return path


@pytest.fixture(scope="module")
def drifting(tmp_path_factory):
    """Only repeat observations of TDEs, XRBs and AGN, no count cut."""
    path = tmp_path_factory.mktemp("drift") / "drift.h5"
    fractions = {"TDE": 1, "XRB": 1, "AGN": 1}
    simulate_pack(
        path, 600, seed=2, min_counts=0, repeat_fraction=1.0, fractions=fractions, progress=False
    )
    return path


# ---------------------------------------------------------------------------------------------
# The population


def test_labels_follow_the_class_fractions(population):
    _, meta, _, pack = load(population)
    n = pack.n
    for label, fraction in CLASS_FRACTIONS.items():
        share = np.mean(meta["label"] == label)
        assert abs(share - fraction) < 4 * np.sqrt(fraction * (1 - fraction) / n) + 2 / n, label


def test_count_cut_and_signal_to_noise(population):
    data, meta, truth, _ = load(population)
    assert data["counts"].sum(axis=1).min() >= 200
    np.testing.assert_array_equal(meta["counts"], data["counts"].sum(axis=1))
    assert 0.3 < np.mean(truth["snr"] < 2) < 0.7
    s, b = truth["expected_counts"], truth["expected_background"]
    np.testing.assert_allclose(truth["snr"], s / np.sqrt(s + b))
    # the faint tail: many sources with a few tens of counts, some very bright
    assert np.median(s) < 100 and s.max() > 2000


def test_background_region_counts_are_poisson(population):
    data, _, truth, _ = load(population)
    alpha = data["alpha"][:, 0].astype(float)
    assert np.all(data["alpha"] == data["alpha"][:, :1])
    assert np.all((alpha >= 0.05 - 1e-6) & (alpha <= 0.3 + 1e-6))
    mu = truth["expected_background"] / alpha
    z = (data["background"].sum(axis=1) - mu) / np.sqrt(mu)
    assert abs(z.mean()) < 4 / np.sqrt(z.size)
    assert 0.85 < z.var() < 1.15


def test_source_counts_are_poisson_without_a_cut(tmp_path):
    path = tmp_path / "nocut.h5"
    simulate_pack(path, 1500, seed=5, min_counts=0, progress=False)
    data, _, truth, _ = load(path)
    expected = truth["expected_counts"] + truth["expected_background"]
    z = (data["counts"].sum(axis=1) - expected) / np.sqrt(expected)
    assert abs(z.mean()) < 4 / np.sqrt(z.size)
    assert 0.85 < z.var() < 1.15
    # the background region does not depend on the cut either
    assert data["counts"].sum(axis=1).min() < 200


@pytest.mark.parametrize("slope", [0.0, 0.5])
def test_source_counts_follow_the_asked_slope(tmp_path, slope):
    """N(>S) ~ S^-slope between SOURCE_COUNTS' limits (log-uniform for 0), first epochs."""
    path = simulate_pack(
        tmp_path / "s.h5",
        800,
        seed=3,
        min_counts=0,
        counts_slope=slope,
        repeat_fraction=0.0,
        progress=False,
    )
    _, meta, truth, _ = load(path)
    lo, hi = SOURCE_COUNTS["minimum"], SOURCE_COUNTS["maximum"]
    if slope:
        cdf = lambda s: (1 - (lo / s) ** slope) / (1 - (lo / hi) ** slope)  # noqa: E731
    else:
        cdf = lambda s: np.log(s / lo) / np.log(hi / lo)  # noqa: E731
    assert kstest(truth["expected_counts"], cdf).pvalue > 1e-3
    with pytest.raises(ValueError, match="counts_slope"):
        simulate_pack(tmp_path / "x.h5", 10, counts_slope=-1.0, progress=False)


def test_pack_holds_truth_and_meta_for_every_row(population):
    data, meta, truth, pack = load(population)
    n = pack.n
    assert set(TRUTH) <= set(truth)
    for column in ("source_id", "obs_id", "mjd", "ra", "dec", "label", "file", "offaxis", "epoch"):
        assert meta[column].shape == (n,)
    for column in ("expected_counts", "expected_background", "snr", "photon_flux", "energy_flux"):
        assert np.all(np.isfinite(truth[column]) & (truth[column] > 0)), column
    assert np.all(truth["photon_flux"] <= truth["photon_flux_unabsorbed"] * (1 + 1e-6))
    assert len(set(meta["obs_id"])) == n and all(len(o) == 10 for o in meta["obs_id"])
    assert np.all((meta["offaxis"] >= 0) & (meta["offaxis"] <= 15))
    assert np.all((meta["mjd"] >= 51544) & (meta["mjd"] <= 60676))
    assert np.all((data["exposure"] >= 5e3) & (data["exposure"] <= 130e3))
    label = meta["label"]
    agn, star = label == "AGN", label == "star"
    for column in ("redshift", "gamma", "nh", "line_ew", "norm_powerlaw", "norm_line"):
        assert np.all(np.isfinite(truth[column][agn])), column
    assert np.all(np.isnan(truth["redshift"][star]) & np.isnan(truth["nh"][star]))
    assert np.all(np.isfinite(truth["kt"][star]) & np.isnan(truth["norm_powerlaw"][star]))
    assert 0.2 < np.mean(agn & (truth["nh"] > 1)) / np.mean(agn) < 0.4  # N_H > 1e22
    assert set(truth["state"][label == "XRB"]) <= {"soft", "hard"}
    assert set(truth["state"][label != "XRB"]) == {""}


def test_epochs_share_source_and_position(population):
    _, meta, _, pack = load(population)
    sid = meta["source_id"]
    ids, first, count = np.unique(sid, return_index=True, return_counts=True)
    repeated = ids[count > 1]
    assert 0.04 < repeated.size / ids.size < 0.15
    for source in repeated:
        rows = np.flatnonzero(sid == source)
        assert np.all(np.diff(rows) == 1)  # consecutive rows
        np.testing.assert_array_equal(meta["epoch"][rows], np.arange(1, rows.size + 1))
        assert np.all(np.diff(meta["mjd"][rows]) > 0)
        assert len(set(meta["ra"][rows])) == 1 and len(set(meta["dec"][rows])) == 1
        assert len(set(meta["label"][rows])) == 1
    # different sources are far apart: grouping by position finds every source
    groups = match_positions(meta["ra"], meta["dec"], radius_arcsec=60.0)
    assert np.unique(groups).size == ids.size


def test_drift_between_epochs(drifting):
    data, meta, truth, _ = load(drifting)
    sid, label = meta["source_id"], meta["label"]
    checked = {"TDE": 0, "XRB": 0, "AGN": 0}
    steps = []
    for source in np.unique(sid):
        rows = np.flatnonzero(sid == source)
        if rows.size < 2:
            continue
        kind = label[rows[0]]
        checked[kind] += 1
        if kind == "TDE":  # fades by 3-30 and cools
            flux = truth["photon_flux_unabsorbed"][rows]
            assert np.all(np.diff(flux) < 0)
            assert 3 - 1e-6 <= flux[0] / flux[-1] <= 30 + 1e-6
            assert np.all(np.diff(truth["photon_flux"][rows]) < 0)
            kt = truth["bb_kt"][rows]
            assert np.all(np.isnan(kt)) or np.all(np.diff(kt) <= 0)
        elif kind == "XRB":  # the state flips at the second epoch
            state = truth["state"][rows]
            assert state[0] != state[1]
            disc = truth["disc_fraction"][rows]
            assert np.all((disc > 0.5) == (state == "soft"))
        else:  # AGN columns change (a walk of 0.4 dex an epoch, within 1e20-10^24.5)
            steps.extend(np.abs(np.diff(np.log10(truth["nh"][rows]))))
    assert min(checked.values()) >= 10
    assert 0.15 < np.median(steps) < 0.5
    # fluxes are consistent with the counts: expected counts / exposure scale with flux
    rows = label == "TDE"
    assert np.all(np.isfinite(truth["flux_factor"][rows]))


def rebuilt(label, t, edges):
    """A row's unabsorbed and observed spectra from its truth columns, with xspecvae.physics
    and xspecvae.absorption."""
    cross = CrossSection.morrison_mccammon()
    galactic = absorption(cross.on(edges), t["nh_gal"])
    z = 0.0 if np.isnan(t["redshift"]) else t["redshift"]
    rest = cross.on(edges * (1 + z))

    def component(model, *args):
        return np.asarray(physics.redshifted(model, edges, z, *args), dtype=float)

    if label == "AGN":
        power = component(physics.powerlaw, t["gamma"], t["norm_powerlaw"])
        line = component(physics.gaussian_line, 6.4, t["line_sigma"], t["norm_line"])
        cover = partial_covering(rest, t["nh"], 1 - t["scatter_fraction"])
        return power + line, galactic * (cover * power + line)
    if label in ("star", "cluster", "CV"):
        spectrum = component(physics.plasma, t["kt"], t["norm_plasma"], t["abundance"])
        if np.isfinite(t["kt2"]):
            spectrum += component(physics.plasma, t["kt2"], t["norm_plasma2"], t["abundance"])
        if label != "CV":
            return spectrum, galactic * spectrum
        # CV: Fe XXV 6.7 keV is in the plasma; a 6.4 keV line escapes the partial coverer
        line = component(physics.gaussian_line, 6.4, t["line_sigma"], t["norm_line"])
        cover = partial_covering(cross.on(edges), t["cover_nh"], t["cover_fraction"])
        return spectrum + line, galactic * (cover * spectrum + line)
    # XRB and ULX: a disc plus a power law or (ULX) a cool blackbody; SSS and TDE: one of the two
    disc = label in ("XRB", "ULX")
    spectrum = component(physics.diskbb, t["t_in"], t["norm_diskbb"]) if disc else 0.0
    if np.isfinite(t["bb_kt"]):
        spectrum += component(physics.blackbody, t["bb_kt"], t["norm_blackbody"])
    else:
        spectrum += component(physics.powerlaw, t["gamma"], t["norm_powerlaw"])
    intrinsic = 1.0 if np.isnan(t["nh"]) else absorption(rest, t["nh"])  # TDE: none
    return spectrum, galactic * intrinsic * spectrum


def test_truth_reproduces_counts_and_fluxes(population):
    """Spectra rebuilt from the truth give the expected counts and fluxes: the first 3 rows of
    every class and set of components (one or two plasmas; a blackbody or a power law)."""
    data, meta, truth, pack = load(population)
    edges = pack.grid.energy_edges
    band = np.clip(np.minimum(edges[1:], 12.0) - np.maximum(edges[:-1], 0.2), 0, None)
    band /= np.diff(edges)
    components = np.stack([np.isfinite(v) for k, v in truth.items() if k.startswith("norm_")], 1)
    seen = Counter()
    for row, label in enumerate(meta["label"]):
        kind = (label, *components[row])
        seen[kind] += 1
        if seen[kind] > 3:
            continue
        t = {name: values[row] for name, values in truth.items()}
        unabsorbed, observed = (np.asarray(s, dtype=float) for s in rebuilt(label, t, edges))
        folded = (observed * data["arf"][row]) @ pack.rmf[data["rmf_index"][row]]
        counts = data["exposure"][row] * folded.sum()
        np.testing.assert_allclose(counts, t["expected_counts"], rtol=1e-3, err_msg=label)
        np.testing.assert_allclose(observed @ band, t["photon_flux"], rtol=1e-3)
        np.testing.assert_allclose(unabsorbed @ band, t["photon_flux_unabsorbed"], rtol=1e-3)
    assert len(seen) == len(simulator.CLASSES) + 3  # stars, ULXs and TDEs come in two kinds


def within(values, lo, hi, name):
    """``values`` lie in [lo, hi] and reach the lowest and the highest quarter of it (in log)."""
    reach = (hi / lo) ** 0.25
    assert lo * (1 - 1e-6) <= values.min() < lo * reach, (name, values.min())
    assert hi / reach < values.max() <= hi * (1 + 1e-6), (name, values.max())


def test_parameter_ranges(population):
    """The class parameters span the documented ranges (keV; columns in 1e22 cm^-2)."""
    _, meta, truth, _ = load(population)
    label = meta["label"]
    within(truth["kt"][label == "CV"], 5.0, 40.0, "CV kT")
    within(truth["bb_kt"][label == "SSS"], 0.02, 0.1, "SSS kT")
    within(truth["kt"][label == "cluster"], 1.0, 8.0, "cluster kT")
    assert np.all(truth["redshift"][label == "cluster"] > 0)
    star = label == "star"
    kt2 = truth["kt2"][star]  # the second plasma of two-temperature stars
    within(np.concatenate([truth["kt"][star], kt2[np.isfinite(kt2)]]), 0.1, 1.5, "star kT")
    agn = (label == "AGN") & (meta["epoch"] == 1)  # later epochs walk in N_H and jitter in Gamma
    assert truth["gamma"][agn].mean() == pytest.approx(1.9, abs=0.03)
    assert truth["gamma"][agn].std() == pytest.approx(0.3, abs=0.03)
    within(truth["nh"][agn], 0.01, 100.0, "AGN N_H")


# ---------------------------------------------------------------------------------------------
# Determinism and resuming


def test_same_seed_same_pack_and_resume(tmp_path, monkeypatch):
    options = dict(seed=3, chunk=256, progress=False)
    whole = simulate_pack(tmp_path / "whole.h5", 600, **options)
    calls = {"n": 0}
    original = making._simulate_chunk

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(making, "_simulate_chunk", interrupted)
    target = tmp_path / "resumed.h5"
    with pytest.raises(KeyboardInterrupt):
        simulate_pack(target, 600, **options)
    assert not target.exists() and (tmp_path / "resumed.h5.partial").exists()
    with Pack(tmp_path / "resumed.h5.partial") as partial:
        assert partial.n == 256
    monkeypatch.setattr(making, "_simulate_chunk", original)
    calls["n"] = 0
    resumed = simulate_pack(target, 600, **options)
    a, meta_a, truth_a, _ = load(whole)
    b, meta_b, truth_b, _ = load(resumed)
    for name in PER_ROW:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    for name in meta_a:
        np.testing.assert_array_equal(meta_a[name], meta_b[name], err_msg=name)
    for name in truth_a:
        np.testing.assert_array_equal(truth_a[name], truth_b[name], err_msg=name)
    other, *_ = load(simulate_pack(tmp_path / "other.h5", 600, **dict(options, seed=4)))
    assert not np.array_equal(other["counts"], a["counts"])
    # sources never straddle chunks
    sid = meta_a["source_id"]
    assert set(sid[:256]).isdisjoint(sid[256:])


def test_resume_with_other_options_starts_afresh(tmp_path):
    path = tmp_path / "p.h5"
    simulate_pack(path, 300, seed=1, chunk=256, progress=False)
    path.rename(tmp_path / "p.h5.partial")  # looks like an interrupted run of other options
    simulate_pack(path, 300, seed=2, chunk=256, progress=False)
    fresh = simulate_pack(tmp_path / "fresh.h5", 300, seed=2, chunk=256, progress=False)
    np.testing.assert_array_equal(load(path)[0]["counts"], load(fresh)[0]["counts"])


def test_bad_options(tmp_path):
    with pytest.raises(ValueError, match="unknown classes"):
        simulate_pack(tmp_path / "x.h5", 10, fractions={"quasar": 1.0}, progress=False)
    with pytest.raises(ValueError):
        simulate_pack(tmp_path / "x.h5", 0, progress=False)


# ---------------------------------------------------------------------------------------------
# Instrument model


def test_vignetting_model():
    energy = np.array([0.5, 1.0, 4.0, 8.0])
    assert np.all(vignetting(energy, 0.0) == 1.0)
    at = vignetting(energy, np.array([5.0, 10.0, 15.0]))
    assert np.all(np.diff(at, axis=0) < 0) and np.all(np.diff(at[:, 1:], axis=1) < 0)
    np.testing.assert_allclose(at[1, [1, 3]], np.exp(-np.array([0.25, (10 / 12) ** 2])))


def test_builtin_particle_background_resembles_the_fwc(xmm):
    rmf = read_rmf(xmm / RMF)
    grid = Grid.from_response("pn", Response.from_ogip(rmf))
    fwc = grid.group(read_pha(xmm / "background/PN_FWC.fits.gz").counts)
    builtin = grid.group(simulator.builtin_particle_background(rmf.e_min, rmf.e_max))
    centre = 0.5 * (grid.channel_lo + grid.channel_hi)
    for lo, hi in ((0.2, 0.5), (0.5, 2.0), (2.0, 7.0), (7.8, 8.3), (9.0, 12.0)):
        band = (centre >= lo) & (centre < hi)
        ratio = (builtin[band].sum() / builtin.sum()) / (fwc[band].sum() / fwc.sum())
        assert 0.6 < ratio < 1.6, (lo, hi, ratio)


def test_real_responses(xmm, tmp_path):
    rmfs = [xmm / RMF, xmm / "ngc7793_ulx4/PN.rmf"]
    path = simulate_pack(
        tmp_path / "real.h5",
        300,
        seed=7,
        rmfs=rmfs,
        arf=xmm / ARF,
        background=xmm / "background/PN_FWC.fits.gz",
        absorption=xmm / "absorption/xsect_tbabs_wilm.fits",
        progress=False,
    )
    data, meta, truth, pack = load(path)
    assert pack.rmf_names == ["epn_e3_ef20_sdY6_v19.0.rmf", "PN.rmf"]
    grid = pack.grid
    for index, file in enumerate(rmfs):
        np.testing.assert_array_equal(
            pack.rmf[index], grid.regroup(Response.from_ogip(read_rmf(file)))
        )
    assert set(np.unique(data["rmf_index"])) == {0, 1}
    area = grid.cut(read_arf(xmm / ARF).specresp)
    centre = np.sqrt(grid.energy_edges[1:] * grid.energy_edges[:-1])
    np.testing.assert_allclose(
        data["arf"], area * vignetting(centre, meta["offaxis"]), rtol=1e-5, atol=1e-3
    )
    assert np.all(data["counts"].sum(axis=1) >= 200)
    # back to OGIP files through the real RMF: the matrix survives bit for bit
    written = write_ogip(path, tmp_path / "ogip", rows=[0, 1, 2])
    names = {p.name for p in written}
    for name in pack.rmf_names:
        if name in names:
            index = pack.rmf_names.index(name)
            again = read_rmf(tmp_path / "ogip" / name)
            np.testing.assert_array_equal(again.matrix, read_rmf(rmfs[index]).matrix)


def test_bad_instrument_files(xmm, tmp_path):
    with pytest.raises(OGIPError):  # an ARF on another energy grid
        simulate_pack(tmp_path / "x.h5", 10, arf=xmm / "agn_pn/pn_pi_src.arf", progress=False)
    with pytest.raises(ValueError, match="does not fit"):
        simulate_pack(
            tmp_path / "y.h5",
            10,
            rmfs=[xmm / RMF, xmm / "responses/epn_ff20_dY9.rmf"],
            progress=False,
        )


# ---------------------------------------------------------------------------------------------
# OGIP writers


def test_writers_round_trip(tmp_path):
    counts = np.array([0, 3, 7, 0, 12, 1])
    header = {"OBS_ID": "0123456789", "MJD-OBS": 55000.25, "SRC_RA": 10.5, "SRC_DEC": -3.25}
    pha = read_pha(write_pha(tmp_path / "s.FTZ", counts, exposure=1e4, backscal=4.0, header=header))
    np.testing.assert_array_equal(pha.counts, counts)
    assert (pha.exposure, pha.backscal) == (1e4, 4.0)
    assert (pha.obs_id, pha.mjd_obs) == ("0123456789", 55000.25)
    assert (pha.ra, pha.dec, pha.kind, pha.first_channel) == (10.5, -3.25, "TOTAL", 0)
    assert np.all(pha.quality == 0) and np.all(pha.grouping == 0)
    assert (tmp_path / "s.FTZ").read_bytes()[:2] == b"\x1f\x8b"
    response = builtin_pn_response(300)
    edges = response.energy_edges
    arf = read_arf(write_arf(tmp_path / "a.arf.gz", edges[:-1], edges[1:], response.arf))
    np.testing.assert_array_equal(arf.energy_lo, edges[:-1])
    np.testing.assert_allclose(arf.specresp, response.arf, rtol=1e-7)
    rmf = read_rmf(
        write_rmf(
            tmp_path / "r.rmf",
            edges[:-1],
            edges[1:],
            response.matrix,
            response.channel_lo,
            response.channel_hi,
            first_channel=1,
        )
    )
    assert rmf.matrix.dtype == np.float32 and rmf.first_channel == 1
    np.testing.assert_array_equal(rmf.matrix, response.matrix)
    np.testing.assert_array_equal(rmf.energy_hi, edges[1:])
    np.testing.assert_array_equal(rmf.e_min, response.channel_lo)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.arf.gz", "r.rmf", "s.FTZ"]
    with pytest.raises(ValueError):
        write_pha(tmp_path / "bad.pha", [1.5, 2.0], exposure=1.0)


def test_write_ogip_gives_the_pack_back(population, tmp_path):
    data, meta, _, pack = load(population)
    rows = [0, 5, 17]
    written = write_ogip(population, tmp_path, rows=rows)
    assert len(written) == 1 + 3 * len(rows)
    grid = pack.grid
    rmf = read_rmf(tmp_path / "builtin_pn.rmf")
    np.testing.assert_allclose(
        grid.regroup(Response.from_ogip(rmf)), pack.rmf[0], rtol=1e-6, atol=1e-9
    )
    for row in rows:
        stem = f"P{meta['obs_id'][row]}PNS001"
        source = read_pha(tmp_path / f"{stem}SRSPEC0001.FTZ")
        background = read_pha(tmp_path / source.backfile)
        assert source.n_channel == 4096 and source.respfile == "builtin_pn.rmf"
        np.testing.assert_array_equal(grid.group(source.counts), data["counts"][row])
        np.testing.assert_array_equal(grid.group(background.counts), data["background"][row])
        arf = read_arf(tmp_path / source.ancrfile)
        np.testing.assert_array_equal(grid.cut(arf.specresp), data["arf"][row])
        np.testing.assert_allclose(
            background_ratio(source, background), data["alpha"][row, 0], rtol=1e-6
        )
        assert source.exposure == data["exposure"][row]
        assert (source.ra, source.dec) == (meta["ra"][row], meta["dec"][row])
        assert source.object == meta["label"][row] and background.kind == "BKG"
        assert abs(source.mjd_obs - meta["mjd"][row]) < 1e-6


def test_flagged_spectra_lose_the_bins_below_0_3_kev(tmp_path):
    """flagged_fraction marks the bins under 0.3 keV bad in that share of the spectra, as the
    pn pipeline's QUALITY does, without changing the spectra (flags are drawn last)."""
    path = simulate_pack(tmp_path / "f.h5", 400, seed=4, flagged_fraction=0.5, progress=False)
    data, _, _, pack = load(path)
    low = pack.grid.channel_lo < simulator.FLAGGED_BELOW
    assert 1 <= low.sum() <= 3
    flagged = ~data["good"].all(1)
    assert 0.4 < flagged.mean() < 0.6
    assert np.all(data["good"][flagged] == ~low) and data["good"][~flagged].all()
    plain = load(simulate_pack(tmp_path / "p.h5", 400, seed=4, progress=False))[0]
    assert plain["good"].all()
    np.testing.assert_array_equal(plain["counts"], data["counts"])


def test_real_background_spectra_shape_the_backgrounds(xmm, tmp_path):
    """With the pn BGSPECs of an observation as templates, each spectrum's background-region
    counts are Poisson around its template's shape (read here with astropy) times its
    expected background counts / alpha."""
    from astropy.io import fits

    files = sorted((xmm / "pps_0760940101").glob("P0760940101PNS003BGSPEC00[0-2]*.FTZ"))
    path = simulate_pack(
        tmp_path / "bg.h5",
        400,
        seed=4,
        rmfs=[xmm / RMF],
        arf=xmm / ARF,
        background_spectra=files,
        progress=False,
    )
    data, _, truth, pack = load(path)
    template = truth["background_template"]
    assert set(template) == set(range(len(files)))  # every file serves
    assert np.all(np.isnan(truth["particle_fraction"]))
    grid = pack.grid
    shapes = []
    for file in files:
        counts = fits.getdata(file, "SPECTRUM")["COUNTS"].astype(float)
        binned = np.array(
            [counts[a:b].sum() for a, b in zip(grid.grouping.start, grid.grouping.stop)]
        )
        shapes.append(binned / binned.sum())
    mu = np.array(shapes)[template] * (truth["expected_background"] / data["alpha"][:, 0])[:, None]
    observed, expected = data["background"].sum(0), mu.sum(0)
    used = expected > 20
    chi2 = np.sum((observed[used] - expected[used]) ** 2 / expected[used])
    assert chi2 / used.sum() < 2.0
    # the particle + sky model would not pass: the templates are what shaped the counts
    default = load(
        simulate_pack(
            tmp_path / "default.h5", 400, seed=4, rmfs=[xmm / RMF], arf=xmm / ARF, progress=False
        )
    )[0]["background"].sum(0)
    scale = default.sum() / observed.sum()
    assert np.sum((default[used] / scale - expected[used]) ** 2 / expected[used]) > 3 * chi2
