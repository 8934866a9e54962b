"""A run's checkpoint: arrays and plain metadata in one ``.npz`` file, read without pickle.

``RUN/checkpoint.npz`` holds, as arrays: ``meta`` (UTF-8 JSON: the format, its version, the
model's config, epoch, step, losses, history), one array per leaf of the nested dictionaries
(``params/decoder$params/...``, ``model_arrays/...``, ``grid/...``) and the optimizer state's
leaves in order (``state/0``, ...; random keys as their raw data). numpy reads it with
``allow_pickle=False``, so opening a run never runs code; a file that is not such a checkpoint,
is truncated, comes from a newer schema or holds non-finite parameters is refused with one
line naming it (schema 1, whose ``model_arrays`` were named ``instrument``, is read too).
Checkpoints of older versions of the package were pickles: they are refused,
and :func:`convert_legacy` (``xspecvae convert-run``) converts one a user chooses to trust.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from xspecvae.errors import InputError
from xspecvae.files import write_atomic

__all__ = ["FILE", "CheckpointError", "convert_legacy", "load", "path", "restore_state", "save"]

FILE = "checkpoint.npz"
LEGACY = "checkpoint.pkl"
FORMAT, VERSION = "xspecvae-checkpoint", 2
TREES = ("params", "model_arrays", "grid")
#: The schemas read, each with its trees' old names: schema 1 named ``model_arrays`` ``instrument``.
_RENAMED = {VERSION: {}, 1: {"instrument": "model_arrays"}}
_META = {
    "config": dict,
    "epoch": int,
    "step": int,
    "losses": list,
    "history": list,
    "key_leaves": list,
}


class CheckpointError(InputError):
    """A checkpoint that is not loaded: unreadable, of another schema, tampered or pickled."""


def path(run: str | os.PathLike) -> Path:
    """The checkpoint file of ``run``."""
    return Path(run) / FILE


def save(run: str | os.PathLike, meta: dict, trees: dict, state: Any = None) -> Path:
    """Write ``run``'s checkpoint atomically: ``meta`` (JSON-able), ``trees`` (``params``,
    ``model_arrays``, ``grid``: nested dictionaries of arrays) and the optimizer ``state`` (any
    pytree; :func:`restore_state` rebuilds it on a template)."""
    arrays = {}
    for name, tree in trees.items():
        for keys, leaf in _flatten_dict(tree):
            arrays["/".join([name, *keys])] = np.asarray(leaf)
    keys = []
    if state is not None:
        for i, leaf in enumerate(jax.tree.leaves(state)):
            if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
                leaf, keys = jax.random.key_data(leaf), [*keys, i]
            arrays[f"state/{i}"] = np.asarray(leaf)
    header = {"format": FORMAT, "version": VERSION, **meta, "key_leaves": keys}
    arrays["meta"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return write_atomic(path(run), buffer.getvalue())


def load(run: str | os.PathLike) -> tuple[dict, dict, list[np.ndarray]]:
    """``(meta, trees, state_leaves)`` of ``run``'s checkpoint, refused with a
    :class:`CheckpointError` unless it is a whole checkpoint of a known schema whose floating
    arrays are finite."""
    file = path(run)
    if not file.exists():
        legacy = Path(run) / LEGACY
        if legacy.exists():
            raise CheckpointError(
                legacy,
                "a pickled checkpoint of an older xspecvae, not opened because unpickling can "
                f"run code; if you trust it, convert it once with: xspecvae convert-run {run}",
            )
        raise CheckpointError(run, f"no {FILE}: not a trained run (xspecvae train makes one)")
    if not zipfile.is_zipfile(file):  # else numpy reads any other file as a refused pickle
        raise CheckpointError(file, "not a readable xspecvae checkpoint (not an .npz archive)")
    try:
        with np.load(file, allow_pickle=False) as content:
            arrays = {name: content[name] for name in content.files}
        meta = json.loads(arrays.pop("meta").tobytes().decode())
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, UnicodeError) as exc:
        raise CheckpointError(file, f"not a readable xspecvae checkpoint ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(file, "not an xspecvae checkpoint (no format in its metadata)")
    version = meta.get("version")
    renamed = _RENAMED.get(version) if isinstance(version, int) else None
    if renamed is None:
        raise CheckpointError(
            file, f"checkpoint schema {meta.get('version')}; this xspecvae reads up to {VERSION}"
        )
    missing = [k for k, kind in _META.items() if not isinstance(meta.get(k), kind)]
    if missing:
        raise CheckpointError(file, f"its metadata lacks {', '.join(missing)}")
    trees = {name: {} for name in TREES}
    leaves = {}
    for name, array in arrays.items():
        if array.dtype.kind not in "biuf":
            raise CheckpointError(file, f"{name} holds {array.dtype} values, not numbers")
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise CheckpointError(file, f"{name} holds non-finite values")
        top, _, rest = name.partition("/")
        top = renamed.get(top, top)
        if top == "state" and rest.isdigit():
            leaves[int(rest)] = array
        elif not (top in trees and rest and _insert(trees[top], rest.split("/"), array)):
            raise CheckpointError(file, f"unexpected array {name}")
    if sorted(leaves) != list(range(len(leaves))):
        raise CheckpointError(file, "the optimizer state has missing leaves")
    return meta, trees, [leaves[i] for i in range(len(leaves))]


def restore_state(run: str | os.PathLike, meta: dict, leaves: list, template: Any) -> Any:
    """The optimizer state of a checkpoint on the structure of ``template`` (a fresh
    ``svi.init``), refused unless every leaf has the template's shape."""
    reference, treedef = jax.tree.flatten(template)
    if len(leaves) != len(reference):
        raise CheckpointError(
            path(run), f"{len(leaves)} optimizer arrays for a model that has {len(reference)}"
        )
    restored = []
    for i, (leaf, like) in enumerate(zip(leaves, reference, strict=True)):
        if i in meta["key_leaves"]:
            leaf = jax.random.wrap_key_data(leaf, impl=jax.random.key_impl(like))
        if leaf.shape != like.shape:
            raise CheckpointError(
                path(run), f"optimizer array {i} has shape {leaf.shape}, the model {like.shape}"
            )
        restored.append(leaf)
    return jax.tree.unflatten(treedef, restored)


