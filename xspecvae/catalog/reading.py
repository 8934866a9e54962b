"""Reading packs: a section's rows, metadata, responses and batches."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import h5py
import numpy as np

from xspecvae.catalog.grid import Grid
from xspecvae.catalog.layout import (
    CHUNK_ROWS,
    PER_SOURCE,
    PackError,
    _check_schema,
    _column,
    _identity,
)
from xspecvae.instrument import Response

# ---------------------------------------------------------------------------------------------
# Reading


class Pack:
    """A pack opened for reading, one instrument section at a time (``instrument`` may be
    left out when the pack has only one).

    Attributes: ``grid``, ``n``, ``rmf`` (R, E, C), ``rmf_names``, ``meta`` and ``truth``
    (dicts of column arrays), ``provenance``. :meth:`read` and :meth:`batches` serve
    per-source arrays as numpy without loading the whole pack; :meth:`load` loads it.
    """

    def __init__(self, path: str | Path, instrument: str | None = None) -> None:
        self.path = Path(path)
        try:
            self.file = h5py.File(self.path, "r")
        except OSError as err:
            raise PackError(self.path, f"cannot open as HDF5: {err}") from None
        try:
            _check_schema(self.file, self.path)
            sections = self.file["instruments"]
            self.instruments = sorted(sections)
            if instrument is None:
                if len(self.instruments) != 1:
                    raise PackError(self.path, f"holds instruments {self.instruments}: choose one")
                instrument = self.instruments[0]
            if instrument not in sections:
                raise PackError(self.path, f"no {instrument!r} section (has {self.instruments})")
        except Exception:
            self.file.close()
            raise
        self.group = sections[instrument]
        self.n = int(self.group.attrs["n"])
        self.grid = Grid._read(self.group)
        self.rmf = self.group["rmf"][()]
        self.rmf_names = list(self.group["rmf_names"].asstr()[()])
        self.meta = {k: _column(v, self.n) for k, v in self.group["meta"].items()}
        self.truth = {k: _column(v, self.n) for k, v in self.group["truth"].items()}
        self.provenance = json.loads(self.file.attrs.get("provenance", "{}"))
        self.identity: str | None = _identity(self.file)
        self._loaded: dict | None = None

    @property
    def instrument(self) -> str:
        return self.grid.instrument

    def __len__(self) -> int:
        return self.n

    def __enter__(self) -> Pack:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.file.close()

    def responses(self, *, storage: str = "auto") -> list[Response]:
        """The shared RMFs as :class:`Response` objects on the pack's grids (no ARF)."""
        grid = self.grid
        return [
            Response(
                grid.energy_edges, grid.channel_lo, grid.channel_hi, m, name=name, storage=storage
            )
            for m, name in zip(self.rmf, self.rmf_names)
        ]

    def read(
        self, index: slice | Sequence[int] | np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Per-source arrays for rows ``index`` (a slice, or integer indices in any order;
        all rows when None), with ``row`` giving the row numbers. Each HDF5 chunk holding a
        wanted row is read once."""
        rows = np.arange(self.n)[slice(None) if index is None else index]
        if self._loaded is not None:
            batch = {k: v[rows] for k, v in self._loaded.items()}
        elif isinstance(index, slice) or index is None:
            span = slice(*(index or slice(None)).indices(self.n))  # only these rows are read
            batch = {k: self.group[k][span] for k in PER_SOURCE}
        else:
            batch = {k: _rows_of(self.group[k], rows) for k in PER_SOURCE}
        batch["row"] = rows
        return batch

    def load(self) -> dict[str, np.ndarray]:
        """Load every per-source array into memory; later reads and batches use it."""
        if self._loaded is None:
            self._loaded = {name: self.group[name][: self.n] for name in PER_SOURCE}
        return dict(self._loaded, row=np.arange(self.n))

    def batches(
        self,
        batch_size: int,
        rng: np.random.Generator,
        *,
        window: int = 32,
        drop_last: bool = True,
    ) -> Iterator[dict[str, np.ndarray]]:
        """One epoch of shuffled minibatches. Loaded packs are shuffled fully; otherwise
        chunks of rows are visited in random order, ``window`` chunks at a time, and rows
        shuffled within the window and what the previous one left over (at most
        ``window * CHUNK_ROWS + batch_size`` rows in memory)."""
        if batch_size < 1:
            raise ValueError("batch_size must be positive")
        if self._loaded is not None:
            windows = [(self.load(), rng.permutation(self.n))]
        else:
            chunks = rng.permutation(-(-self.n // CHUNK_ROWS))
            windows = (
                self._window(chunks[first : first + window], rng)
                for first in range(0, len(chunks), window)
            )
        left: dict[str, np.ndarray] | None = None
        for data, order in windows:
            if left is not None:  # rows left over from the previous window come first
                data = {k: np.concatenate([left[k], data[k][order]]) for k in data}
                order = np.arange(len(data["row"]))
            whole = len(order) - len(order) % batch_size
            for start in range(0, whole, batch_size):
                yield {k: v[order[start : start + batch_size]] for k, v in data.items()}
            left = {k: v[order[whole:]] for k, v in data.items()}
        if not drop_last and left is not None and len(left["row"]):
            yield left

    def _window(self, chunks: np.ndarray, rng: np.random.Generator):
        """The rows of ``chunks`` (each read whole) and a random order of them."""
        blocks = [slice(c * CHUNK_ROWS, min((c + 1) * CHUNK_ROWS, self.n)) for c in chunks]
        data = {k: np.concatenate([self.group[k][b] for b in blocks]) for k in PER_SOURCE}
        data["row"] = np.concatenate([np.arange(b.start, b.stop) for b in blocks])
        return data, rng.permutation(len(data["row"]))


def _rows_of(dataset: h5py.Dataset, rows: np.ndarray) -> np.ndarray:
    """``dataset[rows]`` for rows in any order, reading each touched chunk once."""
    out = np.empty((len(rows), *dataset.shape[1:]), dataset.dtype)
    chunk = rows // CHUNK_ROWS
    for c in np.unique(chunk):
        block = dataset[c * CHUNK_ROWS : (c + 1) * CHUNK_ROWS]
        here = chunk == c
        out[here] = block[rows[here] - c * CHUNK_ROWS]
    return out


def grids_of(path: str | Path) -> list[Grid]:
    """The grids of every instrument section of the pack at ``path``."""
    grids = []
    for instrument in _instruments(Path(path)):
        with Pack(path, instrument) as pack:
            grids.append(pack.grid)
    return grids


def _instruments(path: Path) -> list[str]:
    try:
        with h5py.File(path, "r") as file:
            _check_schema(file, path)
            return sorted(file["instruments"])
    except OSError as err:
        raise PackError(path, f"cannot open as HDF5: {err}") from None
