"""How good a latent space is, measured on labelled catalogues.

:func:`purity` gives, for several ways of measuring nearness at once, the share of each
source's ``k`` nearest neighbours (:func:`nearest`) that share its class and the accuracy of
their majority vote; the baselines it is set against are the 4XMM hardness ratios
(:func:`~xspecvae.catalog.hardness_ratios`) and :func:`shape_features`, the square roots of
each spectrum's share of its net counts. :func:`fit_by_counts` gives the fit statistic per
counts range, :func:`counts_correlation` how much each latent dimension follows brightness,
and :func:`line_residual` what a fit leaves at a line (the thinning of spectra, for the test of
a latent that should not encode brightness, is :func:`xspecvae.vae.thin`).
:func:`quality` is the older summary of a model on a simulated pack (kNN of held-out rows).
``benchmarks/latent_quality.py`` runs all of it on a catalogue the model was not built around.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import spearmanr

from xspecvae.catalog import Pack
from xspecvae.latent import Index, encode
from xspecvae.vae import VAE

__all__ = [
    "counts_correlation",
    "fit_by_counts",
    "knn_predict",
    "line_residual",
    "nearest",
    "net_counts",
    "purity",
    "quality",
    "shape_features",
]


def purity(
    features: dict,
    labels: ArrayLike,
    *,
    k: int = 10,
    queries: ArrayLike | None = None,
    groups: ArrayLike | None = None,
    keep: ArrayLike | None = None,
) -> dict[str, dict]:
    """Share of the ``k`` nearest neighbours that have the query's label, for each way of
    measuring nearness in ``features``: name -> ``(divergence, loc, scale)`` (scale None for
    :data:`~xspecvae.latent.DIVERGENCES` ``euclidean``, e.g. on hardness ratios), or
    ``(divergence, loc, scale, conditional)`` for ``match`` and ``predictive``. ``queries``
    (rows; default all), ``groups`` (source ids: a query's own other observations are not its
    neighbours), ``keep`` (rows allowed as queries and neighbours). Returns per name ``mean``
    (over queries), ``balanced`` (mean over classes of the per-class mean), ``per_class``, and
    the majority vote of the same neighbours as a classifier: ``knn`` (accuracy) and
    ``knn_balanced`` (mean recall over classes)."""
    labels = np.asarray(labels).astype(str)
    keep = np.ones(len(labels), bool) if keep is None else np.asarray(keep, bool)
    queries = np.flatnonzero(keep) if queries is None else np.asarray(queries)
    queries = queries[keep[queries]]
    classes, codes = np.unique(labels, return_inverse=True)
    truth = labels[queries]
    out = {}
    for name, feature in features.items():
        rows = nearest(feature, queries, k, groups=groups, keep=keep)
        same = np.where(rows >= 0, labels[rows] == truth[:, None], np.nan)
        per_query = np.nanmean(same, 1)
        per_class = {c: float(np.mean(per_query[truth == c])) for c in np.unique(truth)}
        guess = classes[_vote(np.where(rows >= 0, codes[rows], -1), len(classes))]
        out[name] = {
            "mean": float(np.mean(per_query)),
            "balanced": float(np.mean(list(per_class.values()))),
            "per_class": per_class,
            "knn": float(np.mean(guess == truth)),
            "knn_balanced": _balanced(guess, truth),
        }
    return out


def nearest(
    feature: tuple,
    queries: ArrayLike,
    k: int,
    *,
    groups: ArrayLike | None = None,
    keep: ArrayLike | None = None,
) -> np.ndarray:
    """The rows ``(Q, k)`` of the ``k`` nearest neighbours of the rows ``queries`` among all
    rows (``keep``: those allowed), by one way of measuring nearness of :func:`purity`'s
    ``features``; ``groups``: a query's own group is left out. Row -1 where fewer qualify."""
    how, loc, scale, *conditional = feature
    scale = np.ones_like(loc) if scale is None else scale
    conditional = conditional[0] if conditional else None
    groups = np.arange(len(loc)) if groups is None else np.asarray(groups)
    rows, _ = Index(loc, scale, groups, conditional).search(
        loc[queries],
        scale[queries],
        k,
        divergence=how,
        keep=keep,
        exclude_groups=groups[queries],
        conditional=None if conditional is None else conditional[queries],
    )
    return rows


