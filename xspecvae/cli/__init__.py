"""The ``xspecvae`` command line: one module per group of commands (:mod:`.data`,
:mod:`.training`, :mod:`.exploring`, :mod:`.checking`, :mod:`.serving`), each handler a few
lines calling the library."""

from __future__ import annotations

import argparse
import sys

from xspecvae import __version__
from xspecvae.cli import checking, data, exploring, serving, training
from xspecvae.cli.options import Help
from xspecvae.errors import InputError

__all__ = ["main", "build_parser"]

_COMMANDS = {
    **data.COMMANDS,
    **training.COMMANDS,
    **exploring.COMMANDS,
    **checking.COMMANDS,
    **serving.COMMANDS,
}


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
    except (
        FileNotFoundError,
        FileExistsError,
        IsADirectoryError,
        NotADirectoryError,
        PermissionError,
    ) as err:
        where = f"{err.filename}: {err.strerror}" if err.filename else str(err)
        print(f"xspecvae {args.command}: {where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # what was written is whole (atomic writes, resumable packs)
        print(f"\nxspecvae {args.command}: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    """The command line: one subcommand per job."""
    parser = argparse.ArgumentParser(
        prog="xspecvae",
        formatter_class=Help,
        description="A physically motivated variational autoencoder for X-ray source "
        "catalogues. Run 'xspecvae COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"xspecvae {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    data.add_parsers(commands)
    training.add_parsers(commands)
    exploring.add_parsers(commands)
    checking.add_parsers(commands)
    serving.add_parsers(commands)
    return parser
