"""Figures of the latent map (PaCMAP) and of the hardness-intensity plane: a catalogue coloured
by a column, and sources' tracks from epoch to epoch."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from numpy.typing import ArrayLike

from xspecvae.errors import InputError
from xspecvae.figures import canvas
from xspecvae.latent import HARD, SOFT


def _tracks(ax: Axes, tracks: Sequence, names: Sequence[str] | None) -> None:
    """Each (T, 2) track as a line with arrows between consecutive epochs, the first epoch a
    large open circle; a legend when ``names`` are given."""
    if names is not None and len(names) != len(tracks):
        raise ValueError(f"{len(names)} names for {len(tracks)} tracks")
    for i, (track, colour) in enumerate(zip(tracks, canvas.palette(len(tracks)), strict=True)):
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
    figure, (ax,) = canvas.figure(7.0, 6.0)
    canvas.background(ax, xy[~keep])
    # Random drawing order, so that no class or value range hides the others.
    order = np.random.default_rng(0).permutation(np.flatnonzero(keep))
    style = {"s": canvas.point_size(len(order)), "alpha": 0.7, "zorder": 1}
    if categorical:
        classes = _draw_classes(ax, xy, values.astype(str), order, style)
        ax.legend(*classes, title=label, fontsize="small")
    else:
        classes = None
        _draw_values(figure, ax, xy, values.astype(float), order, style, log=log, label=label)
    if overlay is not None:
        _draw_overlay(ax, *overlay, classes=classes, title=label)
    ax.set(title=title, xlabel="PaCMAP 1", ylabel="PaCMAP 2")
    return canvas.save(figure, path)


def _draw_classes(
    ax: Axes, xy: np.ndarray, names: np.ndarray, order: np.ndarray, style: dict[str, float]
) -> tuple[list, list]:
    """The points ``order`` coloured by class name (colours from the classes of every point);
    the legend's handles and labels (with the counts drawn)."""
    classes, index = np.unique(names, return_inverse=True)
    colours = canvas.palette(len(classes))
    canvas.scatter(ax, xy[order], c=colours[index[order]], **style)
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
    cmap = colormaps["viridis"].with_extremes(bad=canvas.GREY)
    points = canvas.scatter(ax, xy[order], c=numbers[order], norm=norm, cmap=cmap, **style)
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
    figure, (ax,) = canvas.figure(7.0, 6.0)
    canvas.background(ax, np.asarray(xy, dtype=float))
    _tracks(ax, tracks, names)
    ax.set(title=title, xlabel="PaCMAP 1", ylabel="PaCMAP 2")
    return canvas.save(figure, path)


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
    figure, (ax,) = canvas.figure(7.0, 6.0)
    ax.set_yscale("log")
    canvas.background(ax, points)
    _tracks(ax, tracks, names)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel, xlim=(-1.0, 1.0))
    return canvas.save(figure, path)


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
    sources: Sequence,
    path: str | os.PathLike,
    *,
    xy: np.ndarray | None = None,
    map_path: str | os.PathLike | None = None,
) -> None:
    """The tracks of ``sources`` (ids of the trajectory table ``tracks``, labelled with their
    class where known) in the model's hardness-intensity diagram (``path``) over the whole
    posterior ``table``, and, given the map coordinates ``xy`` of the table, on the map
    (``map_path``); an :class:`InputError` for a source not seen several times."""
    ids = np.asarray(tracks["source_id"]).astype(str)
    chosen = [np.flatnonzero(ids == str(s)) for s in sources]
    missing = [str(s) for s, rows in zip(sources, chosen) if not len(rows)]
    if missing:
        raise InputError("source", f"not seen several times: {', '.join(missing)}")
    names = [
        f"{s} ({tracks['label'][rows[0]]})" if "label" in tracks else str(s)
        for s, rows in zip(sources, chosen)
    ]
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
