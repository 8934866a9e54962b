"""Figures of the exploration, each written as a PNG from plain numpy arrays.

Every function takes the arrays the caller computed (no knowledge of the VAE), writes a PNG at
``path`` (parent folders created, written atomically) with matplotlib's object-oriented API on
the Agg canvas (no pyplot state), and returns the :class:`~matplotlib.figure.Figure`. Energies
are in keV on log axes over :data:`FLUX_BAND`, spectra in counts per keV.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LogNorm, Normalize, to_rgba_array
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, MaxNLocator
from numpy.typing import ArrayLike

from xspecvae.files import write_atomic
from xspecvae.latent import HARD, SOFT
from xspecvae.physics import FLUX_BAND

__all__ = [
    "DPI",
    "activation",
    "hardness_intensity",
    "MAP_VIEWS",
    "histogram",
    "latent_map",
    "map_figures",
    "spectrum_fit",
    "templates",
    "trajectory_figures",
    "trajectory_map",
    "training_curves",
    "versus",
]

DPI = 100  # a figure of (w, h) inches is a PNG of (100 w, 100 h) pixels
_GREY = "0.82"  # the catalogue behind what a figure is about


def _figure(width: float, height: float, **subplots) -> tuple[Figure, np.ndarray]:
    """A figure on its own Agg canvas with constrained layout, and its axes (always an array)."""
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.subplots(squeeze=False, **subplots).ravel()


def _save(figure: Figure, path: str | os.PathLike) -> Figure:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    write_atomic(path, buffer.getvalue())
    return figure


def _palette(n: int) -> np.ndarray:
    """``n`` distinct RGBA colours (n, 4) in a fixed order: tab10, tab20, else a continuous
    map."""
    if n <= 20:
        return to_rgba_array(colormaps["tab10" if n <= 10 else "tab20"].colors[:n])
    return colormaps["turbo"](np.linspace(0.05, 0.95, n))


def _point_size(n: int) -> float:
    """Marker area (points^2): a few points stay visible, 300,000 do not merge into a blob."""
    return float(np.clip(3e3 / max(n, 1), 0.3, 12.0))


def _scatter(ax: Axes, xy: np.ndarray, **style):
    """A rasterized scatter without marker edges (fast and light for large N)."""
    return ax.scatter(xy[:, 0], xy[:, 1], rasterized=True, linewidths=0, **style)


def _background(ax: Axes, xy: np.ndarray) -> None:
    _scatter(ax, xy, s=_point_size(len(xy)), color=_GREY, zorder=0)


def _tracks(ax: Axes, tracks: Sequence, names: Sequence[str] | None) -> None:
    """Each (T, 2) track as a line with arrows between consecutive epochs, the first epoch a
    large open circle; a legend when ``names`` are given."""
    if names is not None and len(names) != len(tracks):
        raise ValueError(f"{len(names)} names for {len(tracks)} tracks")
    for i, (track, colour) in enumerate(zip(tracks, _palette(len(tracks)), strict=True)):
        track = np.asarray(track, dtype=float)
        label = None if names is None else str(names[i])
        ax.plot(track[:, 0], track[:, 1], "-", color=colour, lw=1.2, label=label, zorder=2)
        ax.plot(*track[0], "o", ms=7, mfc="none", mec=colour, mew=1.5, zorder=3)
        for start, end in zip(track[:-1], track[1:], strict=True):
            ax.annotate(
                "",
                xy=end,
                xytext=start,
                arrowprops={"arrowstyle": "-|>", "color": colour, "lw": 1.2, "shrinkA": 0},
                zorder=3,
            )
    if names is not None and len(tracks):
        handles, labels = ax.get_legend_handles_labels()
        handles.append(Line2D([], [], ls="none", marker="o", mfc="none", mec="0.3", ms=7))
        ax.legend(handles, [*labels, "first epoch"], fontsize="small")


def latent_map(
    xy: ArrayLike,
    values: ArrayLike,
    path: str | os.PathLike,
    *,
    title: str,
    label: str,
    categorical: bool | None = None,
    log: bool = False,
    keep: ArrayLike | None = None,
    overlay: tuple[ArrayLike, Iterable[str], str] | None = None,
) -> Figure:
    """The 2-D map ``xy`` (N, 2) coloured by ``values`` (N,): class names (legend with the
    counts drawn) or numbers (colour bar ``label``, log colours when ``log``; non-finite and,
    with ``log``, non-positive values grey). ``categorical=None``: classes for string, object
    or bool dtypes. ``keep`` (N,) bool draws only those points in colour, the rest grey.
    ``overlay=(points, names, legend)`` marks other sources (M, 2) as black stars, those with
    a non-empty name labelled, under ``legend`` in the legend."""
    xy = np.asarray(xy, dtype=float)
    values = np.asarray(values)
    if values.shape != (len(xy),):
        raise ValueError(f"values {values.shape} do not match {len(xy)} points")
    if categorical is None:
        categorical = values.dtype.kind in "OUSb"
    if keep is None:
        keep = np.ones(len(xy), dtype=bool)
    else:
        keep = np.asarray(keep, dtype=bool)
        title = f"{title} ({keep.sum():,} of {len(xy):,} kept)"
    figure, (ax,) = _figure(7.0, 6.0)
    _background(ax, xy[~keep])
    # Random drawing order, so that no class or value range hides the others.
    order = np.random.default_rng(0).permutation(np.flatnonzero(keep))
    style = {"s": _point_size(len(order)), "alpha": 0.7, "zorder": 1}
    if categorical:
        classes = _draw_classes(ax, xy, values.astype(str), order, style)
        ax.legend(*classes, title=label, fontsize="small")
    else:
        classes = None
        _draw_values(figure, ax, xy, values.astype(float), order, style, log=log, label=label)
    if overlay is not None:
        _draw_overlay(ax, *overlay, classes=classes, title=label)
    ax.set(title=title, xlabel="PaCMAP 1", ylabel="PaCMAP 2")
    return _save(figure, path)


def _draw_classes(
    ax: Axes, xy: np.ndarray, names: np.ndarray, order: np.ndarray, style: dict[str, float]
) -> tuple[list, list]:
    """The points ``order`` coloured by class name (colours from the classes of every point);
    the legend's handles and labels (with the counts drawn)."""
    classes, index = np.unique(names, return_inverse=True)
    colours = _palette(len(classes))
    _scatter(ax, xy[order], c=colours[index[order]], **style)
    counts = np.bincount(index[order], minlength=len(classes))
    shown = np.flatnonzero(counts)
    handles = [Line2D([], [], ls="none", marker="o", color=colours[i]) for i in shown]
    return handles, [f"{classes[i]} ({counts[i]:,})" for i in shown]


