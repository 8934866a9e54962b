"""Training the VAE on a pack with stochastic variational inference.

``SVI`` with ``TraceMeanField_ELBO`` (analytic KL), Adam with linear warm-up and cosine decay,
optional KL annealing, one jitted step, data parallel over every visible device (the batch is
sharded along its first axis, parameters are replicated). A run lives in a folder::

    RUN/config.json       model and training options, the pack, the split (for people and --resume)
    RUN/checkpoint.npz    parameters, optimizer state, RNG key, epoch and step, and the model's
                          config and ``ModelArrays`` (grids, cross-sections, RMFs): everything
                          :func:`xspecvae.run.load_run` needs (written atomically, read without
                          pickle: :mod:`xspecvae.checkpoint`)
    RUN/metrics.csv       one line per epoch: losses per spectrum, time, throughput

A fixed share of the rows, chosen by the seed, is held out for validation. Several processes
(``jax.distributed``, one per host) each load their own contiguous block of the training and
validation rows and feed ``batch_size / processes`` rows of every step; one process alone loads
everything (a 300,000-spectrum pn pack takes about 2 GB). Batches of an epoch come from a
generator seeded by (seed, epoch, process), so a run resumed from a checkpoint takes the same
steps as one never interrupted.
"""

from __future__ import annotations

import math
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, NamedSharding, PartitionSpec
from numpyro.infer import SVI
from numpyro.infer.svi import SVIState
from tqdm import tqdm

from xspecvae import checkpoint
from xspecvae.absorption import CrossSection
from xspecvae.catalog import PER_SOURCE, Pack, PackError
from xspecvae.run import Run, load_run, saved_config
from xspecvae.svi import TrainOptions, checked_update, kl_weight, make_svi
from xspecvae.vae import VAE, Config, ModelArrays, rough_log_rate

__all__ = [
    "TrainOptions",
    "TrainingError",
    "initialize_distributed",
    "split_rows",
    "train",
]


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss, nothing to resume); the last good checkpoint
    is kept."""


def train(
    pack_path: str | os.PathLike,
    run: str | os.PathLike,
    *,
    config: Config | None = None,
    options: TrainOptions | None = None,
    instrument: str | None = None,
    absorption: str | os.PathLike | None = None,
    resume: bool = False,
    init: str | os.PathLike | None = None,
    max_steps: int | None = None,
    progress: bool = True,
) -> dict:
    """Train on ``pack_path`` into the folder ``run``; returns the last epoch's metrics
    (empty if the run had already finished).

    ``absorption`` is a cross-section table (FITS, ENERGY and SIGMA, e.g.
    ``xsect_tbabs_wilm.fits``); Morrison & McCammon when None. With ``resume`` the run
    continues from its checkpoint with its saved settings (a ``config`` or ``options``
    asking otherwise, off the defaults, is refused).
    ``init`` (fine-tuning) is a trained run to start from: its parameters, its ``config`` and
    its model arrays (model grid, cross-sections, reference response, prior of the
    normalisation) replace ``config`` and ``absorption``; the pack must be on its grids.
    ``max_steps`` stops after that many steps in total (for tests and time-boxed jobs).
    """
    folder = Run(run)
    plan = _plan(folder, pack_path, config, options, instrument, absorption, resume, init)
    data = _read_data(folder, plan)
    options = plan.options
    devices = jax.device_count()
    total_steps = data.steps_per_epoch * options.epochs
    svi = make_svi(data.inst, plan.config, options, data.n_train, total_steps)
    mesh = jax.make_mesh((devices,), ("batch",), axis_types=(AxisType.Auto,))
    place = partial(_place, data.arrays, NamedSharding(mesh, PartitionSpec("batch")))
    now = _start(folder, plan, data, svi)
    now.state = multihost_utils.host_local_array_to_global_array(now.state, mesh, PartitionSpec())
    steps = _Steps(
        update=jax.jit(partial(checked_update, svi, thin_share=options.thin_share)),
        evaluate=jax.jit(svi.evaluate),
        place=place,
        save=partial(_save, folder, svi, plan.config, data),
    )
    first_epoch = now.epoch
    leader = jax.process_index() == 0
    bar = tqdm(
        total=total_steps,
        initial=now.step,
        disable=not (progress and leader),
        unit="step",
        desc="train",
    )
    try:
        while now.epoch < options.epochs:
            if not _epoch(now, steps, data, options, folder, bar, max_steps):
                return {}  # stopped at max_steps
    finally:
        bar.close()
    return now.history[-1] if first_epoch < options.epochs else {}


@dataclass(frozen=True)
class _Plan:
    """What a run trains, reconciled from the arguments, the settings of a run being resumed
    and the run being fine-tuned (``initial``, its trained VAE)."""

    config: Config
    options: TrainOptions
    pack_path: Path
    instrument: str | None
    absorption: str | None
    init: str | None
    pack_id: str | None  # the pack a resumed run started on
    initial: VAE | None
    resumed: bool  # continuing from a checkpoint


@dataclass(frozen=True)
class _Data:
    """This process's rows of the pack, in memory, and what the model is built on."""

    arrays: dict  # per-source arrays: this process's training rows, then its validation rows
    train_rows: np.ndarray  # positions in ``arrays``
    val_rows: np.ndarray
    n_train: int  # over every process
    n_val: int
    val_size: int  # validation rows of the process that has fewest
    local_batch: int
    steps_per_epoch: int
    inst: ModelArrays
    instrument: str
    grid: object  # the pack's Grid
    pack_id: str | None
    absorption: str | None


