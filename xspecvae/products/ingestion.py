"""The ingestion of a batch of pipeline products into a pack, and its report: every input
file accounted for."""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from xspecvae.catalog import Grid, PackWriter, made_already
from xspecvae.files import write_atomic
from xspecvae.ogip import (
    OGIPError,
)
from xspecvae.physics import FLUX_BAND
from xspecvae.products.finding import _files, _roles
from xspecvae.products.ids import _assign_source_ids, catalogue_ids
from xspecvae.products.placing import _append, _onto_grid, _RmfCache
from xspecvae.products.workers import _died, _map, _read_source

#: Spectra read before they are appended to the pack together (one commit).
APPEND_EVERY = 256


@dataclass
class Ingestion:
    """Outcome of :func:`ingest`: the pack (None if nothing was packed), the report rows (one
    per input file) and where the report was written."""

    pack_path: Path | None
    report: list[dict]
    report_csv: Path
    report_json: Path
    packed: Counter = field(default_factory=Counter)

    @property
    def rejected(self) -> list[dict]:
        return [r for r in self.report if r["status"] == "rejected"]


def ingest(
    inputs: Sequence[str | Path],
    pack_path: str | Path,
    *,
    rmf_dirs: Sequence[str | Path] = (),
    substitutes: dict[str, str] | None = None,
    emin: float = FLUX_BAND[0],
    emax: float = FLUX_BAND[1],
    match_radius: float = 5.0,
    catalogue: str | Path | None = None,
    jobs: int | None = None,
    resume: bool = True,
    append: bool = False,
    overwrite: bool = False,
    grids: Sequence[Grid] = (),
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
    file at ``pack_path`` is refused unless ``overwrite``. With ``append`` an existing pack
    gains the spectra it does not hold yet (on its own grids), the new file replacing it
    atomically. ``grids`` (:class:`~xspecvae.catalog.Grid`) fix the grids of their instruments
    (e.g. those of the pack a model was trained on, so that the model can read the new one).
    """
    pack_path = Path(pack_path)
    files, skipped = _files(inputs)
    roles = {**_roles(files), **{path: ("ignored", why) for path, why in skipped.items()}}
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
    if not append and made_already(pack_path, provenance, overwrite):
        done = _read_report(pack_path)
        if done is not None:
            return done
    report: dict[Path, dict] = {p: _row(p, role) for p, (role, _) in roles.items()}
    for path, (role, reason) in roles.items():
        if role == "ignored":
            report[path].update(status="ignored", reason=reason)
    extend = append and pack_path.exists()
    with PackWriter(pack_path, provenance=provenance, resume=resume, extend=extend) as writer:
        for grid in grids:
            writer.add_grid(grid)
        _pack_sources(writer, files, roles, report, rmfs, jobs, progress, emin, emax)
        if sum(writer.rows(s) for s in writer.sections):
            matched = _assign_source_ids(writer, writer.sections, match_radius, given)
            if catalogue is not None:
                provenance["catalogue_matched"] = matched
            provenance["rmf_substituted"] = rmfs.substituted
            writer.set_provenance(provenance)
        packed = _account(writer, report, rmfs)
        if not sum(packed.values()):
            writer.abandon()
    result_pack = pack_path if sum(packed.values()) else None
    rows = sorted(report.values(), key=lambda r: r["file"])
    csv_path, json_path = _write_report(pack_path, rows, provenance, packed)
    return Ingestion(result_pack, rows, csv_path, json_path, packed)


def _pack_sources(
    writer: PackWriter,
    files: list[Path],
    roles: dict[Path, tuple[str, str]],
    report: dict[Path, dict],
    rmfs: _RmfCache,
    jobs: int | None,
    progress: bool,
    emin: float,
    emax: float,
) -> None:
    """Read the source spectra not yet in the pack (in ``jobs`` processes) and append them;
    a spectrum that cannot be used is marked rejected in ``report`` with its reason (and its
    background and ARF unused)."""
    done = {Path(name) for s in writer.sections for name in writer.committed(s)}
    todo = [p for p in files if roles[p][0] == "source" and p.resolve() not in done]
    buffers: dict[str, list[dict]] = {}
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


def _account(writer: PackWriter, report: dict, rmfs: _RmfCache) -> Counter:
    """Fill in ``report`` from what the pack holds (packed spectra, the backgrounds, ARFs and
    RMFs they use; anything else unused); the spectra packed per section."""
    packed: Counter = Counter()
    for section in writer.sections:
        spectra, backgrounds, arfs = (
            writer.committed(section, k) for k in ("file", "background_file", "arf_file")
        )
        for row, (spectrum, background, arf) in enumerate(zip(spectra, backgrounds, arfs)):
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
            reason, what = "no packed spectrum names it", _NOT_A_SOURCE.get(row["role"])
            row.update(
                status="unused",
                reason=f"{what}, not a source spectrum; {reason}" if what else reason,
            )
    return packed


#: What an unused file of each auxiliary role is, for its report row (a query file given to
#: ``similar --spectrum`` that is one of them is told so).
_NOT_A_SOURCE = {"rmf": "an RMF", "arf": "an ARF", "background": "a background spectrum"}


# ---------------------------------------------------------------------------------------------
# Report


def _row(path: Path, role: str) -> dict:
    return dict(file=str(path), role=role, status="", reason="", instrument="", row="")


def _reason(err: OGIPError, about: Path) -> str:
    return err.problem if Path(err.path).resolve() == about else f"{err.path}: {err.problem}"


def _write_report(pack_path: Path, rows: list[dict], provenance: dict, packed: Counter):
    csv_path = pack_path.with_name(pack_path.name + ".report.csv")
    json_path = pack_path.with_name(pack_path.name + ".report.json")
    summary = dict(
        pack=str(pack_path),
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


def _read_report(pack_path: Path) -> Ingestion | None:
    """The :class:`Ingestion` of a finished pack, from its report (None if unreadable)."""
    csv_path = pack_path.with_name(pack_path.name + ".report.csv")
    json_path = pack_path.with_name(pack_path.name + ".report.json")
    try:
        summary = json.loads(json_path.read_text())
        return Ingestion(
            pack_path, summary["files"], csv_path, json_path, Counter(summary["packed"])
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _reason_kind(reason: str) -> str:
    """A reason without its file names and numbers, to count rejections by kind."""
    return re.sub(
        r"\S*[/\\]\S*|\S+\.(rmf|arf|ftz|fits|gz|pha)\b|\d+(\.\d+)?", "…", reason, flags=re.I
    )
