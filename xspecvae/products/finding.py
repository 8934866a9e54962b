"""Finding pipeline products: which input files are spectra, backgrounds, ARFs or RMFs, and
where a spectrum's RMF is (beside it, in the folders given, or a substitute)."""

from __future__ import annotations

import fnmatch
import re
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
_VERSION = re.compile(r"_v\d+(\.\d+)*$", re.IGNORECASE)
_SUFFIXES = (".gz", ".ftz", ".z", ".rmf", ".rsp")
#: Rows gathered before each append to the pack.


# ---------------------------------------------------------------------------------------------
# Finding files


def _files(inputs: Iterable[str | Path]) -> list[Path]:
    found = []
    for entry in inputs:
        entry = Path(entry)
        if entry.is_dir():
            found += [p for p in entry.rglob("*") if p.is_file()]
        elif entry.is_file():
            found.append(entry)
        else:
            raise InputError(entry, "no such file or directory")
    return sorted({p.resolve() for p in found})


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

    with open(path, "rb") as f:
        head = f.read(6)
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as f:
                head = f.read(6)
        except (OSError, EOFError):
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
    that the header name lacks; the highest version wins."""
    wanted = _rmf_key(name)
    found = []
    for directory in directories:
        try:
            entries = sorted(Path(directory).iterdir())
        except OSError:
            continue
        for entry in entries:
            key = _rmf_key(entry.name)
            if entry.is_file() and (key == wanted or _VERSION.sub("", key) == wanted):
                version = [int(v) for v in re.findall(r"\d+", key[len(wanted) :])]
                found.append((version, entry))
    return max(found, key=lambda f: f[0])[1] if found else None


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