def convert_legacy(run: str | os.PathLike) -> Path:
    """Convert ``run``'s pickled ``checkpoint.pkl`` (older xspecvae) to ``checkpoint.npz``.
    This unpickles the file, which runs any code it holds: only for runs one trusts."""
    import pickle  # only here, on a user's explicit request

    legacy = Path(run) / LEGACY
    if not legacy.exists():
        raise CheckpointError(legacy, "no pickled checkpoint to convert")
    if path(run).exists():
        raise CheckpointError(path(run), "exists already: the run needs no conversion")
    with open(legacy, "rb") as f:
        saved = pickle.load(f)
    meta = {k: saved[k] for k in ("config", "epoch", "step", "losses", "history")}
    meta["elapsed"] = float(saved.get("elapsed", 0.0))
    trees = {name: saved[old] for old, name in zip(("params", "instrument", "grid"), TREES)}
    return save(run, meta, trees, saved["state"])


def _flatten_dict(tree: dict, keys: tuple[str, ...] = ()):
    for key, value in tree.items():
        if "/" in str(key):
            raise ValueError(f"a checkpoint key holds '/': {key}")
        if isinstance(value, Mapping):
            yield from _flatten_dict(value, (*keys, str(key)))
        else:
            yield (*keys, str(key)), value


def _insert(tree: dict, keys: list[str], value: np.ndarray) -> bool:
    """Put ``value`` at ``keys``; False where an array and a dictionary would share a name."""
    for key in keys[:-1]:
        tree = tree.setdefault(key, {})
        if not isinstance(tree, dict):
            return False
    if keys[-1] in tree:
        return False
    tree[keys[-1]] = value
    return True
