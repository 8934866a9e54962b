"""The posterior of every source, and what is read off it.

:func:`encode` runs a trained :class:`~xspecvae.vae.VAE` over a pack: the guide's posterior
(loc and scale of ``z`` and ``log_norm``), the decoder's column and redshift at the posterior
mean, and the fit there (expected counts, the model's SNR, the fit statistic).
:func:`knn_predict` classifies by nearest neighbours; :func:`quality` puts the figures of a
model on a labelled (simulated) pack together.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np
from scipy.stats import spearmanr
from tqdm import tqdm

from xspecvae.catalog import PER_SOURCE, Pack, hardness_ratios
from xspecvae.physics import band_share
from xspecvae.vae import LIKELIHOODS, VAE, photon_flux

__all__ = ["encode", "knn_predict", "quality"]


def encode(
    vae: VAE, pack: Pack, rows=None, *, batch_size: int = 1024, progress: bool = False
) -> dict[str, np.ndarray]:
    """Posterior and fit of the ``rows`` of ``pack`` (all when None), as columns:

    ``z_loc``, ``z_scale`` (N, D); ``norm_loc``, ``norm_scale`` (of ``log_norm``, the log count
    rate through the reference response); at the posterior mean: ``nh`` (1e22 cm^-2),
    ``redshift``, ``photon_flux`` (absorbed, 0.2-12 keV, photons/cm^2/s), ``source_counts`` and
    ``total_counts`` (expected in the source region, good channels),
    ``snr`` (``source / sqrt(total)``), ``statistic`` (the likelihood's deviance: W-stat, or
    C-stat with the background known) and ``dof`` (good channels).
    The pack must be on the model's grids; its own shared RMFs are used.
    """
    if not np.allclose(pack.grid.energy_edges, vae.inst.energy_edges, rtol=1e-6):
        raise ValueError(f"{pack.path}: its model energy grid is not the one the VAE learnt")
    rmf = vae.with_rmfs(pack.rmf).inst.rmf
    rows = np.arange(len(pack)) if rows is None else np.asarray(rows)
    step = _encoder(vae)
    parts = []
    for start in tqdm(range(0, len(rows), batch_size), disable=not progress, desc="encode"):
        chunk = rows[start : start + batch_size]
        batch = pack.read(np.pad(chunk, (0, batch_size - len(chunk)), mode="edge"))
        out = step(vae.params, rmf, {k: batch[k] for k in PER_SOURCE})
        parts.append({k: np.asarray(v)[: len(chunk)] for k, v in out.items()})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


@lru_cache(maxsize=4)
def _encoder(vae: VAE) -> Callable:
    """The jitted step of :func:`encode` for ``vae`` (compiled once per VAE and batch size)."""
    likelihood = LIKELIHOODS[vae.config.likelihood]
    in_band = jnp.asarray(band_share(vae.inst.energy_edges), jnp.float32)

    @jax.jit
    def step(params, rmf, batch):
        model = VAE(vae.config, params, vae.inst._replace(rmf=rmf))
        q = model.posterior(batch)
        decoded, source = model.decode(q.z_loc, q.norm_loc, batch)
        flux = photon_flux(decoded, q.norm_loc, model.inst)
        n, b, good = batch["counts"], batch["background"], batch["good"]
        fit = likelihood(source, batch["alpha"], n, b, good)
        total = jnp.sum(jnp.where(good, fit.rates[..., 0], 0.0), -1)
        expected = jnp.sum(jnp.where(good, source, 0.0), -1)
        return {
            **q._asdict(),
            "nh": decoded.nh,
            "redshift": decoded.redshift,
            "photon_flux": flux @ in_band,
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
    vae: VAE,
    pack: Pack,
    train_rows,
    validation_rows,
    *,
    k: int = 10,
    snr: float = 10.0,
    bright: tuple[float, ...] = (300.0, 1000.0),
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
    """
    train_rows, validation_rows = np.asarray(train_rows), np.asarray(validation_rows)
    rows = np.concatenate([train_rows, validation_rows])
    encoded = encode(vae, pack, rows)
    data = pack.read(rows)
    labels = np.asarray(pack.meta["label"]).astype(str)[rows]
    is_val = np.arange(len(rows)) >= len(train_rows)
    high = encoded["snr"] >= snr
    features = {
        "latent": encoded["z_loc"],
        "hardness": hardness_ratios(data, pack.grid.channel_lo, pack.grid.channel_hi),
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
    net = np.sum((data["counts"] - data["alpha"] * data["background"]) * data["good"], -1)
    per_dof = encoded["statistic"] / encoded["dof"]
    for counts in bright:
        chosen = per_dof[is_val & (net >= counts)]
        figures[f"fit_{counts:g}"] = {
            "n": len(chosen),
            "median": float(np.median(chosen)) if len(chosen) else math.nan,
            "below_1_5": float(np.mean(chosen < 1.5)) if len(chosen) else math.nan,
        }
    return figures


def _commonest(labels):
    values, counts = np.unique(labels, return_counts=True)
    return values[counts.argmax()]


def _balanced(guess, truth) -> float:
    return float(np.mean([np.mean(guess[truth == c] == c) for c in np.unique(truth)]))
