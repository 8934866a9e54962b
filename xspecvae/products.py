"""Pipeline products into a pack: find spectra, their backgrounds, ARFs and RMFs, and account
for every input file.

Source spectra are the PPS ``SRSPEC`` files (``P<obsid><inst><expo>SRSPEC<src>.FTZ``) and any
other OGIP spectrum that no spectrum names as its background. Each is read with the files its
header names (BACKFILE, ANCRFILE: looked up beside it; RESPFILE: see :func:`find_rmf`), put on
the instrument's analysis grid and appended to the pack, or rejected with the reason. The
report next to the pack lists every input file as ``packed``, ``rejected``, ``used`` (a
background or ARF of a packed spectrum), ``unused`` or ``ignored`` (not a FITS file).
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
import multiprocessing
import os
import re
import warnings
from collections import Counter, deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from xspecvae.catalog import Grid, PackWriter, made_already, match_positions, resumable
from xspecvae.errors import InputError
from xspecvae.files import write_atomic
from xspecvae.instrument import Response
from xspecvae.ogip import (
    Arf,
    OGIPError,
    Pha,
    background_ratio,
    check_energy_match,
    check_match,
    read_arf,
    read_ogip,
    read_pha,
    read_rmf,
)

__all__ = ["ingest", "catalogue_ids", "find_rmf", "Ingestion"]

#: PPS product names: observation, instrument, exposure, product type, source number.
PPS_NAME = re.compile(
    r"^P(?P<obs_id>\d{10})(?P<inst>[A-Z0-9]{2})(?P<expo>[SU]\d{3})"
    r"(?P<kind>[A-Z]{6})(?P<src>[0-9A-F]{4})\.",
    re.IGNORECASE,
)
_AUXILIARY = {"BGSPEC": "background", "SRCARF": "arf"}
_SECTIONS = {"EPN": "pn", "EMOS1": "mos1", "EMOS2": "mos2", "RGS1": "rgs1", "RGS2": "rgs2"}
_VERSION = re.compile(r"_v\d+(\.\d+)*$", re.IGNORECASE)
_SUFFIXES = (".gz", ".ftz", ".z", ".rmf", ".rsp")
#: Rows gathered before each append to the pack.
APPEND_EVERY = 256


@dataclass
class Ingestion:
    """Outcome of :func:`ingest`: the pack (None if nothing was packed), the report rows (one
    per input file) and where the report was written."""

    pack: Path | None
    report: list[dict]
    report_csv: Path
    report_json: Path
    packed: Counter = field(default_factory=Counter)

    @property
    def rejected(self) -> list[dict]:
        return [r for r in self.report if r["status"] == "rejected"]


def ingest(
    inputs,
    pack,
    *,
    rmf_dirs=(),
    substitutes: dict[str, str] | None = None,
    emin: float = 0.2,
    emax: float = 12.0,
    match_radius: float = 5.0,
    catalogue=None,
    jobs: int | None = None,
    resume: bool = True,
    append: bool = False,
    overwrite: bool = False,
    grids=(),
    progress: bool = True,
) -> Ingestion:
    """Pack the spectra found in ``inputs`` (files or directories, searched recursively).

    ``rmf_dirs`` are searched for the RMFs that spectra name (after the spectrum's own
    folder); ``substitutes`` maps glob patterns of RMF names to files used when the named RMF
    is absent (recorded in the pack). Analysis bins span ``emin``-``emax`` keV, one FWHM wide,
    from each instrument's first RMF. Sources within ``match_radius`` arcsec share a
    ``source_id``; with a ``catalogue`` (a table with the 4XMM columns ``SRCID``, ``OBS_ID``,
    ``SRC_NUM``), PPS spectra take the ``SRCID`` of their observation and source number, and
    so do the spectra matched to them by position. ``jobs`` worker processes read the files
    (all cores by default). An interrupted run started with the same inputs and options is
    resumed unless ``resume`` is False, and a pack it finished is returned as it is; any other
    file at ``pack`` is refused unless ``overwrite``. With ``append`` an existing pack
    gains the spectra it does not hold yet (on its own grids), the new file replacing it
    atomically. ``grids`` (:class:`~xspecvae.catalog.Grid`) fix the grids of their instruments
    (e.g. those of the pack a model was trained on, so that the model can read the new one).
    """
    pack = Path(pack)
    files = _files(inputs)
    roles = _roles(files)
    rmfs = _RmfCache([Path(d) for d in rmf_dirs], substitutes or {})
    given = {} if catalogue is None else catalogue_ids(catalogue)
    provenance = dict(
        command="xspecvae pack",
        inputs=[str(Path(p).resolve()) for p in inputs],
        rmf_dirs=[str(Path(d).resolve()) for d in rmf_dirs],
        rmf_substitutes=substitutes or {},
        emin=emin,
        emax=emax,
        match_radius_arcsec=match_radius,
        catalogue=None if catalogue is None else str(Path(catalogue).resolve()),
        append=append,
        grids_of=[grid.instrument for grid in grids],
    )
    if not append and made_already(pack, provenance, overwrite):
        done = _read_report(pack)
        if done is not None:
            return done
    report: dict[Path, dict] = {p: _row(p, roles[p][0]) for p in files}
    for path, (role, reason) in roles.items():
        if role == "ignored":
            report[path].update(status="ignored", reason=reason)
    # only a partial pack started with these very inputs and options is continued
    resume = resume and resumable(pack, provenance)
    writer = PackWriter(pack, provenance=provenance, resume=resume, extend=append and pack.exists())
    try:
        for grid in grids:
            writer.add_grid(grid)
    except ValueError:
        writer.file.close()
        raise
    done = {}
    for section in writer.file["instruments"]:
        for row, name in enumerate(writer.committed(section)):
            done[Path(name)] = (section, row)
    sources = [p for p in files if roles[p][0] == "source"]
    todo = [p for p in sources if p.resolve() not in done]
    packed: Counter = Counter()
    buffers: dict[str, list[dict]] = {}
    try:
        for record in _map(_read_source, todo, jobs, progress, _died):
            path = record["path"]
            try:
                if record["problem"]:
                    raise OGIPError(*record["problem"])
                section, arrays = _onto_grid(record, rmfs, writer, emin, emax)
            except ValueError as err:  # OGIPError, or a grid that cannot be made
                if not isinstance(err, OGIPError):
                    err = OGIPError(path, str(err))
                report[path].update(status="rejected", reason=_reason(err, path))
                bad = record.get("bad_file")
                if bad in report:
                    report[bad].update(status="rejected", reason=_reason(err, bad))
                for aux in (record.get("background_file"), record.get("arf_file")):
                    if aux and Path(aux) in report and report[Path(aux)]["status"] == "":
                        report[Path(aux)].update(
                            status="unused", reason=f"its spectrum {path.name} was rejected"
                        )
                continue
            buffers.setdefault(section, []).append(arrays)
            if len(buffers[section]) >= APPEND_EVERY:
                _append(writer, section, buffers.pop(section))
        for section, rows in buffers.items():
            _append(writer, section, rows)
        sections = list(writer.file["instruments"])
        n_rows = {s: int(writer.file["instruments"][s].attrs["n"]) for s in sections}
        if sum(n_rows.values()):
            matched = _assign_source_ids(writer, sections, match_radius, given)
            if catalogue is not None:
                provenance["catalogue_matched"] = matched
            provenance["rmf_substituted"] = rmfs.substituted
            writer.file.attrs["provenance"] = json.dumps(provenance)
    except BaseException:
        writer.file.close()  # keep the partial pack: the next run resumes it
        raise
    for section in sections:
        meta = writer.file["instruments"][section]["meta"]
        if "file" not in meta:  # a section that has no rows yet
            continue
        names = [np.asarray(meta[k].asstr()[:]) for k in ("file", "background_file", "arf_file")]
        for row, (spectrum, background, arf) in enumerate(zip(*names)):
            packed[section] += 1
            report_row = report.get(Path(spectrum))
            if report_row is not None:
                report_row.update(status="packed", instrument=section, row=row, reason="")
            for aux in (background, arf):
                if aux and Path(aux) in report:
                    report[Path(aux)].update(status="used", reason=f"by {Path(spectrum).name}")
    for path in rmfs.stored & set(report):
        report[path].update(status="used", reason="RMF of packed spectra")
    for row in report.values():
        if row["status"] == "":
            row.update(status="unused", reason="no packed spectrum names it")
    if sum(packed.values()):
        writer.close()
        result_pack = pack
    else:
        writer.file.close()
        writer.partial.unlink()
        result_pack = None
    rows = sorted(report.values(), key=lambda r: r["file"])
    csv_path, json_path = _write_report(pack, rows, provenance, packed)
    return Ingestion(result_pack, rows, csv_path, json_path, packed)


# ---------------------------------------------------------------------------------------------
# Finding files


def _files(inputs) -> list[Path]:
    found = []
    for entry in inputs:
        entry = Path(entry)
        if entry.is_dir():
            found += [p for p in entry.rglob("*") if p.is_file()]
        elif entry.is_file():
            found.append(entry)
        else:
            raise InputError(entry, "no such file or directory")
    return sorted({p.resolve() for p in found})


def _roles(files: list[Path]) -> dict[Path, tuple[str, str]]:
    """Role of each file: source, background, arf, other or ignored (with a reason)."""
    roles = {}
    named_backgrounds = set()
    for path in files:
        match = PPS_NAME.match(path.name)
        if match:
            kind = match["kind"].upper()
            role = "source" if kind == "SRSPEC" else _AUXILIARY.get(kind, "other")
            roles[path] = (role, "")
            continue
        if not _is_fits(path):
            roles[path] = ("ignored", "not a FITS file")
            continue
        try:
            content = read_ogip(path)
        except OGIPError:
            roles[path] = ("source", "")  # unreadable: reported as a rejected spectrum
            continue
        if isinstance(content, list):
            content = content[0]
        if isinstance(content, Pha):
            roles[path] = ("background" if content.kind == "BKG" else "source", "")
            if content.backfile:
                found = content.locate("backfile")
                if found is not None:
                    named_backgrounds.add(found.resolve())
        else:
            roles[path] = ("arf" if isinstance(content, Arf) else "rmf", "")
    for path in named_backgrounds & set(roles):
        roles[path] = ("background", "")
    return roles


def _is_fits(path: Path) -> bool:
    """Whether ``path`` holds FITS (possibly gzip-compressed), from its first bytes."""
    import gzip

    with open(path, "rb") as f:
        head = f.read(6)
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as f:
                head = f.read(6)
        except (OSError, EOFError):
            return True  # damaged gzip: let the reader say what is wrong
    return head == b"SIMPLE"


def locate_rmf(pha: Pha, directories=(), substitutes=None) -> tuple[Path | None, str | None]:
    """The RMF file of the spectrum's RESPFILE (:func:`find_rmf` in its folder, then in
    ``directories``), else the substitute of the first glob pattern of ``substitutes`` it
    matches; with the name it stands in for when substituted (else None)."""
    name = pha.respfile
    path = find_rmf(name, [pha.path.parent, *directories])
    if path is not None:
        return path, None
    for pattern, substitute in (substitutes or {}).items():
        if fnmatch.fnmatch(Path(name).name.lower(), pattern.lower()):
            path = Path(substitute)
            if not path.is_absolute() and not path.exists():
                path = find_rmf(substitute, directories) or path
            return path, Path(name).name
    return None, None


def find_rmf(name: str, directories) -> Path | None:
    """The RMF a RESPFILE ``name`` refers to in ``directories``: the same base name in any
    letter case, with or without compression suffix, or with a version suffix (``_v19.0``)
    that the header name lacks; the highest version wins."""
    wanted = _rmf_key(name)
    found = []
    for directory in directories:
        try:
            entries = sorted(Path(directory).iterdir())
        except OSError:
            continue
        for entry in entries:
            key = _rmf_key(entry.name)
            if entry.is_file() and (key == wanted or _VERSION.sub("", key) == wanted):
                version = [int(v) for v in re.findall(r"\d+", key[len(wanted) :])]
                found.append((version, entry))
    return max(found, key=lambda f: f[0])[1] if found else None


def _rmf_key(name: str) -> str:
    key = Path(name).name.lower()
    for suffix in _SUFFIXES:  # in this order: compression first, then the RMF extension
        if key.endswith(suffix):
            key = key[: -len(suffix)]
    return key


# ---------------------------------------------------------------------------------------------
# Reading one source (in a worker process)


def _read_source(path: Path) -> dict:
    """Everything one source spectrum brings, at full channel resolution, or the problem."""
    record = {"path": path, "problem": None, "background_file": "", "arf_file": ""}
    try:
        pha = read_pha(path)
        bkg_path, arf_path = pha.locate("backfile"), pha.locate("ancrfile")
        for key, found in (("background_file", bkg_path), ("arf_file", arf_path)):
            record[key] = str(found.resolve()) if found else ""
        if pha.kind == "NET" or not pha.poisserr:
            raise OGIPError(path, f"{pha.kind} spectrum without Poisson counts: not packable")
        if pha.backfile and bkg_path is None:
            raise OGIPError(path, f"background {pha.backfile} (BACKFILE) not found")
        if not pha.ancrfile:
            raise OGIPError(path, "no ARF (ANCRFILE): the pack needs each source's ARF")
        if arf_path is None:
            raise OGIPError(path, f"ARF {pha.ancrfile} (ANCRFILE) not found")
        background = alpha = np.zeros(pha.n_channel)
        if bkg_path is not None:
            bkg = _read_auxiliary(read_pha, bkg_path, record)
            alpha, background = background_ratio(pha, bkg), bkg.counts
        arf = _read_auxiliary(read_arf, arf_path, record)
    except OGIPError as err:
        record["problem"] = (err.path, err.problem)
        return record
    except Exception as err:  # a reader bug must not stop the batch: report it
        record["problem"] = (path, f"unexpected {type(err).__name__}: {err}")
        return record
    record.update(pha=pha, background=background, alpha=alpha, arf=arf)
    return record


def _died(path: Path) -> dict:
    """The record of a spectrum whose reader process died."""
    problem = (path, "its reader process died (out of memory, or a crash in a library)")
    return {"path": path, "problem": problem, "background_file": "", "arf_file": ""}


def _read_auxiliary(reader, path: Path, record: dict):
    """``reader(path)``, noting ``path`` as a bad file in ``record`` if it cannot be read."""
    try:
        return reader(path)
    except OGIPError:
        record["bad_file"] = path.resolve()
        raise


def _map(function, items: list, jobs: int | None, progress: bool, crashed):
    """``function`` over ``items`` in order, in ``jobs`` processes, with a progress bar.

    A worker that dies (killed for memory, a crash inside a library) breaks its pool: the
    items then in flight are retried one by one, each in a process of its own, and one that
    kills that process too gives ``crashed(item)``; the others go on in a new pool."""
    jobs = jobs or os.cpu_count() or 1
    bar = tqdm(total=len(items), unit="spectrum", disable=not progress, desc="reading")
    if jobs == 1 or len(items) < 2:
        for item in items:
            yield function(item)
            bar.update()
    else:
        todo = deque(items)
        while todo:
            for result in _pool_map(function, todo, jobs, crashed):
                yield result
                bar.update()
    bar.close()


def _pool_map(function, todo: deque, jobs: int, crashed):
    """Results of ``function`` over ``todo`` (consumed) from one pool, until it is done or
    broken; then the items it had in flight, the unfinished ones retried alone."""
    context = multiprocessing.get_context("spawn")  # no fork of a JAX process
    pending = deque()  # (item, future): a bounded window in flight, as results are large
    with ProcessPoolExecutor(jobs, mp_context=context) as pool:
        try:
            while todo or pending:
                while todo and len(pending) < 16 * jobs:
                    item = todo.popleft()
                    pending.append((item, pool.submit(function, item)))
                result = pending[0][1].result()
                pending.popleft()
                yield result
        except BrokenProcessPool:
            pass
    for item, future in pending:
        done = future.done() and future.exception() is None
        yield future.result() if done else _alone(function, item, crashed)


def _alone(function, item, crashed):
    """``function(item)`` in a process of its own, or ``crashed(item)`` if that process dies."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        try:
            return pool.submit(function, item).result()
        except BrokenProcessPool:
            return crashed(item)


