"""Fixtures of the exploration tests: a small simulated catalogue and a small model on it."""

import pytest

from xspecvae.simulator import simulate_pack
from xspecvae.train import TrainOptions, train
from xspecvae.vae import Config

# The encoder alone (refine_steps=0): refining a 2-epoch model gives back its prior in the
# dimensions it does not use yet. The refinement is tested in test_vae, test_quality and below.
TINY = Config(
    n_templates=6,
    decoder_width=32,
    decoder_depth=2,
    encoder_width=16,
    encoder_blocks=1,
    refine_steps=0,
)


@pytest.fixture(scope="session")
def small_pack(tmp_path_factory):
    """600 simulated spectra, a third of the sources observed more than once."""
    path = tmp_path_factory.mktemp("small") / "pack.h5"
    return simulate_pack(path, 600, seed=5, repeat_fraction=0.5, progress=False)


@pytest.fixture(scope="session")
def small_run(small_pack, tmp_path_factory):
    """A tiny VAE trained for 2 epochs on :func:`small_pack` (seconds): figures and tables are
    made from it, not judged on it."""
    run = tmp_path_factory.mktemp("small") / "run"
    options = TrainOptions(epochs=2, batch_size=64, warmup_steps=5, checkpoint_every=100)
    train(small_pack, run, config=TINY, options=options, progress=False)
    return run
