"""Instrument responses and folding.

A :class:`Response` maps a photon spectrum (photons/cm^2/s per energy bin) to expected counts
per channel: ``counts = exposure * (flux * arf) @ matrix``. Folding is JAX (jit, vmap, any
leading batch shape). The matrix is stored as dense column tiles that skip the zero blocks of
real redistribution matrices (about 6x fewer multiply-adds for the EPIC pn); see
``benchmarks/RESULTS.md`` for the measurement behind that choice.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike
from scipy.special import ndtr

from xspecvae.ogip import Arf, OGIPError, Rmf, check_energy_match, read_arf, read_rmf
from xspecvae.physics import FLUX_BAND

__all__ = ["Grouping", "Response", "builtin_pn_response", "builtin_pn_area"]

#: Channels per tile, and the share of dense multiply-adds that tiling must save to be used
#: by ``storage="auto"``; chosen by the measurements of benchmarks/RESULTS.md ("Why tiles"):
#: tiles win on full-resolution RMFs, one dense matrix on analysis grids of a few hundred
#: channels.
TILE_WIDTH = 256
TILED_IF_SAVING = 0.5


@dataclass(frozen=True, eq=False)
class Grouping:
    """Analysis bins made of contiguous channel runs: bin ``i`` sums channel indices
    ``start[i]:stop[i]`` (0-based positions, not channel numbers). Channels outside every
    bin are dropped. Grouping is a sum, exact for counts and for response columns."""

    start: np.ndarray
    stop: np.ndarray
    n_channel: int

    def __post_init__(self) -> None:
        start = np.asarray(self.start, dtype=np.int64)
        stop = np.asarray(self.stop, dtype=np.int64)
        if start.ndim != 1 or start.shape != stop.shape or start.size == 0:
            raise ValueError("Grouping needs equal, non-empty 1-d start and stop arrays")
        if np.any(start < 0) or np.any(stop > self.n_channel) or np.any(stop <= start):
            raise ValueError("Grouping bins must be non-empty runs inside the channel range")
        if np.any(start[1:] < stop[:-1]):
            raise ValueError("Grouping bins must be increasing and must not overlap")
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "stop", stop)

    @property
    def n_groups(self) -> int:
        return self.start.size

    def apply(self, values: np.ndarray) -> np.ndarray:
        """Sum ``values`` (..., n_channel) into bins (..., n_groups)."""
        values = np.asarray(values)
        if values.shape[-1] != self.n_channel:
            raise ValueError(f"expected {self.n_channel} channels, got {values.shape[-1]}")
        lengths = self.stop - self.start
        offsets = np.cumsum(lengths) - lengths  # where each bin starts among kept channels
        kept = np.repeat(self.start - offsets, lengths) + np.arange(lengths.sum())
        return np.add.reduceat(values[..., kept], offsets, axis=-1)

    @classmethod
    def from_ogip(cls, grouping: np.ndarray, quality: np.ndarray | None = None) -> Grouping:
        """Bins from a PHA GROUPING column (1 starts a bin, -1 continues it, 0 means no
        grouping). A bin holding any channel of non-zero QUALITY is dropped whole."""
        grouping = np.asarray(grouping)
        n = grouping.size
        starts = np.flatnonzero((grouping != -1) | (np.arange(n) == 0))
        stops = np.append(starts[1:], n)
        if quality is not None:
            bad = np.cumsum(np.asarray(quality) != 0)
            bad_in_bin = bad[stops - 1] - np.where(starts > 0, bad[starts - 1], 0)
            starts, stops = starts[bad_in_bin == 0], stops[bad_in_bin == 0]
        return cls(starts, stops, n)

    @classmethod
    def from_energy(
        cls, channel_lo: ArrayLike, channel_hi: ArrayLike, edges: ArrayLike
    ) -> Grouping:
        """Bins between consecutive ``edges`` (keV): each channel goes to the bin holding its
        centre; empty bins are skipped."""
        centre = 0.5 * (np.asarray(channel_lo) + np.asarray(channel_hi))
        edges = np.asarray(edges)
        index = np.searchsorted(edges, centre, side="right") - 1
        index[(centre < edges[0]) | (centre >= edges[-1])] = -1
        return cls._from_index(index)

    @classmethod
    def from_resolution(
        cls,
        response: Response,
        emin: float = FLUX_BAND[0],
        emax: float = FLUX_BAND[1],
        oversample: float = 1.0,
        breaks: ArrayLike = (),
    ) -> Grouping:
        """Bins from ``emin`` to ``emax`` keV, each at least FWHM/``oversample`` wide, the
        FWHM measured from the response's own matrix at the bin's lower edge. A bin also
        starts at the first channel at or above each energy of ``breaks`` (keV), e.g. where
        a pipeline's quality flags end, so that no bin mixes flagged and good channels (a bin
        left narrower than that before a break joins the one before it)."""
        fwhm = response.fwhm()
        known = np.isfinite(fwhm)
        lo, hi = response.channel_lo, response.channel_hi
        needed = np.interp(lo, response.energy_centres[known], fwhm[known]) / oversample
        centre = 0.5 * (lo + hi)
        forced = set(np.searchsorted(lo, np.asarray(breaks, float) - 1e-6).tolist())
        index = np.full(response.n_channel, -1)
        group, bin_start = -1, None
        for c in np.flatnonzero((centre >= emin) & (centre < emax)):
            wide = bin_start is not None and hi[c - 1] - lo[bin_start] >= needed[bin_start]
            if bin_start is not None and c in forced and not wide and group > 0:
                index[bin_start:c] = group - 1  # too narrow a bin before a break: merged back
                group -= 1
            if bin_start is None or wide or c in forced:
                group, bin_start = group + 1, c
            index[c] = group
        last = np.flatnonzero(index == group)
        if group > 0 and last[0] not in forced and hi[last[-1]] - lo[last[0]] < needed[last[0]]:
            index[last] = group - 1
        return cls._from_index(index)

    @classmethod
    def _from_index(cls, index: np.ndarray) -> Grouping:
        """From a bin index per channel (-1 for dropped channels); each bin's channels must
        be contiguous and bins in channel order."""
        kept = np.flatnonzero(index >= 0)
        if kept.size == 0:
            raise ValueError("no channel falls in any bin")
        groups = index[kept]
        if np.any(np.diff(groups) < 0):
            raise ValueError("bins must follow channel order")
        first = np.flatnonzero(np.diff(groups, prepend=groups[0] - 1) != 0)
        starts = kept[first]
        stops = kept[np.append(first[1:], kept.size) - 1] + 1
        if (stops - starts).sum() != kept.size:
            raise ValueError("each bin's channels must be contiguous")
        return cls(starts, stops, index.size)


class Response:
    """Instrument response on an energy grid (``energy_edges``, keV) and a channel grid
    (``channel_lo``/``channel_hi``, keV; channels may have gaps after grouping).

    ``matrix`` (n_energy, n_channel) is the redistribution, ``arf`` (n_energy,) the effective
    area in cm^2 (ones when the matrix already holds it). ``storage`` is ``"tiled"``,
    ``"dense"`` or ``"auto"`` (tiled when it saves half the work or more).
    """

    def __init__(
        self,
        energy_edges: ArrayLike,
        channel_lo: ArrayLike,
        channel_hi: ArrayLike,
        matrix: ArrayLike,
        arf: ArrayLike | None = None,
        *,
        storage: str = "auto",
        name: str = "",
    ) -> None:
        matrix = np.asarray(matrix, dtype=np.float32)
        edges = np.asarray(energy_edges, dtype=float)
        n_energy, n_channel = matrix.shape
        arf = np.ones(n_energy) if arf is None else np.asarray(arf, dtype=float)
        channel_lo = np.asarray(channel_lo, dtype=float)
        channel_hi = np.asarray(channel_hi, dtype=float)
        if edges.shape != (n_energy + 1,) or np.any(np.diff(edges) <= 0):
            raise ValueError(f"energy_edges must be {n_energy + 1} increasing values")
        if arf.shape != (n_energy,) or not channel_lo.shape == channel_hi.shape == (n_channel,):
            raise ValueError("arf and channel bounds must match the matrix shape")
        if storage not in ("auto", "dense", "tiled"):
            raise ValueError(f"storage must be 'auto', 'dense' or 'tiled', not {storage!r}")
        for array in (matrix, edges, arf, channel_lo, channel_hi):
            array.setflags(write=False)
        self.energy_edges, self.matrix, self.arf = edges, matrix, arf
        self.channel_lo, self.channel_hi, self.name = channel_lo, channel_hi, name
        self.layout = _tile_layout(matrix, storage)
        self._device: dict = {}
        self._fold = jax.jit(partial(_fold, self.layout))

    @classmethod
    def from_ogip(
        cls,
        rmf: Rmf | str | os.PathLike,
        arf: Arf | str | os.PathLike | None = None,
        *,
        storage: str = "auto",
    ) -> Response:
        """Response of an RMF (or RSP) and, optionally, an ARF on the same energy grid: read
        ones (:func:`~xspecvae.ogip.read_rmf`, :func:`~xspecvae.ogip.read_arf`) or their
        paths."""
        rmf = read_rmf(rmf) if isinstance(rmf, str | os.PathLike) else rmf
        arf = read_arf(arf) if isinstance(arf, str | os.PathLike) else arf
        if not isinstance(rmf, Rmf) or not (arf is None or isinstance(arf, Arf)):
            raise TypeError(
                "Response.from_ogip takes an RMF and an optional ARF: paths, or what "
                f"read_rmf and read_arf return (got {type(rmf).__name__}, {type(arf).__name__})"
            )
        if not np.allclose(rmf.energy_hi[:-1], rmf.energy_lo[1:], rtol=1e-5, atol=1e-7):
            raise OGIPError(rmf.path, "RMF energy bins are not contiguous")
        if arf is not None:
            check_energy_match(arf, rmf)
            if rmf.includes_arf:
                warnings.warn(
                    f"{rmf.path} already includes an effective area; "
                    f"multiplying by the ARF {arf.path} too",
                    stacklevel=2,
                )
        edges = np.append(rmf.energy_lo, rmf.energy_hi[-1])
        area = None if arf is None else arf.specresp
        return cls(
            edges, rmf.e_min, rmf.e_max, rmf.matrix, area, storage=storage, name=rmf.path.name
        )

    @property
    def n_energy(self) -> int:
        return self.matrix.shape[0]

    @property
    def n_channel(self) -> int:
        return self.matrix.shape[1]

    @property
    def energy_centres(self) -> np.ndarray:
        return 0.5 * (self.energy_edges[1:] + self.energy_edges[:-1])

    @property
    def storage(self) -> str:
        return "dense" if len(self.layout) == 1 else "tiled"

    def __repr__(self) -> str:
        return (
            f"Response({self.name!r}, {self.n_energy} energies "
            f"{self.energy_edges[0]:.3g}-{self.energy_edges[-1]:.3g} keV, "
            f"{self.n_channel} channels, {self.storage})"
        )

    def fold(
        self, photon_flux: ArrayLike, exposure: ArrayLike = 1.0, arf: ArrayLike | None = None
    ) -> jax.Array:
        """Expected counts per channel (..., n_channel) from photons/cm^2/s per energy bin
        (..., n_energy). ``exposure`` (s) broadcasts over the leading axes; ``arf`` replaces
        the response's own effective area (a per-source ARF, (..., n_energy))."""
        dtype = jnp.promote_types(jnp.result_type(photon_flux), jnp.float32)
        tiles, own_arf = self._device_arrays(dtype)
        return self._fold(photon_flux, exposure, own_arf if arf is None else arf, tiles)

    def regroup(self, grouping: Grouping) -> Response:
        """The response on analysis bins: matrix columns summed per bin, and the energy grid
        cut to the span of rows that reach a kept bin. Folding through it equals folding
        through this response and grouping the counts."""
        if grouping.n_channel != self.n_channel:
            raise ValueError(
                f"grouping is for {grouping.n_channel} channels, response has {self.n_channel}"
            )
        matrix = grouping.apply(self.matrix.astype(np.float64))
        reached = np.flatnonzero(matrix.any(axis=1))
        if reached.size == 0:
            raise ValueError("no energy reaches the kept channels")
        first, last = reached[0], reached[-1] + 1
        return Response(
            self.energy_edges[first : last + 1],
            self.channel_lo[grouping.start],
            self.channel_hi[grouping.stop - 1],
            matrix[first:last],
            self.arf[first:last],
            name=self.name,
        )

    def fwhm(self) -> np.ndarray:
        """Width (keV) of each energy row's redistribution above half its maximum; NaN for
        rows that reach no channel."""
        widths = self.channel_hi - self.channel_lo
        peak = self.matrix.max(axis=1, keepdims=True)
        above = (self.matrix >= 0.5 * peak) & (peak > 0)
        fwhm = (above * widths).sum(axis=1)
        return np.where(peak[:, 0] > 0, fwhm, np.nan)

    def _device_arrays(self, dtype: np.dtype) -> tuple:
        """Tiles and ARF on the device in ``dtype``, made once (concrete even when first asked
        for under a trace)."""
        key = jnp.dtype(dtype)
        if key not in self._device:
            with jax.ensure_compile_time_eval():
                tiles = tuple(
                    jnp.asarray(self.matrix[e0:e1, c0:c1], dtype=key)
                    for e0, e1, c0, c1 in self.layout
                )
                self._device[key] = tiles, jnp.asarray(self.arf, dtype=key)
        return self._device[key]