# ---------------------------------------------------------------------------------------------
# Onto the grid (main process)


class _RmfCache:
    """RMFs by RESPFILE name: found, read and regrouped once per pack section."""

    def __init__(self, directories: list[Path], substitutes: dict[str, str]):
        self.directories = directories
        self.substitutes = substitutes
        self.substituted: dict[str, str] = {}
        self.index: dict[tuple[str, Path], int] = {}  # (section, RMF file) -> index in the pack
        self.stored: set[Path] = set()  # RMF files stored in the pack
        self._responses: dict[str, tuple[str, Response, object] | OGIPError] = {}
        self._read: dict[Path, tuple[str, Response, object] | OGIPError] = {}

    def resolve(self, pha: Pha) -> tuple[str, Response, object]:
        """(file name, response, Rmf) for the spectrum's RESPFILE, or OGIPError."""
        name = pha.respfile
        if not name:
            raise OGIPError(pha.path, "no RMF named (RESPFILE)")
        key = f"{pha.path.parent}\0{name}"
        if key not in self._responses:
            self._responses[key] = self._load(pha, name)
        found = self._responses[key]
        if isinstance(found, OGIPError):
            raise OGIPError(pha.path, found.problem)
        return found

    def _load(self, pha: Pha, name: str):
        path, substituted = locate_rmf(pha, self.directories, self.substitutes)
        if path is None:
            where = ", ".join(str(d) for d in [pha.path.parent, *self.directories])
            return OGIPError(
                pha.path,
                f"RMF {name} (RESPFILE) not found in {where}; name a substitute with "
                f"--rmf-substitute PATTERN=FILE",
            )
        path = path.resolve()
        if path not in self._read:
            try:
                rmf = read_rmf(path)
                self._read[path] = (path.name, Response.from_ogip(rmf), rmf)
            except OGIPError as err:
                self._read[path] = OGIPError(pha.path, f"RMF {path}: {err.problem}")
        if substituted and not isinstance(self._read[path], OGIPError):
            self.substituted[substituted] = str(path)  # recorded once it stood in
        return self._read[path]


