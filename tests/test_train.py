"""Training: losses fall, checkpoints resume to the same parameters (even after SIGKILL), a
non-finite loss stops cleanly, and the step runs sharded over two devices."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
import types
from dataclasses import asdict, replace

import jax
import numpy as np
import optax
import pytest

from xspecvae import checkpoint, svi
from xspecvae import train as training
from xspecvae.catalog import Pack
from xspecvae.cli import main
from xspecvae.networks import LINE_SETS, LINES
from xspecvae.run import load_run, saved_config
from xspecvae.simulator import simulate_pack
from xspecvae.train import TrainingError, TrainOptions, train
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


def params(run):
    return load_run(run)[0].params


def same_params(a, b):
    leaves = zip(jax.tree.leaves(params(a)), jax.tree.leaves(params(b)))
    return all(np.array_equal(x, y) for x, y in leaves)


def test_losses_fall_and_the_run_is_self_describing(finished, pack):
    rows = metrics(finished)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[1]["train_loss"] < rows[0]["train_loss"]
    assert all(np.isfinite(r["validation_loss"]) for r in rows)
    vae, saved = load_run(finished)
    assert vae.config == SMALL and saved["pack"] == str(pack.resolve())
    assert set(vae.params) == {"decoder$params", "encoder$params"}
    assert saved["n_train"] + saved["n_validation"] == 640


@pytest.mark.parametrize("stop", [6, 8])  # mid-epoch; after the epoch's last step (of 8)
def test_resume_reaches_the_same_parameters(pack, finished, tmp_path, stop, monkeypatch):
    run = tmp_path / "b"
    # the first session's clock runs 1000 times fast, so its share of the epoch's time is plain
    fast = types.SimpleNamespace(perf_counter=lambda: 1000 * time.perf_counter())
    with monkeypatch.context() as patch:
        patch.setattr(training, "time", fast)
        train(pack, run, config=SMALL, options=OPTIONS, progress=False, max_steps=stop)
    assert json.loads((run / "config.json").read_text())["options"]["epochs"] == 2
    before = checkpoint.load(run)[0]["elapsed"]  # the epoch's seconds so far
    started = time.perf_counter()
    train(pack, run, resume=True, progress=False)  # options come from the run
    second = time.perf_counter() - started
    assert same_params(run, finished)
    assert [r["epoch"] for r in metrics(run)] == [1, 2]
    np.testing.assert_allclose(metrics(run)[1]["train_loss"], metrics(finished)[1]["train_loss"])
    # the interrupted epoch's time counts both sessions
    assert before < metrics(run)[0]["seconds"] < before + second
    assert before > 10 * second


def test_resume_after_sigkill(pack, finished, tmp_path):
    run = tmp_path / "killed"
    script = (
        "import time; from xspecvae import checkpoint as c, train as t\n"
        "from xspecvae.vae import Config\n"
        "real = c.write_atomic\n"
        "def slow(path, content):\n"
        "    real(path, content); time.sleep(1.0)\n"
        "c.write_atomic = slow\n"
        f"t.train({str(pack)!r}, {str(run)!r}, config=Config(**{SMALL.__dict__!r}),"
        f" options=t.TrainOptions(**{OPTIONS.__dict__!r}), progress=False)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 120
    while not (run / "checkpoint.npz").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    assert (run / "checkpoint.npz").exists()
    train(pack, run, resume=True, progress=False)
    assert same_params(run, finished)


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(pack, tmp_path, monkeypatch):
    monkeypatch.setattr(training, "kl_weight", lambda options, epoch: [1.0, np.nan][epoch])
    run = tmp_path / "nan"
    with pytest.raises(TrainingError, match="non-finite loss or parameters at epoch 1") as error:
        train(pack, run, config=SMALL, options=OPTIONS, progress=False)
    assert f"--init {run}" in str(error.value)  # the way on: resuming would fail again
    assert len(metrics(run)) == 1
    monkeypatch.undo()
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(params(run)))


def test_non_finite_parameters_after_a_finite_loss_are_never_saved(pack, tmp_path, monkeypatch):
    """The update of step 7 makes the parameters NaN although its loss (computed before the
    update) is finite; the step-8 checkpoint must not hold them."""
    nan_from_7 = lambda count: jax.numpy.where(count >= 7, jax.numpy.nan, 1e-3)  # noqa: E731
    monkeypatch.setattr(svi, "optimizer", lambda options, total: optax.sgd(nan_from_7))
    run = tmp_path / "nan-params"
    with pytest.raises(TrainingError, match="at epoch 0, step 7"):
        train(pack, run, config=SMALL, options=OPTIONS, progress=False)
    assert checkpoint.load(run)[0]["step"] == 4
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(params(run)))


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


def test_rows_are_split_into_disjoint_blocks_per_process():
    options = TrainOptions(validation_fraction=0.2, seed=3)
    train_blocks, val_blocks = training.split_rows(1001, options, 3)
    rows = np.concatenate(train_blocks + val_blocks)
    assert np.array_equal(np.sort(rows), np.arange(1001))  # every row once
    assert 0.15 < sum(map(len, val_blocks)) / 1001 < 0.25
    for block in train_blocks + val_blocks:
        assert np.all(np.diff(block) > 0)  # ascending: each process reads its own chunks
    assert max(map(len, train_blocks)) - min(map(len, train_blocks)) <= 1
    one, _ = training.split_rows(1001, options, 1)
    assert np.array_equal(one[0], np.concatenate(train_blocks))  # same split for any count


def test_two_processes(pack, tmp_path):
    """jax.distributed on CPU: two processes, each loading its own block of rows, one run."""
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    run = tmp_path / "multi"
    args = ["train", str(pack), "-o", str(run), "--quiet", "--epochs", "2", "--batch-size", "64"]
    args += ["--decoder-width", "32", "--encoder-blocks", "1", "--warmup-steps", "5"]
    args += ["--coordinator", f"localhost:{port}", "--num-processes", "2"]
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "xspecvae", *args, "--process-id", str(i)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [child.communicate(timeout=300)[0] for child in children]
    assert [child.returncode for child in children] == [0, 0], outputs
    assert "epoch 2: training loss" in outputs[0]
    saved = json.loads((run / "config.json").read_text())
    assert saved["processes"] == 2 and saved["devices"] == 2
    rows = metrics(run)
    assert [r["epoch"] for r in rows] == [1, 2] and rows[1]["train_loss"] < rows[0]["train_loss"]
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(params(run)))


def test_refuses_to_overwrite_a_run_and_to_resume_nothing(finished, pack, tmp_path):
    with pytest.raises(TrainingError, match="holds a run already"):
        train(pack, finished, config=SMALL, options=OPTIONS, progress=False)
    with pytest.raises(TrainingError, match="nothing to resume"):
        train(None, tmp_path / "empty", resume=True, progress=False)


def test_resume_refuses_settings_other_than_the_runs(finished, pack, capsys):
    """Asked settings that differ from a resumed run's own are refused, not silently ignored."""
    before = (finished / "checkpoint.npz").read_bytes()
    longer = replace(OPTIONS, epochs=7)
    with pytest.raises(TrainingError, match="epochs 2 -> 7"):
        train(pack, finished, options=longer, resume=True, progress=False)
    assert main(["train", "-o", str(finished), "--resume", "--epochs", "7", "--quiet"]) == 1
    assert "epochs 2 -> 7" in capsys.readouterr().err
    assert (finished / "checkpoint.npz").read_bytes() == before


