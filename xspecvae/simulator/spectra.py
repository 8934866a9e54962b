"""Spectral components of the simulated classes, folded through each row's response, and the
counts drawn from them."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import jax
import numpy as np

from xspecvae import physics
from xspecvae.absorption import absorption, partial_covering

if TYPE_CHECKING:
    from xspecvae.simulator.telescope import Telescope

#: Rows per call of a compiled spectral model (fixed, so each model compiles once per grid).
BLOCK = 64

_KEV_TO_ERG = 1.602176634e-9


# ---------------------------------------------------------------------------------------------
# Spectral components (photons/cm^2/s per bin, normalisation 1)


@partial(jax.jit, static_argnames="kind")
def _block(kind: str, edges: jax.Array, z: jax.Array, a: jax.Array, b: jax.Array):
    one = jax.numpy.ones_like(a)
    if kind == "powerlaw":
        return physics.redshifted(physics.powerlaw, edges, z, a, one)
    if kind == "blackbody":
        return physics.redshifted(physics.blackbody, edges, z, a, one)
    if kind == "diskbb":
        return physics.redshifted(physics.diskbb, edges, z, a, one)
    if kind == "plasma":
        return physics.redshifted(physics.plasma, edges, z, a, one, b)
    if kind == "line":
        return physics.redshifted(physics.gaussian_line, edges, z, a, b, one)
    raise ValueError(kind)


def _evaluate(
    kind: str, edges: np.ndarray, z: np.ndarray, a: np.ndarray, b: np.ndarray | None = None
) -> np.ndarray:
    """A component for each row (z, a, b), computed BLOCK rows at a time: (rows, E)."""
    z, a = np.asarray(z, np.float32), np.asarray(a, np.float32)
    b = np.ones_like(a) if b is None else np.asarray(b, np.float32)
    rows = z.size
    out = np.empty((rows, len(edges) - 1), dtype=np.float32)
    if rows == 0:
        return out
    padded = -(-rows // BLOCK) * BLOCK
    z, a, b = (np.resize(v, padded) for v in (z, a, b))  # pads with valid values
    edges = jax.numpy.asarray(edges, dtype=jax.numpy.float32)
    for start in range(0, rows, BLOCK):
        part = slice(start, start + BLOCK)
        values = np.asarray(_block(kind, edges, z[part], a[part], b[part]))
        out[start : start + BLOCK] = values[: rows - start]
    return out


# ---------------------------------------------------------------------------------------------
# Spectra, folding and counts


def _spectra(instrument: Telescope, label: np.ndarray, p: dict) -> dict:
    """Observed photon spectra (rows, E) per unit unabsorbed 0.2-12 keV photon flux, the
    component normalisations per unit flux, and the observed photon and energy fluxes per
    unit flux."""
    edges, band = instrument.edges, instrument.band
    z = np.nan_to_num(p["redshift"], nan=0.0)
    continuum, coefficient, raw_plasma = _continua(instrument, _shares(label, p), z, p)
    lines = _lines(instrument, label, z, p, coefficient, raw_plasma)
    total = (continuum.astype(float) @ band) + (lines.astype(float) @ band)
    scale = 1.0 / total
    continuum *= scale[:, None].astype(np.float32)
    lines *= scale[:, None].astype(np.float32)
    for name in coefficient:
        coefficient[name] = np.where(coefficient[name] > 0, coefficient[name] * scale, np.nan)
    transmission = _transmission(instrument, label, z, p)
    galactic = np.asarray(absorption(instrument.sigma_gal, p["nh_gal"]), dtype=np.float32)
    observed = galactic * (transmission * continuum + lines)
    centre = np.sqrt(edges[1:] * edges[:-1])
    return dict(
        observed=observed,
        coefficient=coefficient,
        photon_flux=observed.astype(float) @ band,
        energy_flux=(observed.astype(float) * centre) @ band * _KEV_TO_ERG,
    )


#: The parameters (shape and second, if any) of each continuum component.
_ARGUMENTS = {
    "powerlaw": ("gamma", None),
    "blackbody": ("bb_kt", None),
    "diskbb": ("t_in", None),
    "plasma": ("kt", "abundance"),
    "plasma2": ("kt2", "abundance"),
}


def _shares(label: np.ndarray, p: dict) -> dict[str, np.ndarray]:
    """Each continuum component's share of the unabsorbed band flux, per row."""
    disc = np.nan_to_num(p["disc_fraction"])
    second = np.nan_to_num(p["plasma2_fraction"])
    has_bb, has_gamma = np.isfinite(p["bb_kt"]), np.isfinite(p["gamma"])
    return {
        "powerlaw": np.select(
            [label == "AGN", label == "XRB", label == "ULX", label == "TDE"],
            [1.0, 1.0 - disc, (1.0 - disc) * has_gamma, 1.0 * has_gamma],
            0.0,
        ),
        "blackbody": np.select(
            [label == "SSS", label == "ULX", label == "TDE"],
            [1.0, (1.0 - disc) * has_bb, 1.0 * has_bb],
            0.0,
        ),
        "diskbb": np.where((label == "XRB") | (label == "ULX"), disc, 0.0),
        "plasma": np.select(
            [label == "star", (label == "CV") | (label == "cluster")], [1.0 - second, 1.0], 0.0
        ),
        "plasma2": np.where(label == "star", second, 0.0),
    }


