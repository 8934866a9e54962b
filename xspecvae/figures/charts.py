"""Plain charts: training curves, histograms and one quantity against another."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator
from numpy.typing import ArrayLike

from xspecvae.figures import canvas


def training_curves(metrics: Mapping, path: str | os.PathLike) -> Figure:
    """Training and validation loss per spectrum against ``epoch`` (from ``metrics``, a dict
    of arrays as in ``metrics.csv``), and the KL weight on a right-hand axis if given; the
    legend below the axes, clear of the curves."""
    column = {name: np.asarray(values, dtype=float) for name, values in metrics.items()}
    figure, (ax,) = canvas.figure(7.0, 4.5)
    ax.plot(column["epoch"], column["train_loss"], "o-", ms=3, label="training")
    ax.plot(column["epoch"], column["validation_loss"], "s-", ms=3, label="validation")
    ax.set(title="Training", xlabel="epoch", ylabel="loss per spectrum (-ELBO)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no epoch 1.2
    if "kl_weight" in column:
        right = ax.twinx()
        right.plot(column["epoch"], column["kl_weight"], "--", color="0.4", label="KL weight")
        right.set(ylabel="KL weight", ylim=(0.0, None))
    figure.legend(loc="outside lower center", ncols=3, fontsize="small")
    return canvas.save(figure, path)


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
    figure, (ax,) = canvas.figure(6.0, 4.0)
    ax.hist(values, bins=bins, color="tab:blue", alpha=0.8)
    marks = dict(marks or {})
    for (name, value), colour in zip(
        marks.items(), canvas.palette(len(marks) + 1)[1:], strict=True
    ):
        ax.axvline(value, color=colour, ls="--", lw=1.5, label=f"{name} = {value:.4g}")
    if marks:
        ax.legend(fontsize="small")
    ax.set(title=title, xlabel=xlabel, ylabel="number")
    return canvas.save(figure, path)


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
    figure, (ax,) = canvas.figure(6.0, 5.0)
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
    return canvas.save(figure, path)
