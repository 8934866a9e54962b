"""Reading OGIP spectral files: PHA spectra (type I and II), ARFs and RMFs.

Plain dataclasses of numpy arrays, astropy only. Every problem with a file raises
:class:`OGIPError` naming the file and what is wrong; nothing else escapes the readers.
Conventions follow OGIP memos CAL/GEN/92-002 (responses) and OGIP/92-007 (spectra).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import math
import os
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits

from xspecvae.errors import InputError
from xspecvae.files import write_atomic

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

_COMPRESSED = (".gz", ".ftz", ".z")
_NONE = {"", "NONE", "NULL"}


class OGIPError(InputError):
    """An OGIP file (spectrum, response, table) that cannot be used."""


@dataclass(frozen=True, eq=False)
class Pha:
    """One spectrum. ``counts`` are counts (RATE spectra are multiplied by EXPOSURE and
    ``is_rate`` is set). ``backscal``/``areascal`` are floats or per-channel arrays.
    ``backfile``/``respfile``/``ancrfile`` are the header names (None when absent);
    :meth:`locate` finds them on disk."""

    path: Path
    channel: np.ndarray
    first_channel: int
    counts: np.ndarray
    is_rate: bool
    exposure: float
    backscal: float | np.ndarray
    areascal: float | np.ndarray
    quality: np.ndarray
    grouping: np.ndarray
    stat_err: np.ndarray | None
    poisserr: bool
    kind: str
    backfile: str | None
    respfile: str | None
    ancrfile: str | None
    telescope: str
    instrument: str
    filter: str
    object: str
    obs_id: str
    date_obs: str
    mjd_obs: float
    ra: float
    dec: float
    row: int | None = None

    @property
    def n_channel(self) -> int:
        return len(self.channel)

    def locate(self, which: str) -> Path | None:
        """Path of the file named by ``"backfile"``, ``"respfile"`` or ``"ancrfile"``
        (see :func:`locate`), or None."""
        name = getattr(self, which.lower())
        return None if name is None else locate(self.path.parent, name)


@dataclass(frozen=True, eq=False)
class Arf:
    """Effective area ``specresp`` (cm^2) on the energy bins ``energy_lo``..``energy_hi`` (keV)."""

    path: Path
    energy_lo: np.ndarray
    energy_hi: np.ndarray
    specresp: np.ndarray
    telescope: str
    instrument: str


@dataclass(frozen=True, eq=False)
class Rmf:
    """Redistribution matrix, dense ``(n_energy, n_channel)`` float32, columns in the order
    of the EBOUNDS channels. ``includes_arf`` is set for RSP files (effective area folded in)."""

    path: Path
    energy_lo: np.ndarray
    energy_hi: np.ndarray
    channel: np.ndarray
    e_min: np.ndarray
    e_max: np.ndarray
    matrix: np.ndarray
    first_channel: int
    includes_arf: bool
    telescope: str
    instrument: str
    filter: str

    @property
    def n_energy(self) -> int:
        return len(self.energy_lo)

    @property
    def n_channel(self) -> int:
        return len(self.channel)


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
    if given.is_absolute() and given.is_file():
        return given
    base = given.name
    if (directory / base).is_file():
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
        if entry.lower() in wanted and (directory / entry).is_file():
            return directory / entry
    return None


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


def _find_hdu(hdul, path, names: tuple[str, ...], hduclas: tuple[str, str] | None = None):
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


def _column(hdu, path, name: str, required: bool = True):
    if name in hdu.columns.names:
        return hdu.data[name]
    if required:
        raise OGIPError(path, f"missing column {name} in extension {hdu.name}")
    return None


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return str(value).strip()


def _filename(value) -> str | None:
    text = _text(value)
    return None if text.upper() in _NONE else text


def _number(path, name: str, value) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise OGIPError(path, f"{name} is not a number: {value!r}") from None
    return number


def _tlmin(hdu, name: str) -> int | None:
    index = hdu.columns.names.index(name) + 1
    value = hdu.header.get(f"TLMIN{index}")
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _check_energy_grid(path, lo: np.ndarray, hi: np.ndarray, what: str) -> None:
    if lo.size == 0:
        raise OGIPError(path, f"{what} energy grid is empty")
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        raise OGIPError(path, f"{what} energy grid has non-finite values")
    if np.any(lo < 0) or np.any(hi <= lo) or np.any(np.diff(lo) <= 0):
        raise OGIPError(path, f"{what} energy grid is not positive and increasing")


# ---------------------------------------------------------------------------------------------
# PHA


def read_pha(path: str | os.PathLike, row: int | None = None) -> Pha:
    """Read a PHA spectrum. For a type II file, ``row`` (0-based) chooses the spectrum."""
    path = Path(path)
    with _opened(path) as hdul:
        hdu, n_rows = _spectrum_table(hdul, path)
        if n_rows is None:
            if row not in (None, 0):
                raise OGIPError(path, f"type I spectrum has no row {row}")
            return _pha_from_hdu(path, hdul[0].header, hdu, None)
        if row is None:
            raise OGIPError(path, f"type II file with {n_rows} spectra: choose a row")
        if not 0 <= row < n_rows:
            raise OGIPError(path, f"row {row} out of range (type II file with {n_rows} spectra)")
        return _pha_from_hdu(path, hdul[0].header, hdu, row)


def read_pha_rows(path: str | os.PathLike) -> list[Pha]:
    """Read every spectrum of a PHA file: one for type I, all rows for type II."""
    path = Path(path)
    with _opened(path) as hdul:
        return _pha_rows_from(hdul, path)


def _pha_rows_from(hdul, path: Path) -> list[Pha]:
    hdu, n_rows = _spectrum_table(hdul, path)
    rows = [None] if n_rows is None else range(n_rows)
    return [_pha_from_hdu(path, hdul[0].header, hdu, r) for r in rows]


def _spectrum_table(hdul, path):
    """The SPECTRUM extension and its number of spectra (None for type I)."""
    hdu = _find_hdu(hdul, path, ("SPECTRUM",), ("HDUCLAS1", "SPECTRUM"))
    name = "COUNTS" if "COUNTS" in hdu.columns.names else "RATE"
    data = _column(hdu, path, name, required=False)
    if data is None:
        raise OGIPError(path, f"missing column COUNTS or RATE in extension {hdu.name}")
    typed = "TYPE:II" in _text(hdu.header.get("HDUCLAS4")).upper()
    n_rows = len(data) if typed or np.ndim(data) == 2 else None
    if n_rows == 0:
        raise OGIPError(path, "type II file with no spectra (empty SPECTRUM table)")
    return hdu, n_rows


def _pha_from_hdu(path: Path, primary, hdu, row: int | None) -> Pha:
    header = hdu.header

    def value(name: str, default=None):
        """Column value (this row for type II) if there is a column, else keyword, else default."""
        if name in hdu.columns.names:
            column = hdu.data[name]
            return column if row is None else column[row]
        for h in (header, primary):
            if name in h:
                return h[name]
        return default

    is_rate = "COUNTS" not in hdu.columns.names
    data = np.asarray(value("RATE" if is_rate else "COUNTS"), dtype=float)
    if data.ndim != 1 or data.size == 0:
        raise OGIPError(path, "spectrum is not a non-empty vector of channels")
    n = data.size
    if not np.all(np.isfinite(data)):
        raise OGIPError(path, "non-finite counts")

    if "CHANNEL" not in hdu.columns.names:
        raise OGIPError(path, f"missing column CHANNEL in extension {hdu.name}")
    channel = np.asarray(value("CHANNEL"), dtype=np.int64).reshape(-1)
    if channel.size != n:
        raise OGIPError(path, f"CHANNEL has {channel.size} values for {n} channels")
    if np.any(np.diff(channel) != 1):
        raise OGIPError(path, "CHANNEL is not a contiguous increasing sequence")

    exposure = _number(path, "EXPOSURE", value("EXPOSURE"))
    if not np.isfinite(exposure) or exposure <= 0:
        raise OGIPError(path, f"EXPOSURE must be positive, got {exposure}")
    counts = data * exposure if is_rate else data
    if not np.all(np.isfinite(counts)):
        raise OGIPError(path, "RATE * EXPOSURE is not finite")

    quality = _per_channel(path, "QUALITY", value("QUALITY", 0), n, int)
    good = quality == 0
    backscal = _scale(path, "BACKSCAL", value("BACKSCAL", 1.0), n, good)
    areascal = _scale(path, "AREASCAL", value("AREASCAL", 1.0), n, good)
    grouping = _per_channel(path, "GROUPING", value("GROUPING", 0), n, int)
    stat_err = value("STAT_ERR")
    if stat_err is not None:
        stat_err = np.broadcast_to(np.asarray(stat_err, dtype=float), (n,)).copy()

    poisserr = bool(value("POISSERR", stat_err is None))
    kind = _text(value("HDUCLAS2", "TOTAL")).upper() or "TOTAL"
    if np.any(counts < 0) and (poisserr or kind != "NET"):
        raise OGIPError(path, "negative counts in a Poisson spectrum")

    date_obs = _text(value("DATE-OBS"))
    return Pha(
        path=path,
        channel=channel,
        first_channel=int(channel[0]),
        counts=counts,
        is_rate=is_rate,
        exposure=exposure,
        backscal=backscal,
        areascal=areascal,
        quality=quality,
        grouping=grouping,
        stat_err=stat_err,
        poisserr=poisserr,
        kind=kind,
        backfile=_filename(value("BACKFILE")),
        respfile=_filename(value("RESPFILE")),
        ancrfile=_filename(value("ANCRFILE")),
        telescope=_text(value("TELESCOP")),
        instrument=_text(value("INSTRUME")),
        filter=_text(value("FILTER")),
        object=_text(value("OBJECT")),
        obs_id=_text(value("OBS_ID")),
        date_obs=date_obs,
        mjd_obs=_mjd(value("MJD-OBS"), date_obs),
        ra=_coordinate(value("SRC_RA"), value("RA_OBJ")),
        dec=_coordinate(value("SRC_DEC"), value("DEC_OBJ")),
        row=row,
    )


def _per_channel(path, name: str, raw, n: int, dtype) -> np.ndarray:
    array = np.asarray(raw)
    if array.ndim == 0:
        array = np.full(n, raw)
    if array.shape != (n,):
        raise OGIPError(path, f"{name} has {array.size} values for {n} channels")
    try:
        return array.astype(dtype)
    except (TypeError, ValueError):
        raise OGIPError(path, f"{name} is not numeric") from None


def _scale(path, name: str, raw, n: int, good: np.ndarray) -> float | np.ndarray:
    """BACKSCAL or AREASCAL: a keyword (float) or a column (per channel, checked where good)."""
    if np.ndim(raw) == 0:
        scale = _number(path, name, raw)
        if not np.isfinite(scale) or scale <= 0:
            raise OGIPError(path, f"{name} must be positive, got {scale}")
        return scale
    scale = _per_channel(path, name, raw, n, float)
    checked = scale[good]
    if not np.all(np.isfinite(checked)) or np.any(checked <= 0):
        raise OGIPError(path, f"{name} column must be positive in good-quality channels")
    return scale


def _mjd(mjd_obs, date_obs: str) -> float:
    try:
        if mjd_obs is not None:
            return float(mjd_obs)
        if date_obs:
            from astropy.time import Time

            return float(Time(date_obs, scale="tt").mjd)
    except (TypeError, ValueError):
        pass
    return float("nan")


def _coordinate(*candidates) -> float:
    for candidate in candidates:
        try:
            if candidate is not None:
                return float(candidate)
        except (TypeError, ValueError):
            continue
    return float("nan")


# ---------------------------------------------------------------------------------------------
# ARF


def read_arf(path: str | os.PathLike) -> Arf:
    """Read an ARF (SPECRESP extension)."""
    path = Path(path)
    with _opened(path) as hdul:
        return _arf_from(hdul, path)


def _arf_from(hdul, path: Path) -> Arf:
    hdu = _find_hdu(hdul, path, ("SPECRESP",), ("HDUCLAS2", "SPECRESP"))
    lo = np.asarray(_column(hdu, path, "ENERG_LO"), dtype=float)
    hi = np.asarray(_column(hdu, path, "ENERG_HI"), dtype=float)
    area = np.asarray(_column(hdu, path, "SPECRESP"), dtype=float)
    _check_energy_grid(path, lo, hi, "ARF")
    if not np.all(np.isfinite(area)) or np.any(area < 0):
        raise OGIPError(path, "SPECRESP must be finite and non-negative")
    return Arf(
        path=path,
        energy_lo=lo,
        energy_hi=hi,
        specresp=area,
        telescope=_text(hdu.header.get("TELESCOP")),
        instrument=_text(hdu.header.get("INSTRUME")),
    )


# ---------------------------------------------------------------------------------------------
# RMF


def read_rmf(path: str | os.PathLike) -> Rmf:
    """Read an RMF or RSP (MATRIX or SPECRESP MATRIX extension, and EBOUNDS).

    F_CHAN counts from the first EBOUNDS channel; where F_CHAN has a TLMIN keyword it must
    agree (the OGIP default of 1 is never assumed: some pn RMFs count from 0 with no TLMIN).
    """
    path = Path(path)
    with _opened(path) as hdul:
        return _rmf_from(hdul, path)


def _rmf_from(hdul, path: Path) -> Rmf:
    hdu = _find_hdu(hdul, path, ("MATRIX", "SPECRESP MATRIX"), ("HDUCLAS2", "RSP_MATRIX"))
    ebounds = _find_hdu(hdul, path, ("EBOUNDS",))
    channel = np.asarray(_column(ebounds, path, "CHANNEL"), dtype=np.int64)
    e_min = np.asarray(_column(ebounds, path, "E_MIN"), dtype=float)
    e_max = np.asarray(_column(ebounds, path, "E_MAX"), dtype=float)
    if channel.size == 0 or np.any(np.diff(channel) != 1):
        raise OGIPError(path, "EBOUNDS CHANNEL is not a contiguous increasing sequence")
    for table in (hdu, ebounds):
        detchans = table.header.get("DETCHANS")
        if detchans is None:
            continue
        try:
            agrees = int(detchans) == detchans and int(detchans) == channel.size
        except (TypeError, ValueError):
            raise OGIPError(
                path, f"DETCHANS in {table.name} is not an integer: {detchans!r}"
            ) from None
        if not agrees:
            raise OGIPError(
                path,
                f"DETCHANS={detchans} but EBOUNDS has {channel.size} "
                f"channels (DETCHANS of {table.name})",
            )

    lo = np.asarray(_column(hdu, path, "ENERG_LO"), dtype=float)
    hi = np.asarray(_column(hdu, path, "ENERG_HI"), dtype=float)
    _check_energy_grid(path, lo, hi, "RMF")
    offset = int(channel[0])
    tlmin = _tlmin(hdu, "F_CHAN") if "F_CHAN" in hdu.columns.names else None
    if tlmin is not None and tlmin != offset:
        raise OGIPError(path, f"TLMIN of F_CHAN is {tlmin} but EBOUNDS channels start at {offset}")
    matrix = _dense_matrix(hdu, path, offset, channel.size)
    header = hdu.header
    includes_arf = _text(header.get("HDUCLAS3")).upper() == "FULL" or bool(
        matrix.sum(axis=1).max() > 1.5
    )
    return Rmf(
        path=path,
        energy_lo=lo,
        energy_hi=hi,
        channel=channel,
        e_min=e_min,
        e_max=e_max,
        matrix=matrix,
        first_channel=offset,
        includes_arf=includes_arf,
        telescope=_text(header.get("TELESCOP")),
        instrument=_text(header.get("INSTRUME")),
        filter=_text(header.get("FILTER")),
    )


def _ragged(column, n_rows: int, width_of_row: np.ndarray, path, name: str) -> np.ndarray:
    """Concatenate the first ``width_of_row[i]`` entries of each row of a fixed-width or
    variable-length column, without a Python loop over elements."""
    if isinstance(column, np.ndarray) and column.dtype != object:
        array = column.reshape(n_rows, -1)
        if np.any(width_of_row > array.shape[1]):
            raise OGIPError(path, f"{name} rows are shorter than N_GRP/N_CHAN require")
        return array[np.arange(array.shape[1]) < width_of_row[:, None]]
    rows = [np.atleast_1d(np.asarray(r)) for r in column]
    lengths = np.fromiter((r.size for r in rows), dtype=np.int64, count=n_rows)
    if np.any(lengths < width_of_row):
        bad = int(np.argmax(lengths < width_of_row))
        raise OGIPError(path, f"{name} row {bad} is shorter than N_GRP/N_CHAN require")
    flat = np.concatenate(rows) if rows else np.zeros(0)
    starts = np.cumsum(lengths) - lengths
    keep = np.repeat(starts, width_of_row) + _ramp(width_of_row)
    return flat[keep]


def _ramp(lengths: np.ndarray) -> np.ndarray:
    """0..n-1 for each n in ``lengths``, concatenated."""
    total = int(lengths.sum())
    return np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)


def _dense_matrix(hdu, path, offset: int, n_channel: int) -> np.ndarray:
    n_energy = hdu.data.shape[0]
    n_grp = np.asarray(_column(hdu, path, "N_GRP"), dtype=np.int64).reshape(-1)
    if np.any(n_grp < 0):
        raise OGIPError(path, "negative N_GRP")
    f_chan = _ragged(_column(hdu, path, "F_CHAN"), n_energy, n_grp, path, "F_CHAN")
    n_chan = _ragged(_column(hdu, path, "N_CHAN"), n_energy, n_grp, path, "N_CHAN")
    f_chan = f_chan.astype(np.int64)
    n_chan = n_chan.astype(np.int64)
    if np.any(n_chan < 0):
        raise OGIPError(path, "negative N_CHAN")
    first = f_chan - offset
    if np.any((first < 0) | (first + n_chan > n_channel)):
        raise OGIPError(
            path,
            f"F_CHAN/N_CHAN reach outside channels {offset}..{offset + n_channel - 1}",
        )
    per_row = np.bincount(
        np.repeat(np.arange(n_energy), n_grp), weights=n_chan, minlength=n_energy
    ).astype(np.int64)
    values = _ragged(_column(hdu, path, "MATRIX"), n_energy, per_row, path, "MATRIX")
    values = values.astype(np.float64)
    if not np.all(np.isfinite(values)):  # small negative elements occur in real pn RMFs
        raise OGIPError(path, "MATRIX has non-finite elements")
    rows = np.repeat(np.repeat(np.arange(n_energy), n_grp), n_chan)
    cols = np.repeat(first, n_chan) + _ramp(n_chan)
    dense = np.bincount(rows * n_channel + cols, weights=values, minlength=n_energy * n_channel)
    with np.errstate(over="ignore"):
        dense = dense.reshape(n_energy, n_channel).astype(np.float32)
    if not np.all(np.isfinite(dense)):
        raise OGIPError(path, "MATRIX elements beyond the float32 range")
    return dense


# ---------------------------------------------------------------------------------------------
# Several files


def read_ogip(path: str | os.PathLike) -> Pha | list[Pha] | Arf | Rmf:
    """Read any OGIP spectral file, recognised by its extensions: an RMF/RSP, an ARF, or a
    spectrum (a list of spectra for a type II file)."""
    path = Path(path)
    with _opened(path) as hdul:
        names = {h.name.upper() for h in hdul[1:]}
        classes = {_text(h.header.get("HDUCLAS1")).upper() for h in hdul[1:]}
        if names & {"MATRIX", "SPECRESP MATRIX"}:
            return _rmf_from(hdul, path)
        if "SPECRESP" in names:
            return _arf_from(hdul, path)
        if "SPECTRUM" in names or "SPECTRUM" in classes:
            spectra = _pha_rows_from(hdul, path)
            return spectra[0] if spectra[0].row is None else spectra
    raise OGIPError(path, "no SPECTRUM, SPECRESP or MATRIX extension: not an OGIP spectral file")


def check_match(pha: Pha, rmf: Rmf | None = None, arf: Arf | None = None) -> None:
    """Raise OGIPError unless the spectrum, RMF and ARF fit together: the same channels,
    and the same energy grid for ARF and RMF."""
    if rmf is not None:
        if pha.n_channel != rmf.n_channel:
            raise OGIPError(
                pha.path, f"{pha.n_channel} channels but RMF {rmf.path} has {rmf.n_channel}"
            )
        if pha.first_channel != rmf.first_channel:
            raise OGIPError(
                pha.path,
                f"channels start at {pha.first_channel} but RMF {rmf.path} channels start "
                f"at {rmf.first_channel}",
            )
    if arf is not None and rmf is not None:
        check_energy_match(arf, rmf)


def check_energy_match(arf: Arf, rmf: Rmf) -> None:
    """Raise OGIPError unless ARF and RMF share their energy grid (float32 precision)."""
    same = arf.energy_lo.shape == rmf.energy_lo.shape and (
        np.allclose(arf.energy_lo, rmf.energy_lo, rtol=1e-5, atol=1e-7)
        and np.allclose(arf.energy_hi, rmf.energy_hi, rtol=1e-5, atol=1e-7)
    )
    if not same:
        raise OGIPError(
            arf.path,
            f"ARF energy grid ({arf.energy_lo.size} bins) differs from that of RMF {rmf.path} "
            f"({rmf.energy_lo.size} bins)",
        )


def background_ratio(source: Pha, background: Pha) -> np.ndarray:
    """Per-channel ratio alpha = (BACKSCAL*EXPOSURE*AREASCAL)_src / (...)_bkg by which
    background counts scale to the source region; 0 where a scale column is unusable
    (zero or negative, allowed only in bad-quality channels)."""
    if source.n_channel != background.n_channel:
        raise OGIPError(
            background.path,
            f"{background.n_channel} channels but source {source.path} has {source.n_channel}",
        )
    src = np.asarray(source.backscal) * source.exposure * np.asarray(source.areascal)
    bkg = np.asarray(background.backscal) * background.exposure * np.asarray(background.areascal)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.broadcast_to(src / bkg, (source.n_channel,)).astype(float)
    return np.where(np.isfinite(ratio), ratio, 0.0)


# ---------------------------------------------------------------------------------------------
# Writing
#
# Minimal OGIP writers (type I spectra, ARFs, RMFs) for simulated products. Each file is
# written atomically (a temporary file in the target directory, then renamed) and gzipped
# when its name ends in .gz or .FTZ (any case). Energies are written in single precision when
# that keeps them exact, in double precision otherwise.

_OGIP = {"HDUCLASS": "OGIP"}


def write_pha(
    path: str | os.PathLike,
    counts,
    *,
    exposure: float,
    backscal: float = 1.0,
    first_channel: int = 0,
    header: dict | None = None,
    quality=None,
) -> Path:
    """Write a type I spectrum of integer ``counts`` per channel (CHANNEL, COUNTS columns;
    GROUPING 0 as a keyword; QUALITY 0 as a keyword, or a column when ``quality`` is given).
    ``header`` adds or overrides keywords of the SPECTRUM extension (e.g. RESPFILE, ANCRFILE,
    BACKFILE, OBS_ID, HDUCLAS2)."""
    counts = np.asarray(counts)
    if counts.ndim != 1 or counts.size == 0 or np.any(counts < 0):
        raise ValueError("counts must be a non-empty vector of non-negative values")
    if np.any(counts != np.round(counts)):
        raise ValueError("counts must be whole numbers")
    n = counts.size
    columns = [
        fits.Column(name="CHANNEL", format="J", array=np.arange(n) + first_channel),
        fits.Column(name="COUNTS", format="J", unit="count", array=counts.astype(np.int32)),
    ]
    if quality is not None:
        columns.append(fits.Column(name="QUALITY", format="I", array=np.asarray(quality)))
    table = fits.BinTableHDU.from_columns(columns, name="SPECTRUM")
    keywords = dict(
        _OGIP,
        HDUCLAS1="SPECTRUM",
        HDUCLAS2="TOTAL",
        HDUCLAS3="COUNT",
        HDUVERS="1.2.1",
        CHANTYPE="PI",
        DETCHANS=n,
        EXPOSURE=float(exposure),
        BACKSCAL=float(backscal),
        AREASCAL=1.0,
        CORRSCAL=1.0,
        POISSERR=True,
        SYS_ERR=0.0,
        GROUPING=0,
        BACKFILE="none",
        RESPFILE="none",
        ANCRFILE="none",
        CORRFILE="none",
        TLMIN1=first_channel,
        TLMAX1=first_channel + n - 1,
    )
    if quality is None:
        keywords["QUALITY"] = 0
    keywords.update(header or {})
    table.header.update(keywords)
    return _write_hdus(path, [table])


def write_arf(
    path: str | os.PathLike, energy_lo, energy_hi, specresp, *, header: dict | None = None
) -> Path:
    """Write an ARF: SPECRESP (cm^2) on the energy bins ``energy_lo``..``energy_hi`` (keV)."""
    lo, hi = np.asarray(energy_lo, dtype=float), np.asarray(energy_hi, dtype=float)
    area = np.asarray(specresp, dtype=float)
    if not lo.shape == hi.shape == area.shape or lo.ndim != 1:
        raise ValueError("energy_lo, energy_hi and specresp must be vectors of one length")
    table = fits.BinTableHDU.from_columns(
        [
            _energy_column("ENERG_LO", lo),
            _energy_column("ENERG_HI", hi),
            fits.Column(name="SPECRESP", format="E", unit="cm**2", array=area),
        ],
        name="SPECRESP",
    )
    table.header.update(dict(_OGIP, HDUCLAS1="RESPONSE", HDUCLAS2="SPECRESP", HDUVERS="1.1.0"))
    table.header.update(header or {})
    return _write_hdus(path, [table])


def write_rmf(
    path: str | os.PathLike,
    energy_lo,
    energy_hi,
    matrix,
    e_min,
    e_max,
    *,
    first_channel: int = 0,
    header: dict | None = None,
) -> Path:
    """Write an RMF from a dense ``matrix`` (n_energy, n_channel): MATRIX extension with
    one group per run of non-zero elements (variable-length F_CHAN, N_CHAN, MATRIX in single
    precision; TLMIN of F_CHAN = ``first_channel``) and EBOUNDS (``e_min``/``e_max``, keV).
    ``header`` adds keywords to both extensions (e.g. TELESCOP, INSTRUME)."""
    matrix = np.asarray(matrix, dtype=np.float32)
    lo, hi = np.asarray(energy_lo, dtype=float), np.asarray(energy_hi, dtype=float)
    e_min, e_max = np.asarray(e_min, dtype=float), np.asarray(e_max, dtype=float)
    n_energy, n_channel = matrix.shape
    if lo.shape != (n_energy,) or hi.shape != (n_energy,):
        raise ValueError(f"energy bounds must have {n_energy} values (matrix rows)")
    if e_min.shape != (n_channel,) or e_max.shape != (n_channel,):
        raise ValueError(f"channel bounds must have {n_channel} values (matrix columns)")
    nonzero = matrix != 0
    before = np.zeros((n_energy, 1), dtype=bool)
    starts = nonzero & ~np.concatenate([before, nonzero[:, :-1]], axis=1)
    ends = nonzero & ~np.concatenate([nonzero[:, 1:], before], axis=1)
    start_row, start_col = np.nonzero(starts)  # row-major: runs in order within each row
    _, end_col = np.nonzero(ends)
    n_grp = np.bincount(start_row, minlength=n_energy)
    split = np.cumsum(n_grp)[:-1]
    per_row = nonzero.sum(axis=1)
    f_chan = np.split((start_col + first_channel).astype(np.int32), split)
    n_chan = np.split((end_col - start_col + 1).astype(np.int32), split)
    values = np.split(matrix[nonzero], np.cumsum(per_row)[:-1])
    table = fits.BinTableHDU.from_columns(
        [
            _energy_column("ENERG_LO", lo),
            _energy_column("ENERG_HI", hi),
            fits.Column(name="N_GRP", format="J", array=n_grp.astype(np.int32)),
            fits.Column(name="F_CHAN", format="PJ()", array=f_chan),
            fits.Column(name="N_CHAN", format="PJ()", array=n_chan),
            fits.Column(name="MATRIX", format="PE()", array=values),
        ],
        name="MATRIX",
    )
    table.header.update(
        dict(
            _OGIP,
            HDUCLAS1="RESPONSE",
            HDUCLAS2="RSP_MATRIX",
            HDUCLAS3="REDIST",
            HDUVERS="1.3.0",
            CHANTYPE="PI",
            DETCHANS=n_channel,
            LO_THRES=0.0,
            TLMIN4=first_channel,
            TLMAX4=first_channel + n_channel - 1,
        )
    )
    ebounds = fits.BinTableHDU.from_columns(
        [
            fits.Column(name="CHANNEL", format="J", array=np.arange(n_channel) + first_channel),
            _energy_column("E_MIN", e_min),
            _energy_column("E_MAX", e_max),
        ],
        name="EBOUNDS",
    )
    ebounds.header.update(
        dict(_OGIP, HDUCLAS1="RESPONSE", HDUCLAS2="EBOUNDS", HDUVERS="1.2.0", DETCHANS=n_channel)
    )
    for hdu in (table, ebounds):
        hdu.header.update(header or {})
    return _write_hdus(path, [table, ebounds])


def _energy_column(name: str, values: np.ndarray) -> fits.Column:
    exact = np.array_equal(values.astype(np.float32).astype(float), values)
    return fits.Column(name=name, format="E" if exact else "D", unit="keV", array=values)


def _write_hdus(path: str | os.PathLike, extensions: list) -> Path:
    """Write a primary HDU and ``extensions`` atomically, gzipped for .gz/.FTZ names."""
    path = Path(path)
    buffer = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), *extensions]).writeto(buffer, checksum=True)
    data = buffer.getvalue()
    if path.suffix.lower() in (".gz", ".ftz"):
        data = gzip.compress(data, compresslevel=6, mtime=0)
    return write_atomic(path, data)
