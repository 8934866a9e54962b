"""The likelihood of a spectrum's counts: source and background regions together, Poisson in
each, with the background profiled out (W-statistic, as XSPEC's ``wstat``) or known (C-statistic,
``cstat``).

Notation per channel: ``n`` source-region counts, ``b`` background-region counts,
``alpha = (BACKSCAL*EXPOSURE*AREASCAL)_src / (same)_bkg`` (XSPEC's ``t_s / t_b``), ``s >= 0``
expected source counts (folded model, XSPEC's ``t_s m``), ``mu_b`` expected background counts
in the *background* region (XSPEC's ``t_b f``), so that the source region expects
``s + alpha mu_b`` counts.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from jax.scipy.special import gammaln, xlogy
from jax.typing import ArrayLike
from numpyro.distributions import constraints

# ---------------------------------------------------------------------------------------------
# The generative model and the guide

#: Floor on a Poisson rate inside the logarithm: keeps ``n log(rate)`` finite when ``n > 0``
#: and the model predicts (numerically) nothing. The rate itself is only clipped at 0.
RATE_FLOOR = 1e-10


def profile_background(s: ArrayLike, alpha: ArrayLike, n: ArrayLike, b: ArrayLike) -> jax.Array:
    """Background expectation that maximises ``Poisson(n | s + alpha mu) Poisson(b | mu)``.

    Setting the derivative in ``mu`` to zero gives ``A mu^2 - q mu - b s = 0`` with
    ``A = alpha (1 + alpha)`` and ``q = alpha (n + b) - (1 + alpha) s``; the root ``>= 0`` is
    ``(q + d) / (2A)`` with ``d = sqrt(q^2 + 4 A b s)``, evaluated as ``2 b s / (d - q)`` when
    ``q < 0`` so that nothing cancels. This is XSPEC's ``t_b f_i`` (W-statistic) and covers
    ``n = 0``, ``b = 0`` (``mu = max(q, 0) / A``) and ``s = 0`` (``mu = (n + b) / (1 + alpha)``);
    ``alpha = 0`` (no background scaling, nothing of it in the source region) gives ``mu = b``.
    ``s`` is clipped at 0 first.

    The result carries ``jax.lax.stop_gradient``: by the envelope theorem the derivative of the
    profiled log-likelihood in ``s`` (or ``alpha``) equals the partial derivative at fixed
    ``mu = mu_hat``, so differentiating through the root is unnecessary (and costlier). Do not
    use this function where ``d mu_hat / d s`` itself is wanted.
    """
    s = jnp.clip(jnp.asarray(s), 0.0)
    alpha, n, b = jnp.asarray(alpha), jnp.asarray(n), jnp.asarray(b)
    a2 = alpha * (1.0 + alpha)
    q = alpha * (n + b) - (1.0 + alpha) * s
    bs = b * s
    d = jnp.sqrt(q * q + 4.0 * a2 * bs)
    pos = q >= 0
    num = jnp.where(pos, q + d, 2.0 * bs)
    den = jnp.where(pos, 2.0 * a2, d - q)  # d - q > 0 whenever q < 0
    ok = den > 0  # false only if alpha == 0 (and s == 0)
    mu = jnp.where(ok & (a2 > 0), num / jnp.where(ok, den, 1.0), b)
    return jax.lax.stop_gradient(jnp.clip(mu, 0.0))


class PoissonPair(dist.Distribution):
    """Joint law of source- and background-region counts ``(N, B)`` per channel.

    ``N ~ Poisson(max(s, 0) + alpha mu_b)`` and ``B ~ Poisson(mu_b)``, independent, for every
    channel. Values are ``[..., C, 2]`` (``stack([n, b], -1)``); ``batch_shape`` is the leading
    (source) shape and ``event_shape = (C, 2)``, so ``log_prob`` is one number per source,
    summed over good channels, and the distribution sits inside a per-source plate.

    Parameters
    ----------
    source : (..., C) expected source counts; slightly negative values (negative RMF elements)
        are clipped at 0.
    alpha : (..., C) background scaling ``>= 0``.
    background : (..., C) expected background-region counts ``mu_b >= 0``.
    good : (..., C) bool, optional. Channels where it is False contribute 0 to ``log_prob``
        and ``deviance`` (their samples are still drawn).

    ``log_prob`` is the normalised Poisson log pmf ``n log r - r - lgamma(n + 1)``, written with
    ``xlogy`` and ``lgamma`` so float counts are fine; it deliberately skips numpyro's support
    check (which would turn non-integer values into ``-inf``), so non-integer counts get the
    gamma-function extension. Inside the log the rate is floored at ``RATE_FLOOR``. ``sample``
    returns float counts in the dtype of the rates.
    """

    arg_constraints = {
        "source": constraints.real,
        "alpha": constraints.nonnegative,
        "background": constraints.nonnegative,
    }
    support = constraints.independent(constraints.nonnegative_integer, 2)
    pytree_data_fields = ("source", "alpha", "background", "good")

    def __init__(
        self,
        source: ArrayLike,
        alpha: ArrayLike,
        background: ArrayLike,
        good: ArrayLike | None = None,
        *,
        validate_args: bool | None = None,
    ) -> None:
        good = True if good is None else jnp.asarray(good, bool)
        shape = jnp.broadcast_shapes(*(jnp.shape(x) for x in (source, alpha, background, good)))
        if len(shape) < 1:
            raise ValueError("PoissonPair needs a channel axis: source etc. of shape (..., C)")
        self.source, self.alpha, self.background = (
            jnp.broadcast_to(jnp.asarray(x, float), shape) for x in (source, alpha, background)
        )
        self.good = jnp.broadcast_to(good, shape)
        super().__init__(shape[:-1], shape[-1:] + (2,), validate_args=validate_args)

    @property
    def rates(self) -> jax.Array:
        """Expected counts ``[..., C, 2]``: (source region, background region)."""
        mu_b = jnp.clip(self.background, 0.0)
        return jnp.stack([jnp.clip(self.source, 0.0) + self.alpha * mu_b, mu_b], -1)

    @property
    def mean(self) -> jax.Array:
        return self.rates

    @property
    def variance(self) -> jax.Array:
        return self.rates

    def sample(self, key: jax.Array, sample_shape: tuple[int, ...] = ()) -> jax.Array:
        rates = self.rates
        shape = sample_shape + rates.shape
        return jax.random.poisson(key, rates, shape).astype(rates.dtype)

    def _masked_sum(self, per_channel: jax.Array) -> jax.Array:
        return jnp.sum(jnp.where(self.good, per_channel, 0.0), -1)

    def log_prob(self, value: ArrayLike) -> jax.Array:
        value = jnp.asarray(value)
        r = self.rates
        lp = xlogy(value, jnp.maximum(r, RATE_FLOOR)) - r - gammaln(value + 1.0)
        return self._masked_sum(lp.sum(-1))

    def deviance(self, value: ArrayLike) -> jax.Array:
        """``-2 (log_prob(value) - saturated log_prob)``, saturated: rates = observed counts.

        Computed per channel as ``2 (r - x + x log(x / r))`` (the ``lgamma`` terms cancel
        analytically), which avoids the cancellation of two large log-probabilities in float32;
        the ratio is 1 where ``x = 0`` so that the gradient in ``r`` is finite there too.
        """
        value = jnp.asarray(value)
        r = self.rates
        ratio = jnp.where(value > 0, value / jnp.maximum(r, RATE_FLOOR), 1.0)
        dev = 2.0 * (r - value + xlogy(value, ratio))
        return self._masked_sum(dev.sum(-1))


def wstat(
    source: ArrayLike,
    alpha: ArrayLike,
    n: ArrayLike,
    b: ArrayLike,
    good: ArrayLike | None = None,
) -> PoissonPair:
    """W-statistic likelihood: :class:`PoissonPair` with the background profiled per channel.

    Use as ``numpyro.sample("counts", wstat(s, alpha, n, b), obs=jnp.stack([n, b], -1))``.
    The background depends on the data (``n``, ``b``), so samples from it are draws at the
    profiled background (a plug-in predictive), not from a background prior.
    """
    mu_b = profile_background(source, alpha, n, b)
    return PoissonPair(source, alpha, mu_b, good)


def cstat(
    source: ArrayLike,
    alpha: ArrayLike,
    n: ArrayLike,
    b: ArrayLike,
    good: ArrayLike | None = None,
) -> PoissonPair:
    """Background taken as known: :class:`PoissonPair` with ``mu_b = b`` (observed).

    ``N ~ Poisson(s + alpha b)``. The ``B`` term, ``log Poisson(b | b)``, is kept; it does not
    depend on the model (a constant per channel) and its deviance is 0. With ``alpha = 0`` or
    ``b = 0`` the deviance is XSPEC's C-statistic.
    """
    return PoissonPair(source, alpha, jnp.asarray(b, float), good)


def wstat_value(
    source: ArrayLike,
    alpha: ArrayLike,
    n: ArrayLike,
    b: ArrayLike,
    good: ArrayLike | None = None,
) -> jax.Array:
    """XSPEC's W statistic per source (summed over good channels), ``-2 log`` of the profile
    likelihood ratio to the saturated model; about one per degree of freedom for a good fit."""
    value = jnp.stack(jnp.broadcast_arrays(jnp.asarray(n, float), jnp.asarray(b, float)), -1)
    return wstat(source, alpha, n, b, good).deviance(value)


#: The likelihoods a model can use, by name.
LIKELIHOODS = {"wstat": wstat, "cstat": cstat}
