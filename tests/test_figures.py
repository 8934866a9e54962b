"""The figures: each writes a PNG of the expected size and draws what it is meant to draw."""

import matplotlib.image
import numpy as np
import pytest
from matplotlib.colors import LogNorm, to_rgba

from xspecvae import figures

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def check_png(path, size):
    """``path`` is a PNG of ``size`` (width, height) pixels, alone in its folder (no temporary
    file left behind)."""
    assert path.read_bytes().startswith(PNG_SIGNATURE)
    assert matplotlib.image.imread(path).shape[:2] == (size[1], size[0])
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def legend_labels(ax):
    return [text.get_text() for text in ax.get_legend().get_texts()]


def colorbar_label(figure):
    """The label of the figure's one colour bar (the axes that is not a plotting axes)."""
    (bar,) = [ax for ax in figure.axes if ax.get_label() == "<colorbar>"]
    return bar.get_ylabel()


@pytest.fixture
def blobs():
    """100 points in three classes, 50 AGN, 30 stars, 20 XRBs, in the order XRB, AGN, star."""
    rng = np.random.default_rng(1)
    names = np.array(["XRB"] * 20 + ["AGN"] * 50 + ["star"] * 30)
    return rng.normal(size=(100, 2)), names


def test_latent_map_of_classes_has_a_legend_with_counts_in_sorted_order(tmp_path, blobs):
    xy, names = blobs
    path = tmp_path / "new" / "folder" / "map.png"
    figure = figures.latent_map(xy, names, path, title="Classes", label="class")
    check_png(path, (700, 600))
    (ax,) = figure.axes
    assert legend_labels(ax) == ["AGN (50)", "XRB (20)", "star (30)"]
    assert ax.get_legend().get_title().get_text() == "class"
    assert ax.get_title() == "Classes"
    # a fixed colour per class in sorted order, the points drawn with it
    tab10 = [to_rgba(c) for c in ("tab:blue", "tab:orange", "tab:green")]
    handles = ax.get_legend().legend_handles
    assert [to_rgba(h.get_color()) for h in handles] == tab10
    (points,) = [c for c in ax.collections if len(c.get_offsets())]
    assert points.get_rasterized()
    colours = [tuple(c) for c in points.get_facecolors()[:, :3]]
    assert sorted(set(colours)) == sorted(c[:3] for c in tab10)


def test_latent_map_keep_draws_the_rest_grey_and_says_how_many_are_kept(tmp_path, blobs):
    xy, names = blobs
    keep = np.zeros(100, dtype=bool)
    keep[10:40] = True  # 10 XRBs and 20 AGN
    figure = figures.latent_map(xy, names, tmp_path / "m.png", title="SNR > 2", label="", keep=keep)
    (ax,) = figure.axes
    assert ax.get_title() == "SNR > 2 (30 of 100 kept)"
    assert legend_labels(ax) == ["AGN (20)", "XRB (10)"]
    grey, coloured = ax.collections
    assert len(grey.get_offsets()) == 70 and len(coloured.get_offsets()) == 30
    assert grey.get_zorder() < coloured.get_zorder()
    np.testing.assert_allclose(np.sort(coloured.get_offsets()[:, 0]), np.sort(xy[keep, 0]))


def test_latent_map_of_numbers_has_a_colour_bar_log_scaled_on_request(tmp_path, blobs):
    xy, _ = blobs
    values = np.geomspace(1e-3, 1e3, 100)
    values[0] = 0.0  # not on a log scale: grey, no failure
    figure = figures.latent_map(xy, values, tmp_path / "m.png", title="", label="NH", log=True)
    assert colorbar_label(figure) == "NH"
    points = figure.axes[0].collections[-1]
    assert isinstance(points.norm, LogNorm)
    assert figure.axes[0].get_legend() is None
    # integers are numbers unless told they are classes
    codes = np.arange(100) % 3
    figure = figures.latent_map(xy, codes, tmp_path / "c.png", title="", label="code")
    assert colorbar_label(figure) == "code"
    figure = figures.latent_map(
        xy, codes, tmp_path / "d.png", title="", label="code", categorical=True
    )
    assert legend_labels(figure.axes[0]) == ["0 (34)", "1 (33)", "2 (33)"]


