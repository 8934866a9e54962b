"""Spectra set against a run's reference catalogue: real sources among the simulated ones.

:func:`compare` encodes the spectra of a pack (e.g. real pipeline products packed with
``--grids-of`` the training pack), fits each one classically (:mod:`xspecvae.fitting`) and
with the decoder's latent optimised, places them in a PaCMAP map of the reference catalogue
(the simulation the run learnt from) and finds their nearest reference posteriors, into one
folder (default ``RUN/compare-PACK``)::

    posteriors.fits   encode of the pack's spectra
    reference.fits    encode of the reference catalogue
    fits.fits         every spectrum's fits: statistic, dof, parameters and 1-sigma errors of
                      each classical model and of the decoder's fit, expected counts per channel
    map.fits          PaCMAP coordinates of the reference and the spectra, mapped together
    sources.fits      the summary: W/dof of every fit, the nearest reference classes
    figures/*.png, report.html

Classical fits take about a second per spectrum and model: this is for hundreds of sources,
not a whole catalogue. Steps are skipped when their file is newer than the run's checkpoint.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from xspecvae import figures
from xspecvae.absorption import CrossSection
from xspecvae.catalog import Pack
from xspecvae.explore import posterior_table, project, reconstruction
from xspecvae.fitting import MODELS, fit, fit_latent
from xspecvae.latent import DEFAULT_DIVERGENCE, Index, conditional_widths
from xspecvae.products import PPS_NAME
from xspecvae.report import Section, write_report
from xspecvae.run import Run, load_run, run_pack
from xspecvae.tables import IDENTITY, cached_table, write_table
from xspecvae.vae import VAE

__all__ = ["column", "compare", "fit_table", "source_table"]


def compare(
    run: str | os.PathLike,
    pack_path: str | os.PathLike,
    folder: str | os.PathLike | None = None,
    *,
    reference: str | os.PathLike | None = None,
    models: Sequence[str] = ("powerlaw", "diskbb+powerlaw"),
    absorption: str | os.PathLike | None = None,
    show: Sequence[str] = (),
    n_shown: int = 6,
    k: int = 10,
    divergence: str = DEFAULT_DIVERGENCE,
    progress: bool = True,
) -> Path:
    """Every table and figure of ``pack_path`` against ``reference`` (default: the pack the run,
    or the run it was fine-tuned from, was trained on) into ``folder``, then ``report.html``;
    returns the report's path. ``models`` are keys of :data:`~xspecvae.fitting.MODELS`,
    absorbed by ``absorption`` (default: the run's cross-sections). Reconstructions are drawn
    for the spectra whose file name contains one of ``show`` and the ``n_shown`` of highest
    SNR."""
    run = Path(run)
    vae, info = load_run(run)  # info: the run's settings, read once
    pack_path = Path(pack_path)
    model = Run(run)
    origin = Run(info["init"]).origin() if info.get("init") else info
    given_reference, reference = reference, Path(reference or origin["pack"])
    folder = Path(folder) if folder else run / f"compare-{pack_path.name.split('.')[0]}"
    absorption = absorption or origin["absorption"]
    cross_section = CrossSection.from_fits(absorption) if absorption else None
    header = {"RUN": str(run), "RUNID": info.get("run_id") or "none", "PACK": str(pack_path)}
    header |= {"REFPACK": str(reference)}
    header |= {"MODELS": ",".join(models), "ABSORB": str(absorption)}  # what the tables hold

    def step(name: str, make: Callable[[], dict]):
        return cached_table(folder / f"{name}.fits", model, make, header=header, progress=progress)

    with Pack(pack_path) as target, run_pack(origin, given_reference) as known:
        table = step("posteriors", lambda: posterior_table(vae, target, progress=progress))
        ref = step("reference", lambda: posterior_table(vae, known, progress=progress))
        fits = step(
            "fits", lambda: fit_table(vae, target, models, cross_section, progress=progress)
        )
        placed = step("map", lambda: _joint_map(ref, table))
        summary = source_table(table, fits, ref, models, k=k, divergence=divergence)
        write_table(summary, folder / "sources.fits", extname="SOURCES", header=header)
        shown = _shown(table, show, n_shown)
        sections = _sections(
            vae, target, info, table, fits, ref, placed, summary, models, shown, folder / "figures"
        )
    return write_report(
        folder / "report.html",
        f"xspecvae: {pack_path.name} against {reference.name}",
        sections,
        subtitle=f"model {run}, {len(table['row'])} spectra of {pack_path}, reference {reference} "
        f"({len(ref['row']):,} spectra)",
    )


def fit_table(
    vae: VAE,
    pack: Pack,
    models: Sequence[str],
    cross_section: CrossSection | None = None,
    *,
    progress: bool = False,
) -> dict:
    """For every spectrum of ``pack``: each classical model's ``<model>_statistic``,
    ``_dof``, ``_<parameter>`` and ``_<parameter>_err`` and ``_total`` (expected counts per
    channel in the source region), and the same ``decoder_...`` of the decoder's fit
    (:func:`~xspecvae.fitting.fit_latent`). A fit that fails is NaN, with its ``_error``."""
    columns: dict[str, list] = {}
    nan = np.full(pack.grid.n_channel, np.nan)
    for row in tqdm(range(len(pack)), disable=not progress, desc="fits"):
        for model in (*models, "decoder"):
            names = () if model == "decoder" else MODELS[model].names
            try:
                if model == "decoder":
                    result = fit_latent(vae, pack, row)
                else:
                    result = fit(
                        pack,
                        row,
                        model,
                        cross_section=cross_section,
                        likelihood=vae.config.likelihood,
                    )
                values = {"statistic": result.statistic, "dof": result.dof, "error": ""}
                values["total"] = result.total
                for name in names:
                    values[name], values[f"{name}_err"] = (
                        result.parameters[name],
                        result.errors[name],
                    )
            except (ValueError, ArithmeticError, np.linalg.LinAlgError) as err:
                values = {"statistic": np.nan, "dof": -1, "error": str(err), "total": nan}
                values.update({n: np.nan for n in names} | {f"{n}_err": np.nan for n in names})
            for key, value in values.items():
                columns.setdefault(column(model, key), []).append(value)
    return {"row": np.arange(len(pack)), **{k: np.asarray(v) for k, v in columns.items()}}


def column(model: str, key: str) -> str:
    """The name of a fit table's column ``key`` of ``model`` (a name TOPCAT can use:
    ``diskbb+powerlaw`` gives ``diskbb_powerlaw_...``)."""
    return f"{model.replace('+', '_')}_{key}"


def source_table(
    table: dict[str, np.ndarray],
    fits: dict[str, np.ndarray],
    ref: dict[str, np.ndarray],
    models: Sequence[str],
    *,
    k: int = 10,
    divergence: str = DEFAULT_DIVERGENCE,
) -> dict:
    """One row per spectrum: its identity, SNR, the W/dof of the encoder's fit
    (``w_dof``), of the decoder's fit and of each classical model, the classical model
    with the lowest W/dof, and its ``k`` nearest reference posteriors (``neighbours``, rows of
    the reference; with labels, ``neighbour_classes`` and the most common, ``nearest_class``)."""
    out = {key: np.asarray(table[key]) for key in (*IDENTITY, "row") if key in table}
    out["name"] = np.array([source_name(f) for f in table["file"]])
    out["snr"] = table["snr"]
    out["w_dof"] = table["statistic"] / table["dof"]
    for model in ("decoder", *models):
        dof = fits[column(model, "dof")]
        out[column(model, "w_dof")] = np.where(
            dof > 0, fits[column(model, "statistic")] / np.maximum(dof, 1), np.nan
        )
    classical = np.stack([out[column(m, "w_dof")] for m in models], -1)
    best = np.argmin(np.where(np.isfinite(classical), classical, np.inf), -1)
    out["best_model"] = np.asarray(models)[best]
    out["best_w_dof"] = np.take_along_axis(classical, best[:, None], -1)[:, 0]
    index = Index(ref["z_loc"], ref["z_scale"], conditional=conditional_widths(ref))
    rows, values = index.search(
        table["z_loc"],
        table["z_scale"],
        k,
        divergence=divergence,
        conditional=conditional_widths(table),
    )
    out["neighbours"], out["nearest_divergence"] = rows, values[:, 0]
    if "label" in ref and len(np.unique(ref["label"])) > 1:
        labels = np.asarray(ref["label"]).astype(str)[rows]
        counted = [Counter(line).most_common() for line in labels]
        out["neighbour_classes"] = np.array(
            [", ".join(f"{c} {n}" for c, n in c_) for c_ in counted]
        )
        out["nearest_class"] = np.array([c_[0][0] for c_ in counted])
    return out


def source_name(file: str | os.PathLike) -> str:
    """A short name: ``src NNNN`` for pipeline products (``...SRSPECNNNN...``), otherwise the
    spectrum's folder."""
    match = PPS_NAME.match(Path(str(file)).name)
    if match and match["kind"].upper() == "SRSPEC":
        return f"src {match['src']}"
    return Path(str(file)).parent.name