@dataclass
class _Progress:
    """Where training stands: the SVI state and what the checkpoint records with it."""

    state: object
    epoch: int = 0
    step: int = 0
    losses: list = field(default_factory=list)  # of the epoch under way
    history: list = field(default_factory=list)  # one dict per finished epoch
    elapsed: float = 0.0  # seconds spent in the epoch under way before a resume
    start: float = 0.0  # perf_counter at the (virtual) start of the epoch under way


class _Steps(NamedTuple):
    update: Callable
    evaluate: Callable
    place: Callable
    save: Callable


def _plan(
    folder: Run,
    pack_path: str | os.PathLike,
    config: Config | None,
    options: TrainOptions | None,
    instrument: str | None,
    absorption: str | os.PathLike | None,
    resume: bool,
    init: str | os.PathLike | None,
) -> _Plan:
    """The settings of the run: the arguments, or a resumed run's own; a fine-tuned run takes
    its config and instrument from the run it starts from."""
    run, trained = folder.folder, folder.trained
    pack_id = None
    if resume:
        if not trained and folder.legacy:
            folder.load_checkpoint()  # refused, naming the conversion command
        if not folder.started:
            raise TrainingError(f"nothing to resume in {run}: it holds no config.json")
        saved = folder.settings()
        if saved["processes"] != jax.process_count():
            raise TrainingError(
                f"{run} was trained by {saved['processes']} processes: resume it with as many"
            )
        asked = (None if saved.get("init") else config, options)  # fine-tuning: init's config
        config, options = saved_config(saved["config"]), TrainOptions(**saved["options"])
        _same_as_saved(run, asked, (config, options))
        pack_path, instrument, absorption = saved["pack"], saved["instrument"], saved["absorption"]
        init, pack_id = saved.get("init"), saved.get("pack_id")
    elif trained or folder.legacy:
        raise TrainingError(f"{run} holds a run already: resume it or train into another folder")
    # a resumed fine-tuning takes its instrument from its own checkpoint, not from ``init``
    own = resume and trained
    initial = load_run(run if own else init)[0] if init is not None else None
    config = initial.config if initial is not None else config or Config()
    options = options or TrainOptions()
    if options.batch_size % jax.device_count():
        raise ValueError(f"batch_size must be a multiple of the {jax.device_count()} devices")
    plan = (config, options, pack_path, instrument, absorption, init, pack_id, initial, own)
    return _Plan(*plan)


