"""The posterior of every source, and what is read off it.

:func:`encode` runs a trained :class:`~xspecvae.vae.VAE` over a pack: the guide's posterior
(loc and scale of ``z`` and ``log_norm``), the decoder's column and redshift at the posterior
mean, and the fit there (expected counts, the model's SNR, the fit statistic).
:func:`knn_predict` classifies by nearest neighbours; :func:`quality` puts the figures of a
model on a labelled (simulated) pack together.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from scipy.stats import spearmanr
from tqdm import tqdm

from xspecvae.catalog import Pack, hardness_ratios
from xspecvae.vae import LIKELIHOODS, VAE

__all__ = ["encode", "knn_predict", "quality"]

_ARRAYS = ("counts", "background", "alpha", "good", "exposure", "arf", "rmf_index")


def encode(
    vae: VAE, pack: Pack, rows=None, *, batch_size: int = 1024, progress: bool = False
) -> dict[str, np.ndarray]:
    """Posterior and fit of the ``rows`` of ``pack`` (all when None), as columns:

    ``z_loc``, ``z_scale`` (N, D); ``norm_loc``, ``norm_scale`` (log photon flux, photons/cm^2/s
    over the model grid); at the posterior mean: ``nh`` (1e22 cm^-2), ``redshift``,
    ``source_counts`` and ``total_counts`` (expected in the source region, good channels),
    ``snr`` (``source / sqrt(total)``), ``statistic`` (the likelihood's deviance: W-stat, or
    C-stat with the background known) and ``dof`` (good channels).
    The pack must be on the model's grids; its own shared RMFs are used.
    """
    if not np.allclose(pack.grid.energy_edges, vae.inst.energy_edges, rtol=1e-6):
        raise ValueError(f"{pack.path}: its model energy grid is not the one the VAE learnt")
    vae = vae.with_rmfs(pack.rmf)
    rows = np.arange(len(pack)) if rows is None else np.asarray(rows)
    step = _encoder(vae)
    parts = []
    for start in tqdm(range(0, len(rows), batch_size), disable=not progress, desc="encode"):
        chunk = rows[start : start + batch_size]
        batch = pack.read(np.pad(chunk, (0, batch_size - len(chunk)), mode="edge"))
        out = step(vae.params, {k: batch[k] for k in _ARRAYS})
        parts.append({k: np.asarray(v)[: len(chunk)] for k, v in out.items()})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _encoder(vae: VAE) -> Callable:
    likelihood = LIKELIHOODS[vae.config.likelihood]

    @jax.jit
    def step(params, batch):
        model = VAE(vae.config, params, vae.inst)
        q = model.posterior(batch)
        decoded, source = model.decode(q.z_loc, q.norm_loc, batch)
        n, b, good = batch["counts"], batch["background"], batch["good"]
        fit = likelihood(source, batch["alpha"], n, b, good)
        total = jnp.sum(jnp.where(good, fit.rates[..., 0], 0.0), -1)
        expected = jnp.sum(jnp.where(good, source, 0.0), -1)
        return {
            **q._asdict(),
            "nh": decoded.nh,
            "redshift": decoded.redshift,
            "source_counts": expected,
            "total_counts": total,
            "snr": expected / jnp.sqrt(jnp.maximum(total, 1e-30)),
            "statistic": fit.deviance(jnp.stack([n, b], -1)),
            "dof": good.sum(-1),
        }

    return step


def knn_predict(reference, labels, queries, k: int = 10, *, chunk: int = 1024) -> np.ndarray:
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
        votes = np.zeros((len(q), len(classes)))
        weight = 1.0 + 1e-6 * np.arange(k, 0, -1)  # nearer neighbours break ties
        np.add.at(votes, (np.arange(len(q))[:, None], codes[near]), weight)
        out.append(classes[votes.argmax(1)])
    return np.concatenate(out)


def quality(
    vae: VAE, pack: Pack, train_rows, validation_rows, *, k: int = 10, bright: float = 1000.0
) -> dict:
    """Figures of a model on a labelled pack (``pack.meta["label"]``, ``pack.truth["nh"]``):

    - ``knn_accuracy`` / ``knn_balanced``: a ``k``-nearest-neighbour classifier of the
      validation rows on the posterior means of the training rows (accuracy; mean recall over
      classes); ``hr_accuracy`` / ``hr_balanced``: the same on the 4XMM hardness ratios;
      ``majority``: the accuracy of always answering the commonest class.
    - ``nh_spearman``: rank correlation of the column head with the true column (Galactic plus
      intrinsic) over the validation rows, and ``nh_spearman_bright`` over the bright ones.
    - ``statistic_per_dof``: median fit statistic per good channel of the validation rows with
      at least ``bright`` net counts (``n_bright`` of them), and the share of those below 1.5.
    """
    train_rows, validation_rows = np.asarray(train_rows), np.asarray(validation_rows)
    encoded = encode(vae, pack, np.concatenate([train_rows, validation_rows]))
    ref, val = slice(0, len(train_rows)), slice(len(train_rows), None)
    labels = np.asarray(pack.meta["label"]).astype(str)
    truth = labels[validation_rows]
    data = pack.read(np.concatenate([train_rows, validation_rows]))
    hr = hardness_ratios(data, pack.grid.channel_lo, pack.grid.channel_hi)
    latent_guess = knn_predict(encoded["z_loc"][ref], labels[train_rows], encoded["z_loc"][val], k)
    hr_guess = knn_predict(hr[ref], labels[train_rows], hr[val], k)
    nh_true = pack.truth["nh_gal"] + np.nan_to_num(pack.truth["nh"])
    net = np.sum((data["counts"] - data["alpha"] * data["background"]) * data["good"], -1)
    is_bright = net[val] >= bright
    per_dof = encoded["statistic"][val][is_bright] / encoded["dof"][val][is_bright]
    nh_val = nh_true[validation_rows]
    return {
        "n_train": len(train_rows),
        "n_validation": len(validation_rows),
        "k": k,
        "majority": float(np.mean(truth == _commonest(labels[train_rows]))),
        "knn_accuracy": float(np.mean(latent_guess == truth)),
        "knn_balanced": _balanced(latent_guess, truth),
        "hr_accuracy": float(np.mean(hr_guess == truth)),
        "hr_balanced": _balanced(hr_guess, truth),
        "nh_spearman": float(spearmanr(encoded["nh"][val], nh_val).statistic),
        "nh_spearman_bright": float(
            spearmanr(encoded["nh"][val][is_bright], nh_val[is_bright]).statistic
        ),
        "n_bright": int(is_bright.sum()),
        "statistic_per_dof": float(np.median(per_dof)),
        "share_below_1_5": float(np.mean(per_dof < 1.5)),
    }


def _commonest(labels):
    values, counts = np.unique(labels, return_counts=True)
    return values[counts.argmax()]


def _balanced(guess, truth) -> float:
    return float(np.mean([np.mean(guess[truth == c] == c) for c in np.unique(truth)]))
