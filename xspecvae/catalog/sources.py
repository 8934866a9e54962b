"""What a catalogue says about its sources: positions matched across observations, and
4XMM hardness ratios."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from numpy.typing import ArrayLike

# ---------------------------------------------------------------------------------------------
# Sources seen several times


def match_positions(ra: ArrayLike, dec: ArrayLike, radius_arcsec: float = 5.0) -> np.ndarray:
    """Source ids (0, 1, ... in order of first appearance) grouping positions (degrees)
    linked by separations below ``radius_arcsec`` (friends of friends). Non-finite
    positions get ids of their own."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    ra, dec = np.radians(np.asarray(ra, float)), np.radians(np.asarray(dec, float))
    xyz = np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=1)
    finite = np.all(np.isfinite(xyz), axis=1)
    xyz[~finite] = np.arange(3 * (~finite).sum()).reshape(-1, 3) + 10.0  # far from the sphere
    chord = 2 * np.sin(np.radians(radius_arcsec / 3600) / 2)
    pairs = cKDTree(xyz).query_pairs(chord, output_type="ndarray")
    n = len(xyz)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    _, first = np.unique(label, return_index=True)
    return np.argsort(np.argsort(first))[label]


# ---------------------------------------------------------------------------------------------
# Catalogue hardness ratios

#: The 4XMM energy bands 1-5 (keV).
BANDS_4XMM = ((0.2, 0.5), (0.5, 1.0), (1.0, 2.0), (2.0, 4.5), (4.5, 12.0))


def band_matrix(
    channel_lo: ArrayLike, channel_hi: ArrayLike, bands: Iterable[tuple[float, float]] = BANDS_4XMM
) -> np.ndarray:
    """(C, n_bands) 0/1: which band holds each channel's centre (channels outside: none), so
    that ``per_channel @ band_matrix(...)`` sums counts into bands."""
    centre = 0.5 * (np.asarray(channel_lo) + np.asarray(channel_hi))
    return np.stack([(centre >= lo) & (centre < hi) for lo, hi in bands], -1).astype(float)


def hardness_ratios(batch: dict, channel_lo: ArrayLike, channel_hi: ArrayLike) -> np.ndarray:
    """The 4XMM hardness ratios HR1-HR4 (B, 4), ``(R_{i+1} - R_i) / (R_{i+1} + R_i)`` of the
    net counts ``N - alpha B`` of good channels in the bands :data:`BANDS_4XMM` (one exposure per
    spectrum, so counts stand for rates). Negative net counts are clipped at 0; a ratio of two
    empty bands is 0."""
    net = np.clip(batch["counts"] - batch["alpha"] * batch["background"], 0.0, None)
    rates = (net * batch["good"]) @ band_matrix(channel_lo, channel_hi)
    soft, hard = rates[:, :-1], rates[:, 1:]
    total = soft + hard
    return np.divide(hard - soft, total, out=np.zeros_like(total), where=total > 0)
