"""The map's level of detail (:mod:`xspecvae.serve.detail`) against direct computations, and the
colours it shades with against Bokeh's colour mapper."""

import numpy as np
import pytest

from xspecvae.serve import detail
from xspecvae.serve.data import Colouring


@pytest.fixture
def xy():
    return np.random.default_rng(1).normal(size=(5000, 2))


def test_zooming_in_keeps_the_points_drawn_and_adds_others(xy):
    order = np.random.default_rng(2).permutation(len(xy))
    keep = np.ones(len(xy), bool)
    wide, narrow = detail.View(-4, 4, -4, 4), detail.View(-0.5, 1.0, -0.5, 0.5)
    before = detail.drawn_rows(order, keep & wide.holds(xy), 300)
    after = detail.drawn_rows(order, keep & narrow.holds(xy), 300)
    assert len(before) == len(after) == 300
    still = before[narrow.holds(xy[before])]
    assert 0 < len(still) < 300 and set(still) <= set(after)  # kept, and others added
    inside = np.flatnonzero(narrow.holds(xy))
    assert set(detail.drawn_rows(order, narrow.holds(xy), 10**6)) == set(inside)  # all, if few
    keep[::2] = False
    drawn = detail.drawn_rows(order, keep & wide.holds(xy), 300)
    assert np.all(keep[drawn])
    assert detail.View(4, -4, 4, -4).holds(xy).sum() == wide.holds(xy).sum()  # either way
    chosen = np.flatnonzero(keep)[:50]  # the selected come first, those shown only
    got = detail.drawn_rows(order, keep & wide.holds(xy), 300, first=chosen)
    shown = chosen[wide.holds(xy[chosen])]
    assert got[: len(shown)].tolist() == shown.tolist() and len(set(got)) == len(got) == 300


def test_selection_modes_combine_as_bokeh_s():
    old, new = np.array([1, 2, 3]), np.array([3, 4])
    expected = {"replace": [3, 4], "append": [1, 2, 3, 4], "intersect": [3]}
    expected |= {"subtract": [1, 2], "xor": [1, 2, 4], "unknown": [3, 4]}
    for mode, rows in expected.items():
        assert detail.combine(old, new, mode).tolist() == rows


def test_the_shading_counts_every_source_of_the_view(xy):
    view, shape = detail.View(-2, 2, -1, 3), (40, 30)
    shown = np.ones(len(xy), bool)
    shown[:100] = False
    rgb = np.random.default_rng(3).integers(0, 256, size=(len(xy), 3))
    image = detail.density_image(xy, rgb, shown, view, shape)
    assert image.shape == (30, 40) and image.dtype == np.uint32
    rgba = image.view(np.uint8).reshape(30, 40, 4)
    # the same pixels by a histogram of the sources inside (rows from the bottom)
    inside = shown & (np.abs(xy[:, 0]) <= 2) & (xy[:, 1] >= -1) & (xy[:, 1] <= 3)
    count, _, _ = np.histogram2d(xy[inside, 1], xy[inside, 0], bins=(30, 40),
                                 range=((-1, 3), (-2, 2)))  # fmt: skip
    np.testing.assert_array_equal(rgba[..., 3] > 0, count > 0)
    assert rgba[..., 3].max() == 255 and rgba[count == 1, 3].max() == round(255 * 0.3)
    alone = detail.density_image(xy[:3], rgb[:3], shown[:3] | True, detail.View(-9, 9, -9, 9))
    assert set(alone.view(np.uint8).reshape(-1, 4)[:, 3].tolist()) == {0, round(255 * 0.3)}
    line, col = np.unravel_index(np.argmax(count), count.shape)
    there = inside & (np.floor((xy[:, 0] + 2) / 4 * 40) == col)
    there &= np.floor((xy[:, 1] + 1) / 4 * 30) == line
    np.testing.assert_allclose(rgba[line, col, :3], rgb[there].mean(0), atol=0.5)


def test_a_box_or_lasso_selects_every_source_inside(xy):
    shown = xy[:, 0] > -1
    rect = {"type": "rect", "x0": 0.5, "x1": -0.5, "y0": -1.0, "y1": 2.0}
    got = detail.rows_inside(xy, rect, shown)
    expected = (np.abs(xy[:, 0]) <= 0.5) & (xy[:, 1] >= -1) & (xy[:, 1] <= 2) & shown
    np.testing.assert_array_equal(got, np.flatnonzero(expected))
    triangle = {"type": "poly", "x": [0.0, 2.0, 0.0], "y": [0.0, 0.0, 2.0]}
    got = detail.rows_inside(xy, triangle, np.ones(len(xy), bool))
    expected = (xy[:, 0] > 0) & (xy[:, 1] > 0) & (xy.sum(1) < 2)
    np.testing.assert_array_equal(got, np.flatnonzero(expected))
    others = [{"type": "point", "x": 0, "y": 0}, {"type": "poly", "x": [0], "y": [0]}, {}]
    others += [{"type": "rect", "x0": "a", "x1": 1, "y0": 0, "y1": 1}, {"type": "rect", "x0": 0}]
    others += [{"type": "poly", "x": [0, 1, "b"], "y": [0, 0, 1]}, {"type": "poly", "x": [0, 1, 2]}]
    for other in others:  # not a box or a lasso, or not numbers (a forged message): nothing
        assert len(detail.rows_inside(xy, other, shown)) == 0


def test_colours_are_the_colour_mapper_s():
    """Bokeh's LinearColorMapper: ``palette[floor((v - low) / (high - low) * n)]``, clipped to
    the ends; NaN in the first colour (the map's ``nan_color``)."""
    palette = ["#000000", "#ff0000", "#00ff00", "#0000ff"]
    values = np.array([-5.0, 0.0, 0.26, 0.5, 0.99, 1.0, 7.0, np.nan], np.float32)
    got = Colouring(values, palette, 0.0, 1.0, []).rgb()
    index = [0, 0, 1, 2, 3, 3, 3, 0]
    expected = [[int(palette[i][j : j + 2], 16) for j in (1, 3, 5)] for i in index]
    np.testing.assert_array_equal(got, expected)
