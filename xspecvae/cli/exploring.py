"""Commands that search a trained run's posteriors: encode, similar, map, trajectory,
anomalies (the checks and reports are in :mod:`.checking`)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from xspecvae.cli.options import (
    command,
    load_run_and_pack,
    parse_substitutes,
    rmf_options,
    run_and_pack,
)
from xspecvae.errors import InputError
from xspecvae.latent import DEFAULT_DIVERGENCE, DIVERGENCES, STEP_DIVERGENCE


def _table_and_search(
    sub: argparse.ArgumentParser,
    default_output: str,
    neighbours: bool = True,
    divergence: str = DEFAULT_DIVERGENCE,
) -> None:
    sub.add_argument("table", type=Path, help="posterior table made by 'xspecvae encode'")
    sub.add_argument("-o", "--output", type=Path, help=f"table written (default {default_output})")
    sub.add_argument(
        "--divergence", choices=DIVERGENCES, default=divergence, help="between posteriors"
    )
    if neighbours:
        sub.add_argument("-k", type=int, default=10, help="neighbours")


def add_parsers(commands: argparse._SubParsersAction) -> None:
    """encode, similar, map, trajectory, anomalies."""
    encode = command(
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

    similar = command(
        commands, "similar", help="the sources whose posteriors are nearest to a query source's"
    )
    _table_and_search(similar, "similar.fits next to TABLE")
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
    rmf_options(similar)  # where the RMF of --spectrum is, if not beside it
    similar.add_argument("--obs", help="observation id of the query source")
    similar.add_argument("--min-snr", type=float, default=0.0, help="only neighbours this bright")
    similar.add_argument("--only-instrument", help="only neighbours from this instrument")

    map_ = command(
        commands, "map", help="PaCMAP map of the posterior means, as a table and figures"
    )
    map_.add_argument("table", type=Path, help="posterior table made by 'xspecvae encode'")
    map_.add_argument("-o", "--output", type=Path, help="default map.fits next to TABLE")
    map_.add_argument("--whiten", action="store_true", help="divide dimensions by their RMS scale")
    map_.add_argument("--min-snr", type=float, default=10.0, help="SNR filter of the figures")
    map_.add_argument("--seed", type=int, default=0, help="PaCMAP seed")

    trajectory = command(
        commands,
        "trajectory",
        help="sources seen several times: posteriors in time order, step divergences, drawn "
        "on the map and in a hardness-intensity diagram",
    )
    _table_and_search(
        trajectory, "trajectories.fits next to TABLE", neighbours=False, divergence=STEP_DIVERGENCE
    )
    trajectory.add_argument("--map", type=Path, help="map table (default map.fits next to TABLE)")
    trajectory.add_argument(
        "--source",
        nargs="+",
        action="extend",
        default=[],
        help="source ids to draw (default: those that move most)",
    )

    anomaly = command(
        commands,
        "anomalies",
        help="rank sources by misfit and by the emptiness of their neighbourhood",
    )
    _table_and_search(anomaly, "anomalies.fits next to TABLE", divergence=STEP_DIVERGENCE)
    anomaly.add_argument("--reference", type=int, default=20_000, help="neighbourhood sample")
    anomaly.add_argument("--top", type=int, default=10, help="lines printed")


def _beside(table: Path, output: Path | None, name: str) -> Path:
    return output or table.with_name(name)


def _made_from(table: Path, header: dict) -> dict:
    """The header of a table made from the posterior table at ``table`` (with ``header``):
    that table, and the run and pack that made it."""
    known = {k: header[k] for k in ("RUN", "RUNID", "PACK", "PACKID") if k in header}
    return known | {"TABLE": str(table)}


def _encode(args: argparse.Namespace) -> int:
    from xspecvae.explore import posterior_table
    from xspecvae.tables import made_by, write_table

    vae, info, pack = load_run_and_pack(args.run, args.pack, args.instrument)
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


def _similar(args: argparse.Namespace) -> int:
    from xspecvae.explore import find_row, similar_table
    from xspecvae.tables import POSTERIOR, read_table, write_table

    table, header = read_table(args.table, with_header=True, required=POSTERIOR)
    query = _encode_query(args, header) if args.spectrum is not None else args.row
    search = dict(divergence=args.divergence, min_snr=args.min_snr)
    try:  # the table's problems name the table
        if query is None:
            query = find_row(table, args.source, args.obs)
        found = similar_table(table, query, args.k, instrument=args.only_instrument, **search)
    except InputError as err:
        raise InputError(args.table, str(err)) from None
    where = args.spectrum or f"row {query}, " + ", ".join(
        f"{c} {_rounded(np.asarray(table[c])[query])}"
        for c in ("source_id", "obs_id", "label", "snr")
        if c in table
    )
    settings = {"QUERY": str(where), "DIVERGE": args.divergence, "K": args.k}
    settings |= {"MINSNR": args.min_snr, "ONLYINST": args.only_instrument or "any"}
    output = _beside(args.table, args.output, "similar.fits")
    header = _made_from(args.table, header) | settings
    write_table(found, output, extname="SIMILAR", header=header)
    print(f"query: {where}")
    for i, r in enumerate(found["row"]):
        ids = "  ".join(f"{c} {found[c][i]}" for c in ("source_id", "obs_id") if c in found)
        ids += f"  {found['label'][i]}" if "label" in found else ""
        print(f"{i + 1:3d}  row {r:7d}  {ids}  {args.divergence} {found['divergence'][i]:.4g}")
    print(f"table: {output}")
    return 0


def _rounded(value: object) -> str:
    """A value as printed for people: floats to 4 significant digits."""
    return f"{value:.4g}" if isinstance(value, float | np.floating) else str(value)


def _encode_query(args: argparse.Namespace, header: dict) -> dict:
    """The posterior table of ``--spectrum``, or an :class:`InputError` saying why not."""
    from xspecvae.explore import encode_files

    run = args.run or Path(header.get("RUN", "xspecvae-run"))
    vae, _, pack = load_run_and_pack(run, Path(header["PACK"]) if "PACK" in header else None, None)
    with pack:
        query, report = encode_files(
            vae,
            [args.spectrum],
            pack,
            rmf_dirs=args.rmf_dir,
            substitutes=parse_substitutes(args.rmf_substitute),
        )
    if query is None:
        reasons = "; ".join(f"{r['file']}: {r['reason']}" for r in report if r["reason"])
        raise InputError(args.spectrum, f"could not be encoded ({reasons or 'nothing packed'})")
    return query


def _map(args: argparse.Namespace) -> int:
    from xspecvae.explore import map_table
    from xspecvae.figures import map_figures
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
    made = map_figures(table, xy, output.with_suffix(""), snr_min=args.min_snr)
    print(f"map: {output}; figures: {', '.join(str(p) for p in made)}")
    return 0


def _trajectory(args: argparse.Namespace) -> int:
    from xspecvae.explore import most_moving, trajectory_table
    from xspecvae.figures import trajectory_figures
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
    chosen = args.source or most_moving(steps)
    folder = output.with_suffix("")
    map_path = args.map or args.table.with_name("map.fits")
    xy = None
    if map_path.exists():
        coordinates = read_table(map_path)
        xy = np.stack([coordinates["x"], coordinates["y"]], -1)
    paths = dict(xy=xy, map_path=folder / "map.png")
    trajectory_figures(table, steps, chosen, folder / "hardness_intensity.png", **paths)
    for s in chosen:
        moves = steps["step"][steps["source_id"].astype(str) == str(s)][1:]
        print(f"  source {s}: steps " + ", ".join(f"{v:.3g}" for v in moves))
    print(f"figures: {folder}")
    return 0


def _anomalies(args: argparse.Namespace) -> int:
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


COMMANDS = {
    "encode": _encode,
    "similar": _similar,
    "map": _map,
    "trajectory": _trajectory,
    "anomalies": _anomalies,
}