def _vote(near: np.ndarray, n_classes: int) -> np.ndarray:
    """The class index (Q,) most common among the neighbours' codes ``near`` (Q, k), nearest
    first (-1: no neighbour); ties go to the class of the nearer neighbours."""
    q, k = near.shape
    votes = np.zeros((q, n_classes + 1))
    weight = 1.0 + 1e-6 * np.arange(k, 0, -1)
    np.add.at(votes, (np.arange(q)[:, None], np.where(near >= 0, near, n_classes)), weight)
    return votes[:, :n_classes].argmax(1)


def knn_predict(
    reference: ArrayLike, labels: ArrayLike, queries: np.ndarray, k: int = 10, *, chunk: int = 1024
) -> np.ndarray:
    """The majority label among the ``k`` nearest ``reference`` points (Euclidean) of each
    query; ties go to the label of the nearer neighbours."""
    reference, labels = np.asarray(reference, np.float64), np.asarray(labels)
    classes, codes = np.unique(labels, return_inverse=True)
    out = []
    for start in range(0, len(queries), chunk):
        q = np.asarray(queries[start : start + chunk], np.float64)
        d = (q**2).sum(1)[:, None] - 2 * q @ reference.T + (reference**2).sum(1)[None]
        near = np.argpartition(d, k - 1, axis=1)[:, :k]
        near = np.take_along_axis(near, np.argsort(np.take_along_axis(d, near, 1), 1), 1)
        out.append(classes[_vote(codes[near], len(classes))])
    return np.concatenate(out)


# ---------------------------------------------------------------------------------------------
# Baselines and diagnostics from the counts


def net_counts(batch: dict) -> np.ndarray:
    """Net counts ``N - alpha B`` summed over good channels (B,)."""
    net = (np.asarray(batch["counts"]) - batch["alpha"] * batch["background"]) * batch["good"]
    return net.sum(-1)


def shape_features(batch: dict) -> np.ndarray:
    """The simplest description of a spectrum's shape (B, C): the square root of each good
    channel's share of the net counts (negative net counts clipped at 0), so that Euclidean
    distances between them are Hellinger distances of the count distributions."""
    net = np.clip(np.asarray(batch["counts"]) - batch["alpha"] * batch["background"], 0, None)
    net = net * batch["good"]
    return np.sqrt(net / np.maximum(net.sum(-1, keepdims=True), 1e-30))


#: Edges of the net-counts ranges of :func:`fit_by_counts`.
COUNTS_EDGES = (0, 100, 300, 1_000, 3_000, 10_000, math.inf)


def fit_by_counts(
    statistic: ArrayLike, dof: ArrayLike, net: ArrayLike, edges: Sequence[float] = COUNTS_EDGES
) -> list[dict]:
    """Median fit statistic per degree of freedom of the spectra in each net-counts range
    ``[edges[i], edges[i + 1])``: ``lo``, ``hi``, ``n`` and ``median`` (NaN when empty)."""
    per_dof = np.asarray(statistic, np.float64) / np.maximum(np.asarray(dof), 1)
    net = np.asarray(net)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        chosen = per_dof[(net >= lo) & (net < hi)]
        median = float(np.median(chosen)) if len(chosen) else math.nan
        out.append({"lo": lo, "hi": hi, "n": len(chosen), "median": median})
    return out


def counts_correlation(loc: ArrayLike, net: ArrayLike) -> np.ndarray:
    """Pearson correlation of each latent dimension of ``loc`` (N, D) with log10 of the net
    counts (clipped at 1): near 0 for a latent that describes shape and not brightness."""
    x = np.log10(np.clip(np.asarray(net, np.float64), 1.0, None))
    loc = np.asarray(loc, np.float64)
    x, loc = x - x.mean(), loc - loc.mean(0)
    denominator = np.sqrt((x**2).sum() * (loc**2).sum(0))
    return np.divide(x @ loc, denominator, out=np.zeros(loc.shape[1]), where=denominator > 0)