def _joint_map(ref: dict[str, np.ndarray], table: dict[str, np.ndarray]) -> dict:
    """PaCMAP of the reference and the spectra together (``set``: reference or target)."""
    xy = project(np.concatenate([ref["z_loc"], table["z_loc"]]))
    n = len(ref["row"])
    rows = np.concatenate([ref["row"], table["row"]])
    kind = np.array(["reference"] * n + ["target"] * len(table["row"]))
    return {"set": kind, "row": rows, "x": xy[:, 0], "y": xy[:, 1]}


def _shown(table: dict[str, np.ndarray], patterns: Sequence[str], n: int) -> list[int]:
    files = np.asarray(table["file"]).astype(str)
    named = [i for i, f in enumerate(files) if any(p in f for p in patterns)]
    bright = [int(i) for i in np.argsort(-np.asarray(table["snr"])) if i not in named]
    return named + bright[:n]


def _sections(
    vae: VAE,
    pack: Pack,
    info: dict,
    table: dict[str, np.ndarray],
    fits: dict[str, np.ndarray],
    ref: dict[str, np.ndarray],
    placed: dict[str, np.ndarray],
    summary: dict[str, np.ndarray],
    models: Sequence[str],
    shown: list[int],
    plots: Path,
):
    """The report's sections, their figures drawn into ``plots``; ``info`` the run's settings."""
    names = summary["name"]
    marked = np.array([names[i] if i in shown else "" for i in range(len(names))])
    _map_figures(ref, placed, marked, plots)
    figures.versus(
        summary["best_w_dof"],
        summary["w_dof"],
        plots / "statistic.png",
        title="Fit statistic per spectrum",
        xlabel="best classical fit: W / dof",
        ylabel="VAE (encoder's posterior mean): W / dof",
        names=marked,
    )
    paths = [_fit_figure(vae, pack, i, table, fits, summary, models, plots) for i in shown]
    rows = [_shown_row(i, table, fits, summary, models) for i in shown]
    map_text = (
        "PaCMAP of the posterior means of the reference catalogue and of the spectra, "
        "mapped together; the spectra are the black stars."
    )
    sections = [
        Section("Fit statistics", _statistics_text(summary, models), [plots / "statistic.png"]),
        Section("Shown spectra", "Fits and nearest reference classes.", table=rows),
        Section("Place in the map", map_text, [plots / "map.png", plots / "map_snr.png"]),
        Section(
            "Reconstructions",
            "Counts, background, the VAE's posterior predictive band (red) and the other fits "
            "(dashed, W/dof in brackets).",
            paths,
        ),
    ]
    if info.get("init"):
        sections.append(
            Section(
                "Fine-tuning",
                f"The run starts from {info['init']} and was trained on {info['pack']} "
                f"({info['n_train']} training, {info['n_validation']} validation spectra): "
                f"{json.dumps(info['options'])}",
            )
        )
    return sections


