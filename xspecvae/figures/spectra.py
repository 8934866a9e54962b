"""Figures against energy: the decoder's templates, their activation by class, and a spectrum's
fit with its credible band, background and residuals."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

from xspecvae.figures import canvas
from xspecvae.physics import FLUX_BAND


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
    figure, (ax,) = canvas.figure(7.0, 5.0)
    colours = canvas.palette(k) if k <= 10 else colormaps["viridis"](np.linspace(0, 1, k))
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
    return canvas.save(figure, path)


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
    figure, (ax,) = canvas.figure(max(5.0, 1.0 + 0.45 * k), max(3.0, 1.2 + 0.4 * n_classes))
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
    return canvas.save(figure, path)


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
    figure, (top, bottom) = canvas.figure(7.0, 6.0, nrows=2, sharex=True, height_ratios=(3, 1))
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
    colours = canvas.palette(10)[
        [2, 4, 5, 6, 8, 9]
    ]  # clear of the data's, model's and background's
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
    return canvas.save(figure, path)
