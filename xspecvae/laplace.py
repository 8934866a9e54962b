"""Batched Laplace approximations: damped Gauss-Newton (Levenberg-Marquardt) steps taken per
row of a batch, and the marginal widths of a Gaussian from its precision. Pure JAX; used by
the refinement of :func:`xspecvae.vae.refine`."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular

__all__ = ["levenberg_marquardt", "marginal_widths", "where_rows"]


def levenberg_marquardt(curvature: Callable, start: jax.Array, steps: int) -> tuple:
    """``steps`` damped Gauss-Newton trials per row from ``start`` (B, K), each judged by the
    objective of its own ``curvature`` (objective, gradient, Hessian), which is carried on if
    the trial is accepted; the damping of each row falls by 3 on success and rises by 4 on
    failure. Returns the last accepted point, its curvature and the curvature at ``start``."""

    def step(carry: tuple, _: None):
        theta, at, damping = carry
        value, grad, hessian = at
        diagonal = jnp.diagonal(hessian, axis1=1, axis2=2)
        damped = hessian + jax.vmap(jnp.diag)(damping[:, None] * diagonal)
        trial = theta - jnp.linalg.solve(damped, grad[..., None])[..., 0]
        proposed = curvature(trial)
        better = proposed[0] < value
        theta = where_rows(better, trial, theta)
        at = jax.tree.map(lambda new, old: where_rows(better, new, old), proposed, at)
        damping = jnp.clip(jnp.where(better, damping / 3.0, damping * 4.0), 1e-6, 1e6)
        return (theta, at, damping), None

    at_start = curvature(start)
    carry = (start, at_start, jnp.full(start.shape[:1], 0.1))
    (theta, at_theta, _), _ = jax.lax.scan(step, carry, None, length=steps)
    return theta, at_theta, at_start


def marginal_widths(hessian: jax.Array, floor: jax.Array) -> jax.Array:
    """The marginal standard deviations of the Gaussians of precision ``hessian`` (B, K, K),
    the square roots of its inverse's diagonal (through its Cholesky factor), at least
    ``floor`` (B, K): a kept encoder's posterior may be wider than the curvature says, and a
    curvature that float32 cannot factor (NaN) leaves ``floor``."""
    cholesky = jnp.linalg.cholesky(hessian)
    eye = jnp.broadcast_to(jnp.eye(hessian.shape[-1]), cholesky.shape)
    sd = jnp.sqrt(jnp.sum(solve_triangular(cholesky, eye, lower=True) ** 2, -2))
    return jnp.where(jnp.isfinite(sd), jnp.maximum(sd, floor), floor)


def where_rows(choose: jax.Array, new: jax.Array, old: jax.Array) -> jax.Array:
    """``new`` in the rows (leading axis) where ``choose`` (B,) holds, ``old`` elsewhere."""
    return jnp.where(choose.reshape(-1, *(1,) * (new.ndim - 1)), new, old)
