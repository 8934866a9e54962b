"""Shared pytest fixtures for tests/ and benchmarks/: the real XMM-Newton data folder; one JAX
compilation cache for the whole run."""

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

DATA = Path(
    os.environ.get(
        "XSPECVAE_DATA", Path(__file__).resolve().parent.parent / "shared" / "data" / "xmm"
    )
)


@pytest.fixture(scope="session")
def xmm() -> Path:
    """The real XMM-Newton files (``../shared/data/xmm`` or ``$XSPECVAE_DATA``). Missing:
    skip, or fail where ``XSPECVAE_REQUIRE_DATA=1`` (CI)."""
    if not DATA.is_dir():
        message = f"real XMM-Newton data not found at {DATA} (set XSPECVAE_DATA to its folder)"
        if os.environ.get("XSPECVAE_REQUIRE_DATA") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return DATA


def pytest_configure(config):
    """Share compiled programs between tests, worker processes, notebook kernels and the
    subprocesses they start, through a JAX compilation cache made for this run (tests train
    the same models on the same grids many times over); a cache the user set is kept."""
    if "JAX_COMPILATION_CACHE_DIR" in os.environ or hasattr(config, "workerinput"):
        return  # the user's own cache, or an xdist worker that inherited the run's
    folder = tempfile.mkdtemp(prefix="xspecvae-test-jax-cache-")
    config._jax_cache = folder
    os.environ["JAX_COMPILATION_CACHE_DIR"] = folder
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    if "jax" in sys.modules:
        import jax

        jax.config.update("jax_compilation_cache_dir", folder)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def pytest_unconfigure(config):
    folder = getattr(config, "_jax_cache", None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)


#: The files that take minutes (their module fixtures train and encode models), longest first:
#: collected first, so that the two workers of ``-n 2 --dist loadfile`` are handed them early
#: and end together, instead of one waiting on a long file handed out last.
SLOW_FIRST = (
    "tests/test_quality.py",
    "notebooks/02-predictive-checks.ipynb",
    "tests/test_train.py",
    "tests/test_explore.py",
    "notebooks/01-quickstart.ipynb",
)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(SLOW_FIRST)))
