"""Ingestion of pipeline products into a pack (real XMM PPS files, and damaged copies)."""

from __future__ import annotations

import csv
import gzip
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from xspecvae import products
from xspecvae.catalog import Pack
from xspecvae.cli import main
from xspecvae.errors import InputError
from xspecvae.ogip import OGIPError
from xspecvae.products import find_rmf, ingest, ingestion, workers
from xspecvae.products import ids as source_ids

SUBSTITUTE = {"epn_e3_ef20_sdY?.rmf": "epn_e3_ef20_sdY6_v19.0.rmf"}


@pytest.fixture(scope="module")
def pps(xmm):
    return xmm / "pps_0760940101"


@pytest.fixture(scope="module")
def strict(pps, xmm, tmp_path_factory):
    """The observation packed with the RMFs at hand only (jobs=1)."""
    out = tmp_path_factory.mktemp("strict") / "pack.h5"
    return ingest([pps], out, rmf_dirs=[xmm / "responses"], jobs=1, progress=False)


@pytest.fixture(scope="module")
def substituted(pps, xmm, tmp_path_factory):
    """The observation packed with sdY6 standing in for the absent pn RMFs (2 processes)."""
    out = tmp_path_factory.mktemp("substituted") / "pack.h5"
    return ingest(
        [pps], out, rmf_dirs=[xmm / "responses"], substitutes=SUBSTITUTE, jobs=2, progress=False
    )


def by_name(result) -> dict[str, dict]:
    return {Path(r["file"]).name: r for r in result.report}


def test_every_input_file_is_accounted_for(strict, pps):
    names = sorted(p.name for p in pps.iterdir())
    report = by_name(strict)
    assert sorted(report) == names
    assert {r["status"] for r in strict.report} <= {
        "packed",
        "rejected",
        "used",
        "unused",
        "ignored",
    }
    assert report["LICENSE-EUPL-1.2.txt"]["status"] == "ignored"
    on_disk = json.loads(strict.report_json.read_text())
    assert on_disk["inputs"] == len(names) and len(on_disk["files"]) == len(names)
    with open(strict.report_csv) as f:
        assert len(list(csv.DictReader(f))) == len(names)


def test_without_substitutes_only_spectra_with_their_rmf_are_packed(strict, pps):
    report = by_name(strict)
    expected = set()
    for path in pps.glob("*PNS003SRSPEC*.FTZ"):
        if fits.getheader(path, "SPECTRUM")["RESPFILE"] == "epn_e3_ef20_sdY6.rmf":
            expected.add(path.name)
    assert len(expected) == 19 and strict.packed == {"pn": 19}
    for name, row in report.items():
        if "SRSPEC" not in name:
            continue
        if name in expected:
            assert row["status"] == "packed", row
        elif "PNS003" in name or "M1S001" in name or "M2S002" in name:
            assert row["status"] == "rejected"
            wanted = fits.getheader(pps / name, "SPECTRUM")["RESPFILE"]
            assert f"RMF {wanted} (RESPFILE) not found" in row["reason"]
            assert "--rmf-substitute" in row["reason"]
        else:  # RGS fluxed NET spectra
            assert row["status"] == "rejected" and "NET spectrum" in row["reason"]
    # the background and ARF of a packed spectrum are used; those of a rejected one are not
    packed = next(iter(sorted(expected)))
    assert report[packed.replace("SRSPEC", "BGSPEC")]["status"] == "used"
    rejected = next(n for n, r in report.items() if r["status"] == "rejected" and "PNS" in n)
    assert report[rejected.replace("SRSPEC", "SRCARF")]["status"] == "unused"
    assert "was rejected" in report[rejected.replace("SRSPEC", "SRCARF")]["reason"]


def test_substitutes_pack_every_pn_spectrum_and_are_recorded(substituted, pps, xmm):
    assert substituted.packed == {"pn": 112}
    with Pack(substituted.pack_path) as pack:
        assert pack.rmf_names == ["epn_e3_ef20_sdY6_v19.0.rmf"]
        swapped = pack.provenance["rmf_substituted"]
        assert set(swapped) == {f"epn_e3_ef20_sdY{k}.rmf" for k in (1, 2, 3, 4, 5, 7, 8, 9)}
        assert all(v.endswith("epn_e3_ef20_sdY6_v19.0.rmf") for v in swapped.values())
        requested = set(pack.meta["rmf_requested"])
        assert len(requested) == 9  # what each spectrum asked for is kept
        # one observation: every position is its own source
        assert len(set(pack.meta["source_id"])) == 112


