"""Training: losses fall, checkpoints resume to the same parameters (even after SIGKILL), a
non-finite loss stops cleanly, and the step runs sharded over two devices."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from xspecvae import train as training
from xspecvae.cli import main
from xspecvae.simulator import simulate_pack
from xspecvae.train import TrainingError, TrainOptions, load_run, train
from xspecvae.vae import Config

OPTIONS = TrainOptions(epochs=2, batch_size=64, warmup_steps=5, checkpoint_every=4)
SMALL = Config(n_templates=8, decoder_width=32, decoder_depth=2, encoder_width=16, encoder_blocks=1)


@pytest.fixture(scope="module")
def pack(tmp_path_factory):
    return simulate_pack(tmp_path_factory.mktemp("pack") / "p.h5", 640, seed=2, progress=False)


@pytest.fixture(scope="module")
def finished(pack, tmp_path_factory):
    run = tmp_path_factory.mktemp("run") / "a"
    train(pack, run, config=SMALL, options=OPTIONS, progress=False)
    return run


def metrics(run):
    with open(run / "metrics.csv") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def same_params(a, b):
    leaves = zip(jax.tree.leaves(load_run(a)[1]), jax.tree.leaves(load_run(b)[1]))
    return all(np.array_equal(x, y) for x, y in leaves)


def test_losses_fall_and_the_run_is_self_describing(finished, pack):
    rows = metrics(finished)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[1]["train_loss"] < rows[0]["train_loss"]
    assert all(np.isfinite(r["validation_loss"]) for r in rows)
    config, params, saved = load_run(finished)
    assert config == SMALL and saved["pack"] == str(pack.resolve())
    assert set(params) == {"decoder$params", "encoder$params"}
    assert saved["n_train"] + saved["n_validation"] == 640


def test_resume_reaches_the_same_parameters(pack, finished, tmp_path):
    run = tmp_path / "b"
    train(pack, run, config=SMALL, options=OPTIONS, progress=False, max_steps=6)
    assert json.loads((run / "config.json").read_text())["options"]["epochs"] == 2
    train(pack, run, resume=True, progress=False)  # options come from the run
    assert same_params(run, finished)
    assert [r["epoch"] for r in metrics(run)] == [1, 2]
    np.testing.assert_allclose(metrics(run)[1]["train_loss"], metrics(finished)[1]["train_loss"])


def test_resume_after_sigkill(pack, finished, tmp_path):
    run = tmp_path / "killed"
    script = (
        "import time; from xspecvae import train as t; from xspecvae.vae import Config\n"
        "real = t._atomic_write\n"
        "def slow(path, content):\n"
        "    real(path, content); time.sleep(1.0)\n"
        "t._atomic_write = slow\n"
        f"t.train({str(pack)!r}, {str(run)!r}, config=Config(**{SMALL.__dict__!r}),"
        f" options=t.TrainOptions(**{OPTIONS.__dict__!r}), progress=False)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 120
    while not (run / "checkpoint.pkl").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    assert (run / "checkpoint.pkl").exists()
    train(pack, run, resume=True, progress=False)
    assert same_params(run, finished)


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(pack, tmp_path, monkeypatch):
    monkeypatch.setattr(training, "_kl_weight", lambda options, epoch: [1.0, np.nan][epoch])
    run = tmp_path / "nan"
    with pytest.raises(TrainingError, match="non-finite loss at epoch 1"):
        train(pack, run, config=SMALL, options=OPTIONS, progress=False)
    assert len(metrics(run)) == 1
    monkeypatch.undo()
    assert load_run(run)[1]["decoder$params"]  # the epoch-1 checkpoint is intact


def test_two_devices(pack, finished, tmp_path):
    """The same run with the batch sharded over two (forced host) devices."""
    run = tmp_path / "sharded"
    script = (
        "import jax; assert len(jax.devices()) == 2\n"
        "from xspecvae import train as t; from xspecvae.vae import Config\n"
        f"t.train({str(pack)!r}, {str(run)!r}, config=Config(**{SMALL.__dict__!r}),"
        f" options=t.TrainOptions(**{OPTIONS.__dict__!r}), progress=False)\n"
    )
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=300)
    one, two = metrics(finished), metrics(run)
    np.testing.assert_allclose(two[1]["train_loss"], one[1]["train_loss"], rtol=1e-3)


def test_cli_train(pack, tmp_path, capsys):
    args = ["train", str(pack), "-o", str(tmp_path / "c"), "--quiet", "--epochs", "1"]
    args += ["--batch-size", "64", "--decoder-width", "32", "--encoder-blocks", "1"]
    assert main(args) == 0
    assert "epoch 1: training loss" in capsys.readouterr().out
    assert main(["train", "-o", str(tmp_path / "c"), "--resume", "--quiet"]) == 0
    assert "already run all its epochs" in capsys.readouterr().out
