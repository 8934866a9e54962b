"""A source read onto the pack's analysis grid (its RMF regrouped once per pack), and rows
appended in batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xspecvae.catalog import Grid, PackWriter
from xspecvae.instrument import Response
from xspecvae.ogip import (
    OGIPError,
    Pha,
    check_energy_match,
    check_match,
    read_rmf,
)
from xspecvae.products.finding import locate_rmf, section_of

# ---------------------------------------------------------------------------------------------
# Onto the grid (main process)


class _RmfCache:
    """RMFs by RESPFILE name: found, read and regrouped once per pack section."""

    def __init__(self, directories: list[Path], substitutes: dict[str, str]) -> None:
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
    section = section_of(pha.instrument)
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
    _check_packable(pha.path, arrays)
    return section, arrays


def _check_packable(path: Path, arrays: dict) -> None:
    """What the pack stores (float32) is finite, some analysis bin is good and the ARF is
    not zero everywhere."""
    for name in ("counts", "background", "alpha", "exposure", "arf"):
        with np.errstate(over="ignore"):
            stored = np.asarray(arrays[name], np.float32)
        if not np.all(np.isfinite(stored)):
            raise OGIPError(path, f"{name} too large to store (float32): check the file")
    if not np.any(arrays["good"]):
        raise OGIPError(path, "no good-quality channel in the analysis band")
    if not np.any(arrays["arf"] > 0):
        raise OGIPError(path, "the ARF is zero at every energy of the analysis band")


def _bin_alpha(
    grid: Grid, alpha: np.ndarray, background: np.ndarray, binned: np.ndarray
) -> np.ndarray:
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
