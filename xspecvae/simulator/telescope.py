"""The simulated telescope: grid, responses, vignetted effective area, cross-sections and
background shapes (particle and sky, or real background spectra)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import ndtr

from xspecvae import physics
from xspecvae.absorption import CrossSection
from xspecvae.catalog import Grid
from xspecvae.instrument import Response, builtin_pn_area, builtin_pn_response
from xspecvae.ogip import (
    OGIPError,
    check_energy_match,
    read_arf,
    read_pha,
    read_rmf,
)
from xspecvae.simulator.spectra import _evaluate

#: Pack name of the built-in response (:func:`xspecvae.instrument.builtin_pn_response`).
BUILTIN_RMF_NAME = "builtin_pn.rmf"


def vignetting(energy: ArrayLike, offaxis: ArrayLike) -> np.ndarray:
    """Fraction of the on-axis effective area at ``offaxis`` arcmin: a simple model,
    ``exp(-(theta / theta0(E))^2)`` with theta0 falling linearly in log E from 20' at 1 keV
    to 12' at 8 keV (20' below 1 keV, extrapolated above 8 keV). About 0.8 at 1 keV and 0.5
    at 8 keV at 10', 0.57 and 0.21 at 15'. Shapes: ``energy`` (E,), ``offaxis`` (...) ->
    (..., E)."""
    energy = np.asarray(energy, dtype=float)
    theta0 = 20.0 - 8.0 * np.clip(np.log(energy) / np.log(8.0), 0.0, None)
    theta = np.asarray(offaxis, dtype=float)[..., None]
    return np.exp(-((theta / theta0) ** 2))


def builtin_particle_background(channel_lo: ArrayLike, channel_hi: ArrayLike) -> np.ndarray:
    """Analytic EPIC pn particle (filter-wheel-closed) background shape per channel (counts,
    arbitrary scale) for channels ``channel_lo``..``channel_hi`` keV: a continuum
    ``0.12 E^-0.35`` per keV, detector noise rising below 0.3 keV, and the fluorescence lines
    Al K-alpha 1.49, Ni K-alpha 7.47, Cu K-alpha 8.04, Zn K-alpha 8.63 and Cu K-beta 8.90 keV
    (equivalent widths read off the pn FWC spectrum) at the pn resolution."""
    lo, hi = np.asarray(channel_lo, dtype=float), np.asarray(channel_hi, dtype=float)
    centre = np.maximum(0.5 * (lo + hi), 1e-3)
    width = hi - lo
    continuum = 0.12 * centre**-0.35
    noise = 235.0 * np.exp(-centre / 0.06)
    shape = (continuum + noise) * width
    sigma = np.sqrt(0.12 * 3.65e-3 * centre + 0.035**2)  # as builtin_pn_response
    for energy, ew in ((1.487, 0.45), (7.472, 0.33), (8.040, 2.9), (8.630, 0.55), (8.900, 0.24)):
        flux = ew * 0.12 * energy**-0.35
        line = ndtr((hi - energy) / sigma) - ndtr((lo - energy) / sigma)
        shape = shape + flux * line
    return shape


# ---------------------------------------------------------------------------------------------
# The instrument: grid, responses, effective area, cross-sections, background shapes


@dataclass(eq=False)
class Telescope:
    grid: Grid
    names: list
    responses: list  # full responses (Response)
    matrices: list  # regrouped (E, C) float32
    arf: np.ndarray  # (E,) on-axis effective area on the model grid
    edges: np.ndarray  # (E + 1,) model grid
    band: np.ndarray  # (E,) share of each bin inside physics.FLUX_BAND
    sigma_gal: np.ndarray  # (E,) cm^2 per H
    sigma_log_energy: np.ndarray  # fine log grid for redshifted absorbers
    sigma_table: np.ndarray
    particle: np.ndarray  # (C,) summing to 1
    sky: np.ndarray  # (E,) sky photon spectrum (arbitrary scale)
    templates: np.ndarray | None  # (T, C) real background shapes summing to 1, or None

    @classmethod
    def build(
        cls,
        rmfs: Sequence[str | Path],
        arf: str | Path | None,
        background: str | Path | None,
        absorption: str | Path | None,
        background_spectra: Sequence[str | Path] = (),
    ) -> Telescope:
        """The telescope of the RMF files ``rmfs`` (none: the built-in pn response), the ARF
        ``arf``, the particle background spectrum ``background``, the cross-section table
        ``absorption`` and the real ``background_spectra`` (None each: built-in)."""
        read, responses, names, first_channel = _responses(rmfs)
        grid = Grid.from_response("pn", responses[0], first_channel=first_channel)
        matrices = []
        for name, response in zip(names, responses):
            try:
                matrices.append(grid.regroup(response))
            except ValueError as err:
                raise ValueError(f"{name} does not fit the grid of {names[0]}: {err}") from None
        full_area = _on_axis_area(arf, read, responses[0].energy_edges)
        edges = grid.energy_edges
        cross = (
            CrossSection.morrison_mccammon()
            if absorption is None
            else CrossSection.from_fits(absorption)
        )
        fine = np.geomspace(0.01, 100.0, 16_001)
        shape = partial(_background_shape, grid=grid, first_channel=first_channel)
        templates = np.stack([shape(p) for p in background_spectra]) if background_spectra else None
        if background is not None:
            particle = shape(background)
        else:
            r = responses[0]
            particle = grid.group(builtin_particle_background(r.channel_lo, r.channel_hi))
        if not np.all(np.isfinite(particle)) or particle.sum() <= 0:
            raise ValueError("the particle background has no counts in the analysis band")
        instrument = cls(
            grid=grid,
            names=names,
            responses=responses,
            matrices=matrices,
            arf=grid.cut(np.asarray(full_area, dtype=float)),
            edges=edges,
            band=physics.band_share(edges),
            sigma_gal=cross.on(edges),
            sigma_log_energy=np.log(np.sqrt(fine[1:] * fine[:-1])),
            sigma_table=cross.on(fine),
            particle=np.maximum(particle, 0) / np.maximum(particle, 0).sum(),
            sky=np.zeros(len(edges) - 1),
            templates=templates,
        )
        instrument.sky = instrument._sky()
        return instrument

    def _sky(self) -> np.ndarray:
        """Sky background photons: local hot bubble (0.1 keV plasma), Galactic halo (0.25 keV
        plasma behind 2e20 cm^-2) and the cosmic X-ray background (power law 1.42 behind
        2e20 cm^-2), each a third of the 0.2-2 keV photons."""
        one = np.ones(1)
        parts = [
            _evaluate("plasma", self.edges, 0 * one, 0.1 * one, one)[0],
            _evaluate("plasma", self.edges, 0 * one, 0.25 * one, one)[0],
            _evaluate("powerlaw", self.edges, 0 * one, 1.42 * one)[0],
        ]
        soft = physics.band_share(self.edges, 0.2, 2.0)
        screen = np.exp(-0.02e22 * self.sigma_gal)
        parts = [p / (p @ soft) for p in parts]
        return parts[0] + screen * (parts[1] + parts[2])

    def sigma_at(self, redshift: np.ndarray) -> np.ndarray:
        """Cross-sections (rows, E) at the rest-frame energies of the model bins."""
        log_e = np.log(np.sqrt(self.edges[1:] * self.edges[:-1]))
        x = log_e[None, :] + np.log1p(np.asarray(redshift, dtype=float))[:, None]
        return np.interp(x, self.sigma_log_energy, self.sigma_table)


def _responses(rmfs: Sequence[str | Path]) -> tuple[list, list[Response], list[str], int]:
    """The RMF files read (pure RMFs, of distinct names; none: the built-in pn response), their
    responses and names, and the first channel."""
    if rmfs:
        read = [read_rmf(p) for p in rmfs]
        for rmf in read:
            if rmf.includes_arf:
                raise OGIPError(rmf.path, "includes an effective area; give a pure RMF")
        responses = [Response.from_ogip(r) for r in read]
        names = [r.path.name for r in read]
        first_channel = read[0].first_channel
    else:
        read = []
        responses = [builtin_pn_response()]
        names = [BUILTIN_RMF_NAME]
        first_channel = 0
    if len(set(names)) != len(names):
        raise ValueError(f"RMF file names must differ: {names}")
    return read, responses, names, first_channel


def _on_axis_area(arf: str | Path | None, read: list, full_edges: np.ndarray) -> np.ndarray:
    """The on-axis effective area on the full RMF energy grid: the ARF file ``arf`` (checked
    against the first RMF, or the built-in response's grid), or the built-in pn area."""
    if arf is None:
        return builtin_pn_area(np.sqrt(full_edges[1:] * full_edges[:-1]))
    area = read_arf(arf)
    if read:
        check_energy_match(area, read[0])
    elif area.energy_lo.size != full_edges.size - 1 or not np.allclose(
        area.energy_lo, full_edges[:-1], rtol=1e-5
    ):
        raise OGIPError(area.path, "ARF energy grid differs from the built-in response's")
    return area.specresp


def _background_shape(path: str | Path, grid: Grid, first_channel: int) -> np.ndarray:
    """A background spectrum file on the analysis bins, summing to 1."""
    pha = read_pha(path)
    if pha.n_channel != grid.grouping.n_channel or pha.first_channel != first_channel:
        raise OGIPError(
            pha.path,
            f"{pha.n_channel} channels from {pha.first_channel}; the RMF has "
            f"{grid.grouping.n_channel} from {first_channel}",
        )
    binned = np.maximum(grid.group(pha.counts), 0.0)
    if not np.all(np.isfinite(binned)) or binned.sum() <= 0:
        raise OGIPError(pha.path, "no background counts in the analysis band")
    return binned / binned.sum()


def _full_response(name: str, known: list) -> Response:
    """The full (not regrouped) response a pack names: built-in, or a file among ``known``."""
    if name == BUILTIN_RMF_NAME:
        return builtin_pn_response()
    for path in known:
        if path.name == name and path.is_file():
            return Response.from_ogip(read_rmf(path))
    raise ValueError(f"RMF {name} of the pack not found: pass its file in rmfs")
