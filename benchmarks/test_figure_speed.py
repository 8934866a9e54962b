"""The latent map of a whole catalogue: 300,000 points in five classes, half kept, written as
PNG by :func:`xspecvae.figures.latent_map` (rasterized points, legend with counts, grey
background) against a bare matplotlib scatter of the same points (the reference). Run:
``python -m pytest benchmarks/test_figure_speed.py``."""

import matplotlib
import numpy as np
import pytest

from xspecvae import figures

matplotlib.use("Agg")
N = 300_000


@pytest.fixture(scope="module")
def points():
    rng = np.random.default_rng(2)
    names = rng.choice(["AGN", "star", "XRB", "CV", "ULX"], N)
    return rng.normal(size=(N, 2)), names, rng.random(N) < 0.5


def test_latent_map(benchmark, record, points, tmp_path):
    xy, names, keep = points
    path = tmp_path / "map.png"
    benchmark.pedantic(
        figures.latent_map, (xy, names, path), {"title": "", "label": "", "keep": keep}, rounds=3
    )
    record(benchmark, "latent map of 300k points (PNG)", "xspecvae figures.latent_map", N)
    assert path.stat().st_size < 2_000_000


def test_scatter_reference(benchmark, record, points, tmp_path):
    import matplotlib.pyplot as plt

    xy, _, _ = points

    def scatter():
        figure, ax = plt.subplots(figsize=(7, 6))
        ax.scatter(*xy.T, s=1, rasterized=True)
        figure.savefig(tmp_path / "ref.png", dpi=figures.DPI)
        plt.close(figure)

    benchmark.pedantic(scatter, rounds=3)
    record(
        benchmark,
        "latent map of 300k points (PNG)",
        "numpy reference: a bare matplotlib scatter",
        N,
    )
