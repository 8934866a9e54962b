"""Catalogue packs: many spectra on one analysis grid per instrument, in one HDF5 file.

A pack is what training and exploration read. Layout (schema version 1)::

    /                       attrs: format, schema_version, xspecvae_version, provenance (JSON)
    /instruments/<name>/    attrs: n (committed rows), first_channel, n_rmf_energy
        channel_lo, channel_hi        (C,)    analysis bins (keV)
        channel_start, channel_stop   (C,)    runs of RMF channels summed into each bin
        energy_edges                  (E+1,)  model energy grid (keV)
        rmf_rows                      (2,)    the RMF energy rows kept for it
        rmf (R, E, C) float32, rmf_names (R,) shared responses, regrouped
        counts, background, alpha     (N, C)  float32
        good                          (N, C)  bool, False for bins holding a bad-quality channel
        exposure (N,) float64, arf (N, E) float32, rmf_index (N,) int32
        meta/<column>  (N,)   source_id, obs_id, mjd, ra, dec, label, file, counts, ...
        truth/<column> (N,)   true parameters of simulated sources (NaN where not applicable)

Rows are appended in batches; a batch is committed when the section's ``n`` attribute is
updated, so a pack interrupted mid-batch is resumed from its last committed row. A pack is
built under ``<name>.partial`` and renamed when complete.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from xspecvae.errors import InputError
from xspecvae.instrument import Grouping, Response
from xspecvae.ogip import OGIPError

__all__ = [
    "BANDS_4XMM",
    "PER_SOURCE",
    "QUALITY_BREAKS",
    "SCHEMA_VERSION",
    "Grid",
    "grids_of",
    "Pack",
    "PackWriter",
    "append_pack",
    "band_matrix",
    "hardness_ratios",
    "match_positions",
    "PackError",
    "made_already",
    "resumable",
]

FORMAT = "xspecvae-pack"
SCHEMA_VERSION = 1
#: Rows per HDF5 chunk: the unit of compression and of shuffled reading.
CHUNK_ROWS = 512
#: Share of an RMF's response to the analysis bins that may come from energy rows outside
#: the model grid before that RMF is refused.
OUTSIDE_TOLERANCE = 1e-4

#: Energies (keV) where the quality flags of pipeline products change, per section: EPIC pn
#: PPS spectra flag channels 0-60, below 0.32 keV. Analysis bins start there (as they do at the
#: flags of the first spectrum packed), so that no bin mixes flagged and good channels.
QUALITY_BREAKS = {"pn": (0.32,)}

#: The per-source arrays of a section, as :meth:`Pack.read` and :meth:`Pack.batches` serve them.
PER_SOURCE = ("counts", "background", "alpha", "good", "exposure", "arf", "rmf_index")
_STRING = h5py.string_dtype()


@dataclass(frozen=True, eq=False)
class Grid:
    """An instrument's analysis channel grid (``grouping`` of the RMF channels, whose first
    channel number is ``first_channel``) and its model energy grid: the RMF energy rows
    ``rows[0]:rows[1]`` (of ``n_rmf_energy``) that reach the analysis bins."""

    instrument: str
    grouping: Grouping
    first_channel: int
    channel_lo: np.ndarray
    channel_hi: np.ndarray
    energy_edges: np.ndarray
    rows: tuple[int, int]
    n_rmf_energy: int

    @classmethod
    def from_response(
        cls,
        instrument: str,
        response: Response,
        *,
        first_channel: int = 0,
        emin: float = 0.2,
        emax: float = 12.0,
        oversample: float = 1.0,
        breaks=(),
    ) -> Grid:
        """Analysis bins ``emin``-``emax`` keV at least one FWHM/``oversample`` wide, and
        starting at each energy of ``breaks`` and of :data:`QUALITY_BREAKS` (see
        :meth:`Grouping.from_resolution`); model energies: the rows reaching them."""
        breaks = (*QUALITY_BREAKS.get(instrument, ()), *breaks)
        grouping = Grouping.from_resolution(response, emin, emax, oversample, breaks)
        reached = np.flatnonzero(grouping.apply(response.matrix).any(axis=1))
        first, last = int(reached[0]), int(reached[-1]) + 1
        return cls(
            instrument,
            grouping,
            first_channel,
            response.channel_lo[grouping.start],
            response.channel_hi[grouping.stop - 1],
            response.energy_edges[first : last + 1],
            (first, last),
            response.n_energy,
        )

    @property
    def n_channel(self) -> int:
        return self.grouping.n_groups

    @property
    def n_energy(self) -> int:
        return self.rows[1] - self.rows[0]

    def regroup(self, response: Response) -> np.ndarray:
        """The response's redistribution matrix on this grid (n_energy, n_channel); its
        own effective area is left out (ARFs are per source). Raises ValueError if
        its channels or energies differ from the grid's, or if it reaches the analysis bins
        from energies outside the model grid."""
        if response.n_channel != self.grouping.n_channel:
            raise ValueError(
                f"{response.n_channel} channels, the {self.instrument} grid has "
                f"{self.grouping.n_channel}"
            )
        first, last = self.rows
        edges = response.energy_edges
        if response.n_energy != self.n_rmf_energy or not np.allclose(
            edges[first : last + 1], self.energy_edges, rtol=1e-5
        ):
            raise ValueError(f"its energy grid differs from the {self.instrument} model grid")
        if not np.allclose(
            response.channel_lo[self.grouping.start], self.channel_lo, rtol=1e-4, atol=1e-6
        ):
            raise ValueError(f"its channel energies differ from the {self.instrument} grid")
        matrix = self.grouping.apply(response.matrix.astype(np.float64))
        total = np.abs(matrix).sum()
        outside = np.abs(matrix[:first]).sum() + np.abs(matrix[last:]).sum()
        if total == 0 or outside > OUTSIDE_TOLERANCE * total:
            raise ValueError(
                f"it reaches the analysis bins from energies outside the {self.instrument} "
                f"model grid ({outside / max(total, 1e-300):.1e} of its response)"
            )
        return matrix[first:last].astype(np.float32)

    def group(self, per_channel: np.ndarray) -> np.ndarray:
        """Sum a per-channel array (..., n_rmf_channel) onto the analysis bins."""
        return self.grouping.apply(per_channel)

    def cut(self, per_energy: np.ndarray) -> np.ndarray:
        """An array on the RMF energy grid (..., n_rmf_energy) restricted to the model grid."""
        per_energy = np.asarray(per_energy)
        if per_energy.shape[-1] != self.n_rmf_energy:
            raise ValueError(f"expected {self.n_rmf_energy} energies, got {per_energy.shape[-1]}")
        return per_energy[..., self.rows[0] : self.rows[1]]

    def _write(self, group: h5py.Group) -> None:
        group.attrs.update(first_channel=self.first_channel, n_rmf_energy=self.n_rmf_energy)
        group.attrs["n_channel_full"] = self.grouping.n_channel
        for name, values in (
            ("channel_lo", self.channel_lo),
            ("channel_hi", self.channel_hi),
            ("channel_start", self.grouping.start),
            ("channel_stop", self.grouping.stop),
            ("energy_edges", self.energy_edges),
            ("rmf_rows", np.array(self.rows)),
        ):
            group.create_dataset(name, data=values)

    @classmethod
    def _read(cls, group: h5py.Group) -> Grid:
        first, last = (int(v) for v in group["rmf_rows"][()])
        return cls(
            group.name.rsplit("/", 1)[-1],
            Grouping(
                group["channel_start"][()],
                group["channel_stop"][()],
                int(group.attrs["n_channel_full"]),
            ),
            int(group.attrs["first_channel"]),
            group["channel_lo"][()],
            group["channel_hi"][()],
            group["energy_edges"][()],
            (first, last),
            int(group.attrs["n_rmf_energy"]),
        )

    def same_as(self, other: Grid) -> bool:
        return (
            self.instrument == other.instrument
            and self.first_channel == other.first_channel
            and self.rows == other.rows
            and self.n_rmf_energy == other.n_rmf_energy
            and np.array_equal(self.grouping.start, other.grouping.start)
            and np.array_equal(self.grouping.stop, other.grouping.stop)
            and np.allclose(self.energy_edges, other.energy_edges, rtol=1e-6)
        )


# ---------------------------------------------------------------------------------------------
# Writing


class PackWriter:
    """Builds a pack at ``path``, in ``<path>.partial`` until :meth:`close` renames it.

    With ``resume=True`` an existing ``.partial`` file is continued from its last committed
    row (see :meth:`committed`); otherwise it is started afresh. ``provenance`` (a JSON-able
    dict: command, options, RMF substitutions...) is stored in the root attributes; see
    :func:`resumable` for whether a partial file was started with the same one. With
    ``extend`` the existing pack at ``path`` (checked first) is copied to start from, unless a
    partial file is resumed: appending, atomically.
    """

    def __init__(
        self,
        path,
        *,
        provenance: dict | None = None,
        resume: bool = False,
        extend: bool = False,
    ):
        self.path = Path(path)
        self.partial = _partial(self.path)
        self.file = None
        copied = extend and not (resume and self.partial.exists())
        if copied:
            with Pack(self.path, _instruments(self.path)[0]):  # refuse a damaged or old pack
                pass
            shutil.copyfile(self.path, self.partial)
            resume = True
        if resume and self.partial.exists():
            try:
                self.file = h5py.File(self.partial, "r+")
                _check_schema(self.file, self.partial)
            except (OSError, OGIPError):  # unreadable after a kill mid-write: start afresh
                if self.file is not None:
                    self.file.close()
                self.file = None
        if self.file is None:
            self.file = h5py.File(self.partial, "w")
            self.file.attrs.update(
                format=FORMAT, schema_version=SCHEMA_VERSION, xspecvae_version=_version()
            )
            self.file.attrs["pack_id"] = uuid.uuid4().hex
            self.file.create_group("instruments")
        else:
            if copied or _identity(self.file) is None:  # other rows: another pack
                self.file.attrs["pack_id"] = uuid.uuid4().hex
            for group in self.file["instruments"].values():
                _truncate(group, int(group.attrs["n"]))
        if provenance is not None:
            self.file.attrs["provenance"] = json.dumps(provenance)

    def __enter__(self) -> PackWriter:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.close()
        else:  # keep the partial file so the work can be resumed
            self.file.close()

    def add_grid(self, grid: Grid) -> None:
        """Create the section of ``grid.instrument`` (or check that it has this grid)."""
        sections = self.file["instruments"]
        if grid.instrument in sections:
            if not Grid._read(sections[grid.instrument]).same_as(grid):
                raise ValueError(f"the pack already has a different {grid.instrument} grid")
            return
        group = sections.create_group(grid.instrument)
        group.attrs["n"] = 0
        grid._write(group)
        c, e = grid.n_channel, grid.n_energy
        group.create_dataset(
            "rmf", shape=(0, e, c), maxshape=(None, e, c), dtype="f4", chunks=(1, e, c)
        )
        group.create_dataset("rmf_names", shape=(0,), maxshape=(None,), dtype=_STRING)
        for name, width, dtype in (
            ("counts", c, "f4"),
            ("background", c, "f4"),
            ("alpha", c, "f4"),
            ("good", c, "?"),
            ("arf", e, "f4"),
            ("exposure", None, "f8"),
            ("rmf_index", None, "i4"),
        ):
            _growing(group, name, width, dtype)
        group.create_group("meta")
        group.create_group("truth")

    def grid(self, instrument: str) -> Grid | None:
        sections = self.file["instruments"]
        return Grid._read(sections[instrument]) if instrument in sections else None

    def add_rmf(self, instrument: str, name: str, matrix: np.ndarray) -> int:
        """Store a shared response (already on the grid, see :meth:`Grid.regroup`) under
        ``name`` once; return its index. The same matrix added twice under one name keeps its
        first index; a different matrix under a name already taken (two RMFs called
        ``PN.rmf`` in two folders) is stored as ``name (2)``, ``name (3)``..."""
        group = self.file["instruments"][instrument]
        names = list(group["rmf_names"].asstr()[()])
        base, k = name, 1
        while name in names:
            index = names.index(name)
            if np.array_equal(group["rmf"][index], np.asarray(matrix, np.float32)):
                return index
            k += 1
            name = f"{base} ({k})"
        index = len(names)
        for key, value in (("rmf", matrix), ("rmf_names", name)):
            group[key].resize(index + 1, axis=0)
            group[key][index] = value
        return index

    def append(
        self,
        instrument: str,
        *,
        counts,
        background,
        alpha,
        exposure,
        arf,
        rmf_index,
        meta: dict,
        good=None,
        truth: dict | None = None,
    ) -> None:
        """Append a batch of rows (arrays with a leading batch axis, already on the grid).
        ``meta`` needs ``source_id``, ``obs_id``, ``mjd``, ``ra``, ``dec``, ``label`` and
        ``file``; other columns may be added, numeric or text, the same in every batch.
        Total source and background counts are added as ``counts`` and ``background``."""
        group = self.file["instruments"][instrument]
        counts = np.asarray(counts, dtype=np.float32)
        size = counts.shape[0]
        arrays = dict(
            counts=counts,
            background=background,
            alpha=alpha,
            good=np.ones(counts.shape, bool) if good is None else good,
            exposure=exposure,
            arf=arf,
            rmf_index=rmf_index,
        )
        for name, values in arrays.items():
            values = np.asarray(values)
            expected = group[name].shape[1:]
            if values.shape != (size, *expected):
                raise ValueError(f"{name} has shape {values.shape}, expected {(size, *expected)}")
        if np.any(np.asarray(rmf_index) >= group["rmf_names"].shape[0]):
            raise ValueError("rmf_index points past the stored RMFs")
        missing = set(_REQUIRED_META) - set(meta)
        if missing:
            raise ValueError(f"meta lacks {sorted(missing)}")
        meta = dict(meta, counts=counts.sum(axis=1), background=np.sum(background, axis=1))
        start = int(group.attrs["n"])
        if start > 0:  # what the pack's rows have of the assigned columns, the new rows have
            for name, value in _ASSIGNED_META.items():
                if name not in group["meta"]:
                    meta.pop(name, None)
                elif name not in meta:
                    meta[name] = np.full(size, value)
        for name, values in arrays.items():
            _put(group, name, start, values)
        for kind, columns in (("meta", meta), ("truth", truth or {})):
            known = set(group[kind])
            if start > 0 and known != set(columns):
                raise ValueError(
                    f"{kind} columns {sorted(columns)} differ from the pack's {sorted(known)}"
                )
            for name, values in columns.items():
                values = np.asarray(values)
                if values.shape != (size,):
                    raise ValueError(f"{kind} column {name} has shape {values.shape}")
                if name not in known:
                    dtype = _STRING if values.dtype.kind in "USO" else values.dtype
                    _growing(group[kind], name, None, dtype)
                _put(group[kind], name, start, values)
        group.attrs["n"] = start + size  # the commit
        self.file.flush()

    def committed(self, instrument: str, column: str = "file") -> np.ndarray:
        """Values of a metadata column for the rows committed so far (to skip work done
        before an interruption)."""
        sections = self.file["instruments"]
        if instrument not in sections or column not in sections[instrument]["meta"]:
            return np.array([])
        return _column(sections[instrument]["meta"][column], int(sections[instrument].attrs["n"]))

    def set_column(self, instrument: str, column: str, values) -> None:
        """Overwrite (or add) a metadata column over all committed rows."""
        group = self.file["instruments"][instrument]
        n = int(group.attrs["n"])
        values = np.asarray(values)
        if values.shape != (n,):
            raise ValueError(f"{column} needs {n} values, got {values.shape}")
        if column in group["meta"]:
            del group["meta"][column]
        _growing(
            group["meta"], column, None, _STRING if values.dtype.kind in "USO" else values.dtype
        )
        _put(group["meta"], column, 0, values)

    def close(self) -> Path:
        """Finish the pack: close the file and rename it into place (atomic)."""
        if self.file is not None and self.file.id.valid:
            self.file.close()
            os.replace(self.partial, self.path)
        return self.path


_REQUIRED_META = ("source_id", "obs_id", "mjd", "ra", "dec", "label", "file")
_DERIVED_META = ("counts", "background")
#: Columns set over a whole pack once it is packed (where source ids come from), with the
#: value rows appended later take until they are set again.
_ASSIGNED_META = {"catalogue_id": False, "src_num": -1}


def _growing(group: h5py.Group, name: str, width: int | None, dtype) -> None:
    shape, chunks = ((0, width), (CHUNK_ROWS, width)) if width else ((0,), (CHUNK_ROWS * 8,))
    group.create_dataset(
        name,
        shape=shape,
        maxshape=(None, *shape[1:]),
        dtype=dtype,
        chunks=chunks,
        compression="gzip",
        compression_opts=4,
        shuffle=True,
    )


def _put(group: h5py.Group, name: str, start: int, values: np.ndarray) -> None:
    dataset = group[name]
    dataset.resize(start + len(values), axis=0)
    if dataset.dtype.kind == "O":
        values = np.asarray(values, dtype=object).astype(str).astype(object)
    dataset[start:] = values


def _truncate(group: h5py.Group, n: int) -> None:
    """Drop rows past the last commit (left by an interrupted append)."""
    for name in PER_SOURCE:
        group[name].resize(n, axis=0)
    for kind in ("meta", "truth"):
        for dataset in group[kind].values():
            dataset.resize(min(n, dataset.shape[0]), axis=0)


def _column(dataset: h5py.Dataset, n: int) -> np.ndarray:
    if dataset.dtype.kind == "O":
        return np.asarray(dataset.asstr()[:n], dtype=str)
    return dataset[:n]


def _check_schema(file: h5py.File, path: Path) -> None:
    if file.attrs.get("format") != FORMAT:
        raise OGIPError(path, "not an xspecvae pack (no 'format' attribute of that name)")
    version = int(file.attrs.get("schema_version", -1))
    if version != SCHEMA_VERSION:
        raise OGIPError(
            path,
            f"pack schema version {version}, this xspecvae ({_version()}) reads version "
            f"{SCHEMA_VERSION}; rebuild the pack with `xspecvae pack` or `xspecvae simulate`",
        )


def _version() -> str:
    from xspecvae import __version__

    return __version__


# ---------------------------------------------------------------------------------------------
# Reading


class Pack:
    """A pack opened for reading, one instrument section at a time (``instrument`` may be
    left out when the pack has only one).

    Attributes: ``grid``, ``n``, ``rmf`` (R, E, C), ``rmf_names``, ``meta`` and ``truth``
    (dicts of column arrays), ``provenance``. :meth:`read` and :meth:`batches` serve
    per-source arrays as numpy without loading the whole pack; :meth:`load` loads it.
    """

    def __init__(self, path, instrument: str | None = None):
        self.path = Path(path)
        try:
            self.file = h5py.File(self.path, "r")
        except OSError as err:
            raise OGIPError(self.path, f"cannot open as HDF5: {err}") from None
        try:
            _check_schema(self.file, self.path)
            sections = self.file["instruments"]
            self.instruments = sorted(sections)
            if instrument is None:
                if len(self.instruments) != 1:
                    raise OGIPError(self.path, f"holds instruments {self.instruments}: choose one")
                instrument = self.instruments[0]
            if instrument not in sections:
                raise OGIPError(self.path, f"no {instrument!r} section (has {self.instruments})")
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

    def read(self, index=None) -> dict[str, np.ndarray]:
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


def append_pack(path, other) -> None:
    """Append every section of pack ``other`` to pack ``path`` (same grids), atomically: the
    result is built in a copy and renamed over ``path``."""
    path, other = Path(path), Path(other)
    writer = PackWriter(path, extend=True)
    for instrument in _instruments(other):
        with Pack(other, instrument) as source:
            writer.add_grid(source.grid)
            remap = np.array(
                [writer.add_rmf(instrument, n, m) for n, m in zip(source.rmf_names, source.rmf)],
                dtype=np.int32,
            )
            for start in range(0, source.n, CHUNK_ROWS * 8):
                rows = slice(start, start + CHUNK_ROWS * 8)
                batch = source.read(rows)
                meta = {k: v[rows] for k, v in source.meta.items() if k not in _DERIVED_META}
                writer.append(
                    instrument,
                    counts=batch["counts"],
                    background=batch["background"],
                    alpha=batch["alpha"],
                    good=batch["good"],
                    exposure=batch["exposure"],
                    arf=batch["arf"],
                    rmf_index=remap[batch["rmf_index"]],
                    meta=meta,
                    truth={k: v[rows] for k, v in source.truth.items()},
                )
    writer.close()


class PackError(InputError):
    """A pack that cannot be used, or that a command would replace without being asked."""


def made_already(path, provenance: dict, overwrite: bool = False) -> bool:
    """Whether the finished pack at ``path`` was made by this very ``provenance`` (same
    command, inputs and options: nothing left to do). Any other file there is refused with a
    :class:`PackError` unless ``overwrite``."""
    path = Path(path)
    if not path.exists():
        return False
    try:
        with h5py.File(path, "r") as file:
            made = json.loads(file.attrs.get("provenance", "null"))
    except (OSError, ValueError):
        made = None
    wanted = json.loads(json.dumps(provenance))
    if isinstance(made, dict) and all(made.get(k) == v for k, v in wanted.items()):
        return True
    if overwrite:
        return False
    raise PackError(
        path,
        "exists and was not made by this command with these inputs and options: give "
        "--overwrite to replace it (and its report), or another output",
    )


def resumable(path, provenance: dict) -> bool:
    """Whether the pack ``path`` has an interrupted ``<path>.partial`` started with this very
    ``provenance`` (same command, inputs and options): only then may it be continued."""
    try:
        with h5py.File(_partial(Path(path)), "r") as file:
            made = json.loads(file.attrs.get("provenance", "null"))
    except (OSError, ValueError):  # absent, or unreadable after a kill
        return False
    return made == json.loads(json.dumps(provenance))


def _identity(file: h5py.File) -> str | None:
    """The ``pack_id`` written when the pack was made (None for packs made before ids)."""
    value = file.attrs.get("pack_id")
    return None if value is None else str(value)


def _partial(path: Path) -> Path:
    return path.with_name(path.name + ".partial")


def grids_of(path) -> list[Grid]:
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
        raise OGIPError(path, f"cannot open as HDF5: {err}") from None


# ---------------------------------------------------------------------------------------------
# Sources seen several times


def match_positions(ra, dec, radius_arcsec: float = 5.0) -> np.ndarray:
    """Source ids (0, 1, ... in order of first appearance) grouping positions (degrees)
    linked by separations below ``radius_arcsec`` (friends of friends). Non-finite
    positions get ids of their own."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    ra, dec = np.radians(np.asarray(ra, float)), np.radians(np.asarray(dec, float))
    xyz = np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=1)
    finite = np.all(np.isfinite(xyz), axis=1)
    xyz[~finite] = np.arange(3 * (~finite).sum()).reshape(-1, 3) + 10.0  # far from the sphere
    chord = 2 * np.sin(np.radians(radius_arcsec / 3600) / 2)
    pairs = cKDTree(xyz).query_pairs(chord, output_type="ndarray")
    n = len(xyz)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    _, first = np.unique(label, return_index=True)
    return np.argsort(np.argsort(first))[label]


