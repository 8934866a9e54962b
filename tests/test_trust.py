"""Nothing a user has is silently replaced, and input mistakes end in one line naming the file
(issue "Trust"): packs refuse to replace a different pack, runs know their pack by identity,
other packs' tables get names of their own, and the command line has one error path."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from xspecvae.catalog import Pack
from xspecvae.cli import main

SIMULATE = ["simulate", "-n", "120", "--quiet"]


def identity(path):
    with Pack(path) as pack:
        return pack.identity


def one_line_error(capsys, *names):
    """The command's stderr: one line naming each of ``names``, no traceback."""
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert all(str(name) in err for name in names), err
    return err


def test_simulate_resumes_its_own_pack_and_refuses_to_replace_another(tmp_path, capsys):
    pack = tmp_path / "e.h5"
    assert main([*SIMULATE, "-o", str(pack)]) == 0
    first, made = identity(pack), pack.stat().st_mtime_ns
    assert main([*SIMULATE, "-o", str(pack)]) == 0  # the same command: nothing to redo
    assert identity(pack) == first and pack.stat().st_mtime_ns == made
    capsys.readouterr()
    assert main([*SIMULATE, "-o", str(pack), "--seed", "7"]) == 1
    assert "--overwrite" in one_line_error(capsys, pack)
    assert identity(pack) == first and pack.stat().st_mtime_ns == made
    assert main([*SIMULATE, "-o", str(pack), "--seed", "7", "--overwrite"]) == 0
    assert identity(pack) != first


def test_pack_refuses_to_replace_a_different_pack_and_its_report(xmm, tmp_path, capsys):
    ulx, pack = xmm / "ngc7793_ulx4", tmp_path / "p.h5"
    command = ["pack", str(ulx), "-o", str(pack), "--quiet", "--jobs", "1"]
    assert main(command) == 0
    first = identity(pack)
    report = pack.with_name("p.h5.report.json").read_bytes()
    assert main(command) == 0  # the same command: the finished pack is kept
    assert identity(pack) == first
    capsys.readouterr()
    assert main([*command, "--emax", "10"]) == 1
    one_line_error(capsys, pack)
    assert identity(pack) == first
    assert pack.with_name("p.h5.report.json").read_bytes() == report
    assert main([*command, "--emax", "10", "--overwrite"]) == 0
    assert identity(pack) != first


def test_a_run_stops_at_a_replaced_pack_and_names_other_packs_tables(
    small_pack, small_run, tmp_path, capsys
):
    pack, run = tmp_path / "p.h5", tmp_path / "run"
    shutil.copy(small_pack, pack)
    shutil.copytree(small_run, run)
    settings = json.loads((run / "config.json").read_text())
    assert settings["pack_id"] == identity(pack)  # the run recorded its pack's identity
    (run / "config.json").write_text(json.dumps({**settings, "pack": str(pack)}))
    encode = ["encode", str(run), "--refine-steps", "0", "--quiet"]
    assert main(encode) == 0
    own = (run / "posteriors.fits").read_bytes()
    header = fits.getheader(run / "posteriors.fits", "POSTERIORS")  # what made it, with units
    assert header["PACKID"] == identity(pack) and header["RUN"] == str(run.resolve())
    assert header["RUNID"] == settings["run_id"] and len(settings["run_id"]) == 32
    assert header["WIDTHS"] == "marginal"  # cached tables of the older diagonal widths: remade
    assert header["TTYPE1"] == "SRCID" and header["CREATOR"].startswith("xspecvae")
    units = {header[f"TTYPE{i}"]: header.get(f"TUNIT{i}") for i in range(1, header["TFIELDS"] + 1)}
    assert units["RA"] == "deg" and units["nh"] == "10**22 cm-2" and units["mjd"] == "d"
    other = tmp_path / "other.h5"
    assert main([*SIMULATE, "-o", str(other)]) == 0
    assert main([*encode[:2], str(other), *encode[2:]]) == 0  # another pack: its own table
    assert (run / "posteriors-other.fits").exists()
    assert (run / "posteriors.fits").read_bytes() == own
    assert main([*SIMULATE, "-o", str(pack), "--overwrite"]) == 0  # replaced under its name
    capsys.readouterr()
    assert main(encode) == 1
    assert "not the pack this run was trained on" in one_line_error(capsys, pack)
    assert main(["report", str(run), "--quiet"]) == 1
    one_line_error(capsys, pack)
    assert main(["train", "-o", str(run), "--resume", "--quiet"]) == 1
    assert "--init" in one_line_error(capsys, pack)
    assert main([*encode[:2], str(pack), *encode[2:]]) == 0  # named explicitly: proceeds


def test_resume_refuses_settings_it_would_ignore(small_run, capsys):
    assert main(["train", "-o", str(small_run), "--resume", "--epochs", "5"]) == 1
    err = one_line_error(capsys, "-> 5", f"--init {small_run}")
    assert "keeps its own settings, which epochs" in err


