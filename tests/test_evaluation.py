"""Measuring a latent space: nearest-neighbour purity and classification, the baselines it is
set against, fits per counts range, brightness, residuals at a line."""

import numpy as np
import pytest

from xspecvae.evaluation import (
    counts_correlation,
    fit_by_counts,
    knn_predict,
    line_residual,
    net_counts,
    purity,
    shape_features,
)


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


@pytest.mark.parametrize("k", [1, 4])
def test_knn_on_identical_features_is_exact(k):
    x = np.arange(20.0).reshape(10, 2)
    labels = np.array(list("abcdefghij"))
    if k == 1:
        np.testing.assert_array_equal(knn_predict(x, labels, x, k), labels)
    else:
        assert knn_predict(x, labels, x[:1], k)[0] == "a"  # its own point is the nearest


def test_purity_counts_neighbours_of_the_same_class():
    rng = np.random.default_rng(5)
    labels = np.repeat(["a", "b"], 100)
    tight = np.where(labels[:, None] == "a", 0.0, 4.0) + rng.normal(0, 0.3, (200, 3))
    mixed = rng.normal(0, 1, (200, 3))
    scale = np.full((200, 3), 0.3)
    got = purity(
        {"tight": ("kl_symmetric", tight, scale), "mixed": ("euclidean", mixed, None)},
        labels,
        k=5,
    )
    assert got["tight"]["mean"] == 1.0 and got["tight"]["per_class"] == {"a": 1.0, "b": 1.0}
    assert 0.3 < got["mixed"]["mean"] < 0.7
    # a query's own group is never its neighbour: two copies of each point, grouped
    twins = np.concatenate([mixed, mixed])
    twin_labels = np.concatenate([labels, labels[::-1]])  # the copy has the other label
    groups = np.tile(np.arange(200), 2)
    alone = purity({"x": ("euclidean", twins, None)}, twin_labels, k=1, groups=groups)
    together = purity({"x": ("euclidean", twins, None)}, twin_labels, k=1)
    assert together["x"]["mean"] < 0.05 and alone["x"]["mean"] > 0.2


def test_purity_votes_like_knn_predict():
    """The majority vote of a query's neighbours is knn_predict's answer, the query itself and
    its group left out."""
    rng = np.random.default_rng(8)
    x = rng.normal(0, 1, (120, 2))
    labels = np.where(x[:, 0] > 0.3, "right", np.where(x[:, 1] > 0, "up", "down"))
    got = purity({"x": ("euclidean", x, None)}, labels, k=5)["x"]
    guess = np.array(
        [
            knn_predict(np.delete(x, i, 0), np.delete(labels, i), x[i : i + 1], 5)[0]
            for i in range(120)
        ]
    )
    assert got["knn"] == pytest.approx(np.mean(guess == labels))
    recall = [np.mean(guess[labels == c] == c) for c in np.unique(labels)]
    assert got["knn_balanced"] == pytest.approx(np.mean(recall))
    assert 0.7 < got["knn"] < 1.0


def test_shape_features_are_brightness_free_square_roots_of_net_shares():
    counts = np.array([[10.0, 30.0, 60.0, 5.0], [100.0, 300.0, 600.0, 50.0]])
    batch = {
        "counts": counts,
        "background": np.full((2, 4), 10.0),
        "alpha": np.array([[0.0, 0, 0, 1.0], [0, 0, 0, 10.0]]),  # the last bin: net <= 0
        "good": np.array([[True, True, True, True], [True, True, True, True]]),
    }
    x = shape_features(batch)
    np.testing.assert_allclose(x[0], x[1])  # ten times brighter, same shape
    np.testing.assert_allclose(x[0], np.sqrt([0.1, 0.3, 0.6, 0.0]))
    np.testing.assert_allclose(net_counts(batch), [95.0, 950.0])
    batch["good"][0, 2] = False  # a bad bin counts for nothing
    np.testing.assert_allclose(shape_features(batch)[0] ** 2, [0.25, 0.75, 0.0, 0.0])


def test_fit_by_counts_takes_medians_per_range():
    statistic = np.array([10.0, 20.0, 30.0, 200.0, 50.0])
    dof = np.array([10, 10, 10, 100, 10])
    net = np.array([50.0, 99.0, 150.0, 5000.0, 20000.0])
    got = fit_by_counts(statistic, dof, net, edges=(0, 100, 1000, 10000, np.inf))
    assert [g["n"] for g in got] == [2, 1, 1, 1]
    assert [g["median"] for g in got] == [1.5, 3.0, 2.0, 5.0]
    empty = fit_by_counts(statistic, dof, net, edges=(1e6, 2e6))
    assert empty[0]["n"] == 0 and np.isnan(empty[0]["median"])


def test_counts_correlation_finds_the_dimension_that_follows_brightness():
    rng = np.random.default_rng(2)
    net = 10 ** rng.uniform(2, 4, 500)
    loc = rng.normal(0, 1, (500, 3))
    loc[:, 1] = np.log10(net) + rng.normal(0, 0.1, 500)
    r = counts_correlation(loc, net)
    assert r[1] > 0.95 and np.all(np.abs(r[[0, 2]]) < 0.15)
    assert counts_correlation(np.ones((5, 2)), np.arange(1.0, 6.0)).tolist() == [0.0, 0.0]


def test_line_residual_sees_what_the_model_leaves_at_the_line():
    lo = np.linspace(5.0, 7.9, 30)
    hi = lo + 0.1
    model = np.full((2, 30), 100.0)
    counts = model.copy()
    counts[0, 14:16] += 60.0  # 6.4-6.6 keV: 60 extra counts in two channels of 100 each
    good = np.ones((2, 30), bool)
    got = line_residual(counts, model, good, lo, hi, np.array([6.45, 6.45]), 0.12)
    assert got[0] == pytest.approx(120.0 / np.sqrt(200.0 + 100.0))  # three channels in reach
    assert got[1] == 0.0
    good[:, 13:17] = False
    assert np.isnan(line_residual(counts, model, good, lo, hi, np.array([6.45, 6.45]), 0.12)).all()
