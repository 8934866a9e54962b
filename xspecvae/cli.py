"""The ``xspecvae`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from functools import lru_cache
from pathlib import Path

import numpy as np

from xspecvae import __version__, checkpoint
from xspecvae.catalog import BANDS_4XMM, band_matrix
from xspecvae.errors import InputError
from xspecvae.instrument import Grouping, builtin_pn_response
from xspecvae.ogip import (
    Arf,
    OGIPError,
    Pha,
    Rmf,
    background_ratio,
    check_match,
    read_arf,
    read_ogip,
    read_pha,
    read_rmf,
)
from xspecvae.physics import powerlaw


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Help that shows every option's default, except where there is none to show."""

    def _get_help_string(self, action):
        none = action.default is None or action.default is False or action.default == []
        if none or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def _command(commands, name: str, **options) -> argparse.ArgumentParser:
    """A subcommand whose help shows defaults and whose description is its help if not given."""
    options.setdefault("description", options.get("help"))
    return commands.add_parser(name, formatter_class=_Help, **options)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return _COMMANDS[args.command](args)
    except InputError as err:  # a file or argument the user gave; a bug keeps its traceback
        print(f"xspecvae {args.command}: {err}", file=sys.stderr)
        return 1
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as err:
        where = f"{err.filename}: {err.strerror}" if err.filename else str(err)
        print(f"xspecvae {args.command}: {where}", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    """The command line: one subcommand per job."""
    parser = argparse.ArgumentParser(
        prog="xspecvae",
        formatter_class=_Help,
        description="A physically motivated variational autoencoder for X-ray source "
        "catalogues. Run 'xspecvae COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"xspecvae {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    inspect = _command(
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
    _rmf_options(inspect)
    _pack_parser(commands)
    _simulate_parser(commands)
    _train_parser(commands)
    _exploration_parsers(commands)
    demo = _command(
        commands,
        "demo",
        help="the whole journey on the built-in demo catalogue: simulate, train, explore, "
        "report; a re-run resumes (its time on a laptop: benchmarks/RESULTS.md)",
    )
    demo.add_argument("-o", "--output", type=Path, default=Path("xspecvae-demo"), help="folder")
    demo.add_argument("--epochs", type=int, default=40, help="training epochs")
    demo.add_argument("--quiet", action="store_true", help="no progress")
    convert = _command(
        commands,
        "convert-run",
        help="convert a run of xspecvae < 0.2 (a pickled checkpoint.pkl) to checkpoint.npz; "
        "this unpickles the file, which runs any code it holds: only for a run you trust",
    )
    convert.add_argument("run", type=Path, help="run folder holding checkpoint.pkl")
    convert.add_argument("--trust", action="store_true", help="unpickle it: you trust the file")
    return parser


# ---------------------------------------------------------------------------------------------
# pack


def _pack_parser(commands) -> None:
    pack = _command(
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
    _rmf_options(pack)
    pack.add_argument("--emin", type=float, default=0.2, help="analysis band start (keV)")
    pack.add_argument("--emax", type=float, default=12.0, help="analysis band end (keV)")
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


def _rmf_options(command) -> None:
    command.add_argument(
        "--rmf-dir", type=Path, action="append", default=[], help="where RMFs are (repeatable)"
    )
    command.add_argument(
        "--rmf-substitute",
        action="append",
        default=[],
        metavar="PATTERN=FILE",
        help="use FILE for spectra whose RESPFILE matches the glob PATTERN when that RMF is "
        "absent (e.g. 'epn_e3_ef20_sdY?.rmf=epn_e3_ef20_sdY6_v19.0.rmf'); recorded in a pack",
    )


def _substitutes(items: list[str]) -> dict[str, str]:
    """``--rmf-substitute`` options as a dict, or an :class:`InputError`."""
    substitutes = {}
    for item in items:
        pattern, sep, file = item.partition("=")
        if not sep or not pattern or not file:
            raise InputError("--rmf-substitute", f"wants PATTERN=FILE, got {item!r}")
        substitutes[pattern] = file
    return substitutes


def _pack(args) -> int:
    from xspecvae.catalog import grids_of
    from xspecvae.products import ingest

    substitutes = _substitutes(args.rmf_substitute)
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
    if result.pack is None:
        print("nothing packed: no pack written", file=sys.stderr)
        return 1
    print(f"pack: {result.pack}")
    if args.catalogue:
        print(_catalogued(result.pack, args.catalogue))
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


def _simulate_parser(commands) -> None:
    simulate = _command(
        commands,
        "simulate",
        help="simulate a labelled population of catalogue sources into a pack; with no "
        "arguments, make the built-in demo catalogue on the built-in response",
        description="Draw AGN, stars, X-ray binaries, CVs, ULXs, supersoft sources, clusters "
        "and TDEs with catalogue-like counts, fold them through per-source ARFs and real or "
        "built-in RMFs, add background and Poisson noise, and write a pack with the true "
        "labels and parameters. Resumes an interrupted run.",
    )
    simulate.add_argument("-o", "--output", type=Path, default=Path("xspecvae-demo.h5"))
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


def _simulate(args) -> int:
    from xspecvae.catalog import Pack
    from xspecvae.simulator import CLASS_FRACTIONS, DEMO_SIZE, simulate_pack, write_ogip

    unknown = set(args.without) - set(CLASS_FRACTIONS)
    if unknown:
        return _fail("simulate", f"unknown classes {sorted(unknown)}: {list(CLASS_FRACTIONS)}")
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


# ---------------------------------------------------------------------------------------------
# inspect


def _inspect(files: list[Path], as_json: bool, rmf_dirs=(), substitutes=None) -> int:
    if not files:
        report = _describe_builtin()
        print(json.dumps(report, indent=2) if as_json else _builtin_text(report))
        return 0
    reports = [_inspect_file(path, rmf_dirs, substitutes or {}) for path in files]
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


def _inspect_file(path: Path, rmf_dirs=(), substitutes=None) -> dict:
    report = {"path": str(path), "status": "ok", "type": None, "summary": {}, "problems": []}
    try:
        item = read_ogip(path)
    except OGIPError as exc:
        report.update(status="error", problems=[exc.problem])
        return report
    if isinstance(item, list):
        report.update(type="PHA-II", summary={"spectra": len(item)})
        for spectrum in item:
            _check_spectrum(spectrum, report, rmf_dirs, substitutes)
    elif isinstance(item, Pha):
        report.update(type="PHA", summary=_pha_summary(item))
        _check_spectrum(item, report, rmf_dirs, substitutes)
    elif isinstance(item, Arf):
        report.update(
            type="ARF",
            summary={
                "energies": item.energy_lo.size,
                "range_keV": [
                    round(float(item.energy_lo[0]), 4),
                    round(float(item.energy_hi[-1]), 4),
                ],
                "max_area_cm2": float(item.specresp.max()),
            },
        )
    elif isinstance(item, Rmf):
        report.update(
            type="RSP" if item.includes_arf else "RMF",
            summary={
                "energies": item.n_energy,
                "channels": item.n_channel,
                "first_channel": item.first_channel,
                "nonzero": int(np.count_nonzero(item.matrix)),
            },
        )
    return report


def _pha_summary(pha: Pha) -> dict:
    return {
        "kind": pha.kind,
        "channels": pha.n_channel,
        "counts": float(pha.counts.sum()),
        "exposure_s": pha.exposure,
        "instrument": pha.instrument,
        "obs_id": pha.obs_id,
        "object": pha.object,
    }


def _check_spectrum(pha: Pha, report: dict, rmf_dirs=(), substitutes=None) -> None:
    """Read the files the spectrum names (its RMF also in ``rmf_dirs``, or a substitute, as
    ``pack`` finds it) and check that they fit; record what does not."""
    from xspecvae.products import locate_rmf

    where = "" if pha.row is None else f"row {pha.row}: "
    found = {}
    for key in ("respfile", "ancrfile", "backfile"):
        name = getattr(pha, key)
        if name is None:
            continue
        path = pha.locate(key)
        if key == "respfile" and path is None:
            path, substituted = locate_rmf(pha, rmf_dirs, substitutes)
            if substituted and path is not None:
                report["summary"]["rmf_substitute"] = path.name
        if path is None:
            report["problems"].append(f"{where}{key.upper()} {name} not found")
            if report["status"] == "ok":
                report["status"] = "incomplete"
        else:
            found[key] = path
    try:
        rmf = _cached_rmf(found["respfile"]) if "respfile" in found else None
        arf = read_arf(found["ancrfile"]) if "ancrfile" in found else None
        check_match(pha, rmf, arf)
        if "backfile" in found:
            alpha = background_ratio(pha, read_pha(found["backfile"]))
            report["summary"]["alpha"] = float(np.median(alpha[pha.quality == 0]))
    except OGIPError as exc:
        report["status"] = "error"
        report["problems"].append(f"{where}{exc}")


@lru_cache(maxsize=8)
def _cached_rmf(path: Path) -> Rmf:
    return read_rmf(path)


def _file_line(report: dict) -> str:
    label = {"ok": "OK  ", "incomplete": "PART", "error": "FAIL"}[report["status"]]
    parts = [label, report["type"] or "?", report["path"]]
    parts += [f"{k}={_short(v)}" for k, v in report["summary"].items()]
    line = "  ".join(parts)
    return line + "".join(f"\n      - {p}" for p in report["problems"])


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _describe_builtin() -> dict:
    response = builtin_pn_response()
    grouping = Grouping.from_resolution(response)
    analysis = response.regroup(grouping)
    centres = response.energy_centres
    fwhm = response.fwhm()
    index, norm, exposure = 1.7, 1e-3, 1e4
    flux = powerlaw(analysis.energy_edges, index, norm)
    counts = np.asarray(analysis.fold(flux, exposure))
    in_bands = counts @ band_matrix(analysis.channel_lo, analysis.channel_hi)
    bands = {f"{lo}-{hi}": float(c) for (lo, hi), c in zip(BANDS_4XMM, in_bands)}
    return {
        "response": repr(response),
        "effective_area_cm2": {
            f"{e} keV": float(np.interp(e, centres, response.arf)) for e in (0.5, 1.0, 6.0, 10.0)
        },
        "fwhm_eV": {f"{e} keV": 1e3 * float(np.interp(e, centres, fwhm)) for e in (1.0, 6.4)},
        "analysis_grid": {
            "bins": grouping.n_groups,
            "range_keV": [0.2, 12.0],
            "energies": analysis.n_energy,
        },
        "reference_source": {
            "photon_index": index,
            "norm_at_1keV": norm,
            "exposure_s": exposure,
            "counts_per_4xmm_band": bands,
        },
    }


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
# train


def _train_parser(commands) -> None:
    from xspecvae.train import TrainOptions
    from xspecvae.vae import LIKELIHOODS, Config

    train = _command(
        commands,
        "train",
        help="train the VAE on a pack (SVI); with no pack, on the demo catalogue (made first "
        "if absent)",
        description="Stochastic variational inference of the VAE on a pack, data parallel "
        "over all visible devices. Writes RUN/config.json, RUN/checkpoint.npz (atomic, every "
        "--checkpoint-every steps and every epoch; the trained model) and RUN/metrics.csv; "
        "--resume continues an interrupted run where it stopped, with its saved settings. "
        "Several hosts: start one process per host with --distributed (arguments from the "
        "cluster's launcher) or --coordinator/--num-processes/--process-id.",
    )
    train.add_argument("pack", nargs="?", type=Path, help="the pack (default: the demo)")
    train.add_argument("-o", "--run", type=Path, default=Path("xspecvae-run"), help="run folder")
    train.add_argument("--instrument", help="pack section (needed if it has several)")
    train.add_argument(
        "--absorption", type=Path, help="cross-section table (default: Morrison & McCammon)"
    )
    train.add_argument("--resume", action="store_true", help="continue the run in RUN")
    train.add_argument(
        "--init",
        type=Path,
        metavar="RUN",
        help="fine-tune: start from the trained RUN (its parameters, model sizes and "
        "instrument; the size flags and --absorption are then ignored)",
    )
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    cluster = train.add_argument_group("several processes (jax.distributed)")
    cluster.add_argument(
        "--distributed", action="store_true", help="join a multi-process run (launcher's settings)"
    )
    cluster.add_argument("--coordinator", help="HOST:PORT of process 0")
    cluster.add_argument("--num-processes", type=int)
    cluster.add_argument("--process-id", type=int)
    options, config = TrainOptions(), Config()
    for name, value in (*vars(options).items(), *vars(config).items()):
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):  # --lines / --no-lines
            train.add_argument(
                flag,
                action=argparse.BooleanOptionalAction,
                default=value,
                help=f"(default {value})",
            )
            continue
        choices = sorted(LIKELIHOODS) if name == "likelihood" else None
        train.add_argument(
            flag, type=type(value), default=value, choices=choices, help=f"(default {value})"
        )


def _train(args) -> int:
    from dataclasses import fields

    from xspecvae.simulator import demo_pack
    from xspecvae.train import TrainingError, TrainOptions, initialize_distributed, train
    from xspecvae.vae import Config

    if args.distributed or args.coordinator:
        initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    pack = args.pack
    if pack is None and not args.resume:
        pack = Path("xspecvae-demo.h5")
        if not pack.exists():
            demo_pack(pack, progress=not args.quiet)
    pick = lambda cls: cls(**{f.name: getattr(args, f.name) for f in fields(cls)})  # noqa: E731
    further = f"xspecvae train PACK -o NEW --init {args.run} --epochs N"
    if args.resume:
        changed = [
            f.name
            for c in (TrainOptions, Config)
            for f in fields(c)
            if getattr(args, f.name) != f.default
        ]
        if changed:
            flags = ", ".join("--" + name.replace("_", "-") for name in changed)
            return _fail(
                "train",
                f"--resume continues {args.run} with its own settings, which {flags} would "
                f"change; to train a finished run further, start a new one from it: {further}",
            )
    try:
        metrics = train(
            pack,
            args.run,
            config=pick(Config),
            options=pick(TrainOptions),
            instrument=args.instrument,
            absorption=args.absorption,
            resume=args.resume,
            init=args.init,
            progress=not args.quiet,
        )
    except (TrainingError, OGIPError, ValueError) as err:
        print(f"xspecvae train: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if checkpoint.path(args.run).exists():
            print(
                f"\nxspecvae train: interrupted; the last checkpoint in {args.run} is whole. "
                f"Continue with: xspecvae train -o {args.run} --resume",
                file=sys.stderr,
            )
        else:
            print("\nxspecvae train: interrupted before the first checkpoint", file=sys.stderr)
        return 130
    if not metrics:
        print(f"run: {args.run} had already run all its epochs; to train it further: {further}")
        return 0
    print(
        f"run: {args.run} (epoch {metrics['epoch']}: training loss {metrics['train_loss']:.2f}, "
        f"validation loss {metrics['validation_loss']:.2f} per spectrum, "
        f"{metrics['spectra_per_s']:,.0f} spectra/s)"
    )
    return 0


# ---------------------------------------------------------------------------------------------
# exploration: encode, similar, map, trajectory, anomalies, check, sample, report


def _exploration_parsers(commands) -> None:
    from xspecvae.fitting import MODELS
    from xspecvae.latent import DIVERGENCES

    def run_and_pack(sub):
        sub.add_argument("run", type=Path, nargs="?", default=Path("xspecvae-run"), help="run")
        sub.add_argument("pack", type=Path, nargs="?", help="pack (default: the run's own)")
        sub.add_argument("--instrument", help="pack section (needed if it has several)")

    def table_and_search(sub, default_output, neighbours=True):
        sub.add_argument("table", type=Path, help="posterior table made by 'xspecvae encode'")
        sub.add_argument(
            "-o", "--output", type=Path, help=f"table written (default {default_output})"
        )
        sub.add_argument(
            "--divergence", choices=DIVERGENCES, default="kl_symmetric", help="between posteriors"
        )
        if neighbours:
            sub.add_argument("-k", type=int, default=10, help="neighbours")

    encode = _command(
        commands,
        "encode",
        help="the posterior of every spectrum of a pack, with the model's SNR, fit statistic, "
        "ELBO, column and redshift, as a FITS (and Parquet) table",
    )
    run_and_pack(encode)
    encode.add_argument("-o", "--output", type=Path, help="default RUN/posteriors.fits")
    encode.add_argument("--parquet", action="store_true", help="also write a .parquet table")
    encode.add_argument("--batch-size", type=int, default=1024, help="spectra per step")
    encode.add_argument("--draws", type=int, default=4, help="posterior draws for the ELBO")
    encode.add_argument(
        "--refine-steps",
        type=int,
        default=None,
        help="Levenberg-Marquardt steps from the encoder's posterior to each source's own "
        "(default: the run's; 0: the encoder alone, faster, worse fits of bright spectra)",
    )
    encode.add_argument("--quiet", action="store_true", help="no progress bar")

    similar = _command(
        commands, "similar", help="the sources whose posteriors are nearest to a query source's"
    )
    table_and_search(similar, "similar.fits next to TABLE")
    query = similar.add_mutually_exclusive_group(required=True)
    query.add_argument("--source", help="query source id (its first observation, or --obs)")
    query.add_argument("--row", type=int, help="query row of the table")
    query.add_argument(
        "--spectrum",
        type=Path,
        help="a query spectrum file (OGIP, with the files it names), "
        "encoded on the fly by the table's run (or --run) on its pack's grids",
    )
    similar.add_argument("--run", type=Path, help="the model for --spectrum")
    similar.add_argument(
        "--rmf-dir",
        type=Path,
        action="append",
        default=[],
        help="where the RMF of --spectrum is, if not beside it (repeatable)",
    )
    similar.add_argument("--obs", help="observation id of the query source")
    similar.add_argument("--min-snr", type=float, default=0.0, help="only neighbours this bright")
    similar.add_argument("--only-instrument", help="only neighbours from this instrument")

    map_ = _command(
        commands, "map", help="PaCMAP map of the posterior means, as a table and figures"
    )
    map_.add_argument("table", type=Path, help="posterior table made by 'xspecvae encode'")
    map_.add_argument("-o", "--output", type=Path, help="default map.fits next to TABLE")
    map_.add_argument("--whiten", action="store_true", help="divide dimensions by their RMS scale")
    map_.add_argument("--min-snr", type=float, default=10.0, help="SNR filter of the figures")
    map_.add_argument("--seed", type=int, default=0, help="PaCMAP seed")

    trajectory = _command(
        commands,
        "trajectory",
        help="sources seen several times: posteriors in time order, step divergences, drawn "
        "on the map and in a hardness-intensity diagram",
    )
    table_and_search(trajectory, "trajectories.fits next to TABLE", neighbours=False)
    trajectory.add_argument("--map", type=Path, help="map table (default map.fits next to TABLE)")
    trajectory.add_argument(
        "--source",
        nargs="+",
        action="extend",
        default=[],
        help="source ids to draw (default: those that move most)",
    )

    anomaly = _command(
        commands,
        "anomalies",
        help="rank sources by misfit and by the emptiness of their neighbourhood",
    )
    table_and_search(anomaly, "anomalies.fits next to TABLE")
    anomaly.add_argument("--reference", type=int, default=20_000, help="neighbourhood sample")
    anomaly.add_argument("--top", type=int, default=10, help="lines printed")

    check = _command(
        commands,
        "check",
        help="posterior predictive checks: p-values of the fit statistic over a catalogue, "
        "and ArviZ plots of a source",
    )
    run_and_pack(check)
    check.add_argument("-o", "--output", type=Path, help="default RUN/calibration.fits")
    check.add_argument("--rows", type=int, default=2000, help="sources checked (random)")
    check.add_argument("--draws", type=int, default=64, help="posterior draws per source")
    check.add_argument("--row", type=int, default=None, help="a source to plot (default: worst)")
    check.add_argument("--quiet", action="store_true", help="no progress bar")

    sample = _command(
        commands,
        "sample",
        help="spectra drawn from a source's posterior or from the prior, as expected counts "
        "and Poisson realisations",
    )
    run_and_pack(sample)
    sample.add_argument("--row", type=int, default=0, help="the source (its response for --prior)")
    sample.add_argument("--prior", action="store_true", help="new spectra from the prior")
    sample.add_argument("-n", type=int, default=100, help="number of spectra")
    sample.add_argument("--seed", type=int, default=0, help="random seed")
    sample.add_argument("-o", "--output", type=Path, default=Path("samples.fits"))

    report = _command(
        commands,
        "report",
        help="every table and figure of a run and one self-contained HTML report",
    )
    run_and_pack(report)
    report.add_argument("-o", "--output", type=Path, help="folder (default RUN/explore)")
    report.add_argument("--min-snr", type=float, default=10.0, help="SNR of the filtered views")
    report.add_argument(
        "--divergence", choices=DIVERGENCES, default="kl_symmetric", help="of the searches"
    )
    report.add_argument("--parquet", action="store_true", help="also write .parquet tables")
    report.add_argument("--quiet", action="store_true", help="no progress")

    compare = _command(
        commands,
        "compare",
        help="set the spectra of a pack (e.g. real sources) against the run's reference "
        "catalogue: VAE and classical fits, place in the map, nearest reference posteriors, "
        "one HTML report",
        description="Encode PACK with RUN; fit every spectrum with absorbed classical models "
        "and with the decoder's latent optimised; map it with the reference catalogue (the "
        "pack the run, or the run it was fine-tuned from, learnt on) and find its nearest "
        "reference posteriors. Writes FOLDER/{posteriors,reference,fits,map,sources}.fits, "
        "figures and report.html.",
    )
    compare.add_argument("run", type=Path, help="run")
    compare.add_argument("pack", type=Path, help="pack on the run's grids (pack --grids-of)")
    compare.add_argument("-o", "--output", type=Path, help="folder (default RUN/compare-PACK)")
    compare.add_argument("--reference", type=Path, help="reference pack (default: see above)")
    compare.add_argument(
        "--fit",
        action="append",
        choices=sorted(MODELS),
        help="classical model (repeatable; default powerlaw and diskbb+powerlaw, each absorbed)",
    )
    compare.add_argument("--absorption", type=Path, help="cross-section table (default: the run's)")
    compare.add_argument(
        "--show",
        action="append",
        default=[],
        metavar="TEXT",
        help="also draw the spectra whose file name contains TEXT (repeatable)",
    )
    compare.add_argument("-k", type=int, default=10, help="nearest reference posteriors")
    compare.add_argument("--divergence", choices=DIVERGENCES, default="kl_symmetric")
    compare.add_argument("--quiet", action="store_true", help="no progress")


def _load(run: Path, pack: Path | None, instrument: str | None):
    """The run's VAE, its settings and the pack (the run's own unless named)."""
    from xspecvae.train import load_run, run_pack

    vae, info = load_run(run)
    return vae, info, run_pack(info, pack, instrument)


def _beside(table: Path, output: Path | None, name: str) -> Path:
    return output or table.with_name(name)


def _made_from(table: Path, header: dict) -> dict:
    """The header of a table made from the posterior table at ``table`` (with ``header``):
    that table, and the run and pack that made it."""
    known = {k: header[k] for k in ("RUN", "RUNID", "PACK", "PACKID") if k in header}
    return known | {"TABLE": str(table)}


def _encode(args) -> int:
    from xspecvae.explore import posterior_table
    from xspecvae.tables import made_by, write_table

    vae, info, pack = _load(args.run, args.pack, args.instrument)
    if args.refine_steps is not None:
        vae = vae.with_refinement(args.refine_steps)
    with pack:
        table = posterior_table(
            vae, pack, batch_size=args.batch_size, n_draws=args.draws, progress=not args.quiet
        )
        header = made_by(args.run, info, pack)
        header |= {"REFINE": vae.config.refine_steps, "NDRAWS": args.draws}
    # the run's own table keeps its name; another pack's gets one of its own
    own = pack.identity is not None and pack.identity == info.get("pack_id")
    name = (
        "posteriors" if args.pack is None or own else f"posteriors-{pack.path.name.split('.')[0]}"
    )
    output = args.output or args.run / f"{name}.fits"
    write_table(table, output, extname="POSTERIORS", header=header)
    if args.parquet:
        write_table(table, output.with_suffix(".parquet"), extname="POSTERIORS", header=header)
    snr = table["snr"]
    print(
        f"posteriors: {output} ({len(snr):,} spectra; model SNR median {np.median(snr):.1f}, "
        f"{np.mean(snr >= 10):.0%} above 10; median fit statistic per channel "
        f"{np.median(table['statistic'] / table['dof']):.2f})"
    )
    return 0


def _similar(args) -> int:
    from xspecvae.latent import Index
    from xspecvae.tables import POSTERIOR, read_table, write_table

    table, header = read_table(args.table, with_header=True, required=POSTERIOR)
    if args.spectrum is not None:
        query = _encode_query(args, header)
        if isinstance(query, str):
            return _fail("similar", query)
        loc, scale, group, where = query["z_loc"][0], query["z_scale"][0], None, args.spectrum
    else:
        query = _query_row(args, table)
        if isinstance(query, str):
            return _fail("similar", query)
        loc, scale, group = (
            table["z_loc"][query],
            table["z_scale"][query],
            table["source_id"][query],
        )
        where = f"row {query}, " + ", ".join(
            f"{c} {_rounded(table[c][query])}"
            for c in ("source_id", "obs_id", "label", "snr")
            if c in table
        )
    if args.k < 1:
        return _fail("similar", f"-k {args.k}: ask for at least one neighbour")
    keep = table["snr"] >= args.min_snr
    if args.only_instrument:
        if "instrument" not in table:
            return _fail("similar", f"{args.table} has no instrument column (one instrument)")
        names = np.char.lower(np.asarray(table["instrument"]).astype(str))
        keep &= names == args.only_instrument.lower()
        if not keep.any():
            found = ", ".join(sorted(set(names)))
            return _fail("similar", f"no {args.only_instrument} spectrum in {args.table} ({found})")
    if not keep.any():
        top = float(np.max(table["snr"]))
        return _fail(
            "similar", f"--min-snr {args.min_snr:g}: no spectrum that bright (max {top:.1f})"
        )
    index = Index(table["z_loc"], table["z_scale"], table["source_id"])
    rows, values = index.search(
        loc,
        scale,
        args.k,
        divergence=args.divergence,
        keep=keep,
        exclude_groups=None if group is None else [group],
    )
    rows, values = rows[rows >= 0], values[rows >= 0]
    shown = [c for c in ("source_id", "obs_id", "ra", "dec", "label", "snr") if c in table]
    out = {c: table[c][rows] for c in shown} | {"row": rows, "divergence": values}
    settings = {"QUERY": str(where), "DIVERGE": args.divergence, "K": args.k}
    settings |= {"MINSNR": args.min_snr, "ONLYINST": args.only_instrument or "any"}
    output = write_table(
        out,
        _beside(args.table, args.output, "similar.fits"),
        extname="SIMILAR",
        header=_made_from(args.table, header) | settings,
    )
    print(f"query: {where}")
    for i, r in enumerate(rows):
        print(
            f"{i + 1:3d}  row {r:7d}  "
            + "  ".join(f"{c} {table[c][r]}" for c in shown[:2])
            + ("  " + str(table["label"][r]) if "label" in table else "")
            + f"  {args.divergence} {values[i]:.4g}"
        )
    print(f"table: {output}")
    return 0


def _query_row(args, table) -> int | str:
    """The table row of ``--row`` or ``--source`` (its first observation, or ``--obs``), or
    why there is none."""
    if args.row is not None:
        if not 0 <= args.row < len(table["row"]):
            return f"--row {args.row}: the table has {len(table['row'])} rows"
        return args.row
    match = _same_id(table["source_id"], args.source)
    if not match.any():
        return f"no source {args.source!r} in {args.table}"
    if args.obs is not None:
        match &= _same_id(table["obs_id"], args.obs)
        if not match.any():
            return f"source {args.source} was not seen in observation {args.obs!r}"
    return int(np.flatnonzero(match)[np.argmin(table["mjd"][match])])


def _rounded(value) -> str:
    """A value as printed for people: floats to 4 significant digits."""
    return f"{value:.4g}" if isinstance(value, float | np.floating) else str(value)


def _same_id(column, text: str) -> np.ndarray:
    """Where ``column`` holds the id ``text``: as numbers when both are integers (an OBS_ID
    typed without its leading zeros), else as strings."""
    values = np.asarray(column)
    if values.dtype.kind in "iu" and text.strip().lstrip("+").isdigit():
        return values == int(text)
    if text.strip().isdigit() and values.dtype.kind in "USO":
        digits = np.char.lstrip(np.char.strip(values.astype(str)), "0")
        return np.where(digits == "", "0", digits) == (text.strip().lstrip("0") or "0")
    return values.astype(str) == text


def _encode_query(args, header: dict) -> dict | str:
    """The posterior table of ``--spectrum``, or why it could not be made."""
    from xspecvae.explore import encode_files

    run = args.run or Path(header.get("RUN", "xspecvae-run"))
    vae, _, pack = _load(run, Path(header["PACK"]) if "PACK" in header else None, None)
    with pack:
        query, report = encode_files(vae, [args.spectrum], pack, rmf_dirs=args.rmf_dir)
    if query is None:
        reasons = "; ".join(f"{r['file']}: {r['reason']}" for r in report if r["reason"])
        return f"{args.spectrum} could not be encoded ({reasons or 'nothing packed'})"
    return query


def _map(args) -> int:
    from xspecvae import figures
    from xspecvae.explore import map_table
    from xspecvae.tables import POSTERIOR, read_table, write_table

    table, header = read_table(args.table, with_header=True, required=POSTERIOR)
    coordinates = map_table(table, whiten=args.whiten, seed=args.seed)
    output = write_table(
        coordinates,
        _beside(args.table, args.output, "map.fits"),
        extname="MAP",
        header=_made_from(args.table, header) | {"WHITEN": args.whiten, "SEED": args.seed},
    )
    xy = np.stack([coordinates["x"], coordinates["y"]], -1)
    folder = output.with_suffix("")
    keep = table["snr"] >= args.min_snr
    made = []
    views = [("snr", "SNR (model)", True), ("nh", "N_H (1e22 cm^-2)", True)]
    if "label" in table:
        views.insert(0, ("label", "class", False))
    for column, label, log in views:
        for cut, mask in (("", None), ("_snr", keep)):
            path = folder / f"{column}{cut}.png"
            title = f"{label}" + (f", SNR > {args.min_snr:g}" if cut else "")
            figures.latent_map(
                xy, table[column], path, title=title, label=label, log=log, keep=mask
            )
            made.append(path)
    print(f"map: {output}; figures: {', '.join(str(p) for p in made)}")
    return 0


def _trajectory(args) -> int:
    from xspecvae.explore import most_moving, trajectory_figures, trajectory_table
    from xspecvae.tables import POSTERIOR, read_table, write_table

    table, header = read_table(args.table, with_header=True, required=POSTERIOR)
    steps = trajectory_table(table, args.divergence)
    output = write_table(
        steps,
        _beside(args.table, args.output, "trajectories.fits"),
        extname="TRAJECTORIES",
        header=_made_from(args.table, header) | {"DIVERGE": args.divergence},
    )
    sources = len(np.unique(steps["source_id"]))
    print(
        f"trajectories: {output} ({sources} sources seen several times, {len(steps['row'])} rows)"
    )
    if not sources:
        return 0
    chosen = args.source or [str(s) for s in most_moving(steps)]
    ids = steps["source_id"].astype(str)
    picks = [np.flatnonzero(ids == s) for s in chosen]
    missing = [s for s, i in zip(chosen, picks) if not len(i)]
    if missing:
        return _fail("trajectory", f"not seen several times: {', '.join(missing)}")
    folder = output.with_suffix("")
    map_path = args.map or args.table.with_name("map.fits")
    xy = None
    if map_path.exists():
        coordinates = read_table(map_path)
        xy = np.stack([coordinates["x"], coordinates["y"]], -1)
    trajectory_figures(
        table,
        steps,
        picks,
        chosen,
        folder / "hardness_intensity.png",
        xy=xy,
        map_path=folder / "map.png",
    )
    for s, i in zip(chosen, picks):
        print(f"  source {s}: steps " + ", ".join(f"{v:.3g}" for v in steps["step"][i][1:]))
    print(f"figures: {folder}")
    return 0


def _anomalies(args) -> int:
    from xspecvae.explore import anomaly_table
    from xspecvae.tables import POSTERIOR, read_table, write_table

    table, header = read_table(args.table, with_header=True, required=POSTERIOR)
    ranked = anomaly_table(table, args.k, args.divergence, args.reference)
    settings = {"K": args.k, "DIVERGE": args.divergence, "NREF": args.reference}
    output = write_table(
        ranked,
        _beside(args.table, args.output, "anomalies.fits"),
        extname="ANOMALIES",
        header=_made_from(args.table, header) | settings,
    )
    for i in range(min(args.top, len(ranked["rank"]))):
        label = f"  {ranked['label'][i]}" if "label" in ranked else ""
        print(
            f"{ranked['rank'][i]:5d}  source {ranked['source_id'][i]}  obs {ranked['obs_id'][i]}"
            f"{label}  misfit {ranked['misfit'][i]:.3g} (#{ranked['misfit_rank'][i]})  "
            f"isolation {ranked['isolation'][i]:.3g} (#{ranked['isolation_rank'][i]})"
        )
    print(f"table: {output}")
    return 0


def _check(args) -> int:
    from xspecvae.explore import calibration_table, check_figure, worst_row
    from xspecvae.tables import made_by, write_table

    vae, info, pack = _load(args.run, args.pack, args.instrument)
    output = args.output or args.run / "calibration.fits"
    with pack:
        checks = calibration_table(
            vae, pack, args.rows, n_draws=args.draws, progress=not args.quiet
        )
        row = worst_row(checks) if args.row is None else args.row
        figure = output.with_name(f"ppc_row{row}.png")
        check_figure(vae, pack, row, figure)
    header = made_by(args.run, info, pack) | {"NROWS": args.rows, "NDRAWS": args.draws}
    write_table(checks, output, extname="CALIBRATION", header=header)
    n, low = len(checks["row"]), checks["misfit"]
    print(
        f"calibration: {output} ({n} sources, {low.sum()} flagged as misfits, p < 0.01); {figure}"
    )
    return 0


def _sample(args) -> int:
    import jax

    from xspecvae.predictive import draw
    from xspecvae.tables import made_by, write_table

    vae, info, pack = _load(args.run, args.pack, args.instrument)
    with pack:
        if not 0 <= args.row < len(pack):
            return _fail("sample", f"--row {args.row}: the pack has {len(pack)} spectra")
        one = pack.read(np.array([args.row]))
        drawn = draw(
            vae.with_rmfs(pack.rmf), one, args.n, jax.random.key(args.seed), prior=args.prior
        )
        lo, hi = pack.grid.channel_lo, pack.grid.channel_hi
    columns = {k: drawn[k][:, 0] for k in ("z", "log_norm", "source", "background")}
    columns |= {
        "counts": drawn["counts_rep"][:, 0],
        "background_counts": drawn["background_rep"][:, 0],
    }
    header = {"ROW": args.row, "PRIOR": bool(args.prior), "ELO": float(lo[0]), "EHI": float(hi[-1])}
    header |= made_by(args.run, info, pack) | {"SEED": args.seed}
    output = write_table(columns, args.output, extname="SAMPLES", header=header)
    where = "the prior" if args.prior else f"the posterior of row {args.row}"
    print(f"samples: {output} ({args.n} spectra from {where}, {len(lo)} channels)")
    return 0


def _report(args) -> int:
    from xspecvae.explore import explore

    path = explore(
        args.run,
        args.pack,
        args.output,
        snr_min=args.min_snr,
        divergence=args.divergence,
        parquet=args.parquet,
        instrument=args.instrument,
        progress=not args.quiet,
    )
    print(f"report: {path}")
    return 0


def _compare(args) -> int:
    from xspecvae.compare import compare

    path = compare(
        args.run,
        args.pack,
        args.output,
        reference=args.reference,
        models=tuple(args.fit or ("powerlaw", "diskbb+powerlaw")),
        absorption=args.absorption,
        show=args.show,
        k=args.k,
        divergence=args.divergence,
        progress=not args.quiet,
    )
    print(f"report: {path}")
    return 0


def _demo(args) -> int:
    from xspecvae.explore import explore
    from xspecvae.simulator import demo_pack
    from xspecvae.train import TrainOptions, train

    folder, progress = args.output, not args.quiet
    folder.mkdir(parents=True, exist_ok=True)
    say = print if progress else (lambda *a, **k: None)
    say(f"demo 1/3: the demo catalogue, {folder / 'catalogue.h5'}", flush=True)
    pack = folder / "catalogue.h5"
    if not pack.exists():
        demo_pack(pack, progress=progress)
    run = folder / "run"
    say(f"demo 2/3: training ({args.epochs} epochs), {run}", flush=True)
    options = TrainOptions(epochs=args.epochs)
    train(pack, run, options=options, resume=(run / "config.json").exists(), progress=progress)
    say("demo 3/3: posteriors, map, searches, trajectories, checks, report", flush=True)
    report = folder / "explore" / "report.html"
    done = report.exists() and report.stat().st_mtime > checkpoint.path(run).stat().st_mtime
    if not done:
        report = explore(run, pack, folder / "explore", progress=progress)
    print(f"report: {report}")
    return 0


def _fail(command: str, message: str) -> int:
    print(f"xspecvae {command}: {message}", file=sys.stderr)
    return 1


def _convert_run(args) -> int:
    from xspecvae.train import load_run

    warning = f"{args.run / checkpoint.LEGACY} is a pickle: unpickling it runs any code it holds"
    if not args.trust:
        print(f"xspecvae convert-run: {warning}; if you trust it, add --trust", file=sys.stderr)
        return 1
    print(f"warning: {warning}; converting it as asked (--trust)", file=sys.stderr)
    written = checkpoint.convert_legacy(args.run)
    try:
        load_run(args.run)
    except InputError:
        written.unlink()
        raise
    print(f"converted: {written} (the pickle is left as it was)")
    return 0


_COMMANDS = {
    "inspect": lambda args: _inspect(
        args.files, args.json, args.rmf_dir, _substitutes(args.rmf_substitute)
    ),
    "pack": _pack,
    "simulate": _simulate,
    "train": _train,
    "encode": _encode,
    "similar": _similar,
    "map": _map,
    "trajectory": _trajectory,
    "anomalies": _anomalies,
    "check": _check,
    "sample": _sample,
    "report": _report,
    "compare": _compare,
    "demo": _demo,
    "convert-run": _convert_run,
}


if __name__ == "__main__":
    sys.exit(main())
