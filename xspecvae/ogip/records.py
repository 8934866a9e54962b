"""What the OGIP readers return: spectra, ARFs and RMFs as plain dataclasses of numpy arrays."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xspecvae.ogip.access import locate


@dataclass(frozen=True, eq=False)
class Pha:
    """One spectrum. ``counts`` are counts (RATE spectra are multiplied by EXPOSURE and
    ``is_rate`` is set). ``backscal``/``areascal`` are floats or per-channel arrays.
    ``backfile``/``respfile``/``ancrfile`` are the header names (None when absent);
    :meth:`locate` finds them on disk."""

    path: Path
    channel: np.ndarray
    first_channel: int
    counts: np.ndarray
    is_rate: bool
    exposure: float
    backscal: float | np.ndarray
    areascal: float | np.ndarray
    quality: np.ndarray
    grouping: np.ndarray
    stat_err: np.ndarray | None
    poisserr: bool
    kind: str
    backfile: str | None
    respfile: str | None
    ancrfile: str | None
    telescope: str
    instrument: str
    filter: str
    object: str
    obs_id: str
    date_obs: str
    mjd_obs: float
    ra: float
    dec: float
    row: int | None = None

    @property
    def n_channel(self) -> int:
        return len(self.channel)

    def locate(self, which: str) -> Path | None:
        """Path of the file named by ``"backfile"``, ``"respfile"`` or ``"ancrfile"``
        (see :func:`locate`), or None."""
        name = getattr(self, which.lower())
        return None if name is None else locate(self.path.parent, name)


@dataclass(frozen=True, eq=False)
class Arf:
    """Effective area ``specresp`` (cm^2) on the energy bins ``energy_lo``..``energy_hi`` (keV)."""

    path: Path
    energy_lo: np.ndarray
    energy_hi: np.ndarray
    specresp: np.ndarray
    telescope: str
    instrument: str


@dataclass(frozen=True, eq=False)
class Rmf:
    """Redistribution matrix, dense ``(n_energy, n_channel)`` float32, columns in the order
    of the EBOUNDS channels. ``includes_arf`` is set for RSP files (effective area folded in)."""

    path: Path
    energy_lo: np.ndarray
    energy_hi: np.ndarray
    channel: np.ndarray
    e_min: np.ndarray
    e_max: np.ndarray
    matrix: np.ndarray
    first_channel: int
    includes_arf: bool
    telescope: str
    instrument: str
    filter: str

    @property
    def n_energy(self) -> int:
        return len(self.energy_lo)

    @property
    def n_channel(self) -> int:
        return len(self.channel)
