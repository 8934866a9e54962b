"""Catalogue tables in the astronomers' formats: FITS binary tables (TOPCAT,
``astropy.table.Table.read``) and Parquet.

Every table the package writes (posteriors, searches, maps, trajectories, anomalies, checks) is
a dict of equal-length columns (vector columns such as ``z_loc`` are ``(N, D)``) keyed by
``source_id`` and ``obs_id`` and carrying ``ra``/``dec`` where known, so it cross-matches with
other catalogues by position.
"""

from __future__ import annotations

import gzip
import io
import tempfile
from pathlib import Path

import numpy as np
from astropy.table import Table

from xspecvae.files import write_atomic

__all__ = ["IDENTITY", "identity_columns", "read_table", "write_table"]

#: Columns of a pack's metadata copied into the tables (those present).
IDENTITY = ("source_id", "obs_id", "ra", "dec", "mjd", "label", "file", "epoch")


def _format(path: Path) -> str:
    return "parquet" if path.suffix.lower() in (".parquet", ".pq") else "fits"


def write_table(columns: dict, path, *, header: dict | None = None) -> Path:
    """Write ``columns`` to ``path`` (``.parquet`` or ``.pq``: Parquet, otherwise FITS, gzipped
    when the name ends in ``.gz``) atomically; ``header`` (short keys, scalar values) goes
    into the FITS header or the Parquet metadata."""
    path = Path(path)
    lengths = {k: len(v) for k, v in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"{path}: columns of different lengths {lengths}")
    table = Table({k: np.asarray(v) for k, v in columns.items()})
    table.meta.update(header or {})
    if _format(path) == "fits":
        buffer = io.BytesIO()
        table.write(buffer, format="fits")
        data = buffer.getvalue()
        write_atomic(path, gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
    else:  # the Parquet writer wants a file name
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ImportError(f"{path}: Parquet needs pyarrow (pip install 'xspecvae[parquet]')")
        with tempfile.TemporaryDirectory() as folder:
            table.write(Path(folder) / "table.parquet", format="parquet")
            write_atomic(path, (Path(folder) / "table.parquet").read_bytes())
    return path


def read_table(path, *, with_header: bool = False):
    """A table written by :func:`write_table` (or any FITS/Parquet table) as numpy columns;
    with ``with_header``, also its header keywords: ``(columns, header)``."""
    path = Path(path)
    table = Table.read(path, format=_format(path))
    table.convert_bytestring_to_unicode()  # FITS strings come back as bytes
    columns = {name: np.asarray(table[name]) for name in table.colnames}
    return (columns, dict(table.meta)) if with_header else columns


def identity_columns(meta: dict, rows) -> dict[str, np.ndarray]:
    """The :data:`IDENTITY` columns of a pack's ``meta`` at ``rows``."""
    rows = np.asarray(rows)
    return {k: np.asarray(meta[k])[rows] for k in IDENTITY if k in meta}