def _same_as_saved(run: Path, asked: tuple, saved: tuple) -> None:
    """Refuse to resume ``run`` with settings asked off their defaults that differ from the
    run's own (they would otherwise be silently ignored)."""
    changed = [
        f"{f.name} {getattr(was, f.name)} -> {getattr(ask, f.name)}"
        for ask, was in zip(asked, saved)
        if ask is not None
        for f in fields(ask)
        if getattr(ask, f.name) not in (f.default, getattr(was, f.name))
    ]
    if changed:
        raise TrainingError(
            f"resuming {run} keeps its own settings, which {', '.join(changed)} would change; "
            f"to train it further, start a new run from it: xspecvae train PACK -o NEW "
            f"--init {run} --epochs N"
        )


def _read_data(folder: Run, plan: _Plan) -> _Data:
    """This process's block of the training and validation rows, and the model's arrays (from
    the pack, or the run fine-tuned)."""
    options, initial, absorption = plan.options, plan.initial, plan.absorption
    processes = jax.process_count()
    local_batch = options.batch_size // processes
    with Pack(plan.pack_path, plan.instrument) as pack:
        if plan.pack_id is not None and pack.identity != plan.pack_id:
            raise PackError(
                plan.pack_path,
                f"is not the pack {folder} started on (its pack id differs): another pack was "
                "written there since, and a run resumes only on its own data; fine-tune it on "
                f"this one instead: xspecvae train {plan.pack_path} -o NEW --init {folder}",
            )
        split = split_rows(len(pack), options, processes)
        mine_train, mine_val = (rows[jax.process_index()] for rows in split)
        arrays = pack.read(np.concatenate([mine_train, mine_val]))
        arrays = {k: v for k, v in arrays.items() if k in PER_SOURCE}
        if initial is None:
            cross_section = CrossSection.from_fits(absorption) if absorption else None
            inst = ModelArrays.from_pack(pack, *_reference(arrays), cross_section)
        elif initial.learnt_on(pack.grid.energy_edges):
            inst, absorption = initial.with_rmfs(pack.rmf).inst, None
        else:
            raise ValueError(
                f"{pack.path} is not on the model grid of {plan.init}: pack it with "
                "--grids-of the pack that run was trained on"
            )
        instrument, grid, pack_id = pack.instrument, pack.grid, pack.identity
    n_train = sum(map(len, split[0]))
    steps_per_epoch = min(map(len, split[0])) // local_batch
    if steps_per_epoch == 0:
        raise ValueError(f"{n_train} training rows: fewer than one batch of {options.batch_size}")
    return _Data(
        arrays=arrays,
        train_rows=np.arange(len(mine_train)),
        val_rows=len(mine_train) + np.arange(len(mine_val)),
        n_train=n_train,
        n_val=sum(map(len, split[1])),
        val_size=min(map(len, split[1])),
        local_batch=local_batch,
        steps_per_epoch=steps_per_epoch,
        inst=inst,
        instrument=instrument,
        grid=grid,
        pack_id=pack_id,
        absorption=absorption,
    )


def _place(arrays: dict, sharding: NamedSharding, rows: np.ndarray) -> dict:
    """Rows of this process's arrays as one global batch, sharded over the devices."""
    return {k: jax.make_array_from_process_local_data(sharding, v[rows]) for k, v in arrays.items()}


