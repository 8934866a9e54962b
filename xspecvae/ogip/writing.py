"""Writing OGIP files (type I spectra, ARFs, RMFs), as the simulator's products."""

from __future__ import annotations

import gzip
import io
import os
from pathlib import Path

import numpy as np
from astropy.io import fits
from numpy.typing import ArrayLike

from xspecvae.files import write_atomic

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
    counts: ArrayLike,
    *,
    exposure: float,
    backscal: float = 1.0,
    first_channel: int = 0,
    header: dict | None = None,
    quality: ArrayLike | None = None,
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
    path: str | os.PathLike,
    energy_lo: ArrayLike,
    energy_hi: ArrayLike,
    specresp: ArrayLike,
    *,
    header: dict | None = None,
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
    energy_lo: ArrayLike,
    energy_hi: ArrayLike,
    matrix: ArrayLike,
    e_min: ArrayLike,
    e_max: ArrayLike,
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