def _onto_grid(record: dict, rmfs: _RmfCache, writer: PackWriter, emin: float, emax: float):
    """The record's arrays on its instrument's grid (creating the grid and storing the RMF
    on first use), ready to append."""
    pha: Pha = record["pha"]
    name, response, rmf = rmfs.resolve(pha)
    check_match(pha, rmf)
    try:
        check_energy_match(record["arf"], rmf)
    except OGIPError as err:
        raise OGIPError(pha.path, f"ARF {record['arf'].path.name}: {err.problem}") from None
    section = _SECTIONS.get(pha.instrument.upper(), pha.instrument.lower() or "unknown")
    grid = writer.grid(section)
    if grid is None:  # bins that do not straddle the quality flags of the first spectrum
        flagged = np.diff((pha.quality != 0).astype(int), prepend=int(pha.quality[0] != 0))
        breaks = response.channel_lo[np.flatnonzero(flagged)]
        grid = Grid.from_response(
            section,
            response,
            first_channel=rmf.first_channel,
            emin=emin,
            emax=emax,
            breaks=breaks,
        )
        writer.add_grid(grid)
    key = (section, rmf.path.resolve())  # by file: two folders may each hold a "PN.rmf"
    if key not in rmfs.index:
        try:
            rmfs.index[key] = writer.add_rmf(section, name, grid.regroup(response))
            rmfs.stored.add(key[1])
        except ValueError as err:
            raise OGIPError(pha.path, f"RMF {name}: {err}") from None
    index = rmfs.index[key]
    bad = (pha.quality != 0).astype(float)
    background = grid.group(record["background"])
    arrays = dict(
        counts=grid.group(pha.counts),
        background=background,
        alpha=_bin_alpha(grid, record["alpha"], record["background"], background),
        good=grid.group(bad) == 0,
        exposure=pha.exposure * _area_scale(pha),
        arf=grid.cut(record["arf"].specresp),
        rmf_index=index,
        meta=dict(
            source_id=-1,
            obs_id=pha.obs_id,
            mjd=pha.mjd_obs,
            ra=pha.ra,
            dec=pha.dec,
            label="",
            file=str(pha.path.resolve()),
            background_file=record["background_file"],
            arf_file=record["arf_file"],
            rmf_requested=pha.respfile,
            object=pha.object,
        ),
    )
    return section, arrays


