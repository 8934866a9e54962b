"""A run folder, the one place that knows its files.

``RUN/config.json`` holds the settings (model and training options, the pack and its identity,
the split, the run's own identity), ``RUN/checkpoint.npz`` the trained model (see
:mod:`xspecvae.checkpoint`), ``RUN/metrics.csv`` one line per epoch. A fine-tuned run names the
run it started from (``init``); :meth:`Run.origin` follows them to the run that learnt from
scratch. Products made from a run are remade when the model is newer (:meth:`Run.is_current`).
:func:`load_run` reads a trained run back (its VAE and settings), :func:`run_pack` opens the
pack it learnt from.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from xspecvae import checkpoint
from xspecvae.catalog import Pack, PackError
from xspecvae.errors import InputError
from xspecvae.files import write_atomic
from xspecvae.vae import VAE, Config, ModelArrays, parameter_mismatch

__all__ = ["EXPLORE", "Run", "load_run", "run_pack", "saved_config"]

EXPLORE = "explore"  # the folder name of a run's exploration (tables, figures, report)


class Run:
    """The folder ``folder`` of a training run (which need not exist yet)."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)

    def __fspath__(self) -> str:
        return os.fspath(self.folder)

    def __str__(self) -> str:
        return str(self.folder)

    @property
    def settings_path(self) -> Path:
        return self.folder / "config.json"

    @property
    def metrics_path(self) -> Path:
        return self.folder / "metrics.csv"

    @property
    def checkpoint_path(self) -> Path:
        return checkpoint.path(self.folder)

    @property
    def explore_folder(self) -> Path:
        """Where the run's tables and report go by default (``RUN/explore``)."""
        return self.folder / EXPLORE

    @property
    def beside_folder(self) -> Path:
        """The exploration beside the run (``RUN/../explore``), where ``xspecvae demo`` puts it."""
        return self.folder.parent / EXPLORE

    @property
    def started(self) -> bool:
        """Whether training has begun here (the settings are written before the first step)."""
        return self.settings_path.exists()

    @property
    def trained(self) -> bool:
        """Whether a checkpoint is here."""
        return self.checkpoint_path.exists()

    @property
    def legacy(self) -> bool:
        """Whether a pickled checkpoint of xspecvae < 0.2 is here (refused until converted)."""
        return (self.folder / checkpoint.LEGACY).exists()

    def settings(self) -> dict:
        """``config.json``, or an :class:`~xspecvae.errors.InputError` naming it."""
        try:
            settings = json.loads(self.settings_path.read_text())
        except FileNotFoundError:
            raise InputError(self.folder, "not a run folder (no config.json)") from None
        except (OSError, ValueError) as err:
            raise InputError(self.settings_path, f"unreadable ({err})") from None
        if not isinstance(settings, dict) or not isinstance(settings.get("pack", ""), str):
            raise InputError(self.settings_path, "not the settings of a run (edited?)")
        return settings

    def write_settings(self, settings: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        write_atomic(self.settings_path, json.dumps(settings, indent=1).encode())

    def metrics(self) -> dict[str, np.ndarray]:
        """``metrics.csv`` as columns (empty before the first epoch)."""
        if not self.metrics_path.exists():
            return {}
        try:
            with open(self.metrics_path) as f:
                rows = list(csv.DictReader(f))
            return {k: np.array([float(r[k]) for r in rows]) for k in (rows[0] if rows else ())}
        except (OSError, ValueError, TypeError) as err:  # UnicodeDecodeError is a ValueError
            raise InputError(self.metrics_path, f"unreadable ({err})") from None

    def epochs_done(self) -> int:
        return len(self.metrics().get("epoch", ()))

    def write_metrics(self, history: list[dict]) -> None:
        text = io.StringIO()
        if history:
            writer = csv.DictWriter(text, fieldnames=list(history[0]))
            writer.writeheader()
            writer.writerows(history)
        write_atomic(self.metrics_path, text.getvalue().encode())

    def save_checkpoint(self, meta: dict, trees: dict, state: object = None) -> Path:
        """Write the checkpoint atomically (:func:`xspecvae.checkpoint.save`)."""
        return checkpoint.save(self.folder, meta, trees, state)

    def load_checkpoint(self) -> tuple[dict, dict, list[np.ndarray]]:
        """The checkpoint's ``(meta, trees, state_leaves)``, refused with a
        :class:`~xspecvae.checkpoint.CheckpointError` unless whole (:func:`checkpoint.load`)."""
        return checkpoint.load(self.folder)

    def origin(self) -> dict:
        """The settings of the run that learnt from scratch, through any fine-tuning."""
        settings = self.settings()
        while settings.get("init"):
            settings = Run(settings["init"]).settings()
        return settings

    def built(self) -> float:
        """When the model was last saved (the checkpoint's modification time)."""
        return self.checkpoint_path.stat().st_mtime

    def is_current(self, product: str | os.PathLike) -> bool:
        """Whether ``product`` exists and was written after the model (so it shows this model)."""
        product = Path(product)
        return product.exists() and product.stat().st_mtime > self.built()


def load_run(run: str | os.PathLike) -> tuple[VAE, dict]:
    """A trained run, without the pack or the training arguments: the :class:`VAE` (config,
    learnt parameters, model arrays) and the run's ``config.json`` (pack, options, the
    channel grid under ``grid``)."""
    run = Path(run)
    folder = Run(run)
    saved, trees, _ = folder.load_checkpoint()
    info = folder.settings()
    _same_config(folder, info, saved)
    try:
        config = saved_config(saved["config"])
        inst = ModelArrays(**{k: jnp.asarray(v) for k, v in trees["model_arrays"].items()})
    except (OSError, ValueError, TypeError) as exc:
        raise checkpoint.CheckpointError(run, f"not a whole run ({exc})") from None
    wrong = parameter_mismatch(config, inst, trees["params"])
    if wrong:
        raise checkpoint.CheckpointError(folder.checkpoint_path, wrong)
    info["grid"] = trees["grid"]
    return VAE(config, trees["params"], inst), info


def _same_config(folder: Run, settings: dict, saved: dict) -> None:
    """Refuses a ``config.json`` whose model settings differ from the checkpoint's: the
    checkpoint's are the trained model's, and an edit there would otherwise be ignored."""
    mine, theirs = settings.get("config"), saved.get("config")
    if not isinstance(mine, dict) or not isinstance(theirs, dict):
        return  # a config.json without them says nothing to contradict (checked elsewhere)
    differ = [k for k in mine.keys() & theirs.keys() if mine[k] != theirs[k]]
    if differ:
        shown = ", ".join(f"{k} {mine[k]!r} (trained: {theirs[k]!r})" for k in sorted(differ))
        raise InputError(
            folder.settings_path,
            f"its config differs from the model's checkpoint: {shown}; the checkpoint is what "
            "was trained, so restore those values (or train a new run with them)",
        )


_REPLACED = (
    "is not the pack this run was trained on (its pack id differs): another pack was written "
    "there since; name a pack explicitly to use it with this run"
)


def run_pack(
    info: dict, pack_path: str | os.PathLike | None = None, instrument: str | None = None
) -> Pack:
    """The pack a run reads (``info`` from :func:`load_run`): ``pack_path`` when given, else the
    run's own, refused with a :class:`~xspecvae.catalog.PackError` if another pack has been
    written at its path since training."""
    if pack_path is not None:
        return Pack(pack_path, instrument)
    if not info.get("pack"):
        raise InputError("the run's config.json", "names no pack: give the pack to read")
    opened = Pack(info["pack"], instrument)
    if info.get("pack_id") is not None and opened.identity != info["pack_id"]:
        opened.close()
        raise PackError(info["pack"], _REPLACED)
    return opened


def saved_config(saved: dict) -> Config:
    """The :class:`Config` of a checkpoint. A field that did not exist when the run was saved
    takes the value it was trained with (redshift offset -2, no lines, no Fourier features,
    the first line list);
    ``refine_steps``, which is inference only, takes today's default; the inference settings
    of the earlier refinement (``refine_draws``, ``refine_rate``) are dropped."""
    kept = {k: v for k, v in saved.items() if k not in ("refine_draws", "refine_rate")}
    before = {"redshift_offset": -2.0, "lines": False, "fourier": 0, "line_set": 1}
    return Config(**{**before, **kept})