def test_no_bin_mixes_flagged_and_good_channels(strict, pps):
    """PPS pn spectra flag channels 0-60 (below 0.32 keV): the analysis grid starts a bin at
    channel 61, so that only the first bin is lost and 0.32-0.57 keV (O VII, soft excesses,
    supersoft sources) is kept; a bin holding channels 58-60 was flagged whole before."""
    with Pack(strict.pack_path) as pack:
        assert pack.grid.grouping.start[1] == 61
        assert pack.grid.channel_lo[1] == pytest.approx(0.325, abs=1e-3)
        good = pack.read()["good"]
    assert not good[:, 0].any() and good[:, 1:].all()
    for path in sorted(pps.glob("*PNS003SRSPEC*.FTZ"))[:3]:
        quality = fits.getdata(path, "SPECTRUM")["QUALITY"]
        assert np.flatnonzero(quality).max() == 60 and np.all(quality[61:] == 0)


def test_pack_contents_match_the_files(substituted, xmm):
    """Counts, background, alpha, exposure, ARF and RMF against the FITS files, read with
    astropy and summed bin by bin here."""
    with Pack(substituted.pack_path) as pack:
        data = pack.read()
        grid = pack.grid
        bins = list(zip(grid.grouping.start, grid.grouping.stop))
        for row in range(0, pack.n, 7):
            src = fits.open(pack.meta["file"][row])
            bkg = fits.open(pack.meta["background_file"][row])
            arf = fits.open(pack.meta["arf_file"][row])
            counts = src["SPECTRUM"].data["COUNTS"].astype(float)
            back = bkg["SPECTRUM"].data["COUNTS"].astype(float)
            quality = src["SPECTRUM"].data["QUALITY"]
            np.testing.assert_array_equal(data["counts"][row], [counts[a:b].sum() for a, b in bins])
            np.testing.assert_array_equal(
                data["background"][row], [back[a:b].sum() for a, b in bins]
            )
            np.testing.assert_array_equal(
                data["good"][row], [not quality[a:b].any() for a, b in bins]
            )
            head_s, head_b = src["SPECTRUM"].header, bkg["SPECTRUM"].header
            alpha = (head_s["BACKSCAL"] * head_s["EXPOSURE"]) / (
                head_b["BACKSCAL"] * head_b["EXPOSURE"]
            )
            np.testing.assert_allclose(data["alpha"][row], alpha, rtol=1e-6)
            assert data["exposure"][row] == pytest.approx(head_s["EXPOSURE"], rel=1e-12)
            first, last = grid.rows
            np.testing.assert_array_equal(
                data["arf"][row], arf["SPECRESP"].data["SPECRESP"][first:last]
            )
            assert data["rmf_index"][row] == 0
            assert pack.meta["obs_id"][row] == src[0].header["OBS_ID"]
            assert pack.meta["ra"][row] == pytest.approx(head_s["SRC_RA"])
        # the stored RMF, against a dense matrix built here from the MATRIX extension
        rmf = fits.open(xmm / "responses" / "epn_e3_ef20_sdY6_v19.0.rmf")["MATRIX"].data
        dense = np.zeros((len(rmf), grid.grouping.n_channel))
        offset = grid.first_channel
        for i, (f_chan, n_chan, values) in enumerate(
            zip(rmf["F_CHAN"], rmf["N_CHAN"], rmf["MATRIX"])
        ):
            at = 0
            for f, n in zip(np.atleast_1d(f_chan), np.atleast_1d(n_chan)):
                dense[i, f - offset : f - offset + n] = values[at : at + n]
                at += n
        grouped = np.stack([dense[:, a:b].sum(axis=1) for a, b in bins], axis=1)
        np.testing.assert_allclose(pack.rmf[0], grouped[first:last], rtol=1e-5, atol=1e-9)


def test_find_rmf_tolerates_versions_case_and_compression(tmp_path):
    for name in ("epn_e3_ef20_sdY6_v19.0.rmf", "epn_e3_ef20_sdY6_v20.1.rmf", "M1_E13_IM.RMF.gz"):
        (tmp_path / name).write_bytes(b"")
    assert find_rmf("epn_e3_ef20_sdY6.rmf", [tmp_path]).name == "epn_e3_ef20_sdY6_v20.1.rmf"
    assert find_rmf("m1_e13_im.rmf", [tmp_path]).name == "M1_E13_IM.RMF.gz"
    assert find_rmf("epn_e3_ef20_sdY6_v19.0.rmf", [tmp_path]).name == "epn_e3_ef20_sdY6_v19.0.rmf"
    assert find_rmf("epn_e3_ef20_sdY5.rmf", [tmp_path]) is None
    assert find_rmf("epn_e3_ef20_sdY6.rmf", [tmp_path / "absent"]) is None


