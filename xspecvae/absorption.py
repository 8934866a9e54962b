"""Photoelectric absorption, in JAX: cross-sections and the transmission of absorbers.

- :class:`CrossSection`: cm^2 per H atom, from a FITS table (e.g. ``xsect_tbabs_wilm.fits``)
  or Morrison & McCammon (1983), on any energy bins.
- :func:`absorption` and :func:`partial_covering` (XSPEC ``pcfabs``): the transmission of a
  column ``nh`` in 1e22 cm^-2, as XSPEC; ``jax.jit``-compiled, broadcast over leading axes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

__all__ = ["CrossSection", "absorption", "partial_covering"]


# Morrison & McCammon (1983), Table 2: sigma(E) = (c0 + c1 E + c2 E^2) E^-3 1e-24 cm^2 per H
# atom. Rows: upper energy of the segment (keV), c0, c1, c2; the first segment starts at 0.03.
# Checked against XSPEC's wabs table (xsect_wabs_angr.fits): equal to 1e-5 between the edges,
# which also settles c2 = +0.75 for 4.038-7.111 keV (the Ca K edge is a step up).
_MM83 = np.array(
    [
        [0.100, 17.3, 608.1, -2150.0],
        [0.284, 34.6, 267.9, -476.1],
        [0.400, 78.1, 18.8, 4.3],
        [0.532, 71.4, 66.8, -51.4],
        [0.707, 95.5, 145.8, -61.1],
        [0.867, 308.9, -380.6, 294.0],
        [1.303, 120.6, 169.3, -47.7],
        [1.840, 141.3, 146.8, -31.5],
        [2.471, 202.7, 104.7, -17.0],
        [3.210, 342.7, 18.7, 0.0],
        [4.038, 352.2, 18.7, 0.0],
        [7.111, 433.9, -2.4, 0.75],
        [8.331, 629.0, 30.9, 0.0],
        [10.00, 701.2, 25.2, 0.0],
    ]
)


@dataclass(frozen=True, eq=False)
class CrossSection:
    """Photoelectric cross-section ``sigma`` (cm^2 per H atom) tabulated at ``energy`` (keV,
    ascending); log-log interpolation between table points, log-log extrapolation of the end
    points beyond."""

    energy: np.ndarray
    sigma: np.ndarray
    name: str

    def __post_init__(self) -> None:
        energy = np.asarray(self.energy, dtype=float)
        sigma = np.asarray(self.sigma, dtype=float)
        if energy.ndim != 1 or energy.shape != sigma.shape or len(energy) < 2:
            raise ValueError("energy and sigma must be 1-d arrays of one length >= 2")
        if not (np.all(np.isfinite(energy)) and energy[0] > 0 and np.all(np.diff(energy) > 0)):
            raise ValueError("energy must be positive, finite and strictly ascending")
        if not (np.all(np.isfinite(sigma)) and np.all(sigma >= 0)):
            raise ValueError("sigma must be finite and >= 0")
        object.__setattr__(self, "energy", energy)
        object.__setattr__(self, "sigma", sigma)

    @classmethod
    def morrison_mccammon(cls) -> CrossSection:
        """Morrison & McCammon (1983) analytic fit (``wabs``): 0.03-10 keV, the first segment
        extended below 0.03 keV and the last above 10 keV (tabulated 1e-3 to 1e3 keV, with a
        step at each segment boundary)."""
        lows = np.concatenate([[1e-3], _MM83[:-1, 0]])
        highs = np.concatenate([_MM83[:-1, 0], [1e3]])
        energies, sigmas = [], []
        for lo, hi, (_, c0, c1, c2) in zip(lows, highs, _MM83):
            e = np.geomspace(lo, hi, max(8, int(200 * np.log10(hi / lo))))
            e[-1] = np.nextafter(hi, 0.0)  # the next segment starts at hi: a step
            energies.append(e)
            sigmas.append((c0 + c1 * e + c2 * e**2) / e**3 * 1e-24)
        return cls(np.concatenate(energies), np.concatenate(sigmas), "Morrison & McCammon (1983)")

    @classmethod
    def from_fits(cls, path: str | os.PathLike) -> CrossSection:
        """Read a table with ENERGY (keV) and SIGMA columns (e.g. ``xsect_tbabs_wilm.fits``).

        SIGMA in cm^2 per H atom, or in units of 1e-22 cm^2 (XSPEC's convention, so that
        ``tau = nh[1e22] * sigma``) when TUNIT says so, or when the values are too large to be
        cm^2 (median > 1e-10: such tables are often labelled ``cm^2`` regardless); ``barn`` and
        ``1e-24 cm^2`` are understood too. Raises :class:`xspecvae.ogip.OGIPError` naming the
        file for any problem."""
        from astropy.io import fits

        from xspecvae.ogip.access import OGIPError, _opened

        with _opened(path) as hdul:
            for hdu in hdul[1:]:
                if isinstance(hdu, fits.BinTableHDU) and {"ENERGY", "SIGMA"} <= {
                    name.upper() for name in hdu.columns.names
                }:
                    break
            else:
                raise OGIPError(path, "no binary table with ENERGY and SIGMA columns")
            energy = np.asarray(hdu.data["ENERGY"], dtype=float).ravel()
            sigma = np.asarray(hdu.data["SIGMA"], dtype=float).ravel()
            unit = str(hdu.columns["SIGMA"].unit or "").lower().replace(" ", "")
            label = hdu.name or "table"
            table = hdu.header.get("TABLE")
        unit = unit.replace("**", "^").replace("10^", "1e").replace("1.0e", "1e")
        if "1e-22" in unit:
            scale = 1e-22
        elif "1e-24" in unit or unit in ("barn", "barns", "b"):
            scale = 1e-24
        elif unit in ("", "cm^2", "cm2", "cm+2"):
            scale = 1e-22 if len(sigma) and np.median(sigma) > 1e-10 else 1.0
        else:
            raise OGIPError(path, f"SIGMA has unknown unit {unit!r} (want cm^2 or 1e-22 cm^2)")
        if len(energy) < 2:
            raise OGIPError(path, f"cross-section table has {len(energy)} rows (need >= 2)")
        order = np.argsort(energy, kind="stable")
        energy, sigma = energy[order], sigma[order] * scale
        if not (np.all(np.isfinite(energy)) and energy[0] > 0 and np.all(np.diff(energy) > 0)):
            raise OGIPError(path, "ENERGY must be positive, finite and without repeats")
        if not (np.all(np.isfinite(sigma)) and np.all(sigma >= 0)):
            raise OGIPError(path, "SIGMA must be finite and >= 0")
        name = f"{label} ({table})" if table else label
        return cls(energy, sigma, name)

    def at(self, energy: ArrayLike) -> np.ndarray:
        """sigma (cm^2) at ``energy`` (keV), log-log interpolated (numpy float64)."""
        x = np.log(np.asarray(energy, dtype=float))
        le = np.log(self.energy)
        ls = np.log(np.maximum(self.sigma, np.finfo(float).tiny))
        y = np.interp(x, le, ls)
        y = np.where(x < le[0], ls[0] + (x - le[0]) * (ls[1] - ls[0]) / (le[1] - le[0]), y)
        y = np.where(x > le[-1], ls[-1] + (x - le[-1]) * (ls[-1] - ls[-2]) / (le[-1] - le[-2]), y)
        return np.exp(y)

    def on(self, energy_edges: ArrayLike) -> np.ndarray:
        """sigma (cm^2 per H atom) per bin of ``energy_edges`` (keV, (..., n + 1)): the value
        at the bin's geometric centre, except in bins that contain an absorption edge (the
        table rising with energy), where it is the mean over 16 equal sub-bins in log E.
        Result (..., n), numpy float64."""
        edges = np.asarray(energy_edges, dtype=float)
        lo, hi = edges[..., :-1], edges[..., 1:]
        value = self.at(np.sqrt(lo * hi))
        rising = np.flatnonzero(np.diff(self.sigma) > 0)
        if len(rising):
            left, right = self.energy[rising], self.energy[rising + 1]
            # an edge lies in (left, right): the bin overlaps one of those intervals
            inside = np.searchsorted(left, hi, side="left") > np.searchsorted(right, lo, "right")
            if np.any(inside):
                t = (np.arange(16) + 0.5) / 16
                sub = lo[..., None] * (hi / lo)[..., None] ** t
                value = np.where(inside, self.at(sub).mean(axis=-1), value)
        return value


@jax.jit
def absorption(sigma: ArrayLike, nh: ArrayLike) -> jax.Array:
    """Photoelectric transmission ``exp(-nh 1e22 sigma)``: ``sigma`` cm^2 per H atom per bin
    (e.g. :meth:`CrossSection.on`), ``nh`` in 1e22 cm^-2 (XSPEC), broadcast over leading axes.
    Result (..., n)."""
    return jnp.exp(-jnp.asarray(nh)[..., None] * (jnp.asarray(sigma) * 1e22))


@jax.jit
def partial_covering(sigma: ArrayLike, nh: ArrayLike, fraction: ArrayLike) -> jax.Array:
    """Partial covering (XSPEC ``pcfabs``): ``fraction exp(-nh 1e22 sigma) + 1 - fraction``.
    Result (..., n)."""
    fraction = jnp.asarray(fraction)[..., None]
    return fraction * absorption(sigma, nh) + (1.0 - fraction)
