"""Photon spectra integrated over energy bins (photons/cm^2/s per bin), in JAX."""

from __future__ import annotations

import jax.numpy as jnp

__all__ = ["powerlaw"]


def powerlaw(energy_edges, index, norm=1.0):
    """Power law ``norm * E**-index`` (photons/cm^2/s/keV at 1 keV) integrated exactly over
    the bins between consecutive ``energy_edges`` (keV). ``index`` and ``norm`` broadcast
    over leading axes: result (..., n_bins)."""
    edges = jnp.asarray(energy_edges)
    slope = 1.0 - jnp.asarray(index)[..., None]
    log_lo = jnp.log(edges[:-1])
    width = jnp.log1p(jnp.diff(edges) / edges[:-1])  # log(E_hi/E_lo), exact for narrow bins
    # E_lo^s (exp(s w) - 1) / s, with expm1 for narrow bins and the limit w at s = 0
    zero = slope == 0
    safe = jnp.where(zero, 1.0, slope)
    integral = jnp.where(zero, width, jnp.expm1(safe * width) / safe) * jnp.exp(slope * log_lo)
    return jnp.asarray(norm)[..., None] * integral
