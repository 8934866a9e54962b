"""Training the VAE on a pack with stochastic variational inference.

``SVI`` with ``TraceMeanField_ELBO`` (analytic KL), Adam with linear warm-up and cosine decay,
optional KL annealing, one jitted step, data parallel over every visible device (the batch is
sharded along its first axis, parameters are replicated). A run lives in a folder::

    RUN/config.json       model and training options, and the pack it was trained on
    RUN/checkpoint.pkl    parameters, optimizer state, RNG key, epoch and step (atomic)
    RUN/metrics.csv       one line per epoch: losses per spectrum, time, throughput

The pack is loaded into memory (a 300,000-spectrum pn pack needs about 2 GB); a fixed share
of its rows, chosen by the seed, is held out for validation. Batches of an epoch come from a
generator seeded by (seed, epoch), so a run resumed from a checkpoint takes the same steps as
one never interrupted.
"""

from __future__ import annotations

import csv
import json
import math
import os
import pickle
import tempfile
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import jax
import numpy as np
import optax
from jax.sharding import AxisType, NamedSharding, PartitionSpec
from numpyro.infer import SVI, TraceMeanField_ELBO
from tqdm import tqdm

from xspecvae.catalog import Pack
from xspecvae.vae import Config, Instrument, guide, model

__all__ = ["TrainOptions", "train", "load_run", "TrainingError"]

