"""The command line: help, the built-in default, and a batch of good and bad files."""

import json
import shutil
import subprocess
import sys

from xspecvae.cli import main


def test_help_lists_the_subcommands():
    out = subprocess.run(
        [sys.executable, "-m", "xspecvae", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert all(command in out for command in ("inspect", "pack", "simulate", "built-in"))


def test_inspect_builtin(capsys):
    assert main(["inspect", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["analysis_grid"]["bins"] > 50
    bands = report["reference_source"]["counts_per_4xmm_band"]
    assert len(bands) == 5 and all(n > 100 for n in bands.values())
    assert main(["inspect"]) == 0
    assert "approximation" in capsys.readouterr().out


def test_inspect_batch_reports_every_file(xmm, tmp_path, capsys):
    ulx = tmp_path / "ulx"
    shutil.copytree(xmm / "ngc7793_ulx4", ulx)
    shutil.copy(ulx / "MOS1.arf", ulx / "PN.arf")  # an ARF on the wrong energy grid
    corrupt = tmp_path / "corrupt.pha"
    corrupt.write_bytes((xmm / "ngc7793_ulx4/PN_spectrum_grp20.fits").read_bytes()[:5000])
    files = [
        xmm / "ngc7793_ulx4/PN_spectrum_grp20.fits",
        xmm / "pps_0760940101/P0760940101PNS003SRSPEC0001.FTZ",
        ulx / "PN_spectrum_grp20.fits",
        corrupt,
        tmp_path / "absent.pha",
        xmm / "responses/epn_ff20_dY9.rmf",
    ]
    assert main(["inspect", "--json", *map(str, files)]) == 1
    reports = {r["path"]: r for r in json.loads(capsys.readouterr().out)}
    assert [reports[str(f)]["status"] for f in files] == [
        "ok",
        "incomplete",
        "error",
        "error",
        "error",
        "ok",
    ]
    assert reports[str(files[0])]["summary"]["alpha"] == 2010100 / 6866200
    assert reports[str(files[1])]["problems"] == ["RESPFILE epn_e3_ef20_sdY9.rmf not found"]
    assert "ARF energy grid" in reports[str(files[2])]["problems"][0]
    assert "truncated" in reports[str(corrupt)]["problems"][0]
    assert reports[str(files[4])]["problems"] == ["file not found"]
    assert reports[str(files[5])]["type"] == "RMF"
    assert main(["inspect", *map(str, files)]) == 1
    text = capsys.readouterr().out
    assert text.count("FAIL") == 3 and "6 files: 2 ok, 1 incomplete" in text


def test_simulate_defaults_then_pack_its_ogip_files(tmp_path, monkeypatch, capsys):
    from xspecvae.catalog import Pack
    from xspecvae.simulator import making

    monkeypatch.setattr(making, "DEMO_SIZE", 40)  # the no-argument run, made small
    monkeypatch.chdir(tmp_path)
    assert main(["simulate", "--quiet", "--ogip", "ogip"]) == 0
    out = capsys.readouterr().out
    assert "xspecvae-demo.h5 (40 spectra" in out and "OGIP files: " in out
    assert main(["pack", "ogip", "-o", "back.h5", "--jobs", "1", "--quiet"]) == 0
    with Pack(tmp_path / "xspecvae-demo.h5") as a, Pack(tmp_path / "back.h5") as b:
        assert b.n == a.n == 40
        assert sorted(b.meta["counts"]) == sorted(a.meta["counts"])


def test_simulate_without_a_class(tmp_path, capsys):
    from xspecvae.catalog import Pack

    out = tmp_path / "p.h5"
    assert main(["simulate", "-n", "300", "-o", str(out), "--without", "AGN", "--quiet"]) == 0
    with Pack(out) as pack:
        assert "AGN" not in set(pack.meta["label"]) and len(set(pack.meta["label"])) >= 4
    assert main(["simulate", "-o", str(tmp_path / "q.h5"), "--without", "Blazar"]) == 1
    assert "unknown classes ['Blazar']" in capsys.readouterr().err
