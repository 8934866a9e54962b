"""Shared pytest fixtures for tests/ and benchmarks/: the real XMM-Newton data folder; the JAX
compilation cache; the slow files first."""

import hashlib
import os
import platform
import shutil
import sys
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
    """Share compiled programs between tests, worker processes, notebook kernels, the
    subprocesses they start and later runs, through one persistent JAX compilation cache (tests
    train the same models on the same grids many times over): ``$XSPECVAE_TEST_JAX_CACHE``, or
    by default a folder of ``~/.cache/xspecvae`` keyed by this machine's CPU and jaxlib, so
    that a home shared by computers of other instruction sets never runs another's programs.
    A ``$JAX_COMPILATION_CACHE_DIR`` of the user's own is kept; ``off`` caches nothing."""
    if "JAX_COMPILATION_CACHE_DIR" in os.environ or hasattr(config, "workerinput"):
        return  # the user's own cache, or an xdist worker that inherited the run's
    folder = os.environ.get("XSPECVAE_TEST_JAX_CACHE") or _machine_cache()
    if folder == "off":
        return
    if os.path.isdir(folder) and _size(folder) > 2**30:  # grown over many code changes
        shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder, exist_ok=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = folder
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    if "jax" in sys.modules:  # imported already: it has read the environment
        import jax

        jax.config.update("jax_compilation_cache_dir", folder)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def _size(folder: str) -> int:
    return sum(entry.stat().st_size for entry in os.scandir(folder) if entry.is_file())


def _machine_cache() -> str:
    cpu = platform.processor()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            cpu = "".join(sorted({line for line in f if line.startswith(("model name", "flags"))}))
    import jaxlib

    key = "\n".join([platform.machine(), platform.system(), cpu, jaxlib.__version__])
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    home = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(home, "xspecvae", "test-jax-cache", digest)


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
