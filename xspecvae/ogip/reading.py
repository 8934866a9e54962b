"""Reading PHA spectra (type I and II), ARFs and RMFs (OGIP/92-007, CAL/GEN/92-002)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from xspecvae.ogip.access import (
    OGIPError,
    _check_energy_grid,
    _column,
    _filename,
    _find_hdu,
    _number,
    _opened,
    _text,
    _tlmin,
)
from xspecvae.ogip.records import Arf, Pha, Rmf

if TYPE_CHECKING:
    from astropy.io import fits

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


def _pha_rows_from(hdul: fits.HDUList, path: Path) -> list[Pha]:
    hdu, n_rows = _spectrum_table(hdul, path)
    rows = [None] if n_rows is None else range(n_rows)
    return [_pha_from_hdu(path, hdul[0].header, hdu, r) for r in rows]


def _spectrum_table(hdul: fits.HDUList, path: Path):
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


def _pha_from_hdu(path: Path, primary: fits.Header, hdu: fits.BinTableHDU, row: int | None) -> Pha:
    header = hdu.header

    def value(name: str, default: Any = None):
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


def _per_channel(path: Path, name: str, raw: ArrayLike, n: int, dtype: DTypeLike) -> np.ndarray:
    array = np.asarray(raw)
    if array.ndim == 0:
        array = np.full(n, raw)
    if array.shape != (n,):
        raise OGIPError(path, f"{name} has {array.size} values for {n} channels")
    try:
        return array.astype(dtype)
    except (TypeError, ValueError):
        raise OGIPError(path, f"{name} is not numeric") from None


def _scale(path: Path, name: str, raw: ArrayLike, n: int, good: np.ndarray) -> float | np.ndarray:
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


def _mjd(mjd_obs: Any, date_obs: str) -> float:
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


def _arf_from(hdul: fits.HDUList, path: Path) -> Arf:
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


def _rmf_from(hdul: fits.HDUList, path: Path) -> Rmf:
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


def _ragged(
    column: np.ndarray, n_rows: int, width_of_row: np.ndarray, path: Path, name: str
) -> np.ndarray:
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


def _dense_matrix(hdu: fits.BinTableHDU, path: Path, offset: int, n_channel: int) -> np.ndarray:
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
