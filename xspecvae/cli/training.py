"""Commands that train: train, demo, convert-run."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from xspecvae import checkpoint
from xspecvae.cli.options import command, fail
from xspecvae.errors import InputError
from xspecvae.ogip import OGIPError
from xspecvae.run import Run
from xspecvae.simulator import DEMO_PACK


def add_parsers(commands: argparse._SubParsersAction) -> None:
    _train_parser(commands)
    demo = command(
        commands,
        "demo",
        help="the whole journey on the built-in demo catalogue: simulate, train, explore, "
        "report; a re-run resumes (its time on a laptop: benchmarks/RESULTS.md)",
    )
    demo.add_argument("-o", "--output", type=Path, default=Path("xspecvae-demo"), help="folder")
    demo.add_argument("--epochs", type=int, default=40, help="training epochs")
    demo.add_argument("--quiet", action="store_true", help="no progress")
    convert = command(
        commands,
        "convert-run",
        help="convert a run of xspecvae < 0.2 (a pickled checkpoint.pkl) to checkpoint.npz; "
        "this unpickles the file, which runs any code it holds: only for a run you trust",
    )
    convert.add_argument("run", type=Path, help="run folder holding checkpoint.pkl")
    convert.add_argument("--trust", action="store_true", help="unpickle it: you trust the file")


def _train_parser(commands: argparse._SubParsersAction) -> None:
    from xspecvae.likelihood import LIKELIHOODS
    from xspecvae.train import TrainOptions
    from xspecvae.vae import Config

    train = command(
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


def _train(args: argparse.Namespace) -> int:
    from xspecvae.simulator import demo_pack
    from xspecvae.train import TrainingError, TrainOptions, initialize_distributed, train
    from xspecvae.vae import Config

    if args.run.exists() and not args.run.is_dir():
        return fail("train", f"{args.run}: is a file; -o names the run's folder")
    if args.distributed or args.coordinator:
        initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    pack = args.pack
    if pack is None and not args.resume:
        pack = Path(DEMO_PACK)
        if not pack.exists():
            demo_pack(pack, progress=not args.quiet)
    given = dict(instrument=args.instrument, init=args.init, absorption=args.absorption)
    given |= dict(resume=args.resume, progress=not args.quiet)
    try:  # an impossible setting (Config, TrainOptions) is one line too
        config, options = (_settings(cls, args) for cls in (Config, TrainOptions))
        metrics = train(pack, args.run, config=config, options=options, **given)
    except (TrainingError, OGIPError, ValueError) as err:
        return fail("train", str(err))
    except KeyboardInterrupt:
        saved = f"the last checkpoint in {args.run} is whole; continue with: xspecvae train -o "
        saved += f"{args.run} --resume"
        saved = "; " + saved if Run(args.run).trained else " before the first checkpoint"
        print(f"\nxspecvae train: interrupted{saved}", file=sys.stderr)
        return 130
    if not metrics:
        further = f"xspecvae train PACK -o NEW --init {args.run} --epochs N"
        print(f"run: {args.run} had already run all its epochs; to train it further: {further}")
        return 0
    print(
        f"run: {args.run} (epoch {metrics['epoch']}: training loss {metrics['train_loss']:.2f}, "
        f"validation loss {metrics['validation_loss']:.2f} per spectrum, "
        f"{metrics['spectra_per_s']:,.0f} spectra/s)"
    )
    return 0


def _settings(cls: type, args: argparse.Namespace) -> object:
    """``cls`` (a settings dataclass) from the command line's flags (a resumed run refuses
    those set off their defaults that differ from its own: :func:`~xspecvae.train.train`)."""
    return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})


def _demo(args: argparse.Namespace) -> int:
    from xspecvae.explore import explore
    from xspecvae.simulator import demo_pack
    from xspecvae.train import TrainingError, TrainOptions, train

    folder, progress = args.output, not args.quiet
    folder.mkdir(parents=True, exist_ok=True)
    say = print if progress else (lambda *a, **k: None)
    say(f"demo 1/3: the demo catalogue, {folder / 'catalogue.h5'}", flush=True)
    pack = folder / "catalogue.h5"
    if not pack.exists():
        demo_pack(pack, progress=progress)
    run = folder / "run"
    say(f"demo 2/3: training ({args.epochs} epochs), {run}", flush=True)
    options, model = TrainOptions(epochs=args.epochs), Run(run)
    try:
        train(pack, run, options=options, resume=model.started, progress=progress)
    except TrainingError as err:  # e.g. a demo of other --epochs in this folder
        return fail("demo", f"{err}; or run the demo into another folder (-o)")
    say("demo 3/3: posteriors, map, searches, trajectories, checks, report", flush=True)
    report = model.beside_folder / "report.html"
    if not model.is_current(report):
        report = explore(run, pack, model.beside_folder, progress=progress)
    print(f"explore: xspecvae serve {run}")
    print(f"report: {report}")
    return 0


def _convert_run(args: argparse.Namespace) -> int:
    from xspecvae.run import load_run

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


COMMANDS = {"train": _train, "demo": _demo, "convert-run": _convert_run}
