"""Opening OGIP files: names as pipelines write them (compressed or not, any case), whole
reads checked for truncation, and the HDU and keyword helpers the readers share. Every
problem with a file raises :class:`OGIPError` naming it."""

from __future__ import annotations

import contextlib
import gzip
import io
import math
import os
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from xspecvae.errors import InputError

_COMPRESSED = (".gz", ".ftz", ".z")
_NONE = {"", "NONE", "NULL"}


class OGIPError(InputError):
    """An OGIP file (spectrum, response, table) that cannot be used."""


# ---------------------------------------------------------------------------------------------
# Files


def locate(directory: str | os.PathLike, name: str) -> Path | None:
    """Find the file a header names, relative to ``directory``.

    Tries the name as given, then its base name in ``directory``, with or without a
    compression suffix (``.gz``, ``.FTZ``, ``.Z``) and in any letter case. Returns None if
    nothing matches.
    """
    directory = Path(directory)
    given = Path(name)
    if given.is_absolute() and _is_file(given):
        return given
    base = given.name
    if _is_file(directory / base):
        return directory / base
    stem = base
    for suffix in _COMPRESSED:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    wanted = {(stem + s).lower() for s in ("", *_COMPRESSED)}
    try:
        entries = sorted(os.listdir(directory))
    except OSError:
        return None
    for entry in entries:
        if entry.lower() in wanted and _is_file(directory / entry):
            return directory / entry
    return None


def _is_file(path: Path) -> bool:
    """``path.is_file()``, False where the name cannot be looked up (too long, say)."""
    try:
        return path.is_file()
    except OSError:
        return False


@contextlib.contextmanager
def _opened(path: str | os.PathLike):
    """Read the file into memory (gzip decompressed here, so truncation shows), open every
    HDU, and turn every failure into OGIPError."""
    path = Path(path)
    try:
        if not path.exists():
            raise OGIPError(path, "file not found")
        if not path.is_file():
            raise OGIPError(path, "not a regular file")
        raw = path.read_bytes()
    except OSError as exc:
        raise OGIPError(path, f"cannot read the file ({exc.strerror or exc})") from None
    if raw[:2] == b"\x1f\x8b":  # decompress here: astropy hides truncation of gzip streams
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as exc:
            raise OGIPError(path, f"truncated or corrupt compressed file ({exc})") from None
    if raw[:9] == b"SIMPLE  =" and len(raw) % 2880:
        raise OGIPError(path, f"truncated FITS file ({len(raw)} bytes, not a multiple of 2880)")
    if raw[:9] == b"SIMPLE  =":
        _check_complete(path, raw)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # lazy: astropy parses headers only up to the HDU asked for (pipeline spectra
            # carry a dozen GTI extensions); _check_complete has already walked them all
            hdul = fits.open(io.BytesIO(raw), memmap=False, lazy_load_hdus=True)
        for w in caught:
            if "truncated" in str(w.message).lower():
                hdul.close()
                raise OGIPError(path, "truncated FITS file")
    except OGIPError:
        raise
    except Exception as exc:  # astropy raises many types on damaged files
        raise OGIPError(path, f"not a readable FITS file ({type(exc).__name__}: {exc})") from None
    try:
        with hdul, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield hdul
    except OGIPError:
        raise
    except Exception as exc:
        raise OGIPError(path, f"damaged FITS content ({type(exc).__name__}: {exc})") from None


def _check_complete(path: Path, raw: bytes) -> None:
    """Walk the HDUs of FITS bytes (header blocks to END, data sizes from BITPIX, NAXISn,
    PCOUNT, GCOUNT) and raise OGIPError if the file stops inside one."""
    at = 0
    while at < len(raw):
        header = {}
        while True:  # 2880-byte header blocks until the END card
            if at + 2880 > len(raw):
                raise OGIPError(path, f"truncated FITS file (header at byte {at} never ends)")
            block = raw[at : at + 2880]
            at += 2880
            cards = [block[i : i + 80] for i in range(0, 2880, 80)]
            for card in cards:
                key = card[:8].strip()
                if card[8:10] == b"= " and (key[:5] == b"NAXIS" or key in _SIZE_KEYS):
                    value = card[10:].split(b"/")[0].strip()
                    header[key] = int(value) if value.lstrip(b"+-").isdigit() else None
            if any(card[:8] == b"END     " for card in cards):
                break
        try:
            axes = [header[b"NAXIS%d" % k] for k in range(1, header[b"NAXIS"] + 1)]
            size = (
                abs(header[b"BITPIX"])
                // 8
                * header.get(b"GCOUNT", 1)
                * (header.get(b"PCOUNT", 0) + (math.prod(axes) if axes else 0))
            )
        except (KeyError, TypeError):
            return  # sizes unreadable: let astropy say what is wrong
        at += -(-size // 2880) * 2880
        if at > len(raw):
            raise OGIPError(
                path, f"truncated FITS file ({len(raw)} bytes, its HDUs need at least {at})"
            )


_SIZE_KEYS = (b"BITPIX", b"PCOUNT", b"GCOUNT")


def _find_hdu(
    hdul: fits.HDUList, path: Path, names: tuple[str, ...], hduclas: tuple[str, str] | None = None
):
    for name in names:  # by name first: later HDUs (e.g. many GTIs) are never parsed
        try:
            hdu = hdul[name]
        except (KeyError, IndexError):
            continue
        if isinstance(hdu, fits.BinTableHDU):
            return hdu
    for hdu in hdul[1:]:
        if not isinstance(hdu, fits.BinTableHDU):
            continue
        if hdu.name.upper() in names:
            return hdu
        if hduclas and str(hdu.header.get(hduclas[0], "")).strip().upper() == hduclas[1]:
            return hdu
    raise OGIPError(path, f"no {' or '.join(names)} extension")


def _column(hdu: fits.BinTableHDU, path: Path, name: str, required: bool = True):
    if name in hdu.columns.names:
        return hdu.data[name]
    if required:
        raise OGIPError(path, f"missing column {name} in extension {hdu.name}")
    return None


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return str(value).strip()


def _filename(value: Any) -> str | None:
    text = _text(value)
    return None if text.upper() in _NONE else text


def _number(path: Path, name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise OGIPError(path, f"{name} is not a number: {value!r}") from None
    return number


def _tlmin(hdu: fits.BinTableHDU, name: str) -> int | None:
    index = hdu.columns.names.index(name) + 1
    value = hdu.header.get(f"TLMIN{index}")
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _check_energy_grid(path: Path, lo: np.ndarray, hi: np.ndarray, what: str) -> None:
    if lo.size == 0:
        raise OGIPError(path, f"{what} energy grid is empty")
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        raise OGIPError(path, f"{what} energy grid has non-finite values")
    if np.any(lo < 0) or np.any(hi <= lo) or np.any(np.diff(lo) <= 0):
        raise OGIPError(path, f"{what} energy grid is not positive and increasing")
