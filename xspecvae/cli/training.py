"""Commands that train: train, demo, convert-run."""

from __future__ import annotations

import argparse
import sys
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
    from dataclasses import fields

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
            return fail(
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
        if Run(args.run).trained:
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


def _demo(args: argparse.Namespace) -> int:
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
    train(pack, run, options=options, resume=Run(run).started, progress=progress)
    say("demo 3/3: posteriors, map, searches, trajectories, checks, report", flush=True)
    report = folder / "explore" / "report.html"
    done = Run(run).is_current(report)
    if not done:
        report = explore(run, pack, folder / "explore", progress=progress)
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
