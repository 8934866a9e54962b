"""Checkpoints are arrays and JSON read without pickle: opening a run never runs code, and a
truncated, tampered or pickled checkpoint is refused with one line naming the file."""

from __future__ import annotations

import io
import json
import pickle
import zipfile

import jax
import numpy as np
import pytest

from xspecvae import checkpoint
from xspecvae.checkpoint import CheckpointError
from xspecvae.cli import main
from xspecvae.run import load_run


class Payload:
    """Unpickling this writes a marker file: the code a malicious run would carry."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def copy_run(run, to):
    to.mkdir()
    for name in ("config.json", checkpoint.FILE):
        (to / name).write_bytes((run / name).read_bytes())
    return to


def rewrite(run, change):
    """Rewrite ``run``'s checkpoint with ``change(arrays)`` applied to its arrays."""
    with np.load(checkpoint.path(run)) as content:
        arrays = {k: content[k] for k in content.files}
    change(arrays)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    checkpoint.path(run).write_bytes(buffer.getvalue())


def test_a_run_loads_back_without_pickle(small_run):
    with zipfile.ZipFile(checkpoint.path(small_run)) as archive:
        names = archive.namelist()
    assert "meta.npy" in names and any(n.startswith("params/") for n in names)
    vae, info = load_run(small_run)
    assert set(vae.params) == {"encoder$params", "decoder$params"}
    assert info["grid"]["channel_lo"].shape == (vae.inst.rmf.shape[-1],)


def test_a_pickle_payload_in_the_checkpoint_never_runs(small_run, tmp_path):
    run = copy_run(small_run, tmp_path / "evil")
    marker = tmp_path / "ran"
    with (
        zipfile.ZipFile(checkpoint.path(run), "a") as archive,  # an object array: a pickle
        archive.open("params/decoder$params/evil.npy", "w") as entry,
    ):
        np.lib.format.write_array(entry, np.array([Payload(marker)], object))
    with pytest.raises(CheckpointError, match="checkpoint.npz"):
        load_run(run)
    assert not marker.exists()


def test_an_old_pickled_run_is_refused_and_converted_only_when_trusted(small_run, tmp_path, capsys):
    run = copy_run(small_run, tmp_path / "old")
    meta, trees, leaves = checkpoint.load(run)
    marker = tmp_path / "ran"
    legacy = {**{k: meta[k] for k in ("config", "epoch", "step", "losses", "history")}, **trees}
    legacy["instrument"] = legacy.pop("model_arrays")  # the name pickled runs gave it
    legacy.update(state=leaves, payload=Payload(marker))
    (run / checkpoint.LEGACY).write_bytes(pickle.dumps(legacy))
    checkpoint.path(run).unlink()
    with pytest.raises(CheckpointError, match="xspecvae convert-run"):
        load_run(run)
    assert main(["encode", str(run), "--refine-steps", "0"]) == 1
    assert main(["convert-run", str(run)]) == 1
    error = capsys.readouterr().err
    assert "checkpoint.pkl" in error and "--trust" in error and len(error.splitlines()) == 2
    assert not marker.exists()
    assert main(["convert-run", str(run), "--trust"]) == 0  # the user's explicit choice
    assert marker.exists()  # it did unpickle, as it warned
    new, old = (jax.tree.leaves(load_run(r)[0].params) for r in (run, small_run))
    assert all(np.array_equal(a, b) for a, b in zip(new, old, strict=True))


def test_a_checkpoint_of_schema_1_loads_as_it_was(small_run, tmp_path):
    """Schema 1 named the model's arrays ``instrument``; such a run loads unchanged."""
    run = copy_run(small_run, tmp_path / "schema1")

    def as_schema_1(arrays):
        for name in [n for n in arrays if n.startswith("model_arrays/")]:
            arrays["instrument/" + name.partition("/")[2]] = arrays.pop(name)
        arrays["meta"] = _with(arrays["meta"], version=1)

    rewrite(run, as_schema_1)
    old, new = load_run(run)[0], load_run(small_run)[0]
    pairs = zip(jax.tree.leaves((old.params, old.inst)), jax.tree.leaves((new.params, new.inst)))
    assert all(np.array_equal(a, b) for a, b in pairs)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda a: a.update(meta=np.frombuffer(b"not json", np.uint8)), "not a readable"),
        (
            lambda a: a.update(meta=np.frombuffer(json.dumps({"format": "x"}).encode(), np.uint8)),
            "not an xspecvae checkpoint",
        ),
        (lambda a: a.update(meta=_with(a["meta"], version=99)), "schema 99"),
        (
            lambda a: a.update({_first(a, "params/"): _first_value(a, "params/") * np.nan}),
            "non-finite",
        ),
        (lambda a: a.update({_first(a, "params/"): np.zeros((3, 5), np.float32)}), "is \\(3, 5\\)"),
        (lambda a: a.pop(_first(a, "params/decoder")), "is None"),
        (lambda a: a.update({"params/encoder$params": np.zeros(2)}), "checkpoint.npz"),
        (lambda a: a.update(extra=np.zeros(2)), "unexpected array extra"),
    ],
    ids=["bytes", "format", "schema", "nan", "shape", "missing", "clash", "extra"],
)
def test_a_tampered_checkpoint_is_refused_naming_the_file(small_run, tmp_path, damage, message):
    run = copy_run(small_run, tmp_path / "tampered")
    rewrite(run, damage)
    with pytest.raises(CheckpointError, match=message) as error:
        load_run(run)
    assert str(run) in str(error.value) and "\n" not in str(error.value)


def test_a_truncated_checkpoint_is_refused_in_one_line(small_run, tmp_path, capsys):
    run = copy_run(small_run, tmp_path / "cut")
    data = checkpoint.path(run).read_bytes()
    checkpoint.path(run).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable xspecvae checkpoint"):
        load_run(run)
    assert main(["encode", str(run), "--refine-steps", "0"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("xspecvae encode:") and str(run) in error and "\n" not in error
    checkpoint.path(run).write_text("my notes")  # not an archive: said so, not "pickled"
    with pytest.raises(CheckpointError, match="not an .npz archive"):
        load_run(run)


def _with(meta, **changes):
    content = {**json.loads(meta.tobytes().decode()), **changes}
    return np.frombuffer(json.dumps(content).encode(), np.uint8)


def _first(arrays, prefix):
    return min(k for k in arrays if k.startswith(prefix))


def _first_value(arrays, prefix):
    return arrays[_first(arrays, prefix)]
