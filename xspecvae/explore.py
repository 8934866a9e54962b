"""Reading a trained run: the PaCMAP map of the posteriors, the decoder's components, fits
with their credible bands, and :func:`explore`, which makes every table and figure of a run
and its HTML report.

:func:`explore` writes into one folder (default ``RUN/explore``)::

    posteriors.fits     encode: the posterior and fit of every spectrum (plus .parquet)
    map.fits            PaCMAP coordinates of the posterior means (x, y)
    trajectories.fits   sources seen several times, epoch by epoch, with step divergences
    anomalies.fits      misfit and isolation ranks, most anomalous first
    similar.fits        example searches: the nearest posteriors of a few sources
    calibration.fits    posterior predictive p-values of the fit statistic
    figures/*.png       the figures; report.html: all of it on one page

Each step is skipped when its file is newer than the run's checkpoint and its header holds
the settings the step depends on (run, pack, instrument, and divergence, k, SNR cut or number
of checks), so an interrupted exploration resumes where it stopped and a change of settings
remakes only the tables it affects.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import jax
import numpy as np
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

from xspecvae import figures
from xspecvae.catalog import Pack
from xspecvae.evaluation import purity
from xspecvae.latent import (
    DEFAULT_DIVERGENCE,
    anomalies,
    encode,
    neighbours,
    of_table,
    trajectories,
)
from xspecvae.physics import FLUX_BAND
from xspecvae.predictive import calibration, draw, inference_data, plot_checks
from xspecvae.report import Section, write_report
from xspecvae.run import Run, load_run, run_pack
from xspecvae.tables import cached_table, identity_columns, made_by
from xspecvae.vae import VAE

__all__ = [
    "TRACK",
    "anomaly_table",
    "calibration_table",
    "check_figure",
    "components",
    "encode_files",
    "example_searches",
    "explore",
    "map_table",
    "mean_activation",
    "most_moving",
    "posterior_table",
    "project",
    "reconstruction",
    "trajectory_table",
    "worst_row",
]


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


def explore(
    run: str | os.PathLike,
    pack_path: str | os.PathLike | None = None,
    folder: str | os.PathLike | None = None,
    *,
    snr_min: float = 10.0,
    k: int = 10,
    divergence: str = DEFAULT_DIVERGENCE,
    n_checks: int = 2000,
    parquet: bool = False,
    instrument: str | None = None,
    progress: bool = True,
) -> Path:
    """Every table and figure of ``run`` on ``pack_path`` (default: the run's own) into ``folder``
    (default ``RUN/explore``), then ``report.html``; returns the report's path."""
    run = Path(run)
    vae, info = load_run(run)
    folder = Path(folder) if folder else run / "explore"
    plots = folder / "figures"
    model = Run(run)

    with run_pack(info, pack_path, instrument) as p:
        origin = made_by(run, info, p) | {"INSTRUME": p.instrument}  # another pack: remade

        def step(name: str, make: Callable[[], dict], **settings) -> dict:
            """The table ``name``, remade when its origin or ``settings`` have changed."""
            return cached_table(
                folder / f"{name}.fits",
                model,
                make,
                header=origin | settings,
                parquet=parquet,
                progress=progress,
            )

        table = step("posteriors", lambda: posterior_table(vae, p, progress=progress))
        xy = step("map", lambda: map_table(table))
        xy = np.stack([xy["x"], xy["y"]], -1)
        search = {"DIVERGE": divergence, "K": k}
        tracks = step(
            "trajectories", lambda: trajectory_table(table, divergence), DIVERGE=divergence
        )
        ranked = step("anomalies", lambda: anomaly_table(table, k, divergence), **search)
        examples = partial(example_searches, table, k, divergence, snr_min)
        similar = step("similar", examples, **search, SNRMIN=float(snr_min))
        checks = step(
            "calibration",
            lambda: calibration_table(vae, p, n_checks, progress=progress),
            NCHECKS=n_checks,
        )
        tables = {"similar": similar, "trajectories": tracks, "anomalies": ranked}
        tables["calibration"] = checks
        sections = _sections(vae, p, run, table, xy, tables, plots, snr_min, k, divergence)
    path = write_report(
        folder / "report.html",
        f"xspecvae: {run.name}",
        sections,
        subtitle=f"model {run}, catalogue {origin['PACK']} ({len(table['row']):,} spectra)",
    )
    return path


# ---------------------------------------------------------------------------------------------
# The steps


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


def trajectory_table(table: dict[str, np.ndarray], divergence: str = DEFAULT_DIVERGENCE) -> dict:
    """:func:`~xspecvae.latent.trajectories` of a posterior table, with each epoch's keys and,
    where known, label, SNR, model hardness and photon flux (the hardness-intensity track)."""
    steps = trajectories(table, divergence=divergence)
    extra = ("label", "snr", *TRACK)
    known = {k: np.asarray(table[k])[steps["row"]] for k in extra if k in table}
    return {**_keys(table, steps["row"]), **steps, **known}  # steps' row: the table's position


def anomaly_table(
    table: dict[str, np.ndarray],
    k: int = 10,
    divergence: str = DEFAULT_DIVERGENCE,
    reference: int = 20_000,
) -> dict:
    """:func:`~xspecvae.latent.anomalies` of a posterior table with its keys, most anomalous
    first."""
    ranks = anomalies(table, k=k, divergence=divergence, reference=reference)
    order = np.argsort(ranks["rank"], kind="stable")
    extra = {c: np.asarray(table[c])[order] for c in ("label", "snr") if c in table}
    return {**_keys(table, order), **extra, **{c: v[order] for c, v in ranks.items()}}


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


def _purity_section(
    table: dict[str, np.ndarray], k: int, high: np.ndarray, snr_min: float
) -> Section:
    features = {
        name: (name, table["z_loc"], table["z_scale"])
        for name in ("kl_symmetric", "bhattacharyya", "wasserstein", "euclidean")
    }
    features["hardness ratios (euclidean)"] = ("euclidean", table["hr"], None)
    rows = []
    for cut, keep in (("all", None), (f"SNR >= {snr_min:g}", high)):
        got = purity(features, table["label"], k=k, groups=table["source_id"], keep=keep)
        rows += [
            {"sources": cut, "distance": n, "mean": v["mean"], "balanced": v["balanced"]}
            for n, v in got.items()
        ]
    text = (
        f"Share of the {k} nearest neighbours of each source (its own other observations left "
        "out) that have its class: under the divergences between posteriors, and under the "
        "Euclidean distance of the 4XMM hardness ratios. Balanced: the mean over classes."
    )
    return Section("Purity of the neighbourhoods", text, table=rows)


def _table_section(title: str, table: dict[str, np.ndarray], divergence: str) -> Section:
    columns = ("query_label", "query_row", "rank", "row", "source_id", "label")
    shown = {c: table[c] for c in columns if c in table}
    shown[divergence] = table["divergence"]
    text = "The nearest posteriors of a few bright sources (search over the whole catalogue)."
    return Section(title, text, table=shown)


def _sections(
    vae: VAE,
    pack: Pack,
    run: Path,
    table: dict[str, np.ndarray],
    xy: np.ndarray,
    tables: dict[str, dict[str, np.ndarray]],
    plots: Path,
    snr_min: float,
    k: int,
    divergence: str,
) -> list:
    """The report's sections, in order, with their figures drawn into ``plots``."""
    high = table["snr"] >= snr_min
    labelled = "label" in table and len(np.unique(table["label"])) > 1
    sections = [
        _training_section(run, plots),
        _purity_section(table, k, high, snr_min) if labelled else None,
        _table_section("Similarity search", tables["similar"], divergence),
        _map_section(table, xy, plots, snr_min),
        _components_section(vae, table, plots, high, snr_min),
        _reconstruction_section(vae, pack, table, plots, high),
        _checks_section(vae, pack, tables["calibration"], plots),
        _anomaly_section(tables["anomalies"]),
        _trajectory_section(table, tables["trajectories"], xy, plots),
    ]
    return [section for section in sections if section is not None]


def _labels(table: dict[str, np.ndarray]) -> np.ndarray:
    return np.asarray(table.get("label", np.full(len(table["row"]), "all"))).astype(str)


def _training_section(run: Path, plots: Path) -> Section:
    metrics = Run(run).metrics()
    figures.training_curves(metrics, plots / "training.png")
    return Section("Training", _training_text(run, metrics), [plots / "training.png"])


def _map_section(
    table: dict[str, np.ndarray], xy: np.ndarray, plots: Path, snr_min: float
) -> Section:
    maps = figures.map_figures(table, xy, plots, snr_min=snr_min, prefix="map_")
    return Section("Latent map (PaCMAP)", "PaCMAP projection of the posterior means.", maps)


def _components_section(
    vae: VAE, table: dict[str, np.ndarray], plots: Path, high: np.ndarray, snr_min: float
) -> Section:
    energy, values = components(vae)
    figures.templates(energy, values, plots / "templates.png")
    shown = [plots / "templates.png"]
    labels = _labels(table)
    if "label" in table:
        classes, mean = mean_activation(table["coefficients"], labels)
        figures.activation(classes, mean, plots / "activation.png")
        shown.append(plots / "activation.png")
    text = "The DeepONet's templates (rest frame) and their mean weight per class."
    if "line_ew" in table and high.any():
        # the decoder's narrow lines: their mean equivalent width where the counts show them
        classes, mean = mean_activation(1e3 * table["line_ew"][high], labels[high])
        figures.activation(
            classes,
            mean,
            plots / "lines.png",
            title=f"Mean line EW per class, SNR >= {snr_min:g}",
            columns=[f"{e:g}" for e in vae.config.line_energies],
            xlabel="line rest energy (keV)",
            label="mean equivalent width (eV)",
        )
        shown.append(plots / "lines.png")
        text += " The lines: the mean equivalent width of each of the decoder's narrow lines."
    return Section("Decoder components", text, shown)


def _reconstruction_section(
    vae: VAE, pack: Pack, table: dict[str, np.ndarray], plots: Path, high: np.ndarray
) -> Section:
    labels = _labels(table)
    fits_ = []
    for c in np.unique(labels):
        rows = np.flatnonzero((labels == c) & high)
        rows = rows if len(rows) else np.flatnonzero(labels == c)
        row = int(rows[np.argmax(np.asarray(table["snr"])[rows])])
        fit = reconstruction(vae, pack, row)
        name = plots / f"fit_{c}.png"
        per_dof = table["statistic"][row] / table["dof"][row]
        figures.spectrum_fit(
            **{k: fit[k] for k in ("channel_lo", "channel_hi", "counts", "background", "model")},
            path=name,
            band=fit["band"],
            good=fit["good"],
            title=f"{c}: row {row}, SNR {table['snr'][row]:.0f}, W/dof {per_dof:.2f}",
        )
        fits_.append(name)
    return Section("Reconstructions", "The brightest source of each class.", fits_)


def _checks_section(vae: VAE, pack: Pack, checks: dict, plots: Path) -> Section:
    figures.histogram(
        checks["p_value"],
        plots / "calibration.png",
        title="Posterior predictive p-values",
        xlabel="p-value of the fit statistic",
        marks={"0.01": 0.01},
    )
    worst = worst_row(checks)
    check_figure(vae, pack, worst, plots / "ppc.png")  # as many draws as the fits: one compile
    low = np.mean(checks["misfit"])
    text = f"{low:.1%} of {len(checks['p_value'])} checked sources flagged as misfits (p < 0.01)."
    text += f" The check drawn is the worst fit, row {worst}."
    return Section("Predictive checks", text, [plots / "calibration.png", plots / "ppc.png"])


def _anomaly_section(ranked: dict) -> Section:
    top = {k: ranked[k][:20] for k in ranked}
    return Section("Most anomalous sources", "Ranked by misfit or isolation.", table=top)


def _trajectory_section(
    table: dict[str, np.ndarray], tracks: dict[str, np.ndarray], xy: np.ndarray, plots: Path
) -> Section | None:
    if not len(tracks["row"]):
        return None
    sources = most_moving(tracks)
    chosen = [np.flatnonzero(tracks["source_id"] == s) for s in sources]
    names = [
        f"{s} ({tracks['label'][i[0]]})" if "label" in tracks else str(s)
        for s, i in zip(sources, chosen)
    ]
    figures.trajectory_figures(
        table,
        tracks,
        chosen,
        names,
        plots / "hardness_intensity.png",
        xy=xy,
        map_path=plots / "trajectories.png",
    )
    text = "Sources whose posterior moved most between observations."
    return Section(
        "Trajectories", text, [plots / "trajectories.png", plots / "hardness_intensity.png"]
    )


def most_moving(tracks: dict[str, np.ndarray], n: int = 6) -> list:
    """The ``n`` source ids of a trajectory table with the largest steps."""
    steps = np.nan_to_num(tracks["step"], nan=-np.inf)
    order = np.argsort(-steps, kind="stable")
    return list(dict.fromkeys(tracks["source_id"][order]))[:n]


def _training_text(run: Path, metrics: dict) -> str:
    info = Run(run).settings()
    last = {k: float(v[-1]) for k, v in metrics.items()}
    return (
        f"{int(last['epoch'])} epochs; final losses per spectrum: training "
        f"{last['train_loss']:.2f}, validation {last['validation_loss']:.2f}. "
        f"Config: {json.dumps(info.get('config', {}))}"
    )
