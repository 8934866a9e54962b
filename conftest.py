"""Shared pytest fixtures for tests/ and benchmarks/: the real XMM-Newton data folder."""

import os
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