def test_find_rmf_searches_folders_in_order_and_prefers_the_exact_name(tmp_path):
    """The spectrum's own folder before ``--rmf-dir`` (a newer version elsewhere does not
    replace the response delivered beside it); in a folder, the RESPFILE's very name before
    a versioned one."""
    beside, canned = tmp_path / "obs", tmp_path / "canned"
    beside.mkdir(), canned.mkdir()
    (beside / "epn_e3_ef20_sdY6_v18.0.rmf").write_bytes(b"")
    (canned / "epn_e3_ef20_sdY6_v20.1.rmf").write_bytes(b"")
    (canned / "epn_e3_ef20_sdY6.rmf").write_bytes(b"")
    (canned / "m1_e13_im_v3.rmf").write_bytes(b"")
    assert find_rmf("epn_e3_ef20_sdY6.rmf", [beside, canned]).name == "epn_e3_ef20_sdY6_v18.0.rmf"
    assert find_rmf("epn_e3_ef20_sdY6.rmf", [canned, beside]).name == "epn_e3_ef20_sdY6.rmf"
    assert find_rmf("m1_e13_im.rmf", [beside, canned]).name == "m1_e13_im_v3.rmf"


def copy_sources(pps: Path, target: Path, sources: list[str]) -> Path:
    target.mkdir(exist_ok=True)
    for src in sources:
        for kind in ("SRSPEC", "BGSPEC", "SRCARF"):
            name = f"P0760940101PNS003{kind}{src}.FTZ"
            shutil.copy(pps / name, target / name)
    return target


def rewrite(path: Path, change) -> None:
    """Apply ``change(hdul)`` to a gzipped FITS file in place."""
    with fits.open(path) as hdul:
        hdul = fits.HDUList([h.copy() for h in hdul])
    change(hdul)
    raw = path.with_suffix(".tmp")
    hdul.writeto(raw, overwrite=True)
    path.write_bytes(gzip.compress(raw.read_bytes()))
    raw.unlink()


def ingest_folder(folder: Path, xmm: Path, tmp_path: Path, **options):
    """``ingest`` of ``folder`` into ``tmp_path/p.h5``, the real responses, sdY6 for any sdY
    (``options``: more of ``ingest``'s)."""
    return ingest(
        [folder],
        tmp_path / "p.h5",
        rmf_dirs=[xmm / "responses"],
        substitutes=SUBSTITUTE,
        jobs=1,
        progress=False,
        **options,
    )


def test_damaged_inputs_are_reported_and_the_rest_is_packed(pps, xmm, tmp_path):
    ids = ["0001", "0002", "0003", "0004", "0005", "0006", "0007"]
    folder = copy_sources(pps, tmp_path / "products", ids)
    name = lambda kind, src: folder / f"P0760940101PNS003{kind}{src}.FTZ"  # noqa: E731
    # 0001 intact; 0002 truncated spectrum; 0003 background not FITS inside its gzip;
    # 0004 ARF deleted; 0005 zero exposure; 0006 channels cut short; 0007 ARF of another grid
    data = name("SRSPEC", "0002").read_bytes()
    name("SRSPEC", "0002").write_bytes(gzip.compress(gzip.decompress(data)[:5000]))
    name("BGSPEC", "0003").write_bytes(gzip.compress(b"garbage" * 1000))
    name("SRCARF", "0004").unlink()
    rewrite(name("SRSPEC", "0005"), lambda h: h["SPECTRUM"].header.update(EXPOSURE=0.0))

    def cut(hdul):
        hdul["SPECTRUM"] = fits.BinTableHDU(hdul["SPECTRUM"].data[:4000], hdul["SPECTRUM"].header)

    rewrite(name("SRSPEC", "0006"), cut)

    def shorter_arf(hdul):
        hdul["SPECRESP"] = fits.BinTableHDU(
            hdul["SPECRESP"].data[::2].copy(), hdul["SPECRESP"].header
        )

    rewrite(name("SRCARF", "0007"), shorter_arf)
    (folder / "notes.txt").write_text("observer's notes")

    result = ingest_folder(folder, xmm, tmp_path)
    report = by_name(result)
    assert len(report) == 7 * 3 - 1 + 1
    status = {src: report[f"P0760940101PNS003SRSPEC{src}.FTZ"] for src in ids}
    assert status["0001"]["status"] == "packed"
    assert "truncated" in status["0002"]["reason"] or "FITS" in status["0002"]["reason"]
    assert status["0003"]["status"] == "rejected" and "BGSPEC0003" in status["0003"]["reason"]
    assert report["P0760940101PNS003BGSPEC0003.FTZ"]["status"] == "rejected"
    assert "SRCARF0004" in status["0004"]["reason"] and "not found" in status["0004"]["reason"]
    assert "EXPOSURE must be positive" in status["0005"]["reason"]
    assert "has 4000" in status["0006"]["reason"]
    assert report["P0760940101PNS003BGSPEC0006.FTZ"]["status"] == "unused"  # it is not at fault
    assert "ARF" in status["0007"]["reason"] and "energy grid" in status["0007"]["reason"]
    assert report["notes.txt"]["status"] == "ignored"
    assert result.packed == {"pn": 1}
    for src in ids[1:]:
        assert status[src]["status"] == "rejected", (src, status[src])
    with Pack(result.pack_path) as pack:
        assert list(pack.meta["file"]) == [str(name("SRSPEC", "0001").resolve())]


