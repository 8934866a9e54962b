"""Finding pipeline products: which input files are spectra, backgrounds, ARFs or RMFs, and
where a spectrum's RMF is (beside it, in the folders given, or a substitute)."""

from __future__ import annotations

import fnmatch
import os
import re
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path

from xspecvae.errors import InputError
from xspecvae.ogip import (
    Arf,
    OGIPError,
    Pha,
    read_ogip,
)

#: PPS product names: observation, instrument, exposure, product type, source number.
PPS_NAME = re.compile(
    r"^P(?P<obs_id>\d{10})(?P<inst>[A-Z0-9]{2})(?P<expo>[SU]\d{3})"
    r"(?P<kind>[A-Z]{6})(?P<src>[0-9A-F]{4})\.",
    re.IGNORECASE,
)
_AUXILIARY = {"BGSPEC": "background", "SRCARF": "arf"}
_SECTIONS = {"EPN": "pn", "EMOS1": "mos1", "EMOS2": "mos2", "RGS1": "rgs1", "RGS2": "rgs2"}
_UNSAFE = re.compile(r"[^a-z0-9_+-]")
_VERSION = re.compile(r"_v\d+(\.\d+)*$", re.IGNORECASE)
_SUFFIXES = (".gz", ".ftz", ".z", ".rmf", ".rsp")
#: Rows gathered before each append to the pack.


def section_of(instrument: str) -> str:
    """The pack section of an INSTRUME value: ``pn``, ``mos1``... for the known ones, else the
    value in lower case with anything but letters, digits, ``_+-`` made ``_`` (an HDF5 name)."""
    known = _SECTIONS.get(instrument.strip().upper())
    return known or _UNSAFE.sub("_", instrument.strip().lower()) or "unknown"


# ---------------------------------------------------------------------------------------------
# Finding files


def _files(inputs: Iterable[str | Path]) -> tuple[list[Path], dict[Path, str]]:
    """The regular files named by ``inputs`` or found under them, resolved, each once; and
    every other name found with why it is not read (a broken link, a pipe, a name that is not
    UTF-8, another name of a file already listed), so that the report accounts for it."""
    names: list[Path] = []
    skipped: dict[Path, str] = {}
    for entry in inputs:
        entry = Path(entry)
        if entry.is_dir():
            names += _walk(entry, skipped)
        elif entry.exists() or entry.is_symlink():
            names.append(entry)
        else:
            raise InputError(entry, "no such file or directory")
    found: dict[Path, Path] = {}
    for name in names:
        try:
            str(name).encode()
        except UnicodeEncodeError:
            shown = Path(os.fsencode(name.absolute()).decode(errors="backslashreplace"))
            skipped[shown] = "its name is not valid UTF-8: rename it"
            continue
        try:
            real = name.resolve(strict=True)
            regular = stat.S_ISREG(real.stat().st_mode)
        except (OSError, RuntimeError):  # RuntimeError: a loop of links (Python < 3.13)
            skipped[name.absolute()] = "a broken link or a loop of links"
            continue
        if not regular:
            skipped[name.absolute()] = "not a regular file (a pipe, a socket or a device)"
        elif real not in found:
            found[real] = name.absolute()
        elif name.absolute() not in (real, found[real]):
            skipped[name.absolute()] = f"another name of {real}"
    return sorted(found), skipped