def _draw_values(
    figure: Figure,
    ax: Axes,
    xy: np.ndarray,
    numbers: np.ndarray,
    order: np.ndarray,
    style: dict[str, float],
    *,
    log: bool,
    label: str,
) -> None:
    """The points ``order`` coloured by number (non-finite grey), with a colour bar ``label``."""
    norm = LogNorm() if log else Normalize()
    cmap = colormaps["viridis"].with_extremes(bad=_GREY)
    points = _scatter(ax, xy[order], c=numbers[order], norm=norm, cmap=cmap, **style)
    figure.colorbar(points, ax=ax, label=label)


def _draw_overlay(
    ax: Axes,
    points: ArrayLike,
    names: Iterable[str],
    legend: str,
    *,
    classes: tuple[list, list] | None = None,
    title: str | None = None,
) -> None:
    """Black stars over the map, labelled by their non-empty ``names``, in the legend as
    ``legend`` (after the ``classes`` handles and labels, if any)."""
    points = np.asarray(points, dtype=float).reshape(-1, 2)
    stars = ax.scatter(
        *points.T,
        marker="*",
        s=60,
        color="black",
        edgecolors="white",
        linewidths=0.5,
        zorder=3,
        label=f"{legend} ({len(points)})",
    )
    for (x, y), name in zip(points, names, strict=True):
        if name:
            ax.annotate(
                name, (x, y), xytext=(4, 4), textcoords="offset points", fontsize="small", zorder=4
            )
    if classes is None:
        ax.legend(fontsize="small")
    else:
        handles, labels = classes
        ax.legend(
            handles + [stars], labels + [f"{legend} ({len(points)})"], title=title, fontsize="small"
        )