def _tile_layout(matrix: np.ndarray, storage: str):
    """Column tiles ``(e0, e1, c0, c1)``: channels c0:c1 receive only from energies e0:e1."""
    n_energy, n_channel = matrix.shape
    dense = ((0, n_energy, 0, n_channel),)
    if storage == "dense" or (storage == "auto" and n_channel < 2 * TILE_WIDTH):
        return dense
    nonzero = matrix != 0
    tiles = []
    for c0 in range(0, n_channel, TILE_WIDTH):
        c1 = min(n_channel, c0 + TILE_WIDTH)
        rows = np.flatnonzero(nonzero[:, c0:c1].any(axis=1))
        e0, e1 = (rows[0], rows[-1] + 1) if rows.size else (0, 0)
        tiles.append((int(e0), int(e1), c0, c1))
    work = sum((e1 - e0) * (c1 - c0) for e0, e1, c0, c1 in tiles)
    if storage == "auto" and work > (1 - TILED_IF_SAVING) * n_energy * n_channel:
        return dense
    return tuple(tiles)


def _fold(
    layout: tuple[tuple[int, int, int, int], ...],
    flux: jax.Array,
    exposure: jax.Array,
    arf: jax.Array,
    tiles: tuple[jax.Array, ...],
):
    dtype = tiles[0].dtype
    weighted = jnp.asarray(flux, dtype) * jnp.asarray(arf, dtype)
    exposure = jnp.asarray(exposure, dtype)
    parts = []
    for (e0, e1, c0, c1), tile in zip(layout, tiles):
        if e1 > e0:
            parts.append(
                jnp.matmul(weighted[..., e0:e1], tile, precision=jax.lax.Precision.HIGHEST)
            )
        else:
            parts.append(jnp.zeros(weighted.shape[:-1] + (c1 - c0,), weighted.dtype))
    counts = parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=-1)
    return counts * exposure[..., None]