_ARRAYS = ("counts", "background", "alpha", "good", "exposure", "arf", "rmf_index")


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss); the last good checkpoint is kept."""


@dataclass(frozen=True)
class TrainOptions:
    epochs: int = 20
    batch_size: int = 256
    learning_rate: float = 1e-3
    warmup_steps: int = 200
    kl_warmup_epochs: int = 0  # KL weight rises linearly from 0 to 1 over these epochs
    validation_fraction: float = 0.1
    checkpoint_every: int = 200  # steps (and at the end of every epoch)
    seed: int = 0


def train(
    pack_path,
    run: str | os.PathLike,
    *,
    config: Config = Config(),
    options: TrainOptions = TrainOptions(),
    instrument: str | None = None,
    resume: bool = False,
    max_steps: int | None = None,
    progress: bool = True,
) -> dict:
    """Train on ``pack_path`` into the folder ``run``; returns the last epoch's metrics.

    With ``resume`` the run continues from its checkpoint (its saved options win).
    ``max_steps`` stops after that many steps in total (for tests and time-boxed jobs).
    """
    run = Path(run)
    if resume and (run / "checkpoint.pkl").exists():
        saved = json.loads((run / "config.json").read_text())
        config, options = Config(**saved["config"]), TrainOptions(**saved["options"])
        pack_path, instrument = saved["pack"], saved["instrument"]
    with Pack(pack_path, instrument) as pack:
        inst = Instrument.from_pack(pack)
        data = {k: v for k, v in pack.load().items() if k in _ARRAYS}
        instrument = pack.instrument
    n = len(data["counts"])
    validation = np.random.default_rng([options.seed, 1]).random(n) < options.validation_fraction
    train_rows, val_rows = np.flatnonzero(~validation), np.flatnonzero(validation)
    devices = jax.devices()
    if options.batch_size % len(devices):
        raise ValueError(f"batch_size must be a multiple of the {len(devices)} devices")
    steps_per_epoch = len(train_rows) // options.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"{len(train_rows)} training rows: fewer than one batch")
    total_steps = steps_per_epoch * options.epochs

    svi = SVI(
        partial(model, inst=inst, config=config, n_sources=len(train_rows)),
        partial(guide, inst=inst, config=config, n_sources=len(train_rows)),
        _optimizer(options, total_steps),
        TraceMeanField_ELBO(),
    )
    mesh = jax.make_mesh((len(devices),), ("batch",), axis_types=(AxisType.Auto,))
    batch_sharding = NamedSharding(mesh, PartitionSpec("batch"))
    replicated = NamedSharding(mesh, PartitionSpec())

    def place(rows):
        return {k: jax.device_put(v[rows], batch_sharding) for k, v in data.items()}

    first = place(train_rows[: options.batch_size])
    state = svi.init(jax.random.key(options.seed), first, kl_weight=1.0)  # also sets up svi
    if resume and (run / "checkpoint.pkl").exists():
        with open(run / "checkpoint.pkl", "rb") as f:
            saved_state = pickle.load(f)
        state, epoch, step = saved_state["state"], saved_state["epoch"], saved_state["step"]
        losses = saved_state["losses"]
    else:
        run.mkdir(parents=True, exist_ok=True)
        _atomic_write(
            run / "config.json",
            json.dumps(
                dict(
                    config=asdict(config),
                    options=asdict(options),
                    pack=str(Path(pack_path).resolve()),
                    instrument=instrument,
                    n_train=len(train_rows),
                    n_validation=len(val_rows),
                ),
                indent=1,
            ).encode(),
        )
        (run / "metrics.csv").unlink(missing_ok=True)
        epoch, step, losses = 0, 0, []
    state = jax.device_put(state, replicated)
    update = jax.jit(svi.update)
    evaluate = jax.jit(svi.evaluate)

    def save(epoch, step, losses):
        saved = dict(
            state=jax.device_get(state),
            params=jax.device_get(svi.get_params(state)),
            epoch=epoch,
            step=step,
            losses=losses,
        )
        _atomic_write(run / "checkpoint.pkl", pickle.dumps(saved))

    metrics: dict = {}
    bar = tqdm(total=total_steps, initial=step, disable=not progress, unit="step", desc="train")
    while epoch < options.epochs:
        order = np.random.default_rng([options.seed, 0, epoch]).permutation(train_rows)
        kl = _kl_weight(options, epoch)
        done_in_epoch = step - epoch * steps_per_epoch
        start = time.perf_counter()
        for k in range(done_in_epoch, steps_per_epoch):
            batch = place(order[k * options.batch_size : (k + 1) * options.batch_size])
            new_state, loss = update(state, batch, kl_weight=kl)
            loss = float(loss) / len(train_rows)
            if not math.isfinite(loss):
                bar.close()
                raise TrainingError(
                    f"non-finite loss at epoch {epoch}, step {step}; the last good checkpoint "
                    f"({run / 'checkpoint.pkl'}) is kept: lower the learning rate and resume"
                )
            state, step = new_state, step + 1
            losses.append(loss)
            bar.update()
            bar.set_postfix(epoch=epoch, loss=f"{loss:.1f}")
            if step % options.checkpoint_every == 0:
                save(epoch, step, losses)
            if max_steps is not None and step >= max_steps:
                save(epoch, step, losses)
                bar.close()
                return metrics
        seconds = time.perf_counter() - start
        epoch += 1
        metrics = dict(
            epoch=epoch,
            step=step,
            train_loss=float(np.mean(losses)),
            validation_loss=_validation_loss(evaluate, state, place, val_rows, options, kl)
            / len(train_rows),
            kl_weight=kl,
            seconds=seconds,
            spectra_per_s=(steps_per_epoch - done_in_epoch) * options.batch_size / seconds,
        )
        _append_metrics(run / "metrics.csv", metrics)
        losses = []
        save(epoch, step, losses)
    bar.close()
    return metrics


def load_run(run: str | os.PathLike) -> tuple[Config, dict, dict]:
    """A trained run: its model :class:`Config`, the learnt parameters (``decoder$params``,
    ``encoder$params``) and the saved ``config.json`` (pack, options)."""
    run = Path(run)
    saved = json.loads((run / "config.json").read_text())
    with open(run / "checkpoint.pkl", "rb") as f:
        params = pickle.load(f)["params"]
    return Config(**saved["config"]), params, saved


def _optimizer(options: TrainOptions, total_steps: int):
    schedule = optax.warmup_cosine_decay_schedule(
        0.0,
        options.learning_rate,
        min(options.warmup_steps, max(total_steps - 1, 1)),
        max(total_steps, 2),
        end_value=options.learning_rate * 0.05,
    )
    return optax.chain(optax.clip_by_global_norm(10.0), optax.adam(schedule))


def _kl_weight(options: TrainOptions, epoch: int) -> float:
    if options.kl_warmup_epochs <= 0:
        return 1.0
    return min(1.0, (epoch + 1) / options.kl_warmup_epochs)


def _validation_loss(evaluate, state, place, rows, options, kl) -> float:
    """Mean over whole batches of held-out rows of the loss, scaled like a training batch."""
    size = options.batch_size
    values = [
        float(evaluate(state, place(rows[k : k + size]), kl_weight=kl))
        for k in range(0, len(rows) - size + 1, size)
    ]
    return float(np.mean(values)) if values else float("nan")


def _append_metrics(path: Path, metrics: dict) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(metrics))
        if new:
            writer.writeheader()
        writer.writerow(metrics)


def _atomic_write(path: Path, content: bytes) -> None:
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name)
    with os.fdopen(fd, "wb") as f:
        f.write(content)
    os.replace(temporary, path)
