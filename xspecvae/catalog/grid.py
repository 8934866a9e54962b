"""The analysis grid of a pack section: channel bins no narrower than the resolution and the
model energy grid, made from a response and checked against others."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import h5py
import numpy as np

from xspecvae.instrument import Grouping, Response
from xspecvae.physics import FLUX_BAND

#: Share of an RMF's response to the analysis bins that may come from energy rows outside
#: the model grid before that RMF is refused.
OUTSIDE_TOLERANCE = 1e-4

#: Energies (keV) where the quality flags of pipeline products change, per section: EPIC pn
#: PPS spectra flag channels 0-60, below 0.32 keV. Analysis bins start there (as they do at the
#: flags of the first spectrum packed), so that no bin mixes flagged and good channels.
QUALITY_BREAKS = {"pn": (0.32,)}


@dataclass(frozen=True, eq=False)
class Grid:
    """An instrument's analysis channel grid (``grouping`` of the RMF channels, whose first
    channel number is ``first_channel``) and its model energy grid: the RMF energy rows
    ``rows[0]:rows[1]`` (of ``n_rmf_energy``) that reach the analysis bins."""

    instrument: str
    grouping: Grouping
    first_channel: int
    channel_lo: np.ndarray
    channel_hi: np.ndarray
    energy_edges: np.ndarray
    rows: tuple[int, int]
    n_rmf_energy: int

    @classmethod
    def from_response(
        cls,
        instrument: str,
        response: Response,
        *,
        first_channel: int = 0,
        emin: float = FLUX_BAND[0],
        emax: float = FLUX_BAND[1],
        oversample: float = 1.0,
        breaks: Iterable[float] = (),
    ) -> Grid:
        """Analysis bins ``emin``-``emax`` keV at least one FWHM/``oversample`` wide, and
        starting at each energy of ``breaks`` and of :data:`QUALITY_BREAKS` (see
        :meth:`Grouping.from_resolution`); model energies: the rows reaching them."""
        breaks = (*QUALITY_BREAKS.get(instrument, ()), *breaks)
        grouping = Grouping.from_resolution(response, emin, emax, oversample, breaks)
        reached = np.flatnonzero(grouping.apply(response.matrix).any(axis=1))
        first, last = int(reached[0]), int(reached[-1]) + 1
        return cls(
            instrument,
            grouping,
            first_channel,
            response.channel_lo[grouping.start],
            response.channel_hi[grouping.stop - 1],
            response.energy_edges[first : last + 1],
            (first, last),
            response.n_energy,
        )

    @property
    def n_channel(self) -> int:
        return self.grouping.n_groups

    @property
    def n_energy(self) -> int:
        return self.rows[1] - self.rows[0]

    def regroup(self, response: Response) -> np.ndarray:
        """The response's redistribution matrix on this grid (n_energy, n_channel); its
        own effective area is left out (ARFs are per source). Raises ValueError if
        its channels or energies differ from the grid's, or if it reaches the analysis bins
        from energies outside the model grid."""
        if response.n_channel != self.grouping.n_channel:
            raise ValueError(
                f"{response.n_channel} channels, the {self.instrument} grid has "
                f"{self.grouping.n_channel}"
            )
        first, last = self.rows
        edges = response.energy_edges
        if response.n_energy != self.n_rmf_energy or not np.allclose(
            edges[first : last + 1], self.energy_edges, rtol=1e-5
        ):
            raise ValueError(f"its energy grid differs from the {self.instrument} model grid")
        if not np.allclose(
            response.channel_lo[self.grouping.start], self.channel_lo, rtol=1e-4, atol=1e-6
        ):
            raise ValueError(f"its channel energies differ from the {self.instrument} grid")
        matrix = self.grouping.apply(response.matrix.astype(np.float64))
        total = np.abs(matrix).sum()
        outside = np.abs(matrix[:first]).sum() + np.abs(matrix[last:]).sum()
        if total == 0 or outside > OUTSIDE_TOLERANCE * total:
            raise ValueError(
                f"it reaches the analysis bins from energies outside the {self.instrument} "
                f"model grid ({outside / max(total, 1e-300):.1e} of its response)"
            )
        return matrix[first:last].astype(np.float32)

    def group(self, per_channel: np.ndarray) -> np.ndarray:
        """Sum a per-channel array (..., n_rmf_channel) onto the analysis bins."""
        return self.grouping.apply(per_channel)

    def cut(self, per_energy: np.ndarray) -> np.ndarray:
        """An array on the RMF energy grid (..., n_rmf_energy) restricted to the model grid."""
        per_energy = np.asarray(per_energy)
        if per_energy.shape[-1] != self.n_rmf_energy:
            raise ValueError(f"expected {self.n_rmf_energy} energies, got {per_energy.shape[-1]}")
        return per_energy[..., self.rows[0] : self.rows[1]]

    def _write(self, group: h5py.Group) -> None:
        group.attrs.update(first_channel=self.first_channel, n_rmf_energy=self.n_rmf_energy)
        group.attrs["n_channel_full"] = self.grouping.n_channel
        for name, values in (
            ("channel_lo", self.channel_lo),
            ("channel_hi", self.channel_hi),
            ("channel_start", self.grouping.start),
            ("channel_stop", self.grouping.stop),
            ("energy_edges", self.energy_edges),
            ("rmf_rows", np.array(self.rows)),
        ):
            group.create_dataset(name, data=values)

    @classmethod
    def _read(cls, group: h5py.Group) -> Grid:
        first, last = (int(v) for v in group["rmf_rows"][()])
        return cls(
            group.name.rsplit("/", 1)[-1],
            Grouping(
                group["channel_start"][()],
                group["channel_stop"][()],
                int(group.attrs["n_channel_full"]),
            ),
            int(group.attrs["first_channel"]),
            group["channel_lo"][()],
            group["channel_hi"][()],
            group["energy_edges"][()],
            (first, last),
            int(group.attrs["n_rmf_energy"]),
        )

    def same_as(self, other: Grid) -> bool:
        return (
            self.instrument == other.instrument
            and self.first_channel == other.first_channel
            and self.rows == other.rows
            and self.n_rmf_energy == other.n_rmf_energy
            and np.array_equal(self.grouping.start, other.grouping.start)
            and np.array_equal(self.grouping.stop, other.grouping.stop)
            and np.allclose(self.energy_edges, other.energy_edges, rtol=1e-6)
        )