def test_latent_map_of_300000_points_is_rasterized(tmp_path):
    rng = np.random.default_rng(2)
    xy = rng.normal(size=(300_000, 2))
    names = rng.choice(["AGN", "star", "XRB", "CV", "ULX"], 300_000)
    path = tmp_path / "big.png"
    figures.latent_map(xy, names, path, title="", label="", keep=rng.random(300_000) < 0.5)
    assert path.stat().st_size < 2_000_000  # rasterized, not 300,000 vector markers


def test_trajectory_map_draws_each_track_with_arrows_and_names(tmp_path, blobs):
    xy, _ = blobs
    tracks = [np.array([[0, 0], [1, 1], [2, 0]]), np.array([[-1, -1], [-2, 0]])]
    path = tmp_path / "t.png"
    figure = figures.trajectory_map(xy, tracks, path, title="Tracks", names=["XRB 1", "TDE 2"])
    check_png(path, (700, 600))
    (ax,) = figure.axes
    assert legend_labels(ax) == ["XRB 1", "TDE 2", "first epoch"]
    arrows = [a for a in ax.texts if a.arrow_patch is not None]
    assert len(arrows) == 2 + 1  # one between consecutive epochs
    np.testing.assert_array_equal(arrows[0].xy, [1, 1])
    np.testing.assert_array_equal(arrows[0].xyann, [0, 0])
    assert len(ax.collections[0].get_offsets()) == 100  # the grey map
    with pytest.raises(ValueError, match="1 names for 2 tracks"):
        figures.trajectory_map(xy, tracks, tmp_path / "u.png", title="", names=["one"])


def test_hardness_intensity_has_a_log_intensity_axis_and_hardness_from_minus_1_to_1(tmp_path):
    rng = np.random.default_rng(3)
    hardness = rng.uniform(-1, 1, 200)
    intensity = rng.lognormal(size=200)
    intensity[:5] = 0.0  # not drawable on a log axis: left out
    track = np.array([[-0.5, 1.0], [0.0, 3.0], [0.6, 0.3]])
    path = tmp_path / "q.png"
    figure = figures.hardness_intensity(hardness, intensity, path, tracks=[track], names=["XRB"])
    check_png(path, (700, 600))
    (ax,) = figure.axes
    assert ax.get_yscale() == "log"
    assert ax.get_xlim() == (-1.0, 1.0)
    assert len(ax.collections[0].get_offsets()) == 195
    assert legend_labels(ax) == ["XRB", "first epoch"]
    assert len([a for a in ax.texts if a.arrow_patch is not None]) == 2


def test_templates_are_normalised_lines_on_log_log_axes_over_the_epic_band(tmp_path):
    energy = np.geomspace(0.1, 20, 300)
    k = 4
    values = np.exp(-((np.log(energy)[None] - np.linspace(-1, 2, k)[:, None]) ** 2)) * 7.0
    path = tmp_path / "templates.png"
    figure = figures.templates(energy, values, path)
    check_png(path, (700, 500))
    (ax,) = figure.axes
    assert len(ax.lines) == k
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert ax.get_xlim() == pytest.approx((0.2, 12.0))
    assert legend_labels(ax) == ["0", "1", "2", "3"]
    band = (energy >= 0.2) & (energy <= 12)
    for line in ax.lines:
        assert line.get_ydata()[band].max() == pytest.approx(1.0)
    # many templates: a colour bar of the index instead of a legend
    figure = figures.templates(energy, np.ones((12, 300)), tmp_path / "many.png")
    assert len(figure.axes[0].lines) == 12 and figure.axes[0].get_legend() is None
    assert colorbar_label(figure) == "template index"
    with pytest.raises(ValueError, match="not"):
        figures.templates(energy, values.T, tmp_path / "wrong.png")


def test_activation_is_an_annotated_heatmap_of_classes_by_templates(tmp_path):
    classes = ["AGN", "star", "XRB"]
    mean = np.arange(15, dtype=float).reshape(3, 5) / 10
    path = tmp_path / "a.png"
    figure = figures.activation(classes, mean, path)
    ax = figure.axes[0]
    assert path.read_bytes().startswith(PNG_SIGNATURE)
    assert [t.get_text() for t in ax.get_yticklabels()] == classes
    assert [t.get_text() for t in ax.texts] == [f"{v:.2g}" for v in mean.ravel()]
    np.testing.assert_array_equal(ax.images[0].get_array(), mean)
    assert colorbar_label(figure) == "mean coefficient"


