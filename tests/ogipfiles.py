"""Writers of small synthetic OGIP files for tests (astropy only, independent of xspecvae)."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
from astropy.io import fits


def gzipped(path: Path, suffix: str = ".gz") -> Path:
    """Compress ``path`` to ``path + suffix`` (removing the original); return the new path."""
    target = path.with_name(path.name + suffix)
    with open(path, "rb") as src, gzip.open(target, "wb") as dst:
        shutil.copyfileobj(src, dst)
    path.unlink()
    return target


def write_pha(
    path, counts, *, rate=False, first_channel=0, columns=None, keywords=None, primary=None, drop=()
) -> Path:
    """A type I spectrum: CHANNEL and COUNTS (or RATE) plus ``columns`` {name: values};
    ``keywords`` update the SPECTRUM header (value None deletes), ``primary`` the primary
    header; ``drop`` removes columns."""
    counts = np.asarray(counts)
    n = counts.size
    cols = {
        "CHANNEL": (np.arange(n) + first_channel, "J"),
        "RATE" if rate else "COUNTS": (counts, "E" if rate or counts.dtype.kind == "f" else "J"),
    }
    for name, values in (columns or {}).items():
        values = np.asarray(values)
        cols[name] = (values, "E" if values.dtype.kind == "f" else "J")
    header = {
        "HDUCLASS": "OGIP",
        "HDUCLAS1": "SPECTRUM",
        "HDUCLAS2": "TOTAL",
        "HDUCLAS3": "RATE" if rate else "COUNT",
        "EXPOSURE": 1000.0,
        "BACKSCAL": 1.0,
        "AREASCAL": 1.0,
        "POISSERR": True,
        "DETCHANS": n,
        "TELESCOP": "XMM",
        "INSTRUME": "EPN",
        "FILTER": "Medium",
        "TLMIN1": first_channel,
        "TLMAX1": first_channel + n - 1,
    }
    header.update(keywords or {})
    table = fits.BinTableHDU.from_columns(
        [fits.Column(name=k, format=f, array=v) for k, (v, f) in cols.items() if k not in drop],
        name="SPECTRUM",
    )
    _update(table.header, header)
    hdu0 = fits.PrimaryHDU()
    _update(hdu0.header, primary or {})
    fits.HDUList([hdu0, table]).writeto(path, overwrite=True)
    return Path(path)


def write_pha2(path, counts, *, exposure, backscal) -> Path:
    """A type II file: one spectrum per row of ``counts`` (n_spectra, n_channel), with
    per-row EXPOSURE and BACKSCAL columns."""
    counts = np.asarray(counts)
    n_spec, n = counts.shape
    table = fits.BinTableHDU.from_columns(
        [
            fits.Column(name="SPEC_NUM", format="J", array=np.arange(1, n_spec + 1)),
            fits.Column(
                name="CHANNEL", format=f"{n}J", array=np.tile(np.arange(1, n + 1), (n_spec, 1))
            ),
            fits.Column(name="COUNTS", format=f"{n}J", array=counts),
            fits.Column(name="EXPOSURE", format="D", array=exposure),
            fits.Column(name="BACKSCAL", format="D", array=backscal),
        ],
        name="SPECTRUM",
    )
    _update(
        table.header,
        {
            "HDUCLASS": "OGIP",
            "HDUCLAS1": "SPECTRUM",
            "HDUCLAS2": "TOTAL",
            "HDUCLAS3": "COUNT",
            "HDUCLAS4": "TYPE:II",
            "POISSERR": True,
            "DETCHANS": n,
            "INSTRUME": "ACIS",
        },
    )
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(path, overwrite=True)
    return Path(path)


def write_arf(path, edges, area) -> Path:
    edges = np.asarray(edges, dtype=float)
    table = fits.BinTableHDU.from_columns(
        [
            fits.Column(name="ENERG_LO", format="E", array=edges[:-1]),
            fits.Column(name="ENERG_HI", format="E", array=edges[1:]),
            fits.Column(name="SPECRESP", format="E", array=np.asarray(area, dtype=float)),
        ],
        name="SPECRESP",
    )
    _update(table.header, {"HDUCLASS": "OGIP", "HDUCLAS1": "RESPONSE", "HDUCLAS2": "SPECRESP"})
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(path, overwrite=True)
    return Path(path)


def write_rmf(
    path,
    matrix,
    edges,
    channel_edges,
    *,
    first_channel=0,
    tlmin="auto",
    layout="vla",
    extname="MATRIX",
    hduclas3="REDIST",
) -> Path:
    """An RMF storing the dense ``matrix`` (n_energy, n_channel) as OGIP groups (runs of
    non-zero elements). ``layout``: "vla" (variable-length F_CHAN/N_CHAN/MATRIX), "fixed"
    (fixed-width arrays padded with zeros) or "scalar" (one group per row, scalar F_CHAN).
    ``tlmin``: "auto" writes TLMIN of F_CHAN = first_channel, None writes none, or a value."""
    matrix = np.asarray(matrix, dtype=float)
    edges = np.asarray(edges, dtype=float)
    channel_edges = np.asarray(channel_edges, dtype=float)
    n_energy, n_channel = matrix.shape
    f_chan, n_chan, values = [], [], []
    for row in matrix:
        nonzero = np.flatnonzero(row)
        runs = np.split(nonzero, np.flatnonzero(np.diff(nonzero) != 1) + 1) if nonzero.size else []
        f_chan.append(np.array([r[0] + first_channel for r in runs], dtype=np.int32))
        n_chan.append(np.array([r.size for r in runs], dtype=np.int32))
        values.append(np.concatenate([row[r] for r in runs]) if runs else np.zeros(0))
    n_grp = np.array([f.size for f in f_chan], dtype=np.int32)
    if layout == "vla":
        grp_cols = [
            fits.Column(name="F_CHAN", format="PJ()", array=f_chan),
            fits.Column(name="N_CHAN", format="PJ()", array=n_chan),
        ]
        mat_col = fits.Column(name="MATRIX", format="PE()", array=values)
    else:
        width = max(1, n_grp.max())
        if layout == "scalar":
            assert width == 1, "scalar layout needs one group per row"
            pad = lambda rows: np.array([r[0] if r.size else 0 for r in rows])  # noqa: E731
            fmt = "J"
        else:
            pad = lambda rows: np.array([np.pad(r, (0, width - r.size)) for r in rows])  # noqa: E731
            fmt = f"{width}J"
        grp_cols = [
            fits.Column(name="F_CHAN", format=fmt, array=pad(f_chan)),
            fits.Column(name="N_CHAN", format=fmt, array=pad(n_chan)),
        ]
        mwidth = max(1, max(v.size for v in values))
        mat_col = fits.Column(
            name="MATRIX",
            format=f"{mwidth}E",
            array=np.array([np.pad(v, (0, mwidth - v.size)) for v in values]),
        )
    table = fits.BinTableHDU.from_columns(
        [
            fits.Column(name="ENERG_LO", format="E", array=edges[:-1]),
            fits.Column(name="ENERG_HI", format="E", array=edges[1:]),
            fits.Column(name="N_GRP", format="J", array=n_grp),
            *grp_cols,
            mat_col,
        ],
        name=extname,
    )
    _update(
        table.header,
        {
            "HDUCLASS": "OGIP",
            "HDUCLAS1": "RESPONSE",
            "HDUCLAS2": "RSP_MATRIX",
            "HDUCLAS3": hduclas3,
            "DETCHANS": n_channel,
            "CHANTYPE": "PI",
            "TELESCOP": "XMM",
            "INSTRUME": "EPN",
        },
    )
    if tlmin is not None:
        table.header["TLMIN4"] = first_channel if tlmin == "auto" else tlmin
    ebounds = fits.BinTableHDU.from_columns(
        [
            fits.Column(name="CHANNEL", format="J", array=np.arange(n_channel) + first_channel),
            fits.Column(name="E_MIN", format="E", array=channel_edges[:-1]),
            fits.Column(name="E_MAX", format="E", array=channel_edges[1:]),
        ],
        name="EBOUNDS",
    )
    _update(
        ebounds.header,
        {"HDUCLASS": "OGIP", "HDUCLAS1": "RESPONSE", "HDUCLAS2": "EBOUNDS", "DETCHANS": n_channel},
    )
    fits.HDUList([fits.PrimaryHDU(), table, ebounds]).writeto(path, overwrite=True)
    return Path(path)


def _update(header, values: dict) -> None:
    for key, value in values.items():
        if value is None:
            header.remove(key, ignore_missing=True)
        else:
            header[key] = value