# ---------------------------------------------------------------------------------------------
# Built-in EPIC pn-like response

#: Parameters of :func:`builtin_pn_area`, fitted (log least squares, 0.15-12 keV) to the pn
#: ARF of NGC 7793 ULX-4 (medium filter, near on-axis): scale (cm^2), high-energy cut-off
#: (keV) and slope, absorption depths below/above the C K, O K and Si K edges with their
#: energy slope, and the fractional drops at the Au M5 and M4 edges.
_PN_AREA = dict(
    scale=1261.7,
    cutoff=8.647,
    slope=7.118,
    tau=0.0895,
    tau_c=0.0782,
    tau_o=0.0111,
    tau_si=0.2409,
    tau_index=1.858,
    au_m5=0.2376,
    au_m4=0.1678,
)


def builtin_pn_area(energy: ArrayLike) -> np.ndarray:
    """Analytic EPIC pn effective area (cm^2) at ``energy`` (keV): a smooth mirror cut-off,
    filter/window absorption with C, O and Si K edges, and the Au M edges. An approximation:
    within about 10% of a real on-axis pn ARF from 0.5 to 10 keV, 20% near the edges."""
    e = np.asarray(energy, dtype=float)
    p = _PN_AREA
    depth = (
        p["tau"]
        + p["tau_c"] * (e >= 0.284)
        + p["tau_o"] * (e >= 0.532)
        + p["tau_si"] * (e >= 1.839)
    )
    window = np.exp(-depth * e ** -p["tau_index"])
    gold = (1 - p["au_m5"] * (e >= 2.206)) * (1 - p["au_m4"] * (e >= 2.291))
    return p["scale"] * window * gold / (1 + (e / p["cutoff"]) ** p["slope"])


