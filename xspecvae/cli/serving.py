"""The command that serves a run as a local web app: serve."""

from __future__ import annotations

import argparse
from pathlib import Path

from xspecvae.cli.options import command


def add_parsers(commands: argparse._SubParsersAction) -> None:
    serve = command(
        commands,
        "serve",
        help="a local web app over a run's catalogue: the map, each source's spectrum and "
        "fit, its nearest posteriors, anomalies, selections to download",
        description="Serve RUN on PACK (default: the run's own) as a web app (Bokeh server) "
        "at http://HOST:PORT/, opening on the map. Only this machine can reach it unless "
        "--host names another address. The posterior table, map and anomaly ranking are "
        "made once and cached in --tables (those of 'xspecvae report' are reused).",
    )
    serve.add_argument("run", type=Path, help="run")
    serve.add_argument("pack", type=Path, nargs="?", help="pack (default: the run's own)")
    serve.add_argument("--port", type=int, default=8765, help="port")
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (another than 127.0.0.1 lets other machines in)",
    )
    serve.add_argument(
        "--tables",
        type=Path,
        help="cached tables (default RUN/explore, or the demo's report beside RUN)",
    )
    serve.add_argument("--instrument", help="pack section (needed if it has several)")
    serve.add_argument(
        "--points",
        type=int,
        help="the most sources the map draws as points, the others shaded until one zooms in "
        "(default 20,000: fast in a browser without a GPU; a GPU draws 300,000 fluidly)",
    )


def _serve(args: argparse.Namespace) -> int:
    from xspecvae.errors import InputError
    from xspecvae.serve import serve

    if not 0 <= args.port < 65536:
        raise InputError("--port", f"{args.port} is not a port (0 to 65535)")
    if args.points is not None and args.points < 1:
        raise InputError("--points", f"{args.points}: at least one point must be drawn")
    serve(
        args.run,
        args.pack,
        port=args.port,
        host=args.host,
        folder=args.tables,
        instrument=args.instrument,
        **({} if args.points is None else {"points": args.points}),
    )
    return 0


COMMANDS = {"serve": _serve}