def _continua(instrument: Telescope, share: dict, z: np.ndarray, p: dict):
    """The sum of the continuum components (rows, E), each scaled to its ``share`` of the band
    flux; their coefficients (``line`` still 0) and the plasma rows and unscaled spectra (or
    None), for the lines."""
    edges, band = instrument.edges, instrument.band
    n = z.size
    continuum = np.zeros((n, edges.size - 1), dtype=np.float32)
    coefficient = {name: np.zeros(n) for name in (*share, "line")}
    raw_plasma = None
    for name, fraction in share.items():
        rows = np.flatnonzero(fraction > 0)
        if rows.size == 0:
            continue
        a, b = _ARGUMENTS[name]
        kind = "plasma" if name == "plasma2" else name
        raw = _evaluate(kind, edges, z[rows], p[a][rows], None if b is None else p[b][rows])
        c = fraction[rows] / np.maximum(raw.astype(float) @ band, 1e-300)
        coefficient[name][rows] = c
        continuum[rows] += (c[:, None] * raw).astype(np.float32)
        if name == "plasma":
            raw_plasma = (rows, raw)
    return continuum, coefficient, raw_plasma


def _lines(
    instrument: Telescope,
    label: np.ndarray,
    z: np.ndarray,
    p: dict,
    coefficient: dict,
    raw_plasma: tuple[np.ndarray, np.ndarray] | None,
) -> np.ndarray:
    """The lines (rows, E): EW (rest frame) against the power law (AGN) or the plasma
    continuum (CV); sets ``coefficient["line"]``."""
    edges = instrument.edges
    n, n_energy = label.size, edges.size - 1
    lines = np.zeros((n, n_energy), dtype=np.float32)
    rows = np.flatnonzero(np.isfinite(p["line_ew"]))
    if rows.size == 0:
        return lines
    energy = p["line_energy"][rows]
    density = np.where(
        label[rows] == "AGN", coefficient["powerlaw"][rows] * energy ** -p["gamma"][rows], 0.0
    )
    if raw_plasma is not None:  # plasma continuum density at the line, from its bin
        plasma_rows, raw = raw_plasma
        position = np.full(n, -1)
        position[plasma_rows] = np.arange(plasma_rows.size)
        thermal = position[rows] >= 0
        bins = np.clip(np.searchsorted(edges, energy / (1 + z[rows])) - 1, 0, n_energy - 1)
        per_kev = raw[np.maximum(position[rows], 0), bins] / np.diff(edges)[bins]
        per_kev = coefficient["plasma"][rows] * per_kev
        density = np.where(thermal & (label[rows] != "AGN"), per_kev, density)
    c = p["line_ew"][rows] * density
    coefficient["line"][rows] = c
    raw = _evaluate("line", edges, z[rows], energy, p["line_sigma"][rows])
    lines[rows] = (c[:, None] * raw).astype(np.float32)
    return lines


def _transmission(instrument: Telescope, label: np.ndarray, z: np.ndarray, p: dict) -> np.ndarray:
    """The intrinsic absorbers' transmission (rows, E): at the source's redshift (AGN: all but
    a scattered fraction), and partial covering for CVs (lines escape it; Galactic
    absorption comes on top, for all)."""
    transmission = np.ones((label.size, instrument.edges.size - 1), dtype=np.float32)
    rows = np.flatnonzero(np.isfinite(p["nh"]))
    if rows.size:
        sigma = instrument.sigma_at(z[rows])
        covered = np.where(
            label[rows] == "AGN", 1.0 - np.nan_to_num(p["scatter_fraction"][rows]), 1.0
        )
        transmission[rows] = np.asarray(partial_covering(sigma, p["nh"][rows], covered))
    rows = np.flatnonzero(np.isfinite(p["cover_nh"]))
    if rows.size:
        transmission[rows] *= np.asarray(
            partial_covering(instrument.sigma_gal, p["cover_nh"][rows], p["cover_fraction"][rows])
        )
    return transmission


def _fold(instrument: Telescope, weighted: np.ndarray, rmf_index: np.ndarray) -> np.ndarray:
    """Counts per second per channel (rows, C) of photons x area ``weighted`` (rows, E)."""
    out = np.empty((weighted.shape[0], instrument.grid.n_channel), dtype=np.float32)
    for index, matrix in enumerate(instrument.matrices):
        rows = np.flatnonzero(rmf_index == index)
        if rows.size:
            out[rows] = weighted[rows] @ matrix
    return out
