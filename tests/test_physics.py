"""Physical spectra against independent integrals."""

import jax
import numpy as np
import pytest
from scipy.integrate import quad

from xspecvae.physics import powerlaw


def integrate(density, edges):
    return np.array(
        [quad(density, lo, hi, epsrel=1e-12)[0] for lo, hi in zip(edges[:-1], edges[1:])]
    )


@pytest.mark.parametrize("index", [-1.0, 0.0, 1.0, 1.0 + 1e-9, 1.9, 3.5])
def test_powerlaw_integral(index):
    edges = np.geomspace(0.2, 12.0, 200)
    with jax.enable_x64(True):
        got = np.asarray(powerlaw(edges, index, 2.5))
    np.testing.assert_allclose(got, integrate(lambda e: 2.5 * e**-index, edges), rtol=1e-9)


def test_powerlaw_float32_narrow_bins_and_broadcasting():
    edges = np.linspace(1.0, 1.01, 11).astype(np.float32).astype(float)  # 1 eV bins
    got = np.asarray(powerlaw(edges, np.array([1.5, 2.0]), np.array([1.0, 3.0])))
    assert got.shape == (2, 10) and got.dtype == np.float32
    expected = [integrate(lambda e: e**-1.5, edges), integrate(lambda e: 3.0 * e**-2.0, edges)]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