def _map_figures(
    ref: dict[str, np.ndarray], placed: dict[str, np.ndarray], marked: np.ndarray, plots: Path
) -> None:
    """The joint map coloured by reference class and by reference SNR, the spectra on top."""
    is_target = placed["set"] == "target"
    xy = np.stack([placed["x"], placed["y"]], -1)
    labels = ref["label"] if "label" in ref else np.full(len(ref["row"]), "reference")
    figures.latent_map(
        xy[~is_target],
        labels,
        plots / "map.png",
        title="Reference catalogue and the spectra",
        label="reference class",
        categorical=True,
        overlay=(xy[is_target], marked, "spectra"),
    )
    figures.latent_map(
        xy[~is_target],
        ref["snr"],
        plots / "map_snr.png",
        title="Reference SNR and the spectra",
        label="SNR (model)",
        log=True,
        overlay=(xy[is_target], marked, "spectra"),
    )


def _fit_figure(
    vae: VAE,
    pack: Pack,
    i: int,
    table: dict[str, np.ndarray],
    fits: dict[str, np.ndarray],
    summary: dict[str, np.ndarray],
    models: Sequence[str],
    plots: Path,
) -> Path:
    """Spectrum ``i`` with the VAE's reconstruction and every other fit; the figure's path."""
    fit_ = reconstruction(vae, pack, i)
    others = {"decoder fit": fits["decoder_total"][i]}
    others |= {
        f"{m} ({summary[column(m, 'w_dof')][i]:.2f})": fits[column(m, "total")][i] for m in models
    }
    path = plots / f"fit_{i}.png"
    figures.spectrum_fit(
        **{c: fit_[c] for c in ("channel_lo", "channel_hi", "counts", "background", "model")},
        path=path,
        band=fit_["band"],
        good=fit_["good"],
        others=others,
        title=f"{summary['name'][i]} ({summary['obs_id'][i]}): SNR {table['snr'][i]:.0f}, "
        f"VAE W/dof {summary['w_dof'][i]:.2f}",
    )
    return path