# ---------------------------------------------------------------------------------------------
# Catalogue hardness ratios

#: The 4XMM energy bands 1-5 (keV).
BANDS_4XMM = ((0.2, 0.5), (0.5, 1.0), (1.0, 2.0), (2.0, 4.5), (4.5, 12.0))


def band_matrix(channel_lo, channel_hi, bands=BANDS_4XMM) -> np.ndarray:
    """(C, n_bands) 0/1: which band holds each channel's centre (channels outside: none), so
    that ``per_channel @ band_matrix(...)`` sums counts into bands."""
    centre = 0.5 * (np.asarray(channel_lo) + np.asarray(channel_hi))
    return np.stack([(centre >= lo) & (centre < hi) for lo, hi in bands], -1).astype(float)


def hardness_ratios(batch: dict, channel_lo, channel_hi) -> np.ndarray:
    """The 4XMM hardness ratios HR1-HR4 (B, 4), ``(R_{i+1} - R_i) / (R_{i+1} + R_i)`` of the
    net counts ``N - alpha B`` of good channels in the bands :data:`BANDS_4XMM` (one exposure per
    spectrum, so counts stand for rates). Negative net counts are clipped at 0; a ratio of two
    empty bands is 0."""
    net = np.clip(batch["counts"] - batch["alpha"] * batch["background"], 0.0, None)
    rates = (net * batch["good"]) @ band_matrix(channel_lo, channel_hi)
    soft, hard = rates[:, :-1], rates[:, 1:]
    total = soft + hard
    return np.divide(hard - soft, total, out=np.zeros_like(total), where=total > 0)
