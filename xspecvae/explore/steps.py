"""The tables of a trained run, each from its posteriors (encode, map, trajectories, anomalies,
searches, calibration), and what its figures show: the PaCMAP map, the decoder's components, a
spectrum's reconstruction with its credible band, a predictive check."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

from xspecvae.catalog import Pack
from xspecvae.errors import InputError
from xspecvae.latent import (
    DEFAULT_DIVERGENCE,
    STEP_DIVERGENCE,
    Index,
    anomalies,
    encode,
    neighbours,
    of_table,
    trajectories,
)
from xspecvae.physics import FLUX_BAND
from xspecvae.predictive import calibration, draw, inference_data, plot_checks
from xspecvae.tables import identity_columns
from xspecvae.vae import VAE


def project(loc: ArrayLike, scale: ArrayLike | None = None, *, seed: int = 0) -> np.ndarray:
    """PaCMAP projection (N, 2) of posterior means ``loc`` (N, D); with ``scale``, each
    dimension is first divided by its RMS posterior width (distances in units of how well the
    catalogue pins that dimension down)."""
    import pacmap  # numba: imported when a map is made

    x = np.asarray(loc, np.float64)
    if scale is not None:
        x = x / np.sqrt(np.mean(np.asarray(scale, np.float64) ** 2, 0))
    if len(x) < 4:
        raise ValueError(f"a map needs at least 4 sources, got {len(x)}")
    neighbours = min(10, len(x) - 2)
    logging.getLogger("pacmap.pacmap").setLevel(logging.ERROR)  # not "random state is set"
    model = pacmap.PaCMAP(n_components=2, n_neighbors=neighbours, random_state=seed)
    return model.fit_transform(x.astype(np.float32), init="pca").astype(np.float64)


def components(
    vae: VAE, n: int = 256, band: tuple[float, float] = FLUX_BAND
) -> tuple[np.ndarray, np.ndarray]:
    """The decoder's K rest-frame templates (K, n) on ``n`` energies log-spaced over ``band``
    (keV), with the energies."""
    energy = np.geomspace(*band, n)
    decoder = vae.config.decoder(np.asarray(vae.inst.energy_edges))
    values = decoder.apply(
        {"params": vae.params["decoder$params"]}, np.log(energy), method="templates"
    )
    return energy, np.asarray(values, np.float64).T


def mean_activation(coefficients: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """The classes (sorted) and the mean branch coefficients of each (n_class, K)."""
    labels = np.asarray(labels).astype(str)
    classes = np.unique(labels)
    coefficients = np.asarray(coefficients, np.float64)
    return classes, np.stack([coefficients[labels == c].mean(0) for c in classes])


def reconstruction(
    vae: VAE, pack: Pack, row: int, *, n_draws: int = 200, level: float = 0.9, seed: int = 0
) -> dict:
    """What :func:`xspecvae.figures.spectrum_fit` draws for one spectrum of ``pack``: channel
    edges, observed counts, scaled background (source region) and the expected total counts
    in the source region: median and central ``level`` band over posterior draws."""
    batch = pack.read(np.array([row]))
    drawn = draw(vae.with_rmfs(pack.rmf), batch, n_draws, jax.random.key(seed))
    total = drawn["source"][:, 0] + batch["alpha"][0] * drawn["background"][:, 0]
    tail = 50 * (1 - level)
    return {
        "channel_lo": pack.grid.channel_lo,
        "channel_hi": pack.grid.channel_hi,
        "counts": batch["counts"][0],
        "background": batch["alpha"][0] * batch["background"][0],
        "model": np.median(total, 0),
        "band": tuple(np.percentile(total, [tail, 100 - tail], 0)),
        "good": batch["good"][0],
    }


def worst_row(checks: dict) -> int:
    """The pack row of the worst fit of a :func:`calibration_table`: lowest p-value, then
    highest statistic per degree of freedom."""
    per_dof = np.asarray(checks["statistic"]) / np.maximum(np.asarray(checks["dof"]), 1)
    return int(checks["row"][np.lexsort((-per_dof, checks["p_value"]))[0]])


def check_figure(
    vae: VAE, pack: Pack, row: int, path: str | os.PathLike, *, n_draws: int = 200
) -> Figure:
    """The ArviZ predictive check (:func:`~xspecvae.predictive.plot_checks`) of one spectrum
    of ``pack``, against channel energy; returns the figure."""
    one = pack.read(np.array([row]))
    drawn = draw(vae.with_rmfs(pack.rmf), one, n_draws, jax.random.key(0))
    centres = 0.5 * (pack.grid.channel_lo + pack.grid.channel_hi)
    return plot_checks(inference_data(drawn, one, channel_energy=centres), path)


def posterior_table(vae: VAE, pack: Pack, *, progress: bool = False, **options) -> dict:
    """:func:`~xspecvae.latent.encode` of every spectrum with the pack's identity columns
    (:data:`~xspecvae.tables.IDENTITY`), its ``row`` and ``instrument``."""
    encoded = encode(vae, pack, progress=progress, **options)
    rows = np.arange(len(pack))
    ids = identity_columns(pack.meta, rows)
    return {**ids, "row": rows, "instrument": np.full(len(pack), pack.instrument), **encoded}


def encode_files(
    vae: VAE,
    files: Sequence[str | os.PathLike],
    like: Pack,
    *,
    rmf_dirs: Sequence[str | os.PathLike] = (),
    substitutes: dict | None = None,
) -> tuple[dict | None, list[dict]]:
    """Spectrum files (OGIP, with the background, ARF and RMF they name) put on the grids of
    the pack ``like`` (the model's) and encoded: the :func:`posterior_table` of those packed
    (None if none) and the ingestion report, one row per input file with its status."""
    from xspecvae.products import ingest

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "query.h5"
        result = ingest(
            files,
            path,
            rmf_dirs=rmf_dirs,
            substitutes=substitutes,
            grids=[like.grid],
            jobs=1,
            progress=False,
        )
        if not result.packed.get(like.instrument):
            return None, result.report
        with Pack(path, like.instrument) as query:
            return posterior_table(vae, query), result.report


def map_table(table: dict[str, np.ndarray], *, whiten: bool = False, seed: int = 0) -> dict:
    """:func:`project` of a posterior table (whitened by the scales if asked) with its keys:
    columns ``x``, ``y``."""
    xy = project(table["z_loc"], table["z_scale"] if whiten else None, seed=seed)
    return {**_keys(table), "x": xy[:, 0], "y": xy[:, 1]}


def _keys(table: dict[str, np.ndarray], rows: np.ndarray | None = None) -> dict:
    rows = slice(None) if rows is None else rows
    keys = ("source_id", "obs_id", "ra", "dec", "row")
    return {k: np.asarray(table[k])[rows] for k in keys if k in table}


#: The columns of a source's hardness-intensity track: the model's hardness and photon flux.
TRACK = ("hardness", "photon_flux")


def trajectory_table(table: dict[str, np.ndarray], divergence: str = STEP_DIVERGENCE) -> dict:
    """:func:`~xspecvae.latent.trajectories` of a posterior table, with each epoch's keys and,
    where known, label, SNR, model hardness and photon flux (the hardness-intensity track)."""
    steps = trajectories(table, divergence=divergence)
    extra = ("label", "snr", *TRACK)
    known = {k: np.asarray(table[k])[steps["row"]] for k in extra if k in table}
    return {**_keys(table, steps["row"]), **steps, **known}  # steps' row: the table's position


def anomaly_table(
    table: dict[str, np.ndarray],
    k: int = 10,
    divergence: str = STEP_DIVERGENCE,
    reference: int = 20_000,
) -> dict:
    """:func:`~xspecvae.latent.anomalies` of a posterior table with its keys, most anomalous
    first."""
    ranks = anomalies(table, k=k, divergence=divergence, reference=reference)
    order = np.argsort(ranks["rank"], kind="stable")
    extra = {c: np.asarray(table[c])[order] for c in ("label", "snr") if c in table}
    return {**_keys(table, order), **extra, **{c: v[order] for c, v in ranks.items()}}


def find_row(table: dict[str, np.ndarray], source: str, obs: str | None = None) -> int:
    """The row of ``source`` in ``table``: its first observation, or observation ``obs``; an
    :class:`InputError` when there is none. Ids compare as numbers when both are integers (an
    OBS_ID typed without its leading zeros)."""
    match = _same_id(table["source_id"], source)
    if not match.any():
        raise InputError("source", f"no source {source!r} in the table")
    if obs is not None:
        match &= _same_id(table["obs_id"], obs)
        if not match.any():
            raise InputError("obs", f"source {source} was not seen in observation {obs!r}")
    return int(np.flatnonzero(match)[np.argmin(table["mjd"][match])])


def _same_id(column: ArrayLike, text: str) -> np.ndarray:
    """Where ``column`` holds the id ``text``: as numbers when both are integers, else as text
    (leading zeros ignored when ``text`` is all digits)."""
    values = np.asarray(column)
    if values.dtype.kind in "iu" and text.strip().lstrip("+").isdigit():
        return values == int(text)
    if text.strip().isdigit() and values.dtype.kind in "USO":
        digits = np.char.lstrip(np.char.strip(values.astype(str)), "0")
        return np.where(digits == "", "0", digits) == (text.strip().lstrip("0") or "0")
    return values.astype(str) == text


def similar_table(
    table: dict[str, np.ndarray],
    query: int | dict[str, np.ndarray],
    k: int = 10,
    *,
    divergence: str = DEFAULT_DIVERGENCE,
    min_snr: float = 0.0,
    instrument: str | None = None,
    index: Index | None = None,
) -> dict:
    """:func:`~xspecvae.latent.neighbours` of ``query`` among the rows of SNR >= ``min_snr``
    (and of ``instrument``, when given), with ``rank``, their keys, label, SNR and divergence;
    an :class:`InputError` when no row qualifies."""
    if int(k) < 1:
        raise InputError(f"k {k}", "ask for at least one neighbour")
    n = len(table["row"])
    if not isinstance(query, dict) and not 0 <= int(query) < n:
        raise InputError(f"row {query}", f"not a row of the table (0 to {n - 1})")
    snr = np.asarray(table["snr"], float)
    keep = snr >= min_snr
    if instrument:
        if "instrument" not in table:
            raise InputError("instrument", "the table has no instrument column (one instrument)")
        names = np.char.lower(np.asarray(table["instrument"]).astype(str))
        keep &= names == instrument.lower()
        if not keep.any():
            found = ", ".join(sorted(set(names)))
            raise InputError("instrument", f"no {instrument} spectrum in the table ({found})")
    if not keep.any():
        raise InputError(f"min_snr {min_snr:g}", f"no spectrum that bright (max {snr.max():.1f})")
    found = neighbours(table, query, int(k), divergence=divergence, keep=keep, index=index)
    rows = found["row"]
    extra = {c: np.asarray(table[c])[rows] for c in ("label", "snr") if c in table}
    return {"rank": found["rank"], **_keys(table, rows), **extra, "divergence": found["divergence"]}


def example_searches(
    table: dict[str, np.ndarray], k: int, divergence: str, snr_min: float, n_queries: int = 5
) -> dict:
    """Searches around a few bright sources (of distinct classes when labelled)."""
    bright = np.flatnonzero(table["snr"] >= snr_min)
    if len(bright) == 0:
        bright = np.argsort(-np.asarray(table["snr"]))[:n_queries]
    labels = np.asarray(table.get("label", np.zeros(len(table["row"]))).astype(str))
    queries = [bright[labels[bright] == c][0] for c in np.unique(labels[bright])][:n_queries]
    index = of_table(table)
    found = [neighbours(table, q, k, divergence=divergence, index=index) for q in queries]
    query = np.repeat(queries, [len(f["row"]) for f in found]).astype(int)
    out = {"query_row": query, "rank": np.concatenate([f["rank"] for f in found])}
    if "label" in table:
        out["query_label"] = labels[query]
    hits = np.concatenate([f["row"] for f in found])
    values = np.concatenate([f["divergence"] for f in found])
    return {**out, **_keys(table, hits), "divergence": values, "label": labels[hits]}


def calibration_table(vae: VAE, pack: Pack, n: int = 2000, **options) -> dict:
    """:func:`~xspecvae.predictive.calibration` of ``n`` rows of ``pack`` drawn at random
    (seed 0; all when ``n`` is at least the pack's size), with their identity columns."""
    rows = np.sort(np.random.default_rng(0).choice(len(pack), min(n, len(pack)), False))
    checks = calibration(vae, pack, rows, **options)
    return {**identity_columns(pack.meta, rows), **checks}


def most_moving(tracks: dict[str, np.ndarray], n: int = 6) -> list:
    """The ``n`` source ids of a trajectory table with the largest steps."""
    steps = np.nan_to_num(tracks["step"], nan=-np.inf)
    order = np.argsort(-steps, kind="stable")
    return list(dict.fromkeys(tracks["source_id"][order]))[:n]