def trajectory_map(
    xy: ArrayLike,
    tracks: Sequence[ArrayLike],
    path: str | os.PathLike,
    *,
    title: str,
    names: Sequence[str] | None = None,
) -> Figure:
    """The 2-D map ``xy`` in grey and each track, a (T, 2) array in time order, as arrows
    between consecutive epochs from a circled first epoch; ``names`` label the tracks."""
    figure, (ax,) = _figure(7.0, 6.0)
    _background(ax, np.asarray(xy, dtype=float))
    _tracks(ax, tracks, names)
    ax.set(title=title, xlabel="PaCMAP 1", ylabel="PaCMAP 2")
    return _save(figure, path)


def hardness_intensity(
    hardness: ArrayLike,
    intensity: ArrayLike,
    path: str | os.PathLike,
    *,
    tracks: Sequence[ArrayLike] = (),
    names: Sequence[str] | None = None,
    title: str = "Hardness-intensity diagram",
    xlabel: str = "Hardness ratio (H - S) / (H + S)",
    ylabel: str = "Count rate (counts s$^{-1}$)",
) -> Figure:
    """The catalogue as grey points of ``hardness`` (-1 to 1) against ``intensity`` (log axis;
    non-positive values left out) and ``tracks``, (T, 2) arrays of (hardness, intensity) in
    time order, drawn as in :func:`trajectory_map`: a catalogue-level Q-diagram."""
    points = np.column_stack([hardness, intensity]).astype(float)
    points = points[np.isfinite(points).all(axis=1) & (points[:, 1] > 0)]
    figure, (ax,) = _figure(7.0, 6.0)
    ax.set_yscale("log")
    _background(ax, points)
    _tracks(ax, tracks, names)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel, xlim=(-1.0, 1.0))
    return _save(figure, path)


def _energy_axis(ax: Axes) -> None:
    """A log energy axis over :data:`FLUX_BAND` with ticks in plain keV (0.2 ... 10)."""
    ax.set_xscale("log")
    ticks = [0.2, 0.5, 1, 2, 5, 10]
    ax.set_xticks(ticks, [f"{tick:g}" for tick in ticks])
    ax.set_xlim(*FLUX_BAND)
    ax.set_xlabel("Energy (keV)")


def templates(
    energy: ArrayLike,
    values: ArrayLike,
    path: str | os.PathLike,
    *,
    title: str = "Decoder templates",
) -> Figure:
    """The K templates ``values`` (K, E) against ``energy`` (E,) keV, log-log, each divided by
    its maximum over :data:`FLUX_BAND`; a legend of the index (K <= 10) or a colour bar."""
    energy = np.asarray(energy, dtype=float)
    values = np.asarray(values, dtype=float)
    if values.ndim != 2 or values.shape[1] != len(energy):
        raise ValueError(f"templates {values.shape} are not (K, {len(energy)})")
    k = len(values)
    in_band = (energy >= FLUX_BAND[0]) & (energy <= FLUX_BAND[1])
    peak = values[:, in_band].max(axis=1, keepdims=True)
    normalised = values / np.where(peak > 0, peak, np.nan)
    figure, (ax,) = _figure(7.0, 5.0)
    colours = _palette(k) if k <= 10 else colormaps["viridis"](np.linspace(0, 1, k))
    for i, (row, colour) in enumerate(zip(normalised, colours, strict=True)):
        ax.plot(energy, row, color=colour, lw=1.2, label=str(i))
    ax.set_yscale("log")
    _energy_axis(ax)
    ax.set(title=title, ylabel="Template / maximum in band", ylim=(1e-4, 2.0))  # 4 decades
    if k <= 10:
        ax.legend(title="template", fontsize="small", ncols=2)
    else:
        index = ScalarMappable(norm=Normalize(0, k - 1), cmap="viridis")
        figure.colorbar(index, ax=ax, label="template index")
    return _save(figure, path)


