"""Similarity search: one query against 1,000,000 posteriors (D = 16), top 10, for each
divergence: :class:`xspecvae.latent.Index` (a jitted float32 scan) against the numpy float64
closed form over the same table with ``argpartition`` (the reference). The goal: under 50 ms per
query on 2 CPU cores. Run: ``python -m pytest benchmarks/test_search_speed.py``."""

import numpy as np
import pytest

from xspecvae.latent import DIVERGENCES, Index, divergence

N, D, K = 1_000_000, 16, 10


@pytest.fixture(scope="module")
def table():
    rng = np.random.default_rng(0)
    loc = rng.normal(0, 1, (N, D)).astype(np.float32)
    scale = np.exp(rng.normal(-2, 0.7, (N, D))).astype(np.float32)
    return loc, scale, Index(loc, scale)


@pytest.mark.parametrize("name", DIVERGENCES)
def test_search(benchmark, record, table, name):
    loc, scale, index = table
    queries = iter(range(10**6))

    def one():
        q = next(queries)
        return index.search(loc[q], scale[q], K, divergence=name)

    rows, _ = one()  # compile outside the timing
    benchmark.pedantic(one, rounds=20, iterations=1, warmup_rounds=2)
    record(benchmark, f"search 1M posteriors: {name}", "xspecvae Index.search (jax float32)", N)
    d = divergence(name, loc[0], scale[0], loc, scale)
    assert len(set(rows) & set(np.argpartition(d, K)[:K])) >= K - 1


@pytest.mark.parametrize("name", ["predictive", "kl_symmetric", "bhattacharyya", "wasserstein"])
def test_search_numpy_reference(benchmark, record, table, name):
    loc, scale, _ = table

    def one():
        d = divergence(name, loc[0], scale[0], loc, scale)
        return np.argpartition(d, K)[:K]

    benchmark.pedantic(one, rounds=3, iterations=1)
    record(benchmark, f"search 1M posteriors: {name}", "numpy float64 reference", N)
