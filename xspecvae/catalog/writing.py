"""Writing packs: rows appended and committed in batches into ``<pack>.partial``, renamed
when complete; resumed only by the work that started it."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from types import TracebackType

import h5py
import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from xspecvae.catalog.grid import Grid
from xspecvae.catalog.layout import (
    _STRING,
    CHUNK_ROWS,
    FORMAT,
    PER_SOURCE,
    SCHEMA_VERSION,
    PackError,
    _check_schema,
    _column,
    _identity,
    _partial,
    _version,
)
from xspecvae.catalog.reading import Pack, _instruments

# ---------------------------------------------------------------------------------------------
# Writing


class PackWriter:
    """Builds a pack at ``path``, in ``<path>.partial`` until :meth:`close` renames it.

    ``provenance`` (a JSON-able dict: command, options, RMF substitutions...) is stored in the
    root attributes. With ``resume=True`` an existing ``.partial`` file started with the same
    provenance (:func:`resumable`) is continued from its last committed row (see
    :meth:`committed`); any other is started afresh. With ``extend`` the existing pack at
    ``path`` (checked first) is copied to start from, unless a partial file is resumed:
    appending, atomically. Use it in a ``with`` block: leaving it normally finishes the pack
    (:meth:`close`), an exception keeps the partial file for the next run to resume.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        provenance: dict | None = None,
        resume: bool = False,
        extend: bool = False,
    ) -> None:
        self.path = Path(path)
        self.partial = _partial(self.path)
        self.file = None
        resume = resume and resumable(self.path, provenance)
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
            except (OSError, PackError):  # unreadable after a kill mid-write: start afresh
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

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.file is None:  # closed or abandoned inside the block
            return
        if kind is None:
            self.close()
        else:  # keep the partial file so the work can be resumed
            self.file.close()
            self.file = None

    @property
    def sections(self) -> list[str]:
        """The instrument sections made so far."""
        return sorted(self.file["instruments"])

    def rows(self, instrument: str) -> int:
        """Rows committed in a section."""
        return int(self.file["instruments"][instrument].attrs["n"])

    def set_provenance(self, provenance: dict) -> None:
        """Replace the stored provenance (e.g. with what the work found out)."""
        self.file.attrs["provenance"] = json.dumps(provenance)

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
        counts: ArrayLike,
        background: ArrayLike,
        alpha: ArrayLike,
        exposure: ArrayLike,
        arf: ArrayLike,
        rmf_index: ArrayLike,
        meta: dict,
        good: ArrayLike | None = None,
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

    def set_column(self, instrument: str, column: str, values: ArrayLike) -> None:
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
        self.file = None
        return self.path

    def abandon(self) -> None:
        """Close without making a pack: the partial file is removed."""
        if self.file is not None:
            self.file.close()
            self.file = None
        self.partial.unlink(missing_ok=True)


_REQUIRED_META = ("source_id", "obs_id", "mjd", "ra", "dec", "label", "file")
_DERIVED_META = ("counts", "background")
#: Columns set over a whole pack once it is packed (where source ids come from), with the
#: value rows appended later take until they are set again.
_ASSIGNED_META = {"catalogue_id": False, "src_num": -1}


def _growing(group: h5py.Group, name: str, width: int | None, dtype: DTypeLike) -> None:
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


def append_pack(path: str | Path, other: str | Path) -> None:
    """Append every section of pack ``other`` to pack ``path`` (same grids), atomically: the
    result is built in a copy and renamed over ``path``."""
    path, other = Path(path), Path(other)
    with PackWriter(path, extend=True) as writer:
        for instrument in _instruments(other):
            _append_section(writer, other, instrument)


def _append_section(writer: PackWriter, other: Path, instrument: str) -> None:
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


def made_already(path: str | Path, provenance: dict, overwrite: bool = False) -> bool:
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


def resumable(path: str | Path, provenance: dict) -> bool:
    """Whether the pack ``path`` has an interrupted ``<path>.partial`` started with this very
    ``provenance`` (same command, inputs and options): only then may it be continued."""
    try:
        with h5py.File(_partial(Path(path)), "r") as file:
            made = json.loads(file.attrs.get("provenance", "null"))
    except (OSError, ValueError):  # absent, or unreadable after a kill
        return False
    return made == json.loads(json.dumps(provenance))
