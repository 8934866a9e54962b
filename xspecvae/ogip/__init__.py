"""OGIP spectral files: PHA spectra (type I and II), ARFs and RMFs, read and written.

Plain dataclasses of numpy arrays, astropy only. Every problem with a file raises
:class:`OGIPError` naming the file and what is wrong; nothing else escapes the readers. Modules:
:mod:`.records` (what is read), :mod:`.access` (opening files), :mod:`.reading`,
:mod:`.checks` (files that belong together) and :mod:`.writing`.
Conventions follow OGIP memos CAL/GEN/92-002 (responses) and OGIP/92-007 (spectra).
"""

from xspecvae.ogip.access import OGIPError, locate
from xspecvae.ogip.checks import background_ratio, check_energy_match, check_match
from xspecvae.ogip.reading import read_arf, read_ogip, read_pha, read_pha_rows, read_rmf
from xspecvae.ogip.records import Arf, Pha, Rmf
from xspecvae.ogip.writing import write_arf, write_pha, write_rmf

__all__ = [
    "OGIPError",
    "Pha",
    "Arf",
    "Rmf",
    "read_pha",
    "read_pha_rows",
    "read_arf",
    "read_rmf",
    "read_ogip",
    "check_match",
    "check_energy_match",
    "background_ratio",
    "locate",
    "write_pha",
    "write_arf",
    "write_rmf",
]