def activation(
    classes: Iterable[str],
    mean: ArrayLike,
    path: str | os.PathLike,
    *,
    title: str = "Mean activation per class",
    columns: Iterable[str] | None = None,
    xlabel: str = "template index",
    label: str = "mean coefficient",
) -> Figure:
    """Heatmap of ``mean`` (C, K), the mean branch coefficient of each of the C ``classes``
    (rows) on each template (columns, labelled by ``columns``, default their index), with the
    values written in the cells."""
    mean = np.asarray(mean, dtype=float)
    classes = [str(name) for name in classes]
    if mean.shape[0] != len(classes) or mean.ndim != 2:
        raise ValueError(f"mean {mean.shape} is not ({len(classes)}, K)")
    n_classes, k = mean.shape
    figure, (ax,) = _figure(max(5.0, 1.0 + 0.45 * k), max(3.0, 1.2 + 0.4 * n_classes))
    image = ax.imshow(mean, cmap="magma", aspect="auto")
    for (row, column), value in np.ndenumerate(mean):
        colour = "black" if image.norm(value) > 0.5 else "white"  # legible on magma
        ax.text(column, row, f"{value:.2g}", ha="center", va="center", fontsize=7, color=colour)
    if columns is None:
        ax.set_xticks(range(k))
    else:
        ax.set_xticks(range(k), [str(c) for c in columns], rotation=90)
    ax.set_yticks(range(n_classes), classes)
    ax.set(title=title, xlabel=xlabel)
    figure.colorbar(image, ax=ax, label=label)
    return _save(figure, path)


