"""Whether files belong together: a spectrum, its RMF and ARF; its background's scaling."""

from __future__ import annotations

import numpy as np

from xspecvae.ogip.access import OGIPError
from xspecvae.ogip.records import Arf, Pha, Rmf

# ---------------------------------------------------------------------------------------------
# Several files


def check_match(pha: Pha, rmf: Rmf | None = None, arf: Arf | None = None) -> None:
    """Raise OGIPError unless the spectrum, RMF and ARF fit together: the same channels,
    and the same energy grid for ARF and RMF."""
    if rmf is not None:
        if pha.n_channel != rmf.n_channel:
            raise OGIPError(
                pha.path, f"{pha.n_channel} channels but RMF {rmf.path} has {rmf.n_channel}"
            )
        if pha.first_channel != rmf.first_channel:
            raise OGIPError(
                pha.path,
                f"channels start at {pha.first_channel} but RMF {rmf.path} channels start "
                f"at {rmf.first_channel}",
            )
    if arf is not None and rmf is not None:
        check_energy_match(arf, rmf)


def check_energy_match(arf: Arf, rmf: Rmf) -> None:
    """Raise OGIPError unless ARF and RMF share their energy grid (float32 precision)."""
    same = arf.energy_lo.shape == rmf.energy_lo.shape and (
        np.allclose(arf.energy_lo, rmf.energy_lo, rtol=1e-5, atol=1e-7)
        and np.allclose(arf.energy_hi, rmf.energy_hi, rtol=1e-5, atol=1e-7)
    )
    if not same:
        raise OGIPError(
            arf.path,
            f"ARF energy grid ({arf.energy_lo.size} bins) differs from that of RMF {rmf.path} "
            f"({rmf.energy_lo.size} bins)",
        )


def background_ratio(source: Pha, background: Pha) -> np.ndarray:
    """Per-channel ratio alpha = (BACKSCAL*EXPOSURE*AREASCAL)_src / (...)_bkg by which
    background counts scale to the source region; 0 where a scale column is unusable
    (zero or negative, allowed only in bad-quality channels)."""
    if source.n_channel != background.n_channel:
        raise OGIPError(
            background.path,
            f"{background.n_channel} channels but source {source.path} has {source.n_channel}",
        )
    if background.first_channel != source.first_channel:
        raise OGIPError(
            background.path,
            f"channels start at {background.first_channel} but those of source "
            f"{source.path} at {source.first_channel}",
        )
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        src = np.asarray(source.backscal) * source.exposure * np.asarray(source.areascal)
        bkg = (
            np.asarray(background.backscal) * background.exposure * np.asarray(background.areascal)
        )
        ratio = np.broadcast_to(src / bkg, (source.n_channel,)).astype(float)
    return np.where(np.isfinite(ratio), ratio, 0.0)