def _shown_row(
    i: int,
    table: dict[str, np.ndarray],
    fits: dict[str, np.ndarray],
    summary: dict[str, np.ndarray],
    models: Sequence[str],
) -> dict:
    """Spectrum ``i``'s line of the shown spectra: every W/dof, parameters, nearest classes."""
    row = {"name": summary["name"][i], "obs_id": summary["obs_id"][i]}
    row["SNR"] = float(table["snr"][i])
    row["VAE W/dof"] = float(summary["w_dof"][i])
    row["decoder fit W/dof"] = float(summary["decoder_w_dof"][i])
    for m in models:
        row[f"{m} W/dof"] = float(summary[column(m, "w_dof")][i])
        for p in MODELS[m].names:
            value, error = fits[column(m, p)][i], fits[column(m, f"{p}_err")][i]
            row[f"{m}: {p}"] = f"{value:.4g} ± {error:.2g}"
    if "neighbour_classes" in summary:
        row["nearest reference classes"] = summary["neighbour_classes"][i]
    return row


def _statistics_text(summary: dict[str, np.ndarray], models: Sequence[str]) -> str:
    """The median W/dof of every fit and how often the encoder's beats the classical fits."""
    w = {"VAE (encoder)": summary["w_dof"], "decoder fit": summary["decoder_w_dof"]}
    w |= {m: summary[column(m, "w_dof")] for m in models}
    medians = "; ".join(f"{name} {np.nanmedian(v):.2f}" for name, v in w.items())
    better = np.mean(summary["w_dof"] <= summary["best_w_dof"])
    return (
        f"{len(summary['name'])} spectra. Median W/dof: {medians}. The encoder's fit is at least "
        f"as good as the best classical fit for {better:.0%} of them. The VAE's dof are its good "
        "channels; the classical fits' are the good channels less their free parameters, the "
        "decoder fit's (its latent optimised: maximum likelihood) less the latent's dimensions."
    )