@pytest.fixture
def trashed_pack(small_pack, tmp_path):
    path = tmp_path / "trashed.h5"
    data = bytearray(small_pack.read_bytes())
    data[:512] = os.urandom(512)
    path.write_bytes(bytes(data))
    return path


def test_input_mistakes_end_in_one_line(xmm, small_run, small_pack, trashed_pack, tmp_path, capsys):
    table = tmp_path / "posteriors.fits"
    assert main(["encode", str(small_run), "-o", str(table), "--refine-steps", "0", "--quiet"]) == 0
    rmf = xmm / "responses" / "epn_ff20_dY9.rmf"
    catalogue = xmm / "catalog" / "4xmm_dr11s_extract.fits"
    other = tmp_path / "other.h5"
    assert main([*SIMULATE, "-o", str(other), "--rmf", str(rmf)]) == 0
    empty = tmp_path / "empty"
    empty.mkdir()
    capsys.readouterr()
    cases = [
        (["encode", str(empty)], [empty, "checkpoint.npz"]),
        (["report", str(tmp_path / "norun")], ["norun"]),
        (["pack", str(tmp_path / "nonexistent"), "-o", str(tmp_path / "q.h5")], ["nonexistent"]),
        (["similar", str(tmp_path / "missing.fits"), "--row", "0"], ["missing.fits"]),
        (["map", str(tmp_path / "missing.fits")], ["missing.fits"]),
        (["similar", str(catalogue), "--row", "0"], [catalogue, "not a posterior table"]),
        (["trajectory", str(rmf)], [rmf]),
        (["simulate", "-o", str(tmp_path / "s.h5"), "--rmf", "/no/such.rmf"], ["/no/such.rmf"]),
        (["simulate", "-o", str(tmp_path / "s.h5"), "--arf", str(rmf)], [rmf]),
        (["encode", str(small_run), str(trashed_pack)], [trashed_pack]),
        (["encode", str(small_run), str(other)], [other, "--grids-of"]),
        (["similar", str(table), "--row", "0", "-k", "0"], ["k 0", "at least one"]),
        (["similar", str(table), "--row", "0", "--min-snr", "1e9"], ["min_snr 1e+09"]),
        (["similar", str(table), "--source", "2", "--obs", "123"], ["123"]),
        (["similar", str(table), "--row", "1000000"], [table, "row 1000000"]),
        (["train", str(other), "-o", str(tmp_path / "t"), "--line-set", "7"], ["line_set"]),
    ]
    for argv, names in cases:
        assert main(argv) == 1, argv
        one_line_error(capsys, *names)


def test_edited_run_files_and_wrong_outputs_end_in_one_line(small_run, tmp_path, capsys):
    """Found by fuzzing the commands (2026-12-07): each ended in a traceback, or replaced a
    file of the user's, or (an edited config.json) was silently ignored."""
    notes = tmp_path / "notes.fits"
    notes.write_text("my notes")
    folder = tmp_path / "afolder"
    folder.mkdir()
    listed, garbled, edited = (
        Path(shutil.copytree(small_run, tmp_path / n)) for n in ("l", "g", "e")
    )
    (listed / "config.json").write_text("[1, 2, 3]")
    settings = json.loads((edited / "config.json").read_text())
    settings["config"]["latent_dim"] = 3  # the checkpoint's model has another
    (edited / "config.json").write_text(json.dumps(settings))
    (garbled / "metrics.csv").write_bytes(b"garbage\x00\xff,,,\nnot,a,csv\n")
    capsys.readouterr()
    cases = [
        (["sample", str(small_run), "-n", "2", "-o", str(notes)], [notes, "not a table"]),
        (["sample", str(small_run), "-n", "2", "-o", str(folder)], [folder, "is a folder"]),
        (["sample", str(listed), "-n", "2", "-o", str(tmp_path / "s.fits")], ["config.json"]),
        (["report", str(garbled), "-o", str(tmp_path / "r"), "--quiet"], ["metrics.csv"]),
        (["sample", str(edited), "-n", "2", "-o", str(tmp_path / "e.fits")], ["latent_dim 3"]),
        (["train", str(tmp_path / "no.h5"), "-o", str(notes)], [notes, "is a file"]),
        ([*SIMULATE, "-o", str(tmp_path / "p.h5"), "--ogip", str(notes)], [notes, "is a file"]),
    ]
    for argv, names in cases:
        assert main(argv) == 1, argv
        one_line_error(capsys, *names)
    assert notes.read_text() == "my notes" and not (tmp_path / "p.h5").exists()
    table = tmp_path / "mine.fits"  # a table the package wrote is replaced when made again
    for _ in range(2):
        assert main(["sample", str(small_run), "-n", "2", "-o", str(table)]) == 0