def spectrum_fit(
    channel_lo: ArrayLike,
    channel_hi: ArrayLike,
    counts: ArrayLike,
    background: ArrayLike,
    model: ArrayLike,
    path: str | os.PathLike,
    *,
    band: tuple[ArrayLike, ArrayLike] | None = None,
    good: ArrayLike | None = None,
    title: str = "",
    others: Mapping | None = None,
) -> Figure:
    """A fit: per channel (edges ``channel_lo``, ``channel_hi`` keV) the observed source-region
    ``counts`` with Poisson errors, the ``background`` scaled to the source region, the
    ``model``'s total expected counts (source + background) and its credible ``band=(lo, hi)``,
    all per keV; channels with ``good`` False in grey; residuals (counts - model) / sqrt(model)
    below. ``others`` (name -> total expected counts) adds other fits as dashed lines."""
    lo, hi = np.asarray(channel_lo, dtype=float), np.asarray(channel_hi, dtype=float)
    width = hi - lo
    centre = np.sqrt(lo * hi)
    counts = np.asarray(counts, dtype=float)
    model = np.asarray(model, dtype=float)
    good = np.ones(len(lo), dtype=bool) if good is None else np.asarray(good, dtype=bool)
    figure, (top, bottom) = _figure(7.0, 6.0, nrows=2, sharex=True, height_ratios=(3, 1))
    residual = np.divide(
        counts - model, np.sqrt(model), out=np.full(len(lo), np.nan), where=model > 0
    )
    for selected, colour, name in ((good, "black", "data"), (~good, "0.7", "ignored")):
        if selected.any():
            top.errorbar(
                centre[selected],
                counts[selected] / width[selected],
                xerr=np.array([centre - lo, hi - centre])[:, selected],
                yerr=np.sqrt(counts[selected]) / width[selected],
                fmt="o",
                ms=2,
                lw=0.8,
                color=colour,
                label=name,
                zorder=2,
            )
            bottom.plot(centre[selected], residual[selected], "o", ms=2, color=colour)
    if band is not None:
        band_lo, band_hi = (np.asarray(edge, dtype=float) / width for edge in band)
        top.fill_between(
            centre, band_lo, band_hi, color="tab:red", alpha=0.3, lw=0, label="credible band"
        )
    top.plot(
        centre,
        np.asarray(background) / width,
        drawstyle="steps-mid",
        color="tab:blue",
        lw=1,
        label="background",
    )
    top.plot(centre, model / width, color="tab:red", lw=1.2, label="model", zorder=3)
    others = dict(others or {})
    colours = _palette(10)[[2, 4, 5, 6, 8, 9]]  # clear of the data's, model's and background's
    for (name, other), colour in zip(others.items(), colours[np.arange(len(others)) % 6]):
        top.plot(centre, np.asarray(other) / width, "--", color=colour, lw=1, label=name, zorder=3)
    shown = np.concatenate([(counts / width)[counts > 0], (model / width)[model > 0]])
    if len(shown):
        top.set_ylim(0.5 * shown.min(), 2.0 * shown.max())
    top.set(yscale="log", ylabel="Counts keV$^{-1}$", title=title)
    handles = dict(zip(*top.get_legend_handles_labels()[::-1], strict=True))  # label: handle
    order = ("data", "ignored", "background", "model", "credible band", *others)
    names = [n for n in order if n in handles]
    top.legend([handles[name] for name in names], names, fontsize="small")
    bottom.axhline(0.0, color="tab:red", lw=1)
    bottom.set_ylabel(r"(data $-$ model) / $\sqrt{\mathrm{model}}$", fontsize="small")
    _energy_axis(bottom)
    return _save(figure, path)


def training_curves(metrics: Mapping, path: str | os.PathLike) -> Figure:
    """Training and validation loss per spectrum against ``epoch`` (from ``metrics``, a dict
    of arrays as in ``metrics.csv``), and the KL weight on a right-hand axis if given; the
    legend below the axes, clear of the curves."""
    column = {name: np.asarray(values, dtype=float) for name, values in metrics.items()}
    figure, (ax,) = _figure(7.0, 4.5)
    ax.plot(column["epoch"], column["train_loss"], "o-", ms=3, label="training")
    ax.plot(column["epoch"], column["validation_loss"], "s-", ms=3, label="validation")
    ax.set(title="Training", xlabel="epoch", ylabel="loss per spectrum (-ELBO)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no epoch 1.2
    if "kl_weight" in column:
        right = ax.twinx()
        right.plot(column["epoch"], column["kl_weight"], "--", color="0.4", label="KL weight")
        right.set(ylabel="KL weight", ylim=(0.0, None))
    figure.legend(loc="outside lower center", ncols=3, fontsize="small")
    return _save(figure, path)


def histogram(
    values: ArrayLike,
    path: str | os.PathLike,
    *,
    title: str,
    xlabel: str,
    bins: int | Sequence[float] | str = 20,
    marks: Mapping[str, float] | None = None,
) -> Figure:
    """A histogram of the finite ``values``; ``marks`` (name -> value) as labelled vertical
    lines."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    figure, (ax,) = _figure(6.0, 4.0)
    ax.hist(values, bins=bins, color="tab:blue", alpha=0.8)
    marks = dict(marks or {})
    for (name, value), colour in zip(marks.items(), _palette(len(marks) + 1)[1:], strict=True):
        ax.axvline(value, color=colour, ls="--", lw=1.5, label=f"{name} = {value:.4g}")
    if marks:
        ax.legend(fontsize="small")
    ax.set(title=title, xlabel=xlabel, ylabel="number")
    return _save(figure, path)


def versus(
    x: ArrayLike,
    y: ArrayLike,
    path: str | os.PathLike,
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    names: Iterable[str] | None = None,
) -> Figure:
    """``y`` against ``x`` (N,) on log axes with the line y = x; points with a non-empty
    name in ``names`` (N,) labelled."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    figure, (ax,) = _figure(6.0, 5.0)
    ax.scatter(x, y, s=14, color="tab:blue", alpha=0.8)
    finite = np.concatenate([x, y])[np.isfinite(np.concatenate([x, y]))]
    finite = finite[finite > 0]
    if len(finite):
        span = [0.7 * finite.min(), 1.4 * finite.max()]
        ax.plot(span, span, color="0.4", lw=1, ls="--", label="y = x")
        ax.legend(fontsize="small")
    for xi, yi, name in zip(x, y, names if names is not None else [""] * len(x), strict=True):
        if name:
            ax.annotate(name, (xi, yi), xytext=(4, 4), textcoords="offset points", fontsize="small")
    ax.set(xscale="log", yscale="log", title=title, xlabel=xlabel, ylabel=ylabel)
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    some = FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}"[0] in "25" else "")  # 0.2, 0.5, 2, 5
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(plain)
        axis.set_minor_formatter(some)
    return _save(figure, path)