def _walk(folder: Path, skipped: dict[Path, str]) -> list[Path]:
    """The names of everything but folders under ``folder``, links to folders followed (each
    folder read once, so loops end); a folder that cannot be read goes into ``skipped``."""

    def unreadable(err: OSError) -> None:
        skipped[Path(err.filename).absolute()] = f"a folder that cannot be read ({err.strerror})"

    names, seen = [], set()
    for root, folders, files in os.walk(folder, onerror=unreadable, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:  # a second way into a folder already read (a link, or a loop)
            folders[:] = []
            skipped[Path(root).absolute()] = f"another name of the folder {real}"
            continue
        seen.add(real)
        folders.sort()
        names += sorted(Path(root, name) for name in files)
    return names


def _roles(files: list[Path]) -> dict[Path, tuple[str, str]]:
    """Role of each file: source, background, arf, other or ignored (with a reason)."""
    roles = {}
    named_backgrounds = set()
    for path in files:
        match = PPS_NAME.match(path.name)
        if match:
            kind = match["kind"].upper()
            role = "source" if kind == "SRSPEC" else _AUXILIARY.get(kind, "other")
            roles[path] = (role, "")
            continue
        if not _is_fits(path):
            roles[path] = ("ignored", "not a FITS file")
            continue
        try:
            content = read_ogip(path)
        except OGIPError:
            roles[path] = ("source", "")  # unreadable: reported as a rejected spectrum
            continue
        if isinstance(content, list):
            content = content[0]
        if isinstance(content, Pha):
            roles[path] = ("background" if content.kind == "BKG" else "source", "")
            if content.backfile:
                found = content.locate("backfile")
                if found is not None:
                    named_backgrounds.add(found.resolve())
        else:
            roles[path] = ("arf" if isinstance(content, Arf) else "rmf", "")
    for path in named_backgrounds & set(roles):
        roles[path] = ("background", "")
    return roles


def _is_fits(path: Path) -> bool:
    """Whether ``path`` holds FITS (possibly gzip-compressed), from its first bytes."""
    import gzip
    import zlib

    try:
        with open(path, "rb") as f:
            head = f.read(6)
    except OSError:
        return True  # unreadable: let the reader say why
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as f:
                head = f.read(6)
        except (OSError, EOFError, zlib.error):
            return True  # damaged gzip: let the reader say what is wrong
    return head == b"SIMPLE"


def locate_rmf(
    pha: Pha, directories: Sequence[str | Path] = (), substitutes: dict[str, str] | None = None
) -> tuple[Path | None, str | None]:
    """The RMF file of the spectrum's RESPFILE (:func:`find_rmf` in its folder, then in
    ``directories``), else the substitute of the first glob pattern of ``substitutes`` it
    matches; with the name it stands in for when substituted (else None)."""
    name = pha.respfile
    path = find_rmf(name, [pha.path.parent, *directories])
    if path is not None:
        return path, None
    for pattern, substitute in (substitutes or {}).items():
        if fnmatch.fnmatch(Path(name).name.lower(), pattern.lower()):
            path = Path(substitute)
            if not path.is_absolute() and not path.exists():
                path = find_rmf(substitute, directories) or path
            return path, Path(name).name
    return None, None


def find_rmf(name: str, directories: Iterable[str | Path]) -> Path | None:
    """The RMF a RESPFILE ``name`` refers to in ``directories``: the same base name in any
    letter case, with or without compression suffix, or with a version suffix (``_v19.0``)
    that the header name lacks. The folders are a search path: the first one holding a match
    gives it (for :func:`locate_rmf`, the spectrum's own folder before ``--rmf-dir``); within
    a folder the file of exactly that name wins, else the highest version."""
    wanted = _rmf_key(name)
    for directory in directories:
        try:
            entries = sorted(Path(directory).iterdir())
        except OSError:
            continue
        found = []
        for entry in entries:
            key = _rmf_key(entry.name)
            if entry.is_file() and (key == wanted or _VERSION.sub("", key) == wanted):
                version = [int(v) for v in re.findall(r"\d+", key[len(wanted) :])]
                found.append((key == wanted, version, entry))
        if found:
            return max(found, key=lambda f: f[:2])[2]
    return None


def _rmf_key(name: str) -> str:
    key = Path(name).name.lower()
    for suffix in _SUFFIXES:  # in this order: compression first, then the RMF extension
        if key.endswith(suffix):
            key = key[: -len(suffix)]
    return key


def _source_number(path: Path) -> int:
    """The pipeline source number of a PPS product (hexadecimal in its name), else -1."""
    match = PPS_NAME.match(path.name)
    return int(match["src"], 16) if match else -1
