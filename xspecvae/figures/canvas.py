"""What every figure shares: an Agg canvas of :data:`DPI`, the atomic PNG writer, colours and
the grey catalogue behind a figure's subject."""

from __future__ import annotations

import io
import os

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PathCollection
from matplotlib.colors import to_rgba_array
from matplotlib.figure import Figure

from xspecvae.files import write_atomic

DPI = 100  # a figure of (w, h) inches is a PNG of (100 w, 100 h) pixels


GREY = "0.82"  # the catalogue behind what a figure is about


def figure(width: float, height: float, **subplots) -> tuple[Figure, np.ndarray]:
    """A figure on its own Agg canvas with constrained layout, and its axes (always an array)."""
    made = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(made)
    return made, made.subplots(squeeze=False, **subplots).ravel()


def save(figure: Figure, path: str | os.PathLike) -> Figure:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    write_atomic(path, buffer.getvalue())
    return figure


def palette(n: int) -> np.ndarray:
    """``n`` distinct RGBA colours (n, 4) in a fixed order: tab10, tab20, else a continuous
    map."""
    if n <= 20:
        return to_rgba_array(colormaps["tab10" if n <= 10 else "tab20"].colors[:n])
    return colormaps["turbo"](np.linspace(0.05, 0.95, n))


def point_size(n: int) -> float:
    """Marker area (points^2): a few points stay visible, 300,000 do not merge into a blob."""
    return float(np.clip(3e3 / max(n, 1), 0.3, 12.0))


def scatter(ax: Axes, xy: np.ndarray, **style) -> PathCollection:
    """A rasterized scatter without marker edges (fast and light for large N)."""
    return ax.scatter(xy[:, 0], xy[:, 1], rasterized=True, linewidths=0, **style)


def background(ax: Axes, xy: np.ndarray) -> None:
    scatter(ax, xy, s=point_size(len(xy)), color=GREY, zorder=0)
