"""Commands that check and report on a trained run: check, sample, report, compare."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from xspecvae.cli.options import command, fail, load_run_and_pack, run_and_pack
from xspecvae.fitting import MODELS
from xspecvae.latent import DEFAULT_DIVERGENCE, DIVERGENCES


def add_parsers(commands: argparse._SubParsersAction) -> None:
    """check, sample, report, compare."""
    check = command(
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

    sample = command(
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

    report = command(
        commands,
        "report",
        help="every table and figure of a run and one self-contained HTML report",
    )
    run_and_pack(report)
    report.add_argument("-o", "--output", type=Path, help="folder (default RUN/explore)")
    report.add_argument("--min-snr", type=float, default=10.0, help="SNR of the filtered views")
    report.add_argument(
        "--divergence", choices=DIVERGENCES, default=DEFAULT_DIVERGENCE, help="of the searches"
    )
    report.add_argument("--parquet", action="store_true", help="also write .parquet tables")
    report.add_argument("--quiet", action="store_true", help="no progress")

    compare = command(
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
    compare.add_argument("--divergence", choices=DIVERGENCES, default=DEFAULT_DIVERGENCE)
    compare.add_argument("--quiet", action="store_true", help="no progress")


def _check(args: argparse.Namespace) -> int:
    from xspecvae.explore import calibration_table, check_figure, worst_row
    from xspecvae.tables import made_by, write_table

    vae, info, pack = load_run_and_pack(args.run, args.pack, args.instrument)
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


def _sample(args: argparse.Namespace) -> int:
    import jax

    from xspecvae.predictive import draw
    from xspecvae.tables import made_by, write_table

    vae, info, pack = load_run_and_pack(args.run, args.pack, args.instrument)
    with pack:
        if not 0 <= args.row < len(pack):
            return fail("sample", f"--row {args.row}: the pack has {len(pack)} spectra")
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


def _report(args: argparse.Namespace) -> int:
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


def _compare(args: argparse.Namespace) -> int:
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


COMMANDS = {
    "check": _check,
    "sample": _sample,
    "report": _report,
    "compare": _compare,
}
