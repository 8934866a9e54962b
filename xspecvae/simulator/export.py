"""Simulated packs written as OGIP files named like PPS products (spectra, backgrounds,
ARFs, RMFs), to exercise the real-data path."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from xspecvae.catalog import Grid, Pack
from xspecvae.errors import InputError
from xspecvae.instrument import Response
from xspecvae.ogip import (
    write_arf,
    write_pha,
    write_rmf,
)
from xspecvae.simulator.telescope import _full_response


def _ogip_names(obs_ids: np.ndarray) -> list[dict[str, str]]:
    """PPS-like file names of each row's source spectrum, background and ARF: the rows of an
    observation numbered 1, 2, ... as 4-digit hexadecimal source numbers."""
    seen: Counter = Counter()
    names = []
    for obs_id in map(str, obs_ids):
        seen[obs_id] += 1
        stem, src = f"P{obs_id}PNS001", f"{seen[obs_id]:04X}"
        names.append({k: f"{stem}{k}{src}.FTZ" for k in ("SRSPEC", "BGSPEC", "SRCARF")})
    return names


def write_ogip(
    pack_path: str | Path,
    directory: str | Path,
    *,
    instrument: str = "pn",
    rows: int | slice | Sequence[int] | np.ndarray | None = None,
    rmfs: str | Path | Iterable[str | Path] = (),
    overwrite: bool = False,
) -> list[Path]:
    """Write rows of a pack as OGIP files that ``xspecvae pack`` reads back.

    Per row: ``P<obs_id>PNS001SRSPEC<src>.FTZ`` (source spectrum), ``...BGSPEC<src>.FTZ``
    (background, BACKSCAL = 1/alpha) and ``...SRCARF<src>.FTZ`` (ARF on the full RMF energy
    grid, zero outside the model grid), ``src`` a 4-digit hex number counting the rows of an
    observation; plus each RMF used, once, under its pack name. Counts are put on the first
    RMF channel of each analysis bin (QUALITY and GROUPING 0), so that grouping the channels
    gives the pack's counts back exactly.

    The full RMFs come from ``rmfs`` (files named like the pack's RMFs), else from the paths in
    the pack's provenance; the built-in response is made again. Files already in
    ``directory`` under those names are refused unless ``overwrite``. Returns the paths written.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with Pack(pack_path, instrument) as pack:
        selected = np.arange(pack.n) if rows is None else np.arange(pack.n)[rows]
        selected = np.atleast_1d(selected)
        batch = pack.read(selected) if selected.size else None
        meta = {k: v[selected] for k, v in pack.meta.items()}
        files = _ogip_names(meta["obs_id"])
        used = [] if batch is None else [pack.rmf_names[i] for i in np.unique(batch["rmf_index"])]
        _refuse_existing(directory, [*used, *(n for f in files for n in f.values())], overwrite)
        if batch is None:
            return []
        known = [Path(p) for p in ([rmfs] if isinstance(rmfs, str | Path) else rmfs)]
        known += [Path(p) for p in pack.provenance.get("options", {}).get("rmfs", [])]
        responses, written = _write_rmfs(directory, pack, np.unique(batch["rmf_index"]), known)
        for i, names in enumerate(files):
            row = {k: v[i] for k, v in batch.items()}
            rmf = int(row["rmf_index"])
            header = _row_header(meta, i, pack.rmf_names[rmf], names)
            written += _write_row(directory, pack.grid, row, responses[rmf], names, header)
    return written


def _refuse_existing(directory: Path, names: Iterable[str], overwrite: bool) -> None:
    """An :class:`~xspecvae.errors.InputError` if any of ``names`` is in ``directory`` already,
    unless ``overwrite``."""
    there = [directory / n for n in names]
    there = [path for path in there if path.exists()]
    if there and not overwrite:
        raise InputError(
            there[0],
            f"exists, with {len(there) - 1} more files this export would replace; "
            "write elsewhere or pass --overwrite",
        )


def _write_rmfs(
    directory: Path, pack: Pack, indices: np.ndarray, known: list[Path]
) -> tuple[dict[int, Response], list[Path]]:
    """The full RMFs of the pack's RMFs ``indices`` (checked against the pack's), written under
    their pack names: the responses by index and the paths written."""
    grid, names = pack.grid, pack.rmf_names
    responses: dict[int, Response] = {}
    written: list[Path] = []
    for index in indices:
        response = _full_response(names[index], known)
        if not np.allclose(grid.regroup(response), pack.rmf[index], rtol=1e-4, atol=1e-7):
            raise ValueError(f"{names[index]} is not the RMF the pack was made with")
        responses[int(index)] = response
        edges = response.energy_edges
        written.append(
            write_rmf(
                directory / names[index],
                edges[:-1],
                edges[1:],
                response.matrix,
                response.channel_lo,
                response.channel_hi,
                first_channel=grid.first_channel,
                header=dict(TELESCOP="XMM", INSTRUME="EPN"),
            )
        )
    return responses, written


def _row_header(meta: dict, i: int, rmf_name: str, names: dict[str, str]) -> dict:
    """The header keywords of row ``i``'s spectra: source, observation, date and the files
    that go with them."""
    from astropy.time import Time

    header = dict(
        TELESCOP="XMM",
        INSTRUME="EPN",
        FILTER="Medium",
        OBJECT=str(meta["label"][i]),
        OBS_ID=str(meta["obs_id"][i]),
        SRC_RA=float(meta["ra"][i]),
        SRC_DEC=float(meta["dec"][i]),
        RESPFILE=rmf_name,
        ANCRFILE=names["SRCARF"],
        BACKFILE=names["BGSPEC"],
    )
    mjd = float(meta["mjd"][i])
    if np.isfinite(mjd):
        header["MJD-OBS"] = mjd
        header["DATE-OBS"] = Time(mjd, format="mjd", scale="tt").isot
    return header


def _write_row(
    directory: Path,
    grid: Grid,
    row: dict,
    response: Response,
    names: dict[str, str],
    header: dict,
) -> list[Path]:
    """One row's source and background spectra (counts on the first channel of each bin, the
    bad bins' channels QUALITY 5 in the source) and its ARF on the full RMF energy grid."""
    written = []
    alpha = float(np.median(row["alpha"]))
    for kind, values, backscal, hduclas2 in (
        ("SRSPEC", row["counts"], 1.0, "TOTAL"),
        ("BGSPEC", row["background"], 1.0 / alpha, "BKG"),
    ):
        channels = np.zeros(grid.grouping.n_channel, dtype=np.int64)
        channels[grid.grouping.start] = np.rint(values).astype(np.int64)
        extra = dict(header, HDUCLAS2=hduclas2)
        quality = None
        if kind == "BGSPEC":
            extra.update(BACKFILE="none", ANCRFILE="none")
        elif not row["good"].all():
            quality = np.zeros(grid.grouping.n_channel, dtype=np.int16)
            for j in np.flatnonzero(~row["good"]):
                quality[grid.grouping.start[j] : grid.grouping.stop[j]] = 5
        written.append(
            write_pha(
                directory / names[kind],
                channels,
                exposure=float(row["exposure"]),
                backscal=backscal,
                first_channel=grid.first_channel,
                header=extra,
                quality=quality,
            )
        )
    area = np.zeros(grid.n_rmf_energy)
    area[grid.rows[0] : grid.rows[1]] = row["arf"]
    edges = response.energy_edges
    written.append(
        write_arf(
            directory / names["SRCARF"],
            edges[:-1],
            edges[1:],
            area,
            header=dict(TELESCOP="XMM", INSTRUME="EPN"),
        )
    )
    return written