def _start(folder: Run, plan: _Plan, data: _Data, svi: SVI) -> _Progress:
    """The initial state (from the run fine-tuned, if any), or the checkpoint's when resumed;
    a new run writes its settings first."""
    options = plan.options
    # compiled: run eagerly, the model and guide's first pass costs hundreds of small compilations
    state = jax.jit(svi.init)(
        jax.random.key(options.seed),
        {k: v[: data.local_batch] for k, v in data.arrays.items()},
        init_params=None if plan.initial is None else plan.initial.params,
    )
    if plan.resumed:
        saved, _, leaves = folder.load_checkpoint()
        state = checkpoint.restore_state(folder.folder, saved, leaves, state)
        return _Progress(
            state,
            *(saved[k] for k in ("epoch", "step", "losses", "history")),
            elapsed=saved.get("elapsed", 0.0),
        )
    if jax.process_index() == 0:
        folder.write_settings(
            {
                "config": asdict(plan.config),
                "options": asdict(options),
                "pack": str(Path(plan.pack_path).resolve()),
                "pack_id": data.pack_id,
                "run_id": uuid.uuid4().hex,  # what tables made by this run name
                "instrument": data.instrument,
                "absorption": _resolved(data.absorption),
                "init": _resolved(plan.init),
                "n_train": data.n_train,
                "n_validation": data.n_val,
                "processes": jax.process_count(),
                "devices": jax.device_count(),
            }
        )
    return _Progress(state)


def _resolved(path: str | os.PathLike | None) -> str | None:
    return None if path is None else str(Path(path).resolve())


def _epoch(
    now: _Progress,
    steps: _Steps,
    data: _Data,
    options: TrainOptions,
    folder: Run,
    bar: tqdm,
    max_steps: int | None,
):
    """The rest of the epoch under way (from its first step not yet taken), then validation;
    False if ``max_steps`` stopped it."""
    per_epoch, batch_rows = data.steps_per_epoch, data.local_batch
    order = np.random.default_rng([options.seed, 0, now.epoch, jax.process_index()])
    order = order.permutation(data.train_rows)
    kl = kl_weight(options, now.epoch)
    augment = jax.random.key(options.seed + 1)
    first = now.step - now.epoch * per_epoch  # steps of this epoch already taken
    # a resumed epoch keeps its time
    now.start, now.elapsed = time.perf_counter() - now.elapsed, 0.0
    if first < per_epoch:  # not when resumed from the epoch's last step
        batch = steps.place(order[first * batch_rows : (first + 1) * batch_rows])
    for k in range(first, per_epoch):
        new_state, loss, finite = steps.update(
            now.state, batch, kl, options.free_bits, jax.random.fold_in(augment, now.step)
        )
        if k + 1 < per_epoch:  # prepared while the device works on this step
            batch = steps.place(order[(k + 1) * batch_rows : (k + 2) * batch_rows])
        loss = float(_local(loss))
        if not _local(finite):
            what = _non_finite(folder.folder, now.epoch, now.step, options.learning_rate)
            raise TrainingError(what)
        now.state, now.step = new_state, now.step + 1
        now.losses.append(loss)
        bar.update()
        if now.step % 10 == 0 or k + 1 == per_epoch:
            rate = (k + 1) * options.batch_size / (time.perf_counter() - now.start)
            bar.set_postfix(epoch=now.epoch, loss=f"{loss:.1f}", spectra_per_s=f"{rate:,.0f}")
        if now.step % options.checkpoint_every == 0:
            steps.save(now)
        if max_steps is not None and now.step >= max_steps:
            steps.save(now)
            return False
    seconds = time.perf_counter() - now.start
    now.epoch += 1
    validation = [  # (size, loss per spectrum) of each batch, the last one shorter
        (m, float(_local(steps.evaluate(now.state, steps.place(data.val_rows[j : j + m])))))
        for j, m in _chunks(data.val_size, batch_rows, jax.local_device_count())
    ]
    now.history.append(
        {
            "epoch": now.epoch,
            "step": now.step,
            "train_loss": float(np.mean(now.losses)),
            "validation_loss": _weighted_mean(validation),  # -ELBO
            "kl_weight": kl,
            "seconds": seconds,
            "spectra_per_s": per_epoch * options.batch_size / seconds,
        }
    )
    now.losses = []
    steps.save(now)
    return True


