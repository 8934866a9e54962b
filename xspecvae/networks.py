"""Neural networks of the VAE, as plain ``flax.linen`` modules (no FITS, no numpyro).

- :class:`DeepONet`: the physically structured decoder. A branch MLP maps the shape latent ``z``
  to ``K`` non-negative coefficients, a column ``nh`` (1e22 cm^-2), a redshift and the
  equivalent widths of narrow emission lines at atomic energies (:data:`LINES`); a trunk MLP
  maps ``log E`` (optionally through Fourier features) to ``K`` non-negative templates. The
  rest-frame emission density is ``sum_k b_k t_k(log E)`` plus the lines, observed at
  ``log E + log(1 + redshift)``. Absorption and the flux scale are applied by the caller.
- :class:`MixerEncoder`: the amortized guide's network, an MLP-Mixer over patches of channels;
  returns loc and scale of ``z`` and of ``log_norm``.

Both are registered in numpyro with ``numpyro.contrib.module.flax_module``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

# Offset of the raw column output, so that at initialisation nh ~ softplus(-1) ~ 0.3.
_NH_OFFSET = -1.0
# Offset of the raw line equivalent widths: softplus(-3) * LINE_EW_UNIT ~ 5 eV at initialisation.
_LINE_OFFSET = -3.0
#: keV of equivalent width per unit of the branch's (softplus) line output.
LINE_EW_UNIT = 0.1
#: The decoder's lists of narrow-line rest energies (keV), by version; a run's config names the
#: one it was trained with (``Config.line_set``). 1: O VII He-alpha, O VIII Ly-alpha, Fe XVII
#: 3d-2p, Ne IX He-alpha, Ne X Ly-alpha, Mg XI, Mg XII, Si XIII, Si XIV, S XV, S XVI, Ar XVII,
#: Ca XIX, Fe K-alpha (fluorescence), Fe XXV He-alpha, Fe XXVI Ly-alpha. 2 (since 2026-12-07)
#: adds C VI and N VII Ly-alpha, O VIII Ly-beta and the Fe L lines of Fe XVII 3s-2p and Fe XVIII,
#: XX, XXII, XXIII, XXIV, which make the 0.7-1.2 keV shape of 0.3-3 keV plasmas (coronae,
#: groups and clusters): without them the fits of bright thermal spectra missed most there.
LINE_SETS = {
    1: (0.574, 0.654, 0.826, 0.922, 1.022, 1.352, 1.473, 1.865, 2.006, 2.461, 2.623, 3.140, 3.902,
        6.400, 6.700, 6.966),
    2: (0.368, 0.500, 0.574, 0.654, 0.727, 0.775, 0.826, 0.873, 0.922, 0.965, 1.022, 1.053, 1.129,
        1.168, 1.352, 1.473, 1.865, 2.006, 2.461, 2.623, 3.140, 3.902, 6.400, 6.700, 6.966),
}  # fmt: skip
#: The lines of new models.
LINES = LINE_SETS[2]
# Offset of the encoder's raw scales: posteriors start narrow (softplus(-3) ~ 0.05), so that the
# decoder sees the encoder's locations rather than noise from the first steps (wide initial
# scales leave the latent unused for hundreds of steps and the flux scale badly off).
_SCALE_OFFSET = -3.0


class MLP(nn.Module):
    """``depth`` hidden layers of ``width`` units with ``activation``, then a linear layer."""

    width: int
    depth: int
    out: int
    activation: Callable = nn.gelu

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for _ in range(self.depth):
            x = self.activation(nn.Dense(self.width)(x))
        return nn.Dense(self.out)(x)


class DecoderOutput(NamedTuple):
    emission: jax.Array  # (B, E) observed-frame density, photons/cm^2/s/keV, arbitrary scale
    coefficients: jax.Array  # (B, K) >= 0
    nh: jax.Array  # (B,) >= 0, 1e22 cm^-2
    redshift: jax.Array  # (B,) in [0, max_redshift]
    line_ew: jax.Array  # (B, L) >= 0, rest-frame equivalent widths (keV) of the lines


class DeepONet(nn.Module):
    """Additive emission ``sum_k b_k(z) t_k(log E') + lines`` at ``E' = E (1 + zr(z))``, plus
    an ``nh(z)`` head.

    The trunk is evaluated once per call on a uniform grid of ``n_trunk`` points spanning
    ``log_energy_range`` (natural log of keV); each source's spectrum on that grid is then
    linearly interpolated at its redshifted energies (a gather: cost independent of the trunk).
    Outside the grid the spectrum is held constant at its edge value, so the grid must cover
    ``[log E_min, log E_max + log(1 + max_redshift)]`` of the model energy grid.
    ``max_redshift = 0`` fixes the redshift to 0.

    ``fourier`` > 0 feeds the trunk ``sin`` and ``cos`` of ``pi f x`` for that many
    frequencies ``f`` log-spaced from 1 to ``max_frequency`` (``x`` in [-1, 1] over the grid)
    beside ``x`` itself, against the spectral bias of a plain MLP (Tancik et al. 2020), so that
    learnt templates can be narrow; ``n_trunk`` must then resolve the highest frequency.

    ``lines`` (rest energies, keV) adds a narrow Gaussian line (in log E, of width
    ``line_width``, unresolved by CCDs) at each energy, its flux the branch's equivalent width
    times the continuum density there; lines live on their own grid, fine enough for them
    (spacing ``line_width / 4``), and follow the continuum's redshift.

    ``redshift_offset`` places the redshift at initialisation: ``sigmoid(offset) *
    max_redshift``, about 0.02 by default, since most catalogue sources are Galactic and a
    redshift that starts large is learnt as a stretch of the templates, which misplaces lines.
    """

    n_templates: int = 24
    width: int = 128
    depth: int = 3
    max_redshift: float = 3.0
    log_energy_range: tuple[float, float] = (math.log(0.05), math.log(15.0 * (1.0 + 3.0)))
    n_trunk: int = 512
    fourier: int = 0
    max_frequency: float = 64.0
    lines: tuple[float, ...] = ()
    line_width: float = 0.004
    redshift_offset: float = -5.0
    activation: Callable = nn.gelu

    def setup(self) -> None:
        outputs = self.n_templates + 2 + len(self.lines)
        self.branch = MLP(self.width, self.depth, outputs, self.activation)
        self.trunk = MLP(self.width, self.depth, self.n_templates, self.activation)

    def templates(self, log_energy: jax.Array) -> jax.Array:
        """Rest-frame continuum templates ``(..., K) >= 0`` at ``log_energy`` ``(...)`` (ln keV)."""
        lo, hi = self.log_energy_range
        x = 2.0 * (jnp.asarray(log_energy) - lo) / (hi - lo) - 1.0  # [-1, 1] on the grid
        features = x[..., None]
        if self.fourier:
            f = jnp.geomspace(1.0, self.max_frequency, self.fourier)
            features = jnp.concatenate(
                [features, jnp.sin(jnp.pi * f * features), jnp.cos(jnp.pi * f * features)], -1
            )
        return nn.softplus(self.trunk(features))

    def line_profiles(self, log_energy: jax.Array) -> jax.Array:
        """Rest-frame line profiles ``(..., L)`` at ``log_energy`` (ln keV): densities per keV
        of unit flux."""
        centre = jnp.log(jnp.asarray(self.lines))
        u = (jnp.asarray(log_energy)[..., None] - centre) / self.line_width
        return jnp.exp(-0.5 * u**2 - jnp.asarray(log_energy)[..., None]) / (
            math.sqrt(2 * math.pi) * self.line_width
        )

    def __call__(self, z: jax.Array, log_energy: jax.Array) -> DecoderOutput:
        """Decode ``z`` ``(B, D)`` at ``log_energy`` ``(E,)`` (ln keV of the model bins)."""
        raw = self.branch(z)
        k = self.n_templates
        coefficients = nn.softplus(raw[:, :k]) / k  # O(1) emission at initialisation
        nh = nn.softplus(raw[:, k] + _NH_OFFSET)
        redshift = self.max_redshift * nn.sigmoid(raw[:, k + 1] + self.redshift_offset)
        shifted = log_energy[None, :] + jnp.log1p(redshift)[:, None]  # (B, E) emitted frame

        lo, hi = self.log_energy_range
        grid = jnp.linspace(lo, hi, self.n_trunk)
        spectra = coefficients @ self.templates(grid).T  # (B, n_trunk), rest frame
        emission = _interpolate(spectra, lo, hi, shifted)
        line_ew = LINE_EW_UNIT * nn.softplus(raw[:, k + 2 :] + _LINE_OFFSET)
        if self.lines:
            centre = jnp.log(jnp.asarray(self.lines))
            at_lines = jnp.broadcast_to(centre, (spectra.shape[0], len(self.lines)))
            continuum = _interpolate(spectra, lo, hi, at_lines)  # (B, L) density at the lines
            # the line grid: the lines' range with 8 widths of margin, spacing a quarter width
            first = math.log(min(self.lines)) - 8 * self.line_width
            last = math.log(max(self.lines)) + 8 * self.line_width
            n_line = int(math.ceil((last - first) / (self.line_width / 4))) + 1
            fine = jnp.linspace(first, last, n_line)
            profiles = self.line_profiles(fine)  # (n_line, L)
            lines = (line_ew * continuum) @ profiles.T  # (B, n_line)
            inside = (shifted >= first) & (shifted <= last)
            emission = emission + jnp.where(inside, _interpolate(lines, first, last, shifted), 0.0)
        return DecoderOutput(emission, coefficients, nh, redshift, line_ew)


def _interpolate(values: jax.Array, lo: float, hi: float, at: jax.Array) -> jax.Array:
    """Linear interpolation of ``values`` (B, n), given on a uniform grid from ``lo`` to
    ``hi``, at ``at`` (B, E): a gather; held at the edge values outside."""
    n = values.shape[-1]
    u = jnp.clip((at - lo) * ((n - 1) / (hi - lo)), 0.0, n - 1)
    i0 = jnp.clip(jnp.floor(u), 0, n - 2).astype(jnp.int32)
    w = u - i0
    left = jnp.take_along_axis(values, i0, axis=1)
    right = jnp.take_along_axis(values, i0 + 1, axis=1)
    return (1.0 - w) * left + w * right


class EncoderOutput(NamedTuple):
    z_loc: jax.Array  # (B, D)
    z_scale: jax.Array  # (B, D) >= min_scale
    norm_loc: jax.Array  # (B,)
    norm_scale: jax.Array  # (B,) >= min_scale


class MixerBlock(nn.Module):
    """Pre-LayerNorm Mixer block on tokens ``(B, T, W)``: token mixing, then feature mixing."""

    token_hidden: int
    channel_hidden: int
    activation: Callable = nn.gelu

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        n_tokens, width = x.shape[-2:]
        y = jnp.swapaxes(nn.LayerNorm()(x), -1, -2)  # (B, W, T): mix across tokens
        y = nn.Dense(n_tokens)(self.activation(nn.Dense(self.token_hidden)(y)))
        x = x + jnp.swapaxes(y, -1, -2)
        y = nn.LayerNorm()(x)
        y = nn.Dense(width)(self.activation(nn.Dense(self.channel_hidden)(y)))
        return x + y


class MixerEncoder(nn.Module):
    """MLP-Mixer guide network: per-channel features and global features -> posterior params.

    Channels are zero-padded at the end to a multiple of ``patch`` and cut into
    ``T = ceil(C / patch)`` tokens of ``patch * F`` features. The token-mixing layers have
    ``T`` outputs, so parameters initialised for one ``C`` serve every ``C`` with the same ``T``.
    """

    latent_dim: int = 16
    patch: int = 4
    width: int = 64
    n_blocks: int = 2
    token_hidden: int = 64
    channel_hidden: int = 128
    min_scale: float = 1e-3
    activation: Callable = nn.gelu

    @nn.compact
    def __call__(self, channels: jax.Array, globals_: jax.Array) -> EncoderOutput:
        """``channels`` ``(B, C, F)``, ``globals_`` ``(B, G)`` -> :class:`EncoderOutput`."""
        b, c, f = channels.shape
        pad = -c % self.patch
        x = jnp.pad(channels, ((0, 0), (0, pad), (0, 0)))
        x = nn.Dense(self.width)(x.reshape(b, (c + pad) // self.patch, self.patch * f))
        for _ in range(self.n_blocks):
            x = MixerBlock(self.token_hidden, self.channel_hidden, self.activation)(x)
        pooled = nn.LayerNorm()(x).mean(axis=1)
        h = jnp.concatenate([pooled, nn.Dense(self.width)(globals_)], axis=-1)
        d = self.latent_dim
        out = MLP(self.width, 1, 2 * d + 2, self.activation)(h)
        scale = nn.softplus(out[:, d:] + _SCALE_OFFSET) + self.min_scale
        return EncoderOutput(out[:, :d], scale[:, :d], out[:, 2 * d], scale[:, d + 1])
