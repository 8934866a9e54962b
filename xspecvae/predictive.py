"""Posterior predictive checks, and spectra drawn from the latent space.

:func:`draw` samples latents around every source (the guide's posterior) or from the prior,
decodes them and folds them through the source's own response: expected counts and Poisson
replicates of the source- and background-region counts. :func:`inference_data` puts draws and
data in an :class:`arviz.InferenceData`, :func:`plot_checks` plots one source's replicated
counts against the observed ones, and :func:`calibration` gives every source the posterior
predictive p-value of its fit statistic.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import lru_cache, partial

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

from xspecvae.catalog import PER_SOURCE, Pack
from xspecvae.latent import model_batches
from xspecvae.likelihood import LIKELIHOODS, PoissonPair
from xspecvae.vae import VAE, step_owner

__all__ = ["calibration", "draw", "inference_data", "plot_checks"]


def draw(
    vae: VAE, batch: dict, n_draws: int, key: jax.Array, *, prior: bool = False
) -> dict[str, np.ndarray]:
    """``n_draws`` latents per source of ``batch`` and the spectra they give, as arrays with
    the draws first (S draws, B sources, D latent dimensions, C channels):

    ``z`` (S, B, D) and ``log_norm`` (S, B) from the guide's posterior of each source, or with
    ``prior`` from the prior (``z ~ N(0, I)``, ``log_norm ~ N(*vae.inst.norm_prior)``);
    ``source`` (S, B, C), expected source counts through the source's ARF, exposure and RMF;
    ``background`` (S, B, C), expected background-region counts: profiled on the observed
    counts for W-stat, the observed ones for C-stat and for prior draws; ``counts_rep`` and
    ``background_rep`` (S, B, C), Poisson realisations of the source- and background-region
    counts. The RMFs are ``vae.inst.rmf`` (``vae.with_rmfs(pack.rmf)`` for another pack's);
    the step is compiled once per configuration, energy grid, batch size and ``n_draws``.
    """
    keys = jax.random.split(key, len(batch["counts"]))
    step = _simulator(step_owner(vae))
    out = step(vae.params, vae.operands(), _arrays(batch), keys, prior, n_draws=n_draws)
    return {k: np.asarray(v) for k, v in out.items()}


def inference_data(
    draws: dict,
    batch: dict,
    *,
    ids: ArrayLike | None = None,
    channel_energy: ArrayLike | None = None,
) -> az.InferenceData:
    """:func:`draw`'s output and its ``batch`` as ArviZ data (one chain):

    ``posterior``: ``z`` (chain, draw, source, latent), ``log_norm`` (chain, draw, source);
    ``posterior_predictive``: ``counts``, ``background`` (chain, draw, source, channel), the
    replicates; ``observed_data``: ``counts``, ``background`` (source, channel);
    ``constant_data``: ``alpha``, ``good`` (source, channel), ``exposure`` (source).
    Sources are labelled by ``ids`` (as strings; by default the batch's ``row`` numbers, else
    0..B-1), channels by ``channel_energy`` (keV, e.g. the bin centres; by default 0..C-1).
    """
    n_sources, n_channels = np.shape(batch["counts"])
    if ids is None:
        ids = np.asarray(batch.get("row", np.arange(n_sources)))
    else:
        ids = np.asarray(ids).astype(str)
        if len(np.unique(ids)) != len(ids):
            raise ValueError("source ids must be unique")
    channels = np.arange(n_channels) if channel_energy is None else np.asarray(channel_energy)
    per_channel, per_source = ["source", "channel"], ["source"]
    return az.from_dict(
        posterior={"z": draws["z"][None], "log_norm": draws["log_norm"][None]},
        posterior_predictive={
            "counts": draws["counts_rep"][None],
            "background": draws["background_rep"][None],
        },
        observed_data={k: np.asarray(batch[k]) for k in ("counts", "background")},
        constant_data={k: np.asarray(batch[k]) for k in ("alpha", "exposure", "good")},
        coords={
            "source": ids,
            "channel": channels,
            "latent": np.arange(np.shape(draws["z"])[-1]),
        },
        dims={
            "z": ["source", "latent"],
            "log_norm": per_source,
            "counts": per_channel,
            "background": per_channel,
            "alpha": per_channel,
            "good": per_channel,
            "exposure": per_source,
        },
    )


def calibration(
    vae: VAE,
    pack: Pack,
    rows: ArrayLike | None = None,
    *,
    n_draws: int = 64,
    batch_size: int = 256,
    seed: int = 0,
    flag: float = 0.01,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Posterior predictive p-value of the fit statistic of the ``rows`` of ``pack`` (all
    when None), on the pack's own RMFs, as columns:

    ``p_value``: the share of ``n_draws`` posterior draws ``theta_s`` for which
    ``T(y_rep_s, theta_s) >= T(y, theta_s)``, with ``y_rep_s`` a replicate drawn at
    ``theta_s`` and ``T`` the likelihood's deviance over good channels (W-stat: the background
    re-profiled on each data set; C-stat: the observed background taken as known, so only the
    source-region counts are replicated); ``statistic`` and ``statistic_rep``: the means over
    the draws of ``T(y, theta_s)`` and ``T(y_rep_s, theta_s)``; ``misfit`` (``p_value <
    flag``: sources the model does not explain); ``dof`` (good channels) and ``row``.

    Posterior predictive p-values are conservative: the data are used twice (to fit and to
    check), so even for a perfect model they pile toward 0.5 rather than spread uniformly;
    a small p (say below 0.01) flags a misfit, a large one proves little. The draws of a row
    depend only on ``seed`` and the row number, not on ``batch_size`` or the other rows.
    """
    rows = np.arange(len(pack)) if rows is None else np.asarray(rows)
    batch_size = max(1, min(batch_size, len(rows)))
    operands = vae.with_rmfs(pack.rmf).operands()
    simulate, base = _simulator(step_owner(vae)), jax.random.key(seed)
    parts = []
    for _, n, data in model_batches(vae, pack, rows, batch_size, progress, "calibration"):
        batch = _arrays(data)
        keys = _row_keys(base, data["row"])
        drawn = simulate(vae.params, operands, batch, keys, False, n_draws=n_draws)
        out = _check(vae.config.likelihood, batch, drawn)
        out["dof"] = batch["good"].sum(-1)
        parts.append({k: np.asarray(v)[:n] for k, v in out.items()})
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return {**out, "misfit": out["p_value"] < flag, "row": rows}


def plot_checks(idata: az.InferenceData, path: str | os.PathLike, *, source: int = 0) -> Figure:
    """Posterior predictive plots of the channel counts of the ``source``-th source (its
    position in ``idata``, not its id), written to ``path`` as PNG:

    left, the spectrum: observed counts per channel, the replicates' mean and their 90%
    highest-density interval (:func:`arviz.plot_hdi`); right, :func:`arviz.plot_ppc` of the
    cumulative distribution of the counts over the channels, observed against (at most 100)
    replicates and their mean. Returns the figure (not shown; no pyplot state is touched).
    """
    one = idata.isel(source=source)
    channel = one.observed_data["channel"].values
    replicated = one.posterior_predictive["counts"]
    fig = Figure(figsize=(11, 4), layout="constrained")
    spectrum, ppc = fig.subplots(1, 2)
    az.plot_hdi(
        channel,
        replicated,
        hdi_prob=0.9,
        smooth=False,
        ax=spectrum,
        fill_kwargs={"alpha": 0.3, "label": "replicated, 90% HDI"},
    )
    spectrum.plot(channel, replicated.mean(("chain", "draw")), color="C1", label="replicated mean")
    spectrum.plot(channel, one.observed_data["counts"], "k.", label="observed")
    spectrum.set(
        xlabel="channel energy (keV)" if channel.dtype.kind == "f" else "channel",
        ylabel="counts per channel",
        title=f"source {one.observed_data['source'].item()}",
    )
    if channel.dtype.kind == "f":
        spectrum.set_xscale("log")
    spectrum.legend()
    n_samples = replicated.sizes["chain"] * replicated.sizes["draw"]
    az.plot_ppc(
        one,
        kind="cumulative",
        var_names=["counts"],
        num_pp_samples=min(100, n_samples),
        random_seed=0,
        ax=ppc,
    )
    ppc.set_xlabel("counts per channel")
    fig.savefig(path, format="png", dpi=100)
    return fig


def _arrays(batch: dict) -> dict:
    return {k: batch[k] for k in PER_SOURCE}


@lru_cache(maxsize=4)
def _simulator(vae: VAE) -> Callable:
    """The jitted step of :func:`draw` for the models of ``vae``'s configuration and energy grid
    (:func:`~xspecvae.vae.step_owner`), compiled once per batch size and number of draws:
    parameters, instrument arrays and ``prior`` (a traced bool, so that both kinds of draws
    share it) are arguments. ``keys`` (B,): one per source,
    so that a source's draws do not depend on the others."""
    config = vae.config
    likelihood = LIKELIHOODS[config.likelihood]

    @partial(jax.jit, static_argnames="n_draws")
    def simulate(
        params: dict,
        operands: dict,
        batch: dict,
        keys: jax.Array,
        prior: bool | jax.Array,
        n_draws: int,
    ):
        model = vae.with_operands(params, operands)
        dim = config.latent_dim
        noise_keys, poisson_keys = jnp.moveaxis(jax.vmap(jax.random.split)(keys), 1, 0)
        noise = jax.vmap(lambda k: jax.random.normal(k, (n_draws, dim + 1)))(noise_keys)
        noise = jnp.moveaxis(noise, 1, 0)  # (S, B, D + 1)
        q = model.posterior(batch)
        loc = jnp.where(prior, jnp.zeros(dim + 1).at[dim].set(model.inst.norm_prior[0]), q.loc)
        scale = jnp.where(
            prior, jnp.ones(dim + 1).at[dim].set(model.inst.norm_prior[1]), q.conditional
        )
        latent = loc + scale * noise
        z, log_norm = latent[..., :dim], latent[..., dim]
        source = jax.vmap(lambda z, log_norm: model.decode(z, log_norm, batch)[1])(z, log_norm)
        n, b, alpha, good = (batch[k] for k in ("counts", "background", "alpha", "good"))
        background = jnp.where(prior, b, likelihood(source, alpha, n, b, good).background)
        rates = PoissonPair(source, alpha, background, good).rates
        rates = jnp.moveaxis(rates, 1, 0)  # (B, S, C, 2): each source with its key
        replicate = jax.vmap(lambda k, r: jax.random.poisson(k, r).astype(r.dtype))(
            poisson_keys, rates
        )
        replicate = jnp.moveaxis(replicate, 0, 1)
        return {
            "z": z,
            "log_norm": log_norm,
            "source": source,
            "background": jnp.broadcast_to(background, source.shape),
            "counts_rep": replicate[..., 0],
            "background_rep": replicate[..., 1],
        }

    return simulate


@jax.jit
def _row_keys(key: jax.Array, rows: jax.Array) -> jax.Array:
    return jax.vmap(jax.random.fold_in, (None, 0))(key, rows)


@partial(jax.jit, static_argnames="likelihood")
def _check(likelihood: str, batch: dict, drawn: dict) -> dict:
    """p-value and mean statistics of :func:`calibration` from the ``source`` (S, B, C) of the
    draws and their replicates ``counts_rep``, ``background_rep`` (those of :func:`draw`)."""
    n, b, alpha, good = (batch[k] for k in ("counts", "background", "alpha", "good"))
    source, n_rep = drawn["source"], drawn["counts_rep"]
    if likelihood == "cstat":  # the background is known: only the source region is data
        b_rep = jnp.broadcast_to(b, n_rep.shape)
    else:
        b_rep = drawn["background_rep"]
    fit = LIKELIHOODS[likelihood]
    observed = fit(source, alpha, n, b, good).deviance(jnp.stack([n, b], -1))
    replicated = fit(source, alpha, n_rep, b_rep, good).deviance(jnp.stack([n_rep, b_rep], -1))
    return {
        "p_value": jnp.mean(replicated >= observed, 0),
        "statistic": observed.mean(0),
        "statistic_rep": replicated.mean(0),
    }