def test_odd_files_and_values_are_reported_and_never_stop_the_batch(pps, xmm, tmp_path):
    """Inputs found by fuzzing ``xspecvae pack`` (2026-12-07): each once stopped the batch
    with a traceback, vanished from the report or was packed with unusable values."""
    ids = ["0001", "0002", "0003", "0004", "0005", "0006", "0007"]
    folder = copy_sources(pps, tmp_path / "products", ids)
    name = lambda kind, src: folder / f"P0760940101PNS003{kind}{src}.FTZ"  # noqa: E731
    spectrum = lambda change: lambda h: change(h["SPECTRUM"])  # noqa: E731
    # 0002 an INSTRUME that is no HDF5 name; 0003 its own background; 0004 an AREASCAL that
    # makes the exposure overflow; 0005 every channel flagged; 0006 an ARF of zeros;
    # 0007 background channels numbered from 1, the spectrum's from 0
    rewrite(name("SRSPEC", "0002"), spectrum(lambda h: h.header.update(INSTRUME="EPN/2")))
    backfile = name("SRSPEC", "0003").name
    rewrite(name("SRSPEC", "0003"), spectrum(lambda h: h.header.update(BACKFILE=backfile)))
    rewrite(name("SRSPEC", "0004"), spectrum(lambda h: h.header.update(AREASCAL=1e305)))
    rewrite(name("SRSPEC", "0005"), spectrum(lambda h: h.data["QUALITY"].__setitem__(..., 5)))
    rewrite(name("SRCARF", "0006"), lambda h: h["SPECRESP"].data["SPECRESP"].__setitem__(..., 0))
    rewrite(name("BGSPEC", "0007"), spectrum(lambda h: h.data["CHANNEL"].__iadd__(1)))
    # files that are not PPS products: a gzip whose data do not inflate, a spectrum whose
    # BACKFILE is too long a name for the file system
    (folder / "bad.fits.gz").write_bytes(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + b"\xff" * 64)
    mine = folder / "mine.fits"
    mine.write_bytes(gzip.decompress(name("SRSPEC", "0001").read_bytes()))
    fits.setval(mine, "BACKFILE", value="b" * 300 + ".fits", ext=1)
    # names that are not regular files, or not UTF-8, or another name of a packed file
    os.symlink(folder / "nowhere.FTZ", folder / "broken.FTZ")
    os.symlink(folder / "loop_b", folder / "loop_a")
    os.symlink(folder / "loop_a", folder / "loop_b")
    os.mkfifo(folder / "pipe.FTZ")
    os.symlink(name("SRSPEC", "0001"), folder / "alias.FTZ")
    shutil.copy(name("SRSPEC", "0001"), os.path.join(os.fsencode(folder), b"spec\xff.FTZ"))

    result = ingest_folder(folder, xmm, tmp_path)
    report = by_name(result)
    assert len(report) == 7 * 3 + 2 + 6
    reason = {src: report[f"P0760940101PNS003SRSPEC{src}.FTZ"]["reason"] for src in ids}
    assert result.packed == {"pn": 1, "epn_2": 1}
    assert "BACKFILE names the spectrum itself" in reason["0003"]
    assert "exposure too large" in reason["0004"]
    assert "no good-quality channel" in reason["0005"]
    assert "ARF is zero" in reason["0006"]
    assert "channels start at 1" in reason["0007"]
    assert "corrupt compressed" in report["bad.fits.gz"]["reason"]
    assert (
        report["mine.fits"]["status"] == "rejected" and "not found" in report["mine.fits"]["reason"]
    )
    for link in ("broken.FTZ", "loop_a", "loop_b"):
        assert report[link]["status"] == "ignored" and "broken link" in report[link]["reason"]
    assert "not a regular file" in report["pipe.FTZ"]["reason"]
    assert "another name of" in report["alias.FTZ"]["reason"]
    assert "not valid UTF-8" in report["spec\\xff.FTZ"]["reason"]
    for row in result.report:
        assert row["status"] in ("packed", "used", "unused", "rejected", "ignored"), row


