"""The SVI of training: its options (:class:`TrainOptions`), the ELBO per spectrum of the model
and guide of :mod:`xspecvae.vae` (``TraceMeanField_ELBO``, analytic KL, annealed over the first
epochs), Adam with linear warm-up and cosine decay, and one update step that checks its loss
and parameters are finite. :mod:`xspecvae.train` runs it over a pack."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import optax
from jax.typing import ArrayLike
from numpyro import handlers
from numpyro.infer import SVI, TraceMeanField_ELBO
from numpyro.infer.svi import SVIState

from xspecvae.vae import Config, ModelArrays, guide, model, thinned_copies

__all__ = ["TrainOptions", "checked_update", "kl_weight", "make_svi", "optimizer"]


@dataclass(frozen=True)
class TrainOptions:
    """How to train (saved in ``config.json``). ``batch_size`` is global (over every process
    and device); the learning rate warms up linearly over ``warmup_steps`` and decays by a
    cosine to 5 % at the end; gradients are clipped at a global norm of 10."""

    epochs: int = 40
    batch_size: int = 256
    learning_rate: float = 1e-3
    warmup_steps: int = 200
    kl_warmup_epochs: int = 5  # KL weight rises linearly from 0 to 1 over these epochs
    free_bits: float = 0.1  # nats per latent dimension (see vae.guide); 0 for none
    thin_share: float = 0.0  # share of each batch replaced by thinned copies (vae.thinned_copies)
    validation_fraction: float = 0.1
    checkpoint_every: int = 200  # steps (and at the end of every epoch)
    seed: int = 0


def make_svi(
    inst: ModelArrays, config: Config, options: TrainOptions, n_train: int, total_steps: int
) -> SVI:
    """The SVI of :func:`~xspecvae.train.train`: model and guide over ``n_train`` sources,
    their ELBO divided by ``n_train`` (losses are per spectrum), the optimizer of ``options``
    over ``total_steps``."""

    def per_spectrum(program: Callable[..., None]):
        program = partial(program, inst=inst, config=config, n_sources=n_train)
        return handlers.scale(program, scale=1.0 / n_train)

    adam = optimizer(options, total_steps)
    return SVI(per_spectrum(model), per_spectrum(guide), adam, TraceMeanField_ELBO())


def checked_update(
    svi: SVI,
    state: SVIState,
    batch: dict[str, jax.Array],
    kl_weight: ArrayLike,
    free_bits: ArrayLike,
    key: jax.Array | None = None,
    thin_share: float = 0.0,
) -> tuple[SVIState, jax.Array, jax.Array]:
    """One step of :func:`~xspecvae.train.train` (jit it with ``svi`` and ``thin_share`` bound):
    ``svi.update`` on ``batch`` (a ``thin_share`` of its rows replaced by thinned copies, drawn
    with ``key``: :func:`~xspecvae.vae.thinned_copies`) and whether its loss and the new
    parameters are all finite."""
    if thin_share > 0:
        batch = thinned_copies(key, batch, thin_share)
    state, loss = svi.update(state, batch, kl_weight=kl_weight, free_bits=free_bits)
    leaves = jax.tree.leaves(svi.optim.get_params(state.optim_state))
    finite = jnp.isfinite(loss) & jnp.all(jnp.stack([jnp.isfinite(x).all() for x in leaves]))
    return state, loss, finite


def optimizer(options: TrainOptions, total_steps: int) -> optax.GradientTransformation:
    """Adam with linear warm-up and cosine decay to 5 %, gradients clipped at norm 10."""
    schedule = optax.warmup_cosine_decay_schedule(
        0.0,
        options.learning_rate,
        min(options.warmup_steps, max(total_steps - 1, 1)),
        max(total_steps, 2),
        end_value=options.learning_rate * 0.05,
    )
    return optax.chain(optax.clip_by_global_norm(10.0), optax.adam(schedule))


def kl_weight(options: TrainOptions, epoch: int) -> float:
    """The weight of the KL terms in ``epoch`` (from 0): rising linearly to 1 over
    ``options.kl_warmup_epochs``."""
    if options.kl_warmup_epochs <= 0:
        return 1.0
    return min(1.0, (epoch + 1) / options.kl_warmup_epochs)
