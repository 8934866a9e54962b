"""Commands that read and make data: inspect, pack, simulate."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from xspecvae.cli.options import command, fail, parse_substitutes, rmf_options
from xspecvae.inspection import describe_builtin, inspect_file
from xspecvae.physics import FLUX_BAND
from xspecvae.simulator import DEMO_PACK


def add_parsers(commands: argparse._SubParsersAction) -> None:
    _inspect_parser(commands)
    _pack_parser(commands)
    _simulate_parser(commands)


def _inspect_parser(commands: argparse._SubParsersAction) -> None:
    inspect = command(
        commands,
        "inspect",
        help="read OGIP files (spectra, backgrounds, ARFs, RMFs; .FTZ/.gz too), check each "
        "spectrum against its background, ARF and RMF, and report every file; with no files, "
        "describe the built-in EPIC pn-like response and fold a reference power law through it",
        description="Read each file, check it against the files its header names, and print "
        "one line per file (or JSON). A bad file is reported and the others go on; the "
        "exit status is 1 if any file failed.",
    )
    inspect.add_argument("files", nargs="*", type=Path, help="PHA, ARF or RMF files")
    inspect.add_argument("--json", action="store_true", help="print a JSON report")
    rmf_options(inspect)


def _inspect(
    files: list[Path],
    as_json: bool,
    rmf_dirs: Sequence[Path] = (),
    substitutes: dict[str, str] | None = None,
) -> int:
    if not files:
        report = describe_builtin()
        print(json.dumps(report, indent=2) if as_json else _builtin_text(report))
        return 0
    reports = [inspect_file(path, rmf_dirs, substitutes or {}) for path in files]
    if as_json:
        print(json.dumps(reports, indent=2))
    else:
        for report in reports:
            print(_file_line(report))
        counts = {s: sum(r["status"] == s for r in reports) for s in ("ok", "incomplete", "error")}
        print(
            f"{len(reports)} files: {counts['ok']} ok, {counts['incomplete']} incomplete "
            f"(a named file is missing), {counts['error']} unusable"
        )
    return int(any(r["status"] == "error" for r in reports))


def _file_line(report: dict) -> str:
    label = {"ok": "OK  ", "incomplete": "PART", "error": "FAIL"}[report["status"]]
    parts = [label, report["type"] or "?", report["path"]]
    parts += [f"{k}={_short(v)}" for k, v in report["summary"].items()]
    line = "  ".join(parts)
    return line + "".join(f"\n      - {p}" for p in report["problems"])


def _short(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _builtin_text(report: dict) -> str:
    area = ", ".join(f"{k}: {v:.0f}" for k, v in report["effective_area_cm2"].items())
    fwhm = ", ".join(f"{k}: {v:.0f}" for k, v in report["fwhm_eV"].items())
    grid = report["analysis_grid"]
    source = report["reference_source"]
    bands = "\n".join(
        f"    {band:>8} keV  {n:10.1f}" for band, n in source["counts_per_4xmm_band"].items()
    )
    return (
        "Built-in EPIC pn-like response (an approximation: analytic effective area, Gaussian\n"
        "redistribution; use real RMFs and ARFs for science)\n"
        f"  {report['response']}\n"
        f"  effective area (cm^2)  {area}\n"
        f"  resolution FWHM (eV)   {fwhm}\n"
        f"  analysis grid          {grid['bins']} bins over 0.2-12 keV no narrower than the FWHM,"
        f" {grid['energies']} model energies\n"
        f"Expected counts of a power law (index {source['photon_index']}, "
        f"{source['norm_at_1keV']:g} photons/cm^2/s/keV at 1 keV) "
        f"in {source['exposure_s']:.0f} s:\n"
        f"{bands}\n"
    )


# ---------------------------------------------------------------------------------------------
# pack


def _pack_parser(commands: argparse._SubParsersAction) -> None:
    pack = command(
        commands,
        "pack",
        help="build a catalogue pack (HDF5) from directories of pipeline products "
        "(SRSPEC/BGSPEC/SRCARF, .FTZ) and a directory of RMFs",
        description="Read every spectrum found in INPUTS with the background, ARF and RMF its "
        "header names, put it on the instrument's analysis grid and append it to the pack. "
        "Bad or incomplete inputs are rejected with a reason and the rest goes on; a report "
        "(PACK.report.csv and .json) accounts for every input file. An interrupted run is "
        "resumed from PACK.partial.",
    )
    pack.add_argument("inputs", nargs="+", type=Path, help="product files or directories")
    pack.add_argument("-o", "--output", type=Path, required=True, help="the pack to write")
    rmf_options(pack)
    pack.add_argument("--emin", type=float, default=FLUX_BAND[0], help="analysis band start (keV)")
    pack.add_argument("--emax", type=float, default=FLUX_BAND[1], help="analysis band end (keV)")
    pack.add_argument(
        "--match-radius",
        type=float,
        default=5.0,
        help="arcsec within which positions are one source",
    )
    pack.add_argument(
        "--catalogue",
        type=Path,
        metavar="TABLE",
        help="a source catalogue with columns SRCID, OBS_ID, SRC_NUM (4XMM): PPS spectra take "
        "their SRCID as source_id (and so do the spectra matched to them by position)",
    )
    pack.add_argument("--jobs", type=int, default=None, help="reader processes (all cores)")
    pack.add_argument("--restart", action="store_true", help="ignore an interrupted run")
    pack.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing pack at -o that other inputs or options made",
    )
    pack.add_argument(
        "--append", action="store_true", help="add the new spectra of INPUTS to an existing PACK"
    )
    pack.add_argument(
        "--grids-of",
        type=Path,
        metavar="PACK",
        help="put the spectra on the grids of PACK (e.g. the pack a model was trained on, so "
        "that the model can read this one)",
    )
    pack.add_argument("--quiet", action="store_true", help="no progress bar")


def _pack(args: argparse.Namespace) -> int:
    from xspecvae.catalog import grids_of
    from xspecvae.products import ingest

    substitutes = parse_substitutes(args.rmf_substitute)
    result = ingest(
        args.inputs,
        args.output,
        rmf_dirs=args.rmf_dir,
        substitutes=substitutes,
        emin=args.emin,
        emax=args.emax,
        match_radius=args.match_radius,
        catalogue=args.catalogue,
        jobs=args.jobs,
        resume=not args.restart,
        append=args.append,
        overwrite=args.overwrite,
        grids=grids_of(args.grids_of) if args.grids_of else (),
        progress=not args.quiet,
    )
    status = Counter(r["status"] for r in result.report)
    print(
        f"{len(result.report)} input files: "
        + ", ".join(f"{n} {s}" for s, n in sorted(status.items()))
    )
    for section, n in sorted(result.packed.items()):
        print(f"  {section}: {n} spectra packed")
    reasons = Counter(r["reason"] for r in result.rejected)
    for reason, n in reasons.most_common(5):
        print(f"  rejected x{n}: {reason}")
    print(f"report: {result.report_csv}")
    if result.pack_path is None:
        print("nothing packed: no pack written", file=sys.stderr)
        return 1
    print(f"pack: {result.pack_path}")
    if args.catalogue:
        print(_catalogued(result.pack_path, args.catalogue))
    return 0


def _catalogued(path: Path, catalogue: Path) -> str:
    """How many spectra of the pack at ``path`` took their SRCID from ``catalogue``."""
    from xspecvae.catalog import Pack, grids_of

    total = given = found = 0
    for grid in grids_of(path):
        with Pack(path, grid.instrument) as pack:
            found = pack.provenance.get("catalogue_matched", 0)
            total += len(pack)
            given += int(np.sum(pack.meta.get("catalogue_id", np.zeros(len(pack), bool))))
    return (
        f"catalogue {catalogue}: {found} of {total} spectra found by OBS_ID and SRC_NUM, "
        f"{given - found} more matched to them by position; the other {total - given} have "
        "the package's own source ids (SRCID_CAT false in the tables)"
    )


# ---------------------------------------------------------------------------------------------
# simulate


def _simulate_parser(commands: argparse._SubParsersAction) -> None:
    simulate = command(
        commands,
        "simulate",
        help="simulate a labelled population of catalogue sources into a pack; with no "
        "arguments, make the built-in demo catalogue on the built-in response",
        description="Draw AGN, stars, X-ray binaries, CVs, ULXs, supersoft sources, clusters "
        "and TDEs with catalogue-like counts, fold them through per-source ARFs and real or "
        "built-in RMFs, add background and Poisson noise, and write a pack with the true "
        "labels and parameters. Resumes an interrupted run.",
    )
    simulate.add_argument("-o", "--output", type=Path, default=Path(DEMO_PACK))
    simulate.add_argument("-n", type=int, default=None, help="number of spectra (demo size)")
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument("--rmf", type=Path, action="append", default=[], help="real RMF(s)")
    simulate.add_argument("--arf", type=Path, help="a real ARF to vignette per source")
    simulate.add_argument(
        "--background", type=Path, help="a particle background spectrum (e.g. the pn FWC)"
    )
    simulate.add_argument(
        "--background-spectra",
        type=Path,
        nargs="+",
        default=[],
        metavar="FILE",
        help="real background spectra (e.g. the pn BGSPEC files of observations): each "
        "simulated spectrum takes the shape of one of them instead of particle + sky",
    )
    simulate.add_argument("--absorption", type=Path, help="cross-section table (FITS)")
    simulate.add_argument(
        "--min-counts", type=float, default=200, help="minimum total counts (5XMM: 200)"
    )
    simulate.add_argument(
        "--repeat-fraction", type=float, default=0.1, help="share of sources seen several times"
    )
    simulate.add_argument(
        "--counts-slope",
        type=float,
        default=1.5,
        help="s of the source counts, N(>S) ~ S^-s: 1.5 as a catalogue; flatter (0.5, or 0 for "
        "log-uniform) gives a training set with bright spectra",
    )
    simulate.add_argument(
        "--flagged-fraction",
        type=float,
        default=0.0,
        help="share of spectra with the bins below 0.3 keV flagged bad, as pn pipeline "
        "products are (use about 1 for a model that will read them)",
    )
    simulate.add_argument(
        "--ogip", type=Path, help="also write the spectra as OGIP files in this folder"
    )
    simulate.add_argument(
        "--without",
        action="append",
        default=[],
        metavar="CLASS",
        help="leave a class out (e.g. to inject it later as an unseen population)",
    )
    simulate.add_argument("--restart", action="store_true", help="ignore an interrupted run")
    simulate.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing pack at -o that other inputs or options made, and files of "
        "the same names in the --ogip folder",
    )
    simulate.add_argument("--quiet", action="store_true", help="no progress bar")


def _simulate(args: argparse.Namespace) -> int:
    from xspecvae.catalog import Pack
    from xspecvae.simulator import CLASS_FRACTIONS, simulate_pack, write_ogip
    from xspecvae.simulator.making import DEMO_SIZE  # read when called (tests make it small)

    unknown = set(args.without) - set(CLASS_FRACTIONS)
    if unknown:
        return fail("simulate", f"unknown classes {sorted(unknown)}: {list(CLASS_FRACTIONS)}")
    if args.ogip is not None and args.ogip.exists() and not args.ogip.is_dir():
        return fail("simulate", f"{args.ogip}: is a file; --ogip names a folder")
    fractions = {c: w for c, w in CLASS_FRACTIONS.items() if c not in args.without}
    path = simulate_pack(
        args.output,
        DEMO_SIZE if args.n is None else args.n,
        seed=args.seed,
        rmfs=args.rmf,
        arf=args.arf,
        background=args.background,
        background_spectra=args.background_spectra,
        absorption=args.absorption,
        min_counts=args.min_counts,
        repeat_fraction=args.repeat_fraction,
        flagged_fraction=args.flagged_fraction,
        counts_slope=args.counts_slope,
        fractions=fractions,
        resume=not args.restart,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    with Pack(path) as pack:
        labels = Counter(pack.meta["label"])
        print(
            f"pack: {path} ({pack.n} spectra, {len(set(pack.meta['source_id']))} sources, "
            f"{pack.grid.n_channel} channels {pack.grid.channel_lo[0]:.2f}-"
            f"{pack.grid.channel_hi[-1]:.2f} keV, {pack.grid.n_energy} model energies)"
        )
        print("  " + ", ".join(f"{k} {v}" for k, v in labels.most_common()))
    if args.ogip is not None:
        written = write_ogip(path, args.ogip, overwrite=args.overwrite)
        print(f"OGIP files: {len(written)} in {args.ogip}")
    return 0


COMMANDS = {
    "inspect": lambda args: _inspect(
        args.files, args.json, args.rmf_dir, parse_substitutes(args.rmf_substitute)
    ),
    "pack": _pack,
    "simulate": _simulate,
}
