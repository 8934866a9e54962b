"""What the command modules share: the help formatter, subcommands, shared options, failing."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from xspecvae.errors import InputError

if TYPE_CHECKING:
    from xspecvae.catalog import Pack
    from xspecvae.vae import VAE


class Help(argparse.ArgumentDefaultsHelpFormatter):
    """Help that shows every option's default, except where there is none to show."""

    def _get_help_string(self, action: argparse.Action):
        none = action.default is None or action.default is False or action.default == []
        if none or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def command(commands: argparse._SubParsersAction, name: str, **options) -> argparse.ArgumentParser:
    """A subcommand whose help shows defaults and whose description is its help if not given."""
    options.setdefault("description", options.get("help"))
    return commands.add_parser(name, formatter_class=Help, **options)


def rmf_options(command: argparse.ArgumentParser) -> None:
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


def parse_substitutes(items: list[str]) -> dict[str, str]:
    """``--rmf-substitute`` options as a dict, or an :class:`InputError`."""
    substitutes = {}
    for item in items:
        pattern, sep, file = item.partition("=")
        if not sep or not pattern or not file:
            raise InputError("--rmf-substitute", f"wants PATTERN=FILE, got {item!r}")
        substitutes[pattern] = file
    return substitutes


def fail(command: str, message: str) -> int:
    print(f"xspecvae {command}: {message}", file=sys.stderr)
    return 1


def run_and_pack(sub: argparse.ArgumentParser) -> None:
    """The arguments RUN [PACK] [--instrument] of the commands that read a run and a pack."""
    sub.add_argument("run", type=Path, nargs="?", default=Path("xspecvae-run"), help="run")
    sub.add_argument("pack", type=Path, nargs="?", help="pack (default: the run's own)")
    sub.add_argument("--instrument", help="pack section (needed if it has several)")


def load_run_and_pack(
    run: Path, pack_path: Path | None, instrument: str | None
) -> tuple[VAE, dict, Pack]:
    """The run's VAE, its settings and the pack (the run's own unless named)."""
    from xspecvae.run import load_run, run_pack

    vae, info = load_run(run)
    return vae, info, run_pack(info, pack_path, instrument)