#: The latent maps, by the table column they colour: file name, title, colour label, log scale.
MAP_VIEWS = {
    "label": ("class", "Class", "class", False),
    "snr": ("snr", "SNR (model)", "SNR", True),
    "nh": ("nh", "Column (model)", "N_H (1e22 cm^-2)", True),
}


def map_figures(
    table: dict[str, np.ndarray],
    xy: ArrayLike,
    folder: str | os.PathLike,
    *,
    snr_min: float,
    prefix: str = "",
) -> list[Path]:
    """The latent map ``xy`` coloured by class (if the table has labels), SNR and column, each
    over every source and with only SNR >= ``snr_min`` in colour, as ``folder/<prefix><name>.png``
    and ``<prefix><name>_snr.png``: the figures of ``xspecvae map`` and of the report."""
    keep = np.asarray(table["snr"]) >= snr_min
    made = []
    for column, (name, title, label, log) in MAP_VIEWS.items():
        if column not in table:
            continue
        for suffix, mask, cut in (("", None, ""), ("_snr", keep, f", SNR > {snr_min:g}")):
            path = Path(folder) / f"{prefix}{name}{suffix}.png"
            latent_map(xy, table[column], path, title=title + cut, label=label, log=log, keep=mask)
            made.append(path)
    return made


def trajectory_figures(
    table: dict[str, np.ndarray],
    tracks: dict[str, np.ndarray],
    chosen: Sequence[np.ndarray],
    names: Sequence[str],
    path: str | os.PathLike,
    *,
    xy: np.ndarray | None = None,
    map_path: str | os.PathLike | None = None,
) -> None:
    """The tracks ``chosen`` (rows of the trajectory table ``tracks``, one array per source,
    labelled ``names``) in the model's hardness-intensity diagram (``path``) over the whole
    posterior ``table``, and, given the map coordinates ``xy`` of the table, on the map
    (``map_path``)."""
    if xy is not None:
        paths = [xy[tracks["row"][i]] for i in chosen]
        trajectory_map(xy, paths, map_path, title="Latent trajectories", names=names)
    hi = [np.stack([tracks["hardness"][i], tracks["photon_flux"][i]], -1) for i in chosen]
    hardness_intensity(
        table["hardness"],
        table["photon_flux"],
        path,
        tracks=hi,
        names=names,
        ylabel="photon flux 0.2-12 keV (cm$^{-2}$ s$^{-1}$)",
        xlabel=f"model hardness (H - S) / (H + S); S {SOFT[0]:g}-{SOFT[1]:g} keV, "
        f"H {HARD[0]:g}-{HARD[1]:g} keV",
    )
