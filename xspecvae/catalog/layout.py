"""The pack file: its format and schema, the per-source arrays, the error of an unusable pack,
and the small helpers reading and writing share."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from xspecvae.errors import InputError

FORMAT = "xspecvae-pack"
SCHEMA_VERSION = 1


class PackError(InputError):
    """A pack that cannot be used, or that a command would replace without being asked."""


#: Rows per HDF5 chunk: the unit of compression and of shuffled reading.
CHUNK_ROWS = 512
#: The per-source arrays of a section, as :meth:`Pack.read` and :meth:`Pack.batches` serve them.
PER_SOURCE = ("counts", "background", "alpha", "good", "exposure", "arf", "rmf_index")
_STRING = h5py.string_dtype()


def _check_schema(file: h5py.File, path: Path) -> None:
    if file.attrs.get("format") != FORMAT:
        raise PackError(path, "not an xspecvae pack (no 'format' attribute of that name)")
    version = int(file.attrs.get("schema_version", -1))
    if version != SCHEMA_VERSION:
        raise PackError(
            path,
            f"pack schema version {version}, this xspecvae ({_version()}) reads version "
            f"{SCHEMA_VERSION}; rebuild the pack with `xspecvae pack` or `xspecvae simulate`",
        )


def _version() -> str:
    from xspecvae import __version__

    return __version__


def _identity(file: h5py.File) -> str | None:
    """The ``pack_id`` written when the pack was made (None for packs made before ids)."""
    value = file.attrs.get("pack_id")
    return None if value is None else str(value)


def _partial(path: Path) -> Path:
    return path.with_name(path.name + ".partial")


def _column(dataset: h5py.Dataset, n: int) -> np.ndarray:
    if dataset.dtype.kind == "O":
        return np.asarray(dataset.asstr()[:n], dtype=str)
    return dataset[:n]
