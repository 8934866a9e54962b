"""Reading the latent space: nearest-neighbour classification and the hardness-ratio baseline."""

import numpy as np
import pytest

from xspecvae.catalog import BANDS_4XMM, band_matrix, hardness_ratios
from xspecvae.latent import knn_predict


def test_knn_predicts_the_majority_of_the_nearest_points():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]])
    labels = np.repeat(["a", "b", "c"], 50)
    reference = centres.repeat(50, 0) + rng.normal(0, 0.5, (150, 2))
    queries = centres + rng.normal(0, 0.1, (3, 2))
    assert list(knn_predict(reference, labels, queries, k=7)) == ["a", "b", "c"]
    # k = 1 is the nearest point, whatever the majority around it
    reference = np.array([[0.0], [1.0], [1.1], [1.2]])
    assert knn_predict(reference, np.array(["x", "y", "y", "y"]), np.array([[0.2]]), k=1) == "x"
    assert knn_predict(reference, np.array(["x", "y", "y", "y"]), np.array([[0.2]]), k=3) == "y"
    # a 1-1 tie goes to the nearer neighbour; chunks give the same answer as one pass
    two = np.array([[0.0], [1.0]])
    assert knn_predict(two, np.array(["far", "near"]), np.array([[0.9]]), k=2) == "near"
    big = rng.normal(size=(300, 3))
    many = rng.normal(size=(50, 3))
    ids = rng.choice(["p", "q", "r"], 300)
    np.testing.assert_array_equal(
        knn_predict(big, ids, many, 5, chunk=7), knn_predict(big, ids, many, 5)
    )


def test_hardness_ratios_of_net_counts_in_the_4xmm_bands():
    edges = np.array([0.2, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 3.0, 4.5, 8.0, 12.0])
    lo, hi = edges[:-1], edges[1:]
    matrix = band_matrix(lo, hi)
    assert matrix.shape == (10, 5) and np.all(matrix.sum(1) == 1)
    np.testing.assert_array_equal(matrix.argmax(1), [0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
    counts = np.array([[10, 10, 30, 10, 5, 5, 0, 0, 8, 2], [0, 0, 0, 0, 0, 0, 0, 0, 0, 4.0]])
    background = np.full((2, 10), 4.0)
    alpha = np.full((2, 10), 0.5)
    good = np.ones((2, 10), bool)
    good[0, 0] = False  # a bad channel counts for nothing
    batch = {"counts": counts, "background": background, "alpha": alpha, "good": good}
    hr = hardness_ratios(batch, lo, hi)
    net = np.clip(counts - 2.0, 0, None) * good
    bands = np.array([[8.0, 36.0, 6.0, 0.0, 6.0], [0, 0, 0, 0, 2.0]])
    np.testing.assert_allclose(net @ matrix, bands)
    expected = [
        [(36 - 8) / 44, (6 - 36) / 42, (0 - 6) / 6, (6 - 0) / 6],
        [0.0, 0.0, 0.0, 1.0],  # empty bands: 0; net counts below zero: clipped
    ]
    np.testing.assert_allclose(hr, expected)
    assert len(BANDS_4XMM) == 5 and hr.shape == (2, 4)


@pytest.mark.parametrize("k", [1, 4])
def test_knn_on_identical_features_is_exact(k):
    x = np.arange(20.0).reshape(10, 2)
    labels = np.array(list("abcdefghij"))
    if k == 1:
        np.testing.assert_array_equal(knn_predict(x, labels, x, k), labels)
    else:
        assert knn_predict(x, labels, x[:1], k)[0] == "a"  # its own point is the nearest