def test_the_model_loads_without_the_pack(pack, finished, tmp_path):
    """load_run needs only the run folder: the VAE decodes a batch read from a moved pack."""
    moved = tmp_path / "moved.h5"
    moved.write_bytes(pack.read_bytes())
    vae, info = load_run(finished)
    with Pack(moved) as p:
        batch = {k: jax.numpy.asarray(v) for k, v in p.read(slice(0, 32)).items()}
        np.testing.assert_array_equal(info["grid"]["channel_lo"], p.grid.channel_lo)
        np.testing.assert_array_equal(vae.inst.rmf, p.rmf)
        np.testing.assert_allclose(vae.inst.energy_edges, p.grid.energy_edges, rtol=1e-6)
    q = jax.jit(vae.posterior)(batch)
    decoded, source = vae.decode(q.z_loc, q.norm_loc, batch)
    assert q.z_loc.shape == (32, SMALL.latent_dim) and source.shape == batch["counts"].shape
    assert np.all(np.isfinite(source)) and np.all(source.sum(-1) > 0)
    assert np.all(decoded.nh >= 0)


def test_fine_tuning_starts_from_the_trained_run(pack, finished, tmp_path):
    """With a learning rate of 0 a fine-tuned run ends with its initial run's parameters,
    config and instrument (the size flags given are ignored); with a real one it moves."""
    other = simulate_pack(tmp_path / "other.h5", 200, seed=9, progress=False)
    frozen = TrainOptions(epochs=1, batch_size=32, learning_rate=0.0, kl_warmup_epochs=0)
    ignored = Config(decoder_width=48)  # the run's own sizes are the initial run's
    train(other, tmp_path / "ft0", config=ignored, options=frozen, init=finished, progress=False)
    assert same_params(finished, tmp_path / "ft0")
    again = dict(config=ignored, options=frozen, init=finished, progress=False)
    assert train(other, tmp_path / "ft0", resume=True, **again) == {}  # the same command resumes
    tuned, info = load_run(tmp_path / "ft0")
    start = load_run(finished)[0]
    assert tuned.config == SMALL and info["init"] == str(finished.resolve())
    np.testing.assert_array_equal(tuned.inst.norm_prior, start.inst.norm_prior)
    np.testing.assert_array_equal(tuned.inst.area, start.inst.area)
    moving = TrainOptions(epochs=1, batch_size=32, kl_warmup_epochs=0)
    train(other, tmp_path / "ft1", options=moving, init=finished, progress=False)
    assert not same_params(finished, tmp_path / "ft1")
    assert np.isfinite(metrics(tmp_path / "ft1")[0]["validation_loss"])