def _bin_alpha(grid: Grid, alpha, background, binned: np.ndarray) -> np.ndarray:
    """Alpha of each analysis bin: the background-weighted mean of its channels' alphas, so
    that ``alpha * B`` of the bin is the sum of the channels' scaled background counts; the
    plain mean where the bin has no background count (alpha is one number for PPS
    spectra, whose BACKSCAL is a keyword, and then both are that number)."""
    plain = grid.group(alpha) / (grid.grouping.stop - grid.grouping.start)
    weighted = grid.group(np.asarray(alpha) * background)
    return np.where(binned > 0, weighted / np.where(binned > 0, binned, 1.0), plain)


def _area_scale(pha: Pha) -> float:
    """The spectrum's AREASCAL as one number, by which its exposure is multiplied (the model
    counts of XSPEC are ``rate * EXPOSURE * AREASCAL``): the keyword, or a column constant
    over the good channels; a column that varies cannot go into a pack (one exposure per
    spectrum) and is refused."""
    scale = np.asarray(pha.areascal, float)
    if scale.ndim == 0:
        return float(scale)
    used = scale[pha.quality == 0]
    if used.size == 0:
        return 1.0
    if not np.allclose(used, used[0], rtol=1e-6):
        raise OGIPError(
            pha.path,
            f"AREASCAL column varies over channels ({used.min():g} to {used.max():g}): a pack "
            "holds one exposure per spectrum",
        )
    return float(used[0])


