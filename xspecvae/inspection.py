"""What ``xspecvae inspect`` reports: each OGIP file read and checked against the files its
header names, and a description of the built-in response (plain dicts, JSON-able)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from xspecvae.catalog import BANDS_4XMM, band_matrix
from xspecvae.instrument import Grouping, builtin_pn_response
from xspecvae.ogip import (
    Arf,
    OGIPError,
    Pha,
    Rmf,
    background_ratio,
    check_match,
    read_arf,
    read_ogip,
    read_pha,
    read_rmf,
)
from xspecvae.physics import FLUX_BAND, powerlaw

__all__ = ["inspect_file", "describe_builtin"]


def inspect_file(
    path: Path,
    rmf_dirs: Sequence[str | os.PathLike] = (),
    substitutes: dict[str, str] | None = None,
) -> dict:
    """One file's report: ``path``, ``status`` (ok, incomplete: a file it names is missing;
    error), ``type``, a ``summary`` and the ``problems`` found; never raises for a bad file."""
    report = {"path": str(path), "status": "ok", "type": None, "summary": {}, "problems": []}
    try:
        item = read_ogip(path)
    except OGIPError as exc:
        report.update(status="error", problems=[exc.problem])
        return report
    if isinstance(item, list):
        report.update(type="PHA-II", summary={"spectra": len(item)})
        for spectrum in item:
            _check_spectrum(spectrum, report, rmf_dirs, substitutes)
    elif isinstance(item, Pha):
        report.update(type="PHA", summary=_pha_summary(item))
        _check_spectrum(item, report, rmf_dirs, substitutes)
    elif isinstance(item, Arf):
        report.update(
            type="ARF",
            summary={
                "energies": item.energy_lo.size,
                "range_keV": [
                    round(float(item.energy_lo[0]), 4),
                    round(float(item.energy_hi[-1]), 4),
                ],
                "max_area_cm2": float(item.specresp.max()),
            },
        )
    elif isinstance(item, Rmf):
        report.update(
            type="RSP" if item.includes_arf else "RMF",
            summary={
                "energies": item.n_energy,
                "channels": item.n_channel,
                "first_channel": item.first_channel,
                "nonzero": int(np.count_nonzero(item.matrix)),
            },
        )
    return report


def _pha_summary(pha: Pha) -> dict:
    return {
        "kind": pha.kind,
        "channels": pha.n_channel,
        "counts": float(pha.counts.sum()),
        "exposure_s": pha.exposure,
        "instrument": pha.instrument,
        "obs_id": pha.obs_id,
        "object": pha.object,
    }


def _check_spectrum(
    pha: Pha,
    report: dict,
    rmf_dirs: Sequence[str | os.PathLike] = (),
    substitutes: dict[str, str] | None = None,
) -> None:
    """Read the files the spectrum names (its RMF also in ``rmf_dirs``, or a substitute, as
    ``pack`` finds it) and check that they fit; record what does not."""
    from xspecvae.products import locate_rmf

    where = "" if pha.row is None else f"row {pha.row}: "
    found = {}
    for key in ("respfile", "ancrfile", "backfile"):
        name = getattr(pha, key)
        if name is None:
            continue
        path = pha.locate(key)
        if key == "respfile" and path is None:
            path, substituted = locate_rmf(pha, rmf_dirs, substitutes)
            if substituted and path is not None:
                report["summary"]["rmf_substitute"] = path.name
        if path is None:
            report["problems"].append(f"{where}{key.upper()} {name} not found")
            if report["status"] == "ok":
                report["status"] = "incomplete"
        else:
            found[key] = path
    try:
        rmf = _cached_rmf(found["respfile"]) if "respfile" in found else None
        arf = read_arf(found["ancrfile"]) if "ancrfile" in found else None
        check_match(pha, rmf, arf)
        if "backfile" in found:
            alpha = background_ratio(pha, read_pha(found["backfile"]))
            report["summary"]["alpha"] = float(np.median(alpha[pha.quality == 0]))
    except OGIPError as exc:
        report["status"] = "error"
        report["problems"].append(f"{where}{exc}")


@lru_cache(maxsize=8)
def _cached_rmf(path: Path) -> Rmf:
    return read_rmf(path)


def describe_builtin() -> dict:
    """The built-in pn-like response: area, resolution, analysis grid, and the counts of a
    reference power law folded through it per 4XMM band."""
    response = builtin_pn_response()
    grouping = Grouping.from_resolution(response)
    analysis = response.regroup(grouping)
    centres = response.energy_centres
    fwhm = response.fwhm()
    index, norm, exposure = 1.7, 1e-3, 1e4
    flux = powerlaw(analysis.energy_edges, index, norm)
    counts = np.asarray(analysis.fold(flux, exposure))
    in_bands = counts @ band_matrix(analysis.channel_lo, analysis.channel_hi)
    bands = {f"{lo}-{hi}": float(c) for (lo, hi), c in zip(BANDS_4XMM, in_bands)}
    return {
        "response": repr(response),
        "effective_area_cm2": {
            f"{e} keV": float(np.interp(e, centres, response.arf)) for e in (0.5, 1.0, 6.0, 10.0)
        },
        "fwhm_eV": {f"{e} keV": 1e3 * float(np.interp(e, centres, fwhm)) for e in (1.0, 6.4)},
        "analysis_grid": {
            "bins": grouping.n_groups,
            "range_keV": list(FLUX_BAND),
            "energies": analysis.n_energy,
        },
        "reference_source": {
            "photon_index": index,
            "norm_at_1keV": norm,
            "exposure_s": exposure,
            "counts_per_4xmm_band": bands,
        },
    }