def _save(folder: Run, svi: SVI, config: Config, data: _Data, now: _Progress) -> None:
    """The checkpoint (by the leading process), then metrics.csv from the history it holds."""
    if jax.process_index() != 0:
        return
    host = jax.device_get(_local(now.state))
    meta = {"config": asdict(config), "epoch": now.epoch, "step": now.step}
    meta.update(losses=now.losses, history=now.history)
    mid_epoch = now.step > now.epoch * data.steps_per_epoch
    meta["elapsed"] = time.perf_counter() - now.start if mid_epoch else 0
    model_arrays = {
        "model_arrays": {k: np.asarray(v) for k, v in data.inst._asdict().items()},
        "grid": {"channel_lo": data.grid.channel_lo, "channel_hi": data.grid.channel_hi},
    }
    folder.save_checkpoint(meta, {"params": svi.get_params(host), **model_arrays}, host)
    folder.write_metrics(now.history)


def initialize_distributed(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """Join a multi-process run (one process per host), before any other JAX call. With no
    arguments JAX reads them from the cluster's launcher (SLURM, Open MPI, ...)."""
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU-only clusters
    jax.distributed.initialize(coordinator, num_processes, process_id)


def split_rows(
    n: int, options: TrainOptions, processes: int = 1
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Training and validation rows of each process (two lists of ``processes`` arrays):
    contiguous blocks of the split of ``n`` rows seeded by ``options.seed``."""
    held = np.random.default_rng([options.seed, 1]).random(n) < options.validation_fraction
    return (
        np.array_split(np.flatnonzero(~held), processes),
        np.array_split(np.flatnonzero(held), processes),
    )


def _chunks(n: int, size: int, multiple: int) -> list[tuple[int, int]]:
    """``(start, length)`` of batches of ``size`` over ``n`` rows, the last one shorter and cut
    to a ``multiple`` of the devices (the few rows left over are not evaluated)."""
    spans = [(j, min(size, n - j)) for j in range(0, n, size)]
    return [(j, m - m % multiple) for j, m in spans if m >= multiple]


def _weighted_mean(pairs: list[tuple[int, float]]) -> float:
    total = sum(m for m, _ in pairs)
    return sum(m * v for m, v in pairs) / total if total else math.nan


def _reference(data: dict) -> tuple[np.ndarray, np.ndarray]:
    """The mean ARF (E,) and the ``log_norm`` prior (loc, scale): the mean and twice the spread
    (at least 2) of :func:`~xspecvae.vae.rough_log_rate`, over the rows of every process."""
    rate = np.asarray(rough_log_rate(data), np.float64)
    moments = np.concatenate([[rate.mean(), np.mean(rate**2)], data["arf"].mean(0)])
    if jax.process_count() > 1:
        moments = np.asarray(multihost_utils.process_allgather(moments)).mean(0)
    spread = math.sqrt(max(moments[1] - moments[0] ** 2, 0.0))
    return moments[2:], np.array([moments[0], max(2.0, 2.0 * spread)])


def _local(tree: SVIState | jax.Array):
    """The copy held by this process of replicated arrays (fetchable in multi-process runs)."""
    return jax.tree.map(lambda x: x.addressable_data(0), tree)


def _non_finite(run: Path, epoch: int, step: int, learning_rate: float) -> str:
    """What went wrong and the way on (resuming would repeat the very same steps)."""
    what = f"non-finite loss or parameters at epoch {epoch}, step {step}"
    rate = f"--learning-rate {learning_rate / 3:.2g}"
    if not Run(run).trained:
        return f"{what}, before any checkpoint: train again with a lower {rate}"
    return (
        f"{what}; the last good checkpoint is kept in {run}. Resuming would repeat the same "
        f"steps: continue from it in a new folder, xspecvae train PACK -o NEW --init {run} {rate}"
    )