def _append(writer: PackWriter, section: str, rows: list[dict]) -> None:
    stacked = {k: np.stack([r[k] for r in rows]) for k in rows[0] if k != "meta"}
    meta = {k: np.array([r["meta"][k] for r in rows]) for k in rows[0]["meta"]}
    writer.append(section, **stacked, meta=meta)


def _assign_source_ids(writer: PackWriter, sections: list[str], radius: float, given: dict) -> int:
    """One source id per position (across instruments and observations), or the catalogue's
    (``given``: (obs_id, src_num) -> SRCID) where known, with ``catalogue_id`` saying which
    are the catalogue's (found there, or matched by position to a spectrum that was) and
    ``src_num``, the pipeline source number; returns how many rows were found in the
    catalogue."""
    groups = [writer.file["instruments"][s] for s in sections]

    def column(name: str) -> np.ndarray:
        return np.concatenate([g["meta"][name][: g.attrs["n"]] for g in groups])

    ids = match_positions(column("ra"), column("dec"), radius)
    numbers = np.array([_source_number(Path(f)) for f in column("file").astype(str)], np.int64)
    keys = zip(column("obs_id").astype(str), numbers.tolist())
    known = np.array([given.get(key, -1) for key in keys], np.int64)
    if given:
        ids = _with_given_ids(ids, known)
    start = 0
    for section, group in zip(sections, groups):
        n = int(group.attrs["n"])
        part = slice(start, start + n)
        writer.set_column(section, "source_id", ids[part])
        writer.set_column(section, "catalogue_id", np.isin(ids[part], known[known >= 0]))
        writer.set_column(section, "src_num", numbers[part])
        start += n
    return int(np.sum(known >= 0))