def test_an_interrupted_ingestion_resumes(pps, xmm, tmp_path, monkeypatch):
    folder = copy_sources(pps, tmp_path / "products", ["0001", "0002", "0003", "0005", "0006"])
    kwargs = dict(rmf_dirs=[xmm / "responses"], substitutes=SUBSTITUTE, jobs=1, progress=False)
    clean = ingest([folder], tmp_path / "clean.h5", **kwargs)

    monkeypatch.setattr(ingestion, "APPEND_EVERY", 2)
    real_append, calls = ingestion._append, []

    def dying_append(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_append(*args)

    monkeypatch.setattr(ingestion, "_append", dying_append)
    with pytest.raises(KeyboardInterrupt):
        ingest([folder], tmp_path / "p.h5", **kwargs)
    assert not (tmp_path / "p.h5").exists() and (tmp_path / "p.h5.partial").exists()
    monkeypatch.setattr(ingestion, "_append", real_append)
    read = []
    monkeypatch.setattr(ingestion, "_read_source", lambda p: read.append(p) or real_read(p))
    resumed = ingest([folder], tmp_path / "p.h5", **kwargs)
    assert len(read) == 3  # the two rows committed before the kill are not read again
    assert resumed.packed == clean.packed == {"pn": 5}
    with Pack(resumed.pack_path) as a, Pack(clean.pack_path) as b:
        np.testing.assert_array_equal(np.sort(a.meta["file"]), np.sort(b.meta["file"]))
        order_a, order_b = np.argsort(a.meta["file"]), np.argsort(b.meta["file"])
        for key in ("counts", "background", "alpha", "arf", "exposure"):
            np.testing.assert_array_equal(a.read()[key][order_a], b.read()[key][order_b])
    assert sum(r["status"] == "packed" for r in resumed.report) == 5


real_read = workers._read_source


def test_cli_pack(pps, xmm, tmp_path, capsys):
    folder = copy_sources(pps, tmp_path / "products", ["0001", "0002"])
    out = tmp_path / "p.h5"
    args = [
        str(folder),
        "-o",
        str(out),
        "--rmf-dir",
        str(xmm / "responses"),
        "--jobs",
        "1",
        "--quiet",
    ]
    rmf = xmm / "responses" / "epn_e3_ef20_sdY6_v19.0.rmf"
    (folder / rmf.name).symlink_to(rmf)  # an RMF among the inputs is reported as used
    assert main(["pack", *args]) == 1  # neither has its RMF: nothing packed
    assert "nothing packed" in capsys.readouterr().err and not out.exists()
    assert main(["pack", *args, "--rmf-substitute", "epn_e3_ef20_sdY?.rmf"]) == 1
    assert "wants PATTERN=FILE" in capsys.readouterr().err
    code = main(["pack", *args, "--rmf-substitute", "epn_*.rmf=epn_e3_ef20_sdY6_v19.0.rmf"])
    text = capsys.readouterr().out
    assert code == 0 and "pn: 2 spectra packed" in text and out.exists()
    assert "7 input files" in text and "2 packed" in text and "5 used" in text


@pytest.mark.parametrize("flagged", [0.0, 0.5])
def test_round_trip_simulate_ogip_pack(tmp_path, flagged):
    """simulate -> OGIP files -> pack gives the simulated arrays back, bad channels (QUALITY)
    included."""
    from xspecvae.simulator import simulate_pack, write_ogip

    simulated = simulate_pack(
        tmp_path / "sim.h5", 24, seed=3, chunk=24, flagged_fraction=flagged, progress=False
    )
    with Pack(simulated) as p:
        assert (~p.read()["good"]).any() == (flagged > 0)
    write_ogip(simulated, tmp_path / "ogip")
    result = ingest([tmp_path / "ogip"], tmp_path / "back.h5", jobs=1, progress=False)
    assert result.packed == {"pn": 24} and not result.rejected
    with Pack(simulated) as a, Pack(result.pack_path) as b:
        assert b.grid.same_as(a.grid) and b.rmf_names == a.rmf_names
        np.testing.assert_allclose(b.rmf, a.rmf, rtol=1e-6, atol=1e-12)
        order = np.argsort(a.meta["obs_id"]), np.argsort(b.meta["obs_id"])
        np.testing.assert_array_equal(a.meta["obs_id"][order[0]], b.meta["obs_id"][order[1]])
        data_a, data_b = a.read(), b.read()
        for key in ("counts", "background", "good", "rmf_index"):
            np.testing.assert_array_equal(data_a[key][order[0]], data_b[key][order[1]])
        for key in ("alpha", "exposure", "arf"):
            np.testing.assert_allclose(data_a[key][order[0]], data_b[key][order[1]], rtol=1e-6)
        for key in ("ra", "dec", "mjd"):
            np.testing.assert_allclose(a.meta[key][order[0]], b.meta[key][order[1]], rtol=1e-12)
        # repeat observations of one simulated source are matched back by position
        same = a.meta["source_id"][order[0]][:, None] == a.meta["source_id"][order[0]][None, :]
        again = b.meta["source_id"][order[1]][:, None] == b.meta["source_id"][order[1]][None, :]
        np.testing.assert_array_equal(same, again)


def test_append_adds_only_new_spectra(pps, xmm, tmp_path):
    kwargs = dict(rmf_dirs=[xmm / "responses"], substitutes=SUBSTITUTE, jobs=1, progress=False)
    first = copy_sources(pps, tmp_path / "first", ["0001", "0002"])
    second = copy_sources(pps, tmp_path / "second", ["0003"])
    out = tmp_path / "p.h5"
    ingest([first], out, **kwargs)
    grown = ingest([first, second], out, append=True, **kwargs)
    assert grown.packed == {"pn": 3}
    with Pack(out) as pack:
        names = sorted(Path(f).name for f in pack.meta["file"])
        assert names == [f"P0760940101PNS003SRSPEC000{k}.FTZ" for k in (1, 2, 3)]
        assert len(set(pack.meta["source_id"])) == 3
    again = ingest([second], out, append=True, **kwargs)  # nothing new: nothing doubled
    assert again.packed == {"pn": 3}


def with_column(name: str, values) -> callable:
    """A ``rewrite`` change adding (or replacing) a per-channel column of the SPECTRUM table."""

    def change(hdul):
        table = hdul["SPECTRUM"]
        columns = [c for c in table.columns if c.name != name]
        columns.append(fits.Column(name=name, format="E", array=np.asarray(values, float)))
        hdul["SPECTRUM"] = fits.BinTableHDU.from_columns(columns, header=table.header)
        hdul["SPECTRUM"].header.remove(name, ignore_missing=True)  # the column, not a keyword

    return change


def test_two_rmfs_of_one_name_are_kept_apart(pps, xmm, tmp_path):
    """Per-observation RMFs often share a name (PN.rmf): each spectrum gets its own."""
    sdy6 = xmm / "responses" / "epn_e3_ef20_sdY6_v19.0.rmf"
    folders = []
    for k, (src, scale) in enumerate((("0001", 1.0), ("0002", 0.9))):
        folder = copy_sources(pps, tmp_path / f"obs{k}", [src])
        spectrum = folder / f"P0760940101PNS003SRSPEC{src}.FTZ"
        rewrite(spectrum, lambda h: h["SPECTRUM"].header.update(RESPFILE="PN.rmf"))
        with fits.open(sdy6) as hdul:
            for row in hdul["MATRIX"].data["MATRIX"]:
                row *= scale
            hdul.writeto(folder / "PN.rmf")
        folders.append(folder)
    result = ingest(folders, tmp_path / "p.h5", jobs=1, progress=False)
    assert result.packed == {"pn": 2}
    with Pack(result.pack_path) as pack:
        assert pack.rmf_names == ["PN.rmf", "PN.rmf (2)"]
        np.testing.assert_allclose(pack.rmf[1], 0.9 * pack.rmf[0], rtol=1e-5, atol=1e-9)
        index = dict(
            zip((Path(f).parent.name for f in pack.meta["file"]), pack.read()["rmf_index"])
        )
        assert index == {"obs0": 0, "obs1": 1}
    report = by_name(result)
    assert [r["status"] for r in result.report if r["file"].endswith("PN.rmf")] == ["used"] * 2
    assert report["P0760940101PNS003SRSPEC0002.FTZ"]["status"] == "packed"


def test_an_interrupted_pack_of_other_inputs_is_not_resumed(pps, xmm, tmp_path, monkeypatch):
    kwargs = dict(rmf_dirs=[xmm / "responses"], substitutes=SUBSTITUTE, jobs=1, progress=False)
    first = copy_sources(pps, tmp_path / "first", ["0001", "0002", "0003"])
    second = copy_sources(pps, tmp_path / "second", ["0005"])
    monkeypatch.setattr(ingestion, "APPEND_EVERY", 1)
    real_append = ingestion._append

    def dying_append(*args):
        real_append(*args)
        raise KeyboardInterrupt

    monkeypatch.setattr(ingestion, "_append", dying_append)
    with pytest.raises(KeyboardInterrupt):
        ingest([first], tmp_path / "p.h5", **kwargs)
    monkeypatch.setattr(ingestion, "_append", real_append)
    result = ingest([second], tmp_path / "p.h5", emax=10.0, **kwargs)
    with Pack(result.pack_path) as pack:
        assert [Path(f).parent.name for f in pack.meta["file"]] == ["second"]
        assert pack.grid.channel_hi[-1] <= 10.0 + 0.2  # the new options, not the stale ones


def test_catalogue_source_ids(pps, xmm, tmp_path):
    """4XMM SRCIDs by (OBS_ID, SRC_NUM): sources 0x1C = 28 and 0x67 = 103 of the observation
    are in the catalogue extract, 0001 is not and keeps a position id."""
    folder = copy_sources(pps, tmp_path / "obs", ["0001", "001C", "0067"])
    catalogue = xmm / "catalog" / "4xmm_dr11s_extract.fits"
    result = ingest_folder(folder, xmm, tmp_path, catalogue=catalogue)
    with Pack(result.pack_path) as pack:
        numbers = [int(f[-8:-4], 16) for f in pack.meta["file"]]  # ...SRSPEC001C.FTZ: 0x1C
        ids = dict(zip(numbers, pack.meta["source_id"]))
        assert pack.provenance["catalogue_matched"] == 2
        flags = dict(zip(pack.meta["src_num"], pack.meta["catalogue_id"]))  # per row
    assert ids[28] == 3067718060100038 and ids[103] == 3067718060100215
    assert 0 <= ids[1] < 3
    assert flags == {1: False, 28: True, 103: True}
    from xspecvae.cli.data import _catalogued

    assert "2 of 3 spectra found by OBS_ID and SRC_NUM" in _catalogued(result.pack_path, catalogue)
    # a table that is not a catalogue is an input error naming it, not an OGIP-file error
    not_a_catalogue = xmm / "responses" / "epn_e3_ef20_sdY6_v19.0.rmf"
    with pytest.raises(InputError, match="needs columns SRCID") as err:
        products.catalogue_ids(not_a_catalogue)
    assert err.value.path == str(not_a_catalogue) and not isinstance(err.value, OGIPError)


def test_given_ids_spread_over_position_groups():
    groups = np.array([0, 0, 1, 1, 1, 2, 3])
    known = np.array([-1, 2, 3, 3, 1, -1, -1])
    ids = source_ids._with_given_ids(groups, known)
    # catalogue ids kept; a group's unknown rows take its most frequent one; the groups
    # without any keep their number, shifted past the catalogue ids they could be confused with
    np.testing.assert_array_equal(ids, [2, 2, 3, 3, 1, 6, 7])
    far = source_ids._with_given_ids(groups, np.array([-1, 3e15, -1, -1, -1, -1, -1]).astype(int))
    np.testing.assert_array_equal(far, [3e15, 3e15, 1, 1, 1, 2, 3])


def test_area_and_background_scales_as_columns(pps, xmm, tmp_path):
    """AREASCAL multiplies the exposure (XSPEC's model counts are rate x EXPOSURE x AREASCAL);
    one that varies over channels is refused; BACKSCAL as a column gives each bin the
    background-weighted mean alpha of its channels."""
    folder = copy_sources(pps, tmp_path / "obs", ["0001", "0002", "0003"])
    name = lambda kind, src: folder / f"P0760940101PNS003{kind}{src}.FTZ"  # noqa: E731
    rewrite(name("SRSPEC", "0001"), lambda h: h["SPECTRUM"].header.update(AREASCAL=0.5))
    rewrite(name("SRSPEC", "0002"), with_column("AREASCAL", np.linspace(0.5, 1.0, 4096)))
    backscal = np.linspace(1e6, 3e6, 4096)
    rewrite(name("BGSPEC", "0003"), with_column("BACKSCAL", backscal))
    result = ingest_folder(folder, xmm, tmp_path)
    assert "AREASCAL column varies" in by_name(result)[name("SRSPEC", "0002").name]["reason"]
    with Pack(result.pack_path) as pack:
        data, files = pack.read(), [Path(f).name for f in pack.meta["file"]]
        row = files.index(name("SRSPEC", "0001").name)
        header = fits.getheader(name("SRSPEC", "0001"), "SPECTRUM")
        assert data["exposure"][row] == pytest.approx(0.5 * header["EXPOSURE"], rel=1e-12)
        row = files.index(name("SRSPEC", "0003").name)
        src = fits.getheader(name("SRSPEC", "0003"), "SPECTRUM")
        bkg = fits.open(name("BGSPEC", "0003"))["SPECTRUM"]
        alpha = src["BACKSCAL"] * src["EXPOSURE"] / (backscal * bkg.header["EXPOSURE"])
        back = bkg.data["COUNTS"].astype(float)
        for k, (a, b) in enumerate(zip(pack.grid.grouping.start, pack.grid.grouping.stop)):
            if back[a:b].sum() > 0:
                expected = (alpha[a:b] * back[a:b]).sum() / back[a:b].sum()
                assert data["alpha"][row, k] == pytest.approx(expected, rel=1e-5)


def test_a_substitute_that_cannot_be_read_is_not_recorded(pps, xmm, tmp_path):
    folder = copy_sources(pps, tmp_path / "obs", ["0001", "0007"])  # sdY9; sdY6 (at hand)
    result = ingest(
        [folder],
        tmp_path / "p.h5",
        rmf_dirs=[xmm / "responses"],
        substitutes={"epn_e3_ef20_sdY9.rmf": str(tmp_path / "absent.rmf")},
        jobs=1,
        progress=False,
    )
    reason = by_name(result)["P0760940101PNS003SRSPEC0001.FTZ"]["reason"]
    assert "absent.rmf" in reason and result.packed == {"pn": 1}
    with Pack(result.pack_path) as pack:
        assert pack.provenance["rmf_substituted"] == {}


def _dies_on_boom(item: str) -> str:
    """A reader that kills its process on one input (as a crash inside a library would)."""
    if item == "boom":
        os._exit(3)
    return item.upper()


def test_a_reader_process_that_dies_costs_only_its_own_file():
    items = ["a", "b", "boom", "c", "d", "e"]
    results = list(workers._map(_dies_on_boom, items, 2, False, lambda item: f"died {item}"))
    assert results == ["A", "B", "died boom", "C", "D", "E"]


def _session(leader: int) -> list[int]:
    """The processes still alive in the session ``leader`` started (itself and its workers)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == leader and fields[0] != "Z":  # session id; not a zombie
            alive.append(int(stat.parent.name))
    return alive


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table in /proc")
def test_an_interrupted_parallel_pack_says_so_and_leaves_no_worker_behind(xmm, tmp_path):
    """Found by fuzzing (2026-12-07): Ctrl-C during ``pack --jobs 2`` printed tracebacks of
    every process, and the workers of a killed ``pack`` slept on for minutes."""
    import signal
    import subprocess
    import sys
    import time

    folder = tmp_path / "in"
    for i in range(3):  # 336 sources: long enough to interrupt
        shutil.copytree(xmm / "pps_0760940101", folder / f"copy{i}")
    out = tmp_path / "out.h5"
    command = [sys.executable, "-m", "xspecvae", "pack", str(folder), "-o", str(out)]
    substitute = "=".join(next(iter(SUBSTITUTE.items())))
    command += ["--rmf-dir", str(xmm / "responses"), "--rmf-substitute", substitute]
    command += ["--jobs", "2", "--quiet"]

    def terminal():  # Ctrl-C as a shell gives its commands, whatever the test runner's
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

    def started():
        child = subprocess.Popen(
            command, stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=terminal
        )
        deadline = time.time() + 120
        while not out.with_name(out.name + ".partial").exists() and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
        assert child.poll() is None, "the pack ended before it could be interrupted"
        return child

    def gone(leader: int) -> bool:
        deadline = time.time() + 20
        while _session(leader) and time.time() < deadline:
            time.sleep(0.2)
        return not _session(leader)

    child = started()
    os.killpg(child.pid, signal.SIGINT)  # Ctrl-C at a terminal: the whole group
    status = [line for line in Path("/proc/self/status").read_text().splitlines() if "Sig" in line]
    assert child.wait(timeout=60) == 130, status
    error = child.stderr.read()
    assert "Traceback" not in error and error.strip() == "xspecvae pack: interrupted", error
    assert gone(child.pid)
    child = started()
    os.kill(child.pid, signal.SIGKILL)  # the parent alone: its workers must end by themselves
    child.wait(timeout=60)
    assert gone(child.pid)
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    with open(str(out) + ".report.csv") as f:
        statuses = [row["status"] for row in csv.DictReader(f)]
    assert len(statuses) == sum(1 for p in folder.rglob("*") if p.is_file())
    assert statuses.count("packed") == 336


def test_a_ctrl_c_while_a_worker_starts_is_not_lost():
    """Found by the landing CI (2026-12-07): Ctrl-C was ignored while a submit started a
    worker, so one that came at that instant was lost and the pack ran to its end."""
    import signal

    class Starting:  # a pool whose submit is hit by Ctrl-C while it starts a worker
        def submit(self, function, item):
            os.kill(os.getpid(), signal.SIGINT)
            return function(item)

    handler = signal.signal(signal.SIGINT, signal.default_int_handler)  # as at a terminal
    mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    try:
        with pytest.raises(KeyboardInterrupt):
            workers._submit(Starting(), abs, -1, spawning=True)
        assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        signal.signal(signal.SIGINT, handler)


def test_links_to_folders_are_followed_once_and_loops_reported(pps, xmm, tmp_path):
    """Found by fuzzing (2026-12-07): a link to a folder of products was skipped with no row in
    the report (a catalogue of links to observation folders is a common layout)."""
    folder = copy_sources(pps, tmp_path / "in", ["0001"])
    elsewhere = copy_sources(pps, tmp_path / "elsewhere", ["0002"])
    (folder / "linked").symlink_to(elsewhere, target_is_directory=True)
    (folder / "loop").symlink_to(folder, target_is_directory=True)
    result = ingest_folder(folder, xmm, tmp_path)
    status = {Path(r["file"]).name: (r["status"], r["reason"]) for r in result.report}
    assert status["P0760940101PNS003SRSPEC0002.FTZ"][0] == "packed"
    assert status["P0760940101PNS003SRSPEC0001.FTZ"][0] == "packed"
    assert status["loop"] == ("ignored", f"another name of the folder {folder.resolve()}")
    assert len(result.report) == 7  # six files and the loop
