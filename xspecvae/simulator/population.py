"""The simulated population: classes, their fractions and parameters, counts, exposures,
repeat observations and how sources vary between them."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy.special import ndtr, ndtri

CLASSES = ("AGN", "star", "cluster", "XRB", "CV", "ULX", "SSS", "TDE")
#: Default class fractions, roughly those of identified serendipitous XMM sources at high
#: Galactic latitude: AGN the large majority, then coronal stars and galaxy clusters; X-ray
#: binaries, cataclysmic variables, ULXs, supersoft sources and TDEs rare.
CLASS_FRACTIONS = {
    "AGN": 0.69,
    "star": 0.14,
    "cluster": 0.08,
    "XRB": 0.03,
    "CV": 0.03,
    "ULX": 0.015,
    "SSS": 0.01,
    "TDE": 0.005,
}
#: Expected source counts (analysis band): N(>S) ~ S^-slope between these limits.
SOURCE_COUNTS = dict(minimum=20.0, maximum=1e5, slope=1.5)
#: Expected background counts in the source region: log10 B ~ N(log10(median * T / 30 ks), dex).
BACKGROUND_COUNTS = dict(median=100.0, dex=0.4)
#: Exposure (s): log-normal of this median and log-sigma, truncated to the range.
EXPOSURE = dict(median=30e3, sigma=0.7, minimum=5e3, maximum=130e3)
ALPHA_RANGE = (0.05, 0.3)  # source / background region area ratio, log-uniform
OFFAXIS_MAX = 15.0  # arcmin, uniform in area
PARTICLE_FRACTION = (0.3, 0.8)  # particle share of the background counts, uniform
MJD_RANGE = (51544.0, 60676.0)  # 2000-01-01 to 2025-01-01
_FLOATS = (
    "nh_gal",
    "nh",
    "redshift",
    "gamma",
    "scatter_fraction",
    "line_energy",
    "line_ew",
    "line_sigma",
    "kt",
    "kt2",
    "plasma2_fraction",
    "abundance",
    "t_in",
    "disc_fraction",
    "bb_kt",
    "cover_nh",
    "cover_fraction",
)
#: Truth columns: parameters (NaN where not applicable; columns in 1e22 cm^-2, keV, rest-frame
#: line energies and EWs), the XRB ``state``, the epoch's flux relative to the first epoch,
#: fluxes in 0.2-12 keV (observed frame; photons/cm^2/s, absorbed and not; erg/cm^2/s
#: absorbed), component normalisations in :mod:`xspecvae.physics` units, expected source and
#: background counts in the source region, S / sqrt(S + B), and the particle share of the
#: background.
TRUTH = (
    *_FLOATS,
    "state",
    "flux_factor",
    "photon_flux",
    "photon_flux_unabsorbed",
    "energy_flux",
    "norm_powerlaw",
    "norm_blackbody",
    "norm_diskbb",
    "norm_plasma",
    "norm_plasma2",
    "norm_line",
    "expected_counts",
    "expected_background",
    "snr",
    "particle_fraction",
)


# ---------------------------------------------------------------------------------------------
# Drawing the population


def _class_weights(fractions: Mapping[str, float] | None) -> np.ndarray:
    fractions = CLASS_FRACTIONS if fractions is None else dict(fractions)
    unknown = set(fractions) - set(CLASSES)
    if unknown:
        raise ValueError(f"unknown classes {sorted(unknown)}; known: {list(CLASSES)}")
    weights = np.array([float(fractions.get(c, 0.0)) for c in CLASSES])
    if np.any(weights < 0) or not np.isfinite(weights).all() or weights.sum() <= 0:
        raise ValueError("class fractions must be non-negative with a positive sum")
    return weights / weights.sum()


def _loguniform(rng: np.random.Generator, lo: float, hi: float, size: int):
    return np.exp(rng.uniform(np.log(lo), np.log(hi), size))


def _truncated_normal(
    rng: np.random.Generator, mean: float, sd: float, lo: float, hi: float, size: int
):
    a, b = ndtr((lo - mean) / sd), ndtr((hi - mean) / sd)
    return mean + sd * ndtri(rng.uniform(a, b, size))


def _first_epochs(rng: np.random.Generator, m: int, min_counts: float, slope: float) -> dict:
    """Exposure, expected source and background counts and observed total counts of ``m``
    first observations that pass the ``min_counts`` cut (candidates drawn until enough do);
    source counts from N(>S) ~ S^-slope (log-uniform for 0)."""
    found: list[dict] = []
    got, acceptance = 0, 0.3
    while got < m:
        size = max(256, int(1.3 * (m - got) / acceptance))
        exposure = _exposures(rng, size)
        lo, hi = SOURCE_COUNTS["minimum"], SOURCE_COUNTS["maximum"]
        if slope > 0:
            cut = 1.0 - (lo / hi) ** slope
            source = lo * (1.0 - rng.uniform(0, cut, size)) ** (-1.0 / slope)
        else:
            source = _loguniform(rng, lo, hi, size)
        background = BACKGROUND_COUNTS["median"] * exposure / 30e3
        background = background * 10 ** rng.normal(0.0, BACKGROUND_COUNTS["dex"], size)
        total = rng.poisson(source + background)
        keep = total >= min_counts
        acceptance = max(keep.mean(), 1e-3)
        found.append(dict(exposure=exposure, S=source, B=background, N=total, keep=keep))
        got += int(keep.sum())
    out = {k: np.concatenate([f[k][f["keep"]] for f in found])[:m] for k in found[0]}
    del out["keep"]
    return out


def _exposures(rng: np.random.Generator, size: int):
    e = EXPOSURE
    log_lo, log_hi = np.log(e["minimum"]), np.log(e["maximum"])
    return np.exp(_truncated_normal(rng, np.log(e["median"]), e["sigma"], log_lo, log_hi, size))


def _source_parameters(rng: np.random.Generator, labels: np.ndarray) -> dict:
    """Parameters of each source at its first epoch, plus what its later epochs need."""
    m = labels.size
    p = {name: np.full(m, np.nan) for name in _FLOATS}
    p["state"] = np.full(m, "", dtype=object)
    extra = {
        name: np.full(m, np.nan)
        for name in (
            "soft_t_in",
            "soft_gamma",
            "soft_disc",
            "hard_t_in",
            "hard_gamma",
            "hard_disc",
            "fade",
        )
    }
    p.update(extra)
    p["nh_gal"] = _loguniform(rng, 0.01, 0.1, m)
    for label in CLASSES:
        idx = np.flatnonzero(labels == label)
        values = _DRAWS[label](rng, idx.size)
        for name, value in values.items():
            p[name][idx] = value
    return p


def _draw_agn(rng: np.random.Generator, k: int) -> dict:
    """AGN: absorbed power law with a scattered fraction and Fe K-alpha, at a redshift."""
    segments = np.array([[20, 21], [21, 22], [22, 23], [23, 24]])
    pick = rng.choice(4, size=k, p=[0.35, 0.35, 0.2, 0.1])
    log_nh = rng.uniform(segments[pick, 0], segments[pick, 1])
    return dict(
        nh=10 ** (log_nh - 22),
        redshift=0.05 + 2.95 * rng.beta(2.0, 3.5, k),
        gamma=_truncated_normal(rng, 1.9, 0.3, 1.2, 2.8, k),
        scatter_fraction=_loguniform(rng, 0.005, 0.05, k),
        line_energy=np.full(k, 6.4),
        line_ew=_truncated_normal(rng, 0.1, 0.03, 0.03, 0.2, k),
        line_sigma=rng.uniform(0.01, 0.05, k),
    )


def _draw_star(rng: np.random.Generator, k: int) -> dict:
    """star: one or two coronal plasmas; the cool one from 1.2 MK (0.1 keV, quiet solar-type
    and M-dwarf coronae) to 8 MK."""
    kt = _loguniform(rng, 0.1, 0.7, k)
    two = rng.random(k) < 0.6
    kt2 = np.minimum(kt * _loguniform(rng, 1.5, 4.0, k), 1.5)
    return dict(
        kt=kt,
        kt2=np.where(two, kt2, np.nan),
        plasma2_fraction=np.where(two, rng.uniform(0.2, 0.7, k), np.nan),
        abundance=_loguniform(rng, 0.1, 1.0, k),
    )


def _draw_xrb(rng: np.random.Generator, k: int) -> dict:
    """XRB: disc + power law, a soft and a hard state (one drawn); columns up to 3e23 cm^-2
    (obscured high-mass systems, transients behind the Galactic centre)."""
    return dict(
        nh=_loguniform(rng, 0.1, 30.0, k),
        soft_t_in=_loguniform(rng, 0.5, 2.0, k),
        soft_gamma=_truncated_normal(rng, 2.4, 0.2, 2.0, 3.0, k),
        soft_disc=rng.uniform(0.75, 0.95, k),
        hard_t_in=_loguniform(rng, 0.15, 0.5, k),
        hard_gamma=_truncated_normal(rng, 1.7, 0.15, 1.3, 2.1, k),
        hard_disc=rng.uniform(0.02, 0.2, k),
        state=np.where(rng.random(k) < 0.5, "soft", "hard").astype(object),
    )


def _draw_cv(rng: np.random.Generator, k: int) -> dict:
    """CV: hot plasma behind a partial coverer (1e22-3e23 cm^-2, as in intermediate polars),
    with Fe K-alpha."""
    return dict(
        kt=_loguniform(rng, 5.0, 40.0, k),
        abundance=_loguniform(rng, 0.3, 1.0, k),
        cover_nh=_loguniform(rng, 1.0, 30.0, k),
        cover_fraction=rng.uniform(0.3, 0.9, k),
        line_energy=np.full(k, 6.4),
        line_ew=rng.uniform(0.05, 0.15, k),
        line_sigma=np.full(k, 0.01),
    )


def _draw_ulx(rng: np.random.Generator, k: int) -> dict:
    """ULX: hot disc with a cool blackbody or a soft power law."""
    cool_bb = rng.random(k) < 0.6
    return dict(
        nh=_loguniform(rng, 0.03, 1.0, k),
        t_in=_loguniform(rng, 1.4, 2.5, k),
        disc_fraction=rng.uniform(0.4, 0.7, k),
        bb_kt=np.where(cool_bb, _loguniform(rng, 0.15, 0.4, k), np.nan),
        gamma=np.where(cool_bb, np.nan, rng.uniform(2.5, 3.5, k)),
    )


def _draw_sss(rng: np.random.Generator, k: int) -> dict:
    """SSS: a soft blackbody of 20-100 eV behind a local or host column up to 3e21 cm^-2
    (novae in M31 and in the Galactic plane, as well as the Magellanic Clouds' 1e20-1e21)."""
    return dict(bb_kt=_loguniform(rng, 0.02, 0.1, k), nh=_loguniform(rng, 1e-3, 0.3, k))


def _draw_cluster(rng: np.random.Generator, k: int) -> dict:
    """cluster: a plasma at a redshift."""
    return dict(
        kt=_loguniform(rng, 1.0, 8.0, k),
        abundance=rng.uniform(0.2, 0.5, k),
        redshift=_loguniform(rng, 0.05, 1.0, k),
    )


def _draw_tde(rng: np.random.Generator, k: int) -> dict:
    """TDE: a soft blackbody or a steep power law, fading."""
    thermal = rng.random(k) < 0.75
    return dict(
        redshift=_loguniform(rng, 0.01, 0.3, k),
        bb_kt=np.where(thermal, rng.uniform(0.04, 0.15, k), np.nan),
        gamma=np.where(thermal, np.nan, rng.uniform(3.0, 5.0, k)),
        fade=_loguniform(rng, 3.0, 30.0, k),
    )


#: Each class's parameter draws (k sources), in the order of :data:`CLASSES`.
_DRAWS = {
    "AGN": _draw_agn,
    "star": _draw_star,
    "XRB": _draw_xrb,
    "CV": _draw_cv,
    "ULX": _draw_ulx,
    "SSS": _draw_sss,
    "cluster": _draw_cluster,
    "TDE": _draw_tde,
}


def _epochs(
    rng: np.random.Generator, labels: np.ndarray, repeat_fraction: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: source index, epoch (1, 2, ...) and MJD, increasing over a source's epochs
    (TDEs re-observed within 30-1500 days, other sources any time until 2025)."""
    m = labels.size
    count = np.where(rng.random(m) < repeat_fraction, rng.integers(2, 6, m), 1)
    source = np.repeat(np.arange(m), count)
    epoch = np.arange(source.size) - (np.cumsum(count) - count)[source] + 1
    tde = labels == "TDE"
    start = rng.uniform(MJD_RANGE[0], np.where(tde, MJD_RANGE[1] - 1500.0, MJD_RANGE[1]), m)
    u = rng.random(source.size)
    offset = np.where(tde[source], 30.0 + 1470.0 * u, u * (MJD_RANGE[1] - start)[source])
    offset[epoch == 1] = 0.0
    offset = offset[np.lexsort((offset, source))]  # increasing within each source
    return source, epoch, start[source] + offset


def _owner(source: np.ndarray) -> np.ndarray:
    """Row of each row's first epoch (rows grouped by source, in source order)."""
    return np.searchsorted(source, source)


def _since_first(values: np.ndarray, source: np.ndarray) -> np.ndarray:
    """Cumulative sum of ``values`` over a source's epochs after its first."""
    total = np.cumsum(values)
    return total - total[_owner(source)]


#: Epoch-to-epoch flux scatter (dex) of each class (TDEs fade instead; clusters are steady).
VARIABILITY = dict(AGN=0.2, star=0.2, cluster=0.0, XRB=0.3, CV=0.1, ULX=0.15, SSS=0.1, TDE=0.0)


def _row_parameters(
    rng: np.random.Generator,
    labels: np.ndarray,
    params: dict[str, np.ndarray],
    source: np.ndarray,
    epoch: np.ndarray,
    mjd: np.ndarray,
) -> dict:
    """Parameters per row (epoch), with the drift of later epochs and the flux factor (the
    epoch's unabsorbed flux over the first epoch's)."""
    label = labels[source]
    n = source.size
    row = {k: v[source].copy() for k, v in params.items()}
    later = epoch > 1
    dex = np.array([VARIABILITY[c] for c in label], dtype=float)
    factor = np.where(later, 10 ** (dex * rng.normal(0.0, 1.0, n)), 1.0)
    # AGN: the column walks by 0.4 dex per epoch; the slope jitters by 0.1
    agn = label == "AGN"
    steps = np.where(later, rng.normal(0.0, 0.4, n), 0.0)
    log_nh = np.log10(np.where(agn, row["nh"], 1.0)) + 22.0 + _since_first(steps, source)
    row["nh"] = np.where(agn, 10 ** (np.clip(log_nh, 20.0, 24.5) - 22.0), row["nh"])
    jitter = rng.normal(0.0, 0.1, n)
    row["gamma"] = np.where(agn & later, np.clip(row["gamma"] + jitter, 1.2, 2.8), row["gamma"])
    # XRB: the state flips at the second epoch, then with probability 1/2 at each later one
    xrb = label == "XRB"
    flip = (epoch == 2) | (later & (rng.random(n) < 0.5))
    soft = (row["state"] == "soft") ^ (_since_first(flip.astype(int), source) % 2 == 1)
    row["state"] = np.where(xrb, np.where(soft, "soft", "hard"), row["state"]).astype(object)
    for name in ("t_in", "gamma", "disc"):
        target = "disc_fraction" if name == "disc" else name
        chosen = np.where(soft, row[f"soft_{name}"], row[f"hard_{name}"])
        row[target] = np.where(xrb, chosen, row[target])
    # TDE: fades by `fade` at the last epoch, log-linearly in time, and cools (L ~ T^4)
    tde = label == "TDE"
    owner = _owner(source)
    first = np.flatnonzero(epoch == 1)
    last_mjd = np.maximum.reduceat(mjd, first)[source] if n else mjd
    progress = np.where(later, (mjd - mjd[owner]) / np.maximum(last_mjd - mjd[owner], 1e-9), 0)
    fading = np.where(tde, row["fade"], 1.0) ** -progress
    factor = np.where(tde, fading, factor)
    row["bb_kt"] = np.where(tde, np.maximum(row["bb_kt"] * fading**0.25, 0.02), row["bb_kt"])
    row["gamma"] = np.where(tde, row["gamma"] - 0.5 * np.log10(fading), row["gamma"])
    row["flux_factor"] = factor
    for name in ("soft_t_in", "soft_gamma", "soft_disc", "hard_t_in", "hard_gamma", "hard_disc"):
        del row[name]
    del row["fade"]
    return row