def builtin_pn_response(n_energy: int = 1200, *, storage: str = "auto") -> Response:
    """An EPIC pn-like response needing no files: 4096 channels of 5 eV, a log energy grid
    0.05-15 keV, Gaussian redistribution with silicon Fano and read-noise broadening
    (FWHM about 100 eV at 1 keV, 150 eV at 6.4 keV), and :func:`builtin_pn_area`.

    An approximation for demonstrations and simulations: no low-energy shoulder, no pile-up,
    no off-axis dependence. Use real RMFs and ARFs for science.
    """
    edges = np.geomspace(0.05, 15.0, n_energy + 1)
    centre = np.sqrt(edges[1:] * edges[:-1])
    channel_lo = np.arange(4096) * 0.005
    channel_hi = channel_lo + 0.005
    # sigma^2 = Fano * w_Si * E + noise^2 (keV): F = 0.12, w = 3.65 eV, noise = 35 eV rms
    sigma = np.sqrt(0.12 * 3.65e-3 * centre + 0.035**2)
    reached = int(np.searchsorted(channel_lo, edges[-1] + 10 * sigma[-1]))
    matrix = np.zeros((n_energy, channel_lo.size))
    z_hi = (channel_hi[None, :reached] - centre[:, None]) / sigma[:, None]
    z_lo = (channel_lo[None, :reached] - centre[:, None]) / sigma[:, None]
    matrix[:, :reached] = ndtr(z_hi) - ndtr(z_lo)
    matrix[matrix < 1e-6 * matrix.max(axis=1, keepdims=True)] = 0.0  # like LO_THRES in RMFs
    return Response(
        edges,
        channel_lo,
        channel_hi,
        matrix,
        builtin_pn_area(centre),
        storage=storage,
        name="builtin-pn",
    )