def line_residual(
    counts: ArrayLike,
    model: ArrayLike,
    good: ArrayLike,
    channel_lo: ArrayLike,
    channel_hi: ArrayLike,
    energy: ArrayLike,
    half_width: ArrayLike,
) -> np.ndarray:
    """What a fit leaves at a line, in sigma: ``(sum n - sum m) / sqrt(sum m)`` over the good
    channels whose centre lies within ``half_width`` (keV) of ``energy`` (B,) (observed frame),
    with ``m`` the fit's expected counts in the source region (B, C); NaN when no channel."""
    centre = 0.5 * (np.asarray(channel_lo) + np.asarray(channel_hi))
    near = np.abs(centre[None, :] - np.asarray(energy)[:, None]) <= np.asarray(half_width)
    near &= np.asarray(good, bool)
    observed = np.sum(np.where(near, counts, 0.0), -1)
    expected = np.sum(np.where(near, model, 0.0), -1)
    sigma = np.sqrt(np.maximum(expected, 1e-30))
    return np.where(near.any(-1), (observed - expected) / sigma, np.nan)


# ---------------------------------------------------------------------------------------------
# A model on its own simulated pack


def quality(
    vae: VAE,
    pack: Pack,
    train_rows: ArrayLike,
    validation_rows: ArrayLike,
    *,
    k: int = 10,
    snr: float = 10.0,
    bright: tuple[float, ...] = (300.0, 1000.0),
    table: dict | None = None,
) -> dict:
    """Figures of a model on a labelled pack (``pack.meta["label"]``, ``pack.truth["nh"]``):

    - ``latent``, ``hardness``: a ``k``-nearest-neighbour classifier of the validation rows
      among the training rows, on the posterior means of ``z`` and on the 4XMM hardness
      ratios: ``accuracy``, ``balanced`` (mean recall over classes) and ``majority`` (the
      accuracy of always answering the commonest class); ``..._snr`` the same with reference
      and queries restricted to a model SNR of at least ``snr``.
    - ``nh_spearman``: rank correlation of the column head with the true column (Galactic plus
      intrinsic) over the validation rows, and ``nh_spearman_snr`` over those of SNR >= ``snr``.
    - ``fit_<b>`` for each ``b`` of ``bright``: the validation rows with at least ``b`` net
      counts: how many (``n``), their median fit statistic per good channel (``median``) and the
      share of them below 1.5 (``below_1_5``).

    ``table``: the :func:`~xspecvae.latent.encode` table of every row of ``pack`` when it is
    already made (its rows are used instead of encoding them again).
    """
    train_rows, validation_rows = np.asarray(train_rows), np.asarray(validation_rows)
    rows = np.concatenate([train_rows, validation_rows])
    if table is None:
        encoded = encode(vae, pack, rows)
    else:
        encoded = {k: np.asarray(v)[rows] for k, v in table.items()}
    data = pack.read(rows)
    labels = np.asarray(pack.meta["label"]).astype(str)[rows]
    is_val = np.arange(len(rows)) >= len(train_rows)
    high = encoded["snr"] >= snr
    features = {
        "latent": encoded["z_loc"],
        "hardness": encoded["hr"],
    }
    figures = {"n_train": len(train_rows), "n_validation": len(validation_rows), "k": k}
    figures["n_validation_snr"] = int((high & is_val).sum())
    for name, x in features.items():
        for suffix, keep in (("", True), ("_snr", high)):
            ref, query = ~is_val & keep, is_val & keep
            guess = knn_predict(x[ref], labels[ref], x[query], k)
            truth = labels[query]
            figures[name + suffix] = {
                "accuracy": float(np.mean(guess == truth)),
                "balanced": _balanced(guess, truth),
                "majority": float(np.mean(truth == _commonest(labels[ref]))),
            }
    nh_true = (pack.truth["nh_gal"] + np.nan_to_num(pack.truth["nh"]))[rows]
    for suffix, keep in (("", is_val), ("_snr", is_val & high)):
        rho = spearmanr(encoded["nh"][keep], nh_true[keep]).statistic
        figures["nh_spearman" + suffix] = float(rho)
    per_dof = encoded["statistic"] / encoded["dof"]
    net = net_counts(data)
    for counts in bright:
        chosen = per_dof[is_val & (net >= counts)]
        figures[f"fit_{counts:g}"] = {
            "n": len(chosen),
            "median": float(np.median(chosen)) if len(chosen) else math.nan,
            "below_1_5": float(np.mean(chosen < 1.5)) if len(chosen) else math.nan,
        }
    return figures


def _commonest(labels: np.ndarray):
    values, counts = np.unique(labels, return_counts=True)
    return values[counts.argmax()]


def _balanced(guess: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([np.mean(guess[truth == c] == c) for c in np.unique(truth)]))
