"""The map's level of detail: what the browser draws of a catalogue too large to draw point by
point (plain numpy, no Bokeh).

Every source in the view is counted in a shaded image of the view (:func:`density_image`:
each pixel the mean colour of its sources, more opaque where they are denser); on top, at most
:data:`POINTS` of them are drawn as points one can hover and tap (:func:`drawn_rows`: the first
in a fixed random order, so that zooming in keeps the points drawn and adds others until every
source of the view is a point). A box or lasso selects every source inside it, drawn or not
(:func:`rows_inside`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["POINTS", "SHAPE", "View", "combine", "density_image", "drawn_rows", "rows_inside"]

#: The most points drawn at once: what a browser without a GPU draws in a fraction of a second.
POINTS = 20_000
#: The shaded image's pixels (columns, rows): about two screen pixels each on the map.
SHAPE = (300, 260)
#: The opacity of a pixel holding one source; the densest pixel of the view is opaque.
FAINTEST = 0.3


class View(NamedTuple):
    """The map's visible ranges in its coordinates."""

    x0: float
    x1: float
    y0: float
    y1: float

    def ordered(self) -> View:
        """The same view, each range from its low end (Bokeh's may run either way)."""
        (x0, x1), (y0, y1) = sorted(self[:2]), sorted(self[2:])
        return View(x0, x1, y0, y1)

    @classmethod
    def around(cls, xy: np.ndarray, margin: float = 0.05) -> View:
        """The extent of the points ``xy`` (n, 2), widened by ``margin`` of it on each side."""
        if len(xy) == 0:
            return cls(0.0, 1.0, 0.0, 1.0)
        lo, hi = np.nanmin(xy, 0), np.nanmax(xy, 0)
        pad = np.maximum(hi - lo, 1e-6) * margin
        return cls(*map(float, (lo[0] - pad[0], hi[0] + pad[0], lo[1] - pad[1], hi[1] + pad[1])))

    def holds(self, xy: np.ndarray) -> np.ndarray:
        """Which of the points ``xy`` lie in the view."""
        a, b, c, d = self.ordered()
        return (xy[:, 0] >= a) & (xy[:, 0] <= b) & (xy[:, 1] >= c) & (xy[:, 1] <= d)


def drawn_rows(
    order: np.ndarray, shown: np.ndarray, limit: int, first: np.ndarray = ()
) -> np.ndarray:
    """The rows to draw as points: the rows ``first`` (the selected ones) where ``shown`` (one
    bool per row: in the view and kept by the filters) holds, then the first of ``order`` (a
    permutation of the rows) where it holds, ``limit`` in all. The same ``order`` on a smaller
    view keeps every point still inside it."""
    first = np.asarray(first, np.int64)
    first = first[shown[first]]
    rest = shown.copy()
    rest[first] = False
    return np.concatenate([first, order[rest[order]]])[:limit]


def density_image(
    xy: np.ndarray, rgb: np.ndarray, shown: np.ndarray, view: View, shape: tuple = SHAPE
) -> np.ndarray:
    """The ``shown`` sources of ``view`` as an RGBA image (uint32 per pixel, rows from the
    bottom, as Bokeh's ``image_rgba`` draws it): each pixel the mean of its sources' colours
    ``rgb`` (n, 3 in 0-255), its opacity from :data:`FAINTEST` (one source) to 1 (the densest
    pixel) on a log scale; empty pixels transparent."""
    width, height = shape
    inside = shown & view.holds(xy)
    a, b, c, d = view.ordered()
    col = np.clip(((xy[inside, 0] - a) / max(b - a, 1e-12) * width).astype(int), 0, width - 1)
    line = np.clip(((xy[inside, 1] - c) / max(d - c, 1e-12) * height).astype(int), 0, height - 1)
    pixel = line * width + col
    count = np.bincount(pixel, minlength=width * height).astype(float)
    out = np.zeros((width * height, 4), np.uint8)
    full = count > 0
    for channel in range(3):
        total = np.bincount(pixel, rgb[inside, channel], minlength=width * height)
        out[full, channel] = np.round(total[full] / count[full]).astype(np.uint8)
    densest = np.log(count.max()) if full.any() else 0.0
    alpha = FAINTEST + (1 - FAINTEST) * np.log(count[full]) / max(densest, 1e-12)
    out[full, 3] = np.round(255 * alpha).astype(np.uint8)
    return out.view(np.uint32).reshape(height, width)


def rows_inside(xy: np.ndarray, geometry: dict, shown: np.ndarray) -> np.ndarray:
    """The ``shown`` rows whose points lie inside a selection's ``geometry`` as Bokeh sends it
    (``{"type": "rect", "x0", "x1", "y0", "y1"}`` or ``{"type": "poly", "x": [...],
    "y": [...]}``, in map coordinates); an empty array for any other geometry, or one that
    is not numbers."""
    from matplotlib.path import Path

    if not isinstance(geometry, dict):
        return np.zeros(0, np.int64)
    try:
        if geometry.get("type") == "rect":
            inside = View(*(float(geometry[k]) for k in ("x0", "x1", "y0", "y1"))).holds(xy)
        elif geometry.get("type") == "poly" and len(geometry.get("x", ())) >= 3:
            corners = [np.asarray(geometry[k], float) for k in ("x", "y")]
            inside = Path(np.column_stack(corners)).contains_points(xy)
        else:
            return np.zeros(0, np.int64)
    except (KeyError, TypeError, ValueError):
        return np.zeros(0, np.int64)
    return np.flatnonzero(inside & shown)


#: How a new box or lasso (rows ``new``) combines with the selection (rows ``old``), by Bokeh's
#: selection modes.
COMBINE = {
    "replace": lambda old, new: new,
    "append": np.union1d,
    "intersect": np.intersect1d,
    "subtract": np.setdiff1d,
    "xor": np.setxor1d,
}


def combine(old: np.ndarray, new: np.ndarray, mode: str) -> np.ndarray:
    """The selection after a box or lasso of ``mode`` (:data:`COMBINE`; another: replace),
    sorted and unique."""
    return np.unique(COMBINE.get(mode, COMBINE["replace"])(old, new)).astype(np.int64)