def test_spectrum_fit_shows_data_background_model_band_and_residuals(tmp_path):
    edges = np.geomspace(0.15, 15, 61)
    lo, hi = edges[:-1], edges[1:]
    model = 50 * (lo / 1.0) ** -1.0 + 2.0
    counts = np.random.default_rng(4).poisson(model).astype(float)
    background = np.full(60, 2.0)
    good = (lo > 0.2) & (hi < 12)
    path = tmp_path / "fit.png"
    figure = figures.spectrum_fit(
        lo,
        hi,
        counts,
        background,
        model,
        path,
        band=(0.8 * model, 1.2 * model),
        good=good,
        title="4XMM J000000.0+000000",
    )
    check_png(path, (700, 600))
    top, bottom = figure.axes
    assert top.get_title() == "4XMM J000000.0+000000"
    for ax in (top, bottom):
        assert ax.get_xscale() == "log"
        assert ax.get_xlim() == pytest.approx((0.2, 12.0))
    assert top.get_yscale() == "log"
    assert legend_labels(top) == ["data", "ignored", "background", "model", "credible band"]
    width = hi - lo
    model_line = [line for line in top.lines if line.get_label() == "model"][0]
    np.testing.assert_allclose(model_line.get_ydata(), model / width)  # counts per keV
    (band,) = top.collections[-1:]  # the shaded band spans 0.8 to 1.2 of the model
    vertices = band.get_paths()[0].vertices
    assert vertices[:, 1].max() == pytest.approx((1.2 * model / width).max())
    residual_good, _ = (line.get_ydata() for line in bottom.lines[:2])
    expected = ((counts - model) / np.sqrt(model))[good]
    np.testing.assert_allclose(residual_good, expected)


def test_training_curves_plot_both_losses_and_the_kl_weight(tmp_path):
    metrics = {
        "epoch": np.arange(1, 6),
        "train_loss": np.array([9.0, 7.0, 6.0, 5.5, 5.2]),
        "validation_loss": np.array([9.5, 7.5, 6.4, 6.0, 5.9]),
        "kl_weight": np.array([0.2, 0.4, 0.6, 0.8, 1.0]),
    }
    path = tmp_path / "curves.png"
    figure = figures.training_curves(metrics, path)
    check_png(path, (700, 450))
    loss, kl = figure.axes
    (legend,) = figure.legends  # below the axes, for both
    assert [text.get_text() for text in legend.get_texts()] == [
        "training",
        "validation",
        "KL weight",
    ]
    np.testing.assert_array_equal(loss.lines[1].get_ydata(), metrics["validation_loss"])
    assert kl.get_ylabel() == "KL weight"
    del metrics["kl_weight"]
    figure = figures.training_curves(metrics, tmp_path / "plain.png")
    assert len(figure.axes) == 1
    assert [text.get_text() for text in figure.legends[0].get_texts()] == ["training", "validation"]


def test_histogram_counts_the_finite_values_and_marks_named_values(tmp_path):
    values = np.concatenate([np.linspace(0, 1, 99), [np.nan]])
    path = tmp_path / "h.png"
    figure = figures.histogram(
        values, path, title="p-values", xlabel="p", bins=10, marks={"median": 0.5}
    )
    check_png(path, (600, 400))
    (ax,) = figure.axes
    assert len(ax.patches) == 10
    assert sum(bar.get_height() for bar in ax.patches) == 99
    assert legend_labels(ax) == ["median = 0.5"]
    (mark,) = ax.lines
    assert list(mark.get_xdata()) == [0.5, 0.5]
    assert ax.get_title() == "p-values" and ax.get_xlabel() == "p"


def test_a_figure_replaces_an_older_file_atomically(tmp_path):
    path = tmp_path / "h.png"
    path.write_bytes(b"old")
    figures.histogram([1.0, 2.0], path, title="", xlabel="")
    check_png(path, (600, 400))
