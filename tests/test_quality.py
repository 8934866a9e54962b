"""Quality on simulated data: a small labelled catalogue, the default VAE trained for a couple of
minutes on CPU, and what it must achieve on held-out spectra. The larger run (the demo
catalogue) is in benchmarks/RESULTS.md (``python benchmarks/quality.py``)."""

import csv

import jax.numpy as jnp
import numpy as np
import pytest

from xspecvae.catalog import Pack
from xspecvae.latent import encode, quality
from xspecvae.simulator import simulate_pack
from xspecvae.train import TrainOptions, load_run, split_rows, train
from xspecvae.vae import wstat_value

N = 12_000
OPTIONS = TrainOptions(epochs=25, batch_size=128)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("quality")
    pack = simulate_pack(folder / "pack.h5", N, seed=7, progress=False)
    train(pack, folder / "run", options=OPTIONS, progress=False)
    return folder / "run"


@pytest.fixture(scope="module")
def figures(run):
    vae, info = load_run(run)
    with Pack(info["pack"]) as pack:
        (train_rows,), (val_rows,) = split_rows(len(pack), OPTIONS)
        return quality(vae, pack, train_rows, val_rows)


def test_validation_elbo_decreases(run):
    with open(run / "metrics.csv") as f:
        loss = [float(row["validation_loss"]) for row in csv.DictReader(f)]
    assert len(loss) == OPTIONS.epochs
    assert loss[-1] < loss[0] - 5 and loss[-1] <= min(loss[:5])
    assert np.mean(loss[-3:]) < np.mean(loss[5:8])  # still falling after the KL warm-up


def test_bright_held_out_sources_are_fitted(figures):
    assert figures["fit_300"]["n"] >= 30 and figures["fit_1000"]["n"] >= 5
    assert 0.8 < figures["fit_300"]["median"] < 1.3
    assert figures["fit_1000"]["median"] < 1.5


def test_latent_classifies_above_chance_and_hardness_ratios(figures):
    latent, hardness = figures["latent"], figures["hardness"]
    assert latent["accuracy"] > latent["majority"] + 0.02
    assert latent["balanced"] > 1.5 / 8  # eight classes
    assert latent["balanced"] > hardness["balanced"]


def test_column_head_follows_the_true_column(figures):
    assert figures["nh_spearman"] > 0.4
    assert figures["nh_spearman_snr"] > 0.6


def test_encoded_columns_agree_with_the_model(run):
    """encode's fit columns are those of the VAE decoded at the posterior mean."""
    vae, info = load_run(run)
    with Pack(info["pack"]) as pack:
        rows = np.arange(40, 140)
        table = encode(vae, pack, rows, batch_size=64)  # two batches, the last one padded
        batch = {k: jnp.asarray(v) for k, v in pack.read(rows).items()}
    q = vae.posterior(batch)
    np.testing.assert_allclose(table["z_loc"], q.z_loc, rtol=1e-4, atol=1e-5)
    decoded, source = vae.decode(q.z_loc, q.norm_loc, batch)
    stat = wstat_value(source, batch["alpha"], batch["counts"], batch["background"], batch["good"])
    np.testing.assert_allclose(table["statistic"], stat, rtol=1e-4)
    np.testing.assert_allclose(table["nh"], decoded.nh, rtol=1e-4)
    np.testing.assert_array_equal(table["dof"], np.asarray(batch["good"]).sum(1))
    np.testing.assert_allclose(
        table["snr"], table["source_counts"] / np.sqrt(table["total_counts"]), rtol=1e-5
    )
    assert np.all(table["total_counts"] >= table["source_counts"])
    assert np.all(table["photon_flux"] > 0)