def _with_given_ids(groups: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Source ids from position ``groups`` (0, 1, ...) and catalogue ids ``known`` (-1 where
    none): a row keeps its catalogue id; the other rows of its group take the group's most
    frequent one; groups without any keep their number, shifted past the catalogue ids if
    the two could be confused."""
    has = known >= 0
    chosen = np.full(groups.max() + 1, -1, np.int64)
    if has.any():
        pairs, count = np.unique(np.stack([groups[has], known[has]], 1), axis=0, return_counts=True)
        best = np.lexsort((-count, pairs[:, 0]))  # per group, the most frequent id first
        first = np.r_[True, pairs[best][1:, 0] != pairs[best][:-1, 0]]
        chosen[pairs[best][first, 0]] = pairs[best][first, 1]
    own = groups.astype(np.int64)
    if has.any() and known[has].min() <= groups.max():
        own = own + known[has].max() + 1
    return np.where(has, known, np.where(chosen[groups] >= 0, chosen[groups], own))


def catalogue_ids(path) -> dict[tuple[str, int], int]:
    """``(OBS_ID, SRC_NUM) -> SRCID`` from a catalogue table (FITS or any format astropy
    reads, e.g. the 4XMM catalogue or an extract); rows without an observation are skipped."""
    from astropy.table import Table

    try:  # a FITS catalogue is memory-mapped: only three of its columns are read
        with warnings.catch_warnings():  # about units and columns this does not use
            warnings.simplefilter("ignore")
            table = Table.read(path, **({"memmap": True} if _is_fits(Path(path)) else {}))
        names = {c.upper(): c for c in table.colnames}
        srcid, obs, num = (table[names[c]] for c in ("SRCID", "OBS_ID", "SRC_NUM"))
    except KeyError as err:
        raise OGIPError(path, f"a catalogue needs columns SRCID, OBS_ID, SRC_NUM: {err}") from None
    except (OSError, ValueError) as err:
        raise OGIPError(path, f"cannot read as a catalogue table: {err}") from None
    ok = ~(np.ma.getmaskarray(srcid) | np.ma.getmaskarray(obs) | np.ma.getmaskarray(num))
    keys = zip([str(o).strip().zfill(10) for o in obs[ok]], np.asarray(num[ok], int).tolist())
    return dict(zip(keys, np.asarray(srcid[ok], np.int64).tolist()))


def _source_number(path: Path) -> int:
    """The pipeline source number of a PPS product (hexadecimal in its name), else -1."""
    match = PPS_NAME.match(path.name)
    return int(match["src"], 16) if match else -1


# ---------------------------------------------------------------------------------------------
# Report


def _row(path: Path, role: str) -> dict:
    return dict(file=str(path), role=role, status="", reason="", instrument="", row="")


def _reason(err: OGIPError, about: Path) -> str:
    return err.problem if Path(err.path).resolve() == about else f"{err.path}: {err.problem}"


def _write_report(pack: Path, rows: list[dict], provenance: dict, packed: Counter):
    csv_path = pack.with_name(pack.name + ".report.csv")
    json_path = pack.with_name(pack.name + ".report.json")
    summary = dict(
        pack=str(pack),
        inputs=len(rows),
        packed=dict(packed),
        status=dict(Counter(r["status"] for r in rows)),
        reasons=dict(Counter(_reason_kind(r["reason"]) for r in rows if r["status"] == "rejected")),
        provenance=provenance,
        files=rows,
    )
    write_atomic(json_path, json.dumps(summary, indent=1).encode())
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(rows[0]) if rows else ["file"])
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(csv_path, text.getvalue().encode())
    return csv_path, json_path


def _read_report(pack: Path) -> Ingestion | None:
    """The :class:`Ingestion` of a finished pack, from its report (None if unreadable)."""
    csv_path = pack.with_name(pack.name + ".report.csv")
    json_path = pack.with_name(pack.name + ".report.json")
    try:
        summary = json.loads(json_path.read_text())
        return Ingestion(pack, summary["files"], csv_path, json_path, Counter(summary["packed"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _reason_kind(reason: str) -> str:
    """A reason without its file names and numbers, to count rejections by kind."""
    return re.sub(
        r"\S*[/\\]\S*|\S+\.(rmf|arf|ftz|fits|gz|pha)\b|\d+(\.\d+)?", "…", reason, flags=re.I
    )