def test_ids_are_found_as_typed(small_run, tmp_path, capsys):
    table = tmp_path / "posteriors.fits"
    assert main(["encode", str(small_run), "-o", str(table), "--refine-steps", "0", "--quiet"]) == 0
    from xspecvae.tables import read_table

    columns = read_table(table)
    obs = str(columns["obs_id"][1])
    source = str(columns["source_id"][1])
    assert obs.startswith("0")
    capsys.readouterr()
    argv = ["similar", str(table), "--source", source, "--obs", obs.lstrip("0"), "-k", "2"]
    argv += ["--only-instrument", "PN"]  # the pack says pn
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"obs_id {obs}" in out.splitlines()[0]
    snr = out.splitlines()[0].split("snr ")[1]
    assert len(snr) <= 6  # rounded for people


def test_responses_are_made_from_paths_or_refused_with_what_to_pass(xmm):
    import xspecvae as xv

    rmf = xmm / "responses" / "epn_e3_ef20_sdY6_v19.0.rmf"
    from_path = xv.Response.from_ogip(str(rmf))
    np.testing.assert_array_equal(
        from_path.energy_edges, xv.Response.from_ogip(xv.read_rmf(rmf)).energy_edges
    )
    with pytest.raises(TypeError, match="paths, or what read_rmf and read_arf return"):
        xv.Response.from_ogip(np.eye(3))


def test_inspect_finds_the_rmf_as_pack_does(xmm, capsys):
    spectrum = next((xmm / "pps_0760940101").glob("*PNS003SRSPEC0001.FTZ"))
    assert main(["inspect", str(spectrum)]) == 0
    assert capsys.readouterr().out.startswith("PART")  # its sdY9 RMF is not beside it
    options = ["--rmf-dir", str(xmm / "responses")]
    options += ["--rmf-substitute", "epn_e3_ef20_sdY?.rmf=epn_e3_ef20_sdY6_v19.0.rmf"]
    assert main(["inspect", str(spectrum), *options]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK") and "rmf_substitute=epn_e3_ef20_sdY6_v19.0.rmf" in out
    assert main(["inspect", str(spectrum), "--rmf-substitute", "no-equals-sign"]) == 1
    one_line_error(capsys, "PATTERN=FILE")


def test_notebooks_print_values_not_their_names():
    """An f-string with doubled braces prints '{len(pack)}' literally."""
    from pathlib import Path

    for notebook in sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb")):
        cells = json.loads(notebook.read_text())["cells"]
        code = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        assert "{{" not in code, notebook.name


def test_an_ogip_export_never_replaces_files_unasked(small_pack, tmp_path, capsys):
    from xspecvae.simulator import write_ogip

    files = write_ogip(small_pack, tmp_path, rows=[0, 1])
    spectrum = next(p for p in files if "SRSPEC" in p.name)
    mine = spectrum.read_bytes()[::-1]
    spectrum.write_bytes(mine)  # a user's file of that name
    with pytest.raises(Exception, match="this export would replace"):
        write_ogip(small_pack, tmp_path, rows=[0, 1])
    assert spectrum.read_bytes() == mine
    assert write_ogip(small_pack, tmp_path, rows=[0, 1], overwrite=True) == files
    assert spectrum.read_bytes() != mine


def test_maps_are_quiet_and_training_epochs_are_whole(tmp_path, caplog):
    from xspecvae import figures
    from xspecvae.explore import project

    with caplog.at_level("INFO"):
        project(np.random.default_rng(0).normal(size=(40, 4)))
    assert not [r for r in caplog.records if "random state" in r.getMessage()]
    metrics = {"epoch": [1, 2, 3], "train_loss": [3.0, 2.0, 1.5], "validation_loss": [3, 2, 2]}
    ticks = figures.training_curves(metrics, tmp_path / "t.png").axes[0].get_xticks()
    assert np.all(ticks == np.round(ticks))


def test_readme_synopses_agree_with_the_command_line():
    """Every command in the README exists with the options and defaults it shows, and every
    command of the parser is in the README."""
    import argparse
    import re
    from pathlib import Path

    from xspecvae.cli import build_parser

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    spans = re.findall(r"`(xspecvae [a-z][a-z-]*[^`]*)`", readme.replace("\n", " "))
    assert spans
    for span in spans:
        name = span.split()[1]
        assert name in commands.choices, span
        known = commands.choices[name]._option_string_actions
        for option in re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", span):
            assert option in known, f"{option} of {span!r}"
        for option, value in re.findall(r"\[(--?[a-zA-Z][\w-]*) ([\d.]+)\]", span):
            assert float(value) == float(known[option].default), f"{option} {value}: {span!r}"
    missing = [c for c in commands.choices if f"`xspecvae {c}" not in readme]
    assert not missing