def test_fine_tuning_refuses_a_pack_on_other_grids(finished, tmp_path):
    from xspecvae.catalog import Grid, PackWriter
    from xspecvae.instrument import builtin_pn_response

    response = builtin_pn_response(n_energy=300)  # the training pack has 1200 energies
    grid = Grid.from_response("pn", response)
    n, c = 64, grid.n_channel
    with PackWriter(tmp_path / "coarse.h5") as writer:
        writer.add_grid(grid)
        writer.add_rmf("pn", "builtin", grid.regroup(response))
        writer.append(
            "pn",
            counts=np.full((n, c), 5.0),
            background=np.ones((n, c)),
            alpha=np.full((n, c), 0.1),
            exposure=np.full(n, 1e4),
            arf=np.full((n, grid.n_energy), 100.0),
            rmf_index=np.zeros(n, int),
            meta=dict(
                source_id=np.arange(n),
                obs_id=np.array(["1"] * n),
                mjd=np.zeros(n),
                ra=np.zeros(n),
                dec=np.zeros(n),
                label=np.array([""] * n),
                file=np.array([f"{i}.fits" for i in range(n)]),
            ),
        )
    with pytest.raises(ValueError, match="--grids-of"):
        train(
            tmp_path / "coarse.h5", tmp_path / "ft", options=OPTIONS, init=finished, progress=False
        )


def test_runs_saved_before_a_config_field_keep_their_value():
    """A checkpoint without ``redshift_offset`` was trained with -2 (new runs start at -5), one
    without ``lines`` or ``fourier`` had neither, one without ``line_set`` the first line list;
    ``refine_steps`` (inference) takes today's."""
    new = ("redshift_offset", "lines", "line_set", "fourier", "max_frequency", "refine_steps")
    saved = {k: v for k, v in asdict(Config()).items() if k not in new}
    old = saved_config(saved)
    assert (old.redshift_offset, old.lines, old.fourier) == (-2.0, False, 0)
    lined = saved_config({**saved, "lines": True})  # saved from 2026-12-04 to 12-07
    assert lined.line_energies == LINE_SETS[1] and len(LINE_SETS[1]) == 16
    assert Config().line_energies == LINES and len(LINES) > 16
    assert old.refine_steps == Config().refine_steps > 0
    assert saved_config(asdict(Config())) == Config()
    # saved between 2026-12-02 and 12-04 with the refinement of the time (Adam on the ELBO)
    assert saved_config({**asdict(Config()), "refine_draws": 8, "refine_rate": 0.05}) == Config()
    assert (Config().redshift_offset, Config().lines) == (-5.0, True)
