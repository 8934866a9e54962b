"""A run's exploration: :func:`explore` makes every table and figure of a run and its HTML
report, assembled from named sections.

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
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from xspecvae import figures
from xspecvae.catalog import Pack
from xspecvae.evaluation import purity
from xspecvae.explore.steps import (
    anomaly_table,
    calibration_table,
    check_figure,
    components,
    example_searches,
    map_table,
    mean_activation,
    most_moving,
    posterior_table,
    reconstruction,
    trajectory_table,
    worst_row,
)
from xspecvae.latent import DEFAULT_DIVERGENCE, STEP_DIVERGENCE, conditional_widths
from xspecvae.report import Section, write_report
from xspecvae.run import Run, load_run, run_pack
from xspecvae.tables import cached_table, made_by
from xspecvae.vae import VAE


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
    folder = Path(folder) if folder else Run(run).explore_folder
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
        tracks = step("trajectories", lambda: trajectory_table(table), DIVERGE=STEP_DIVERGENCE)
        ranked = step("anomalies", lambda: anomaly_table(table, k), DIVERGE=STEP_DIVERGENCE, K=k)
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


def _purity_section(
    table: dict[str, np.ndarray], k: int, high: np.ndarray, snr_min: float
) -> Section:
    posterior = (table["z_loc"], table["z_scale"], conditional_widths(table))
    features = {
        name: (name, *posterior)
        for name in ("predictive", "kl_symmetric", "bhattacharyya", "wasserstein", "euclidean")
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
    figures.trajectory_figures(
        table,
        tracks,
        most_moving(tracks),
        plots / "hardness_intensity.png",
        xy=xy,
        map_path=plots / "trajectories.png",
    )
    text = "Sources whose posterior moved most between observations."
    return Section(
        "Trajectories", text, [plots / "trajectories.png", plots / "hardness_intensity.png"]
    )


def _training_text(run: Path, metrics: dict) -> str:
    info = Run(run).settings()
    last = {k: float(v[-1]) for k, v in metrics.items()}
    return (
        f"{int(last['epoch'])} epochs; final losses per spectrum: training "
        f"{last['train_loss']:.2f}, validation {last['validation_loss']:.2f}. "
        f"Config: {json.dumps(info.get('config', {}))}"
    )
