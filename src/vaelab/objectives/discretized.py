"""Discretised likelihoods for 8-bit images: a discretised Gaussian here, and the numerics it shares
with the PixelCNN++ mixture of discretised logistics in ``logistic_mixture.py`` (Salimans et al.,
2017; Kingma et al., 2016).

An 8-bit sub-pixel takes one of 256 values k / 255 (k = 0..255) once fed to a model as a float in
[0, 1]. These distributions put a probability mass on each of those 256 values: the value is
mapped to the [-1, 1] scale (``y = 2 x - 1``), bin ``k`` covers ``[c_k - 1/255, c_k + 1/255]``
around its centre ``c_k = 2 k / 255 - 1``, and the two extreme bins absorb the tails, so that
bin 0 covers ``(-inf, -1 + 1/255]`` and bin 255 covers ``[1 - 1/255, +inf)``. The mass of a bin is
the continuous distribution's probability of that interval, so the 256 masses of a sub-pixel sum
to one. Locations and scales live on the [-1, 1] scale, as in PixelCNN++.

``log_prob`` returns a log-probability *mass*, summed over the event dimensions (the last three,
``(C, H, W)``, by default; ``event_dims=1`` serves vectors): it is never positive, and
``-log_prob / (num_dims * ln 2)`` is an honest code length in bits per dimension
(see :func:`bits_per_dim`). Values off the 1/255 grid are rounded to the nearest level.

Numerics: the masses are computed in log space without subtracting two CDFs that are both close
to one. For the logistic, ``sigmoid(v) - sigmoid(u) = sigmoid(v) sigmoid(-u) (1 - exp(u - v))``
is exact at any scale. For the Gaussian, an interior bin is moved to the lower tail by symmetry
and its log mass is ``log Phi(v) + log(1 - Phi(u) / Phi(v))``; when the bin is narrow against the
scale, that difference would cancel, and the midpoint rule with its second-order correction
(``log phi(m) + log w + log1p(w^2 (m^2 - 1) / 24)``) takes over, as PixelCNN++ falls back to the
density times the bin width. Values and gradients are finite for log-scales in about [-40, 40]
in float32 (scales of 1e-17 to 1e17).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.distributions import Distribution, constraints

from ..errors import ModelError

__all__ = [
    "LEVELS",
    "DiscretizedGaussian",
    "bits_per_dim",
    "to_levels",
]

LEVELS = 256
_HALF = 1.0 / 255.0                          # half a bin on the [-1, 1] scale
_LOG_WIDTH = math.log(2.0 / 255.0)
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_MIDPOINT_BELOW = 0.05                       # w * (1 + |m|) under which the midpoint rule is used
_ASYMPTOTIC_BELOW = -20.0                    # log Phi(x) from its asymptotic series below this
_CHUNK = 16                                  # thresholds per step when computing means


def bits_per_dim(nll_nats, num_dims: int):
    """Converts a negative log-likelihood in nats into bits per dimension:
    ``nll_nats / (num_dims * ln 2)``.

    The number is an honest code length only when ``nll_nats`` is minus the log of a probability
    *mass* over the 256 levels, as the discretised likelihoods of this module return: it is then
    never negative, the uniform model scores exactly 8 bits per dimension, and an arithmetic coder
    driven by the model would need that many bits on average. Minus a continuous log-density (a
    Gaussian or a Bernoulli on grey levels) has no such meaning: it changes with the scale of the
    data, may be negative, and is not a bits-per-dimension figure.
    """
    return nll_nats / (num_dims * math.log(2.0))


def to_levels(x: torch.Tensor) -> torch.Tensor:
    """Maps values in [0, 1] to their 8-bit level ``k`` in 0..255 (as floats), rounding to the
    nearest level and clamping outside the range."""
    return torch.round(x * 255.0).clamp(0.0, 255.0)


def _centre(k: torch.Tensor) -> torch.Tensor:
    return k * (2.0 / 255.0) - 1.0


def _quantise(y: torch.Tensor) -> torch.Tensor:
    """Clamps draws on the [-1, 1] scale and returns the level of the bin each one falls in."""
    return torch.round((y.clamp(-1.0, 1.0) + 1.0) * 127.5)


def _log1mexp(d: torch.Tensor) -> torch.Tensor:
    """Returns log(1 - exp(d)) for d < 0, accurate in absolute terms everywhere."""
    return torch.log(-torch.expm1(d))


def _log_ndtr(x: torch.Tensor) -> torch.Tensor:
    """Returns log Phi(x), from the asymptotic series far in the lower tail, where torch's
    log_ndtr loses its gradient to the cancellation of x^2 / 2 against the result."""
    tail = x < _ASYMPTOTIC_BELOW
    xa = torch.where(tail, x, torch.full_like(x, _ASYMPTOTIC_BELOW))
    r = xa.reciprocal().square()
    series = -0.5 * xa * xa - torch.log(-xa) - _LOG_SQRT_2PI + torch.log1p(r * (-1.0 + r * (3.0 - 15.0 * r)))
    return torch.where(tail, series, torch.special.log_ndtr(torch.where(tail, torch.zeros_like(x), x)))


def _gaussian_log_mass(k: torch.Tensor, loc: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """Returns the log mass of level ``k`` under the discretised N(loc, exp(log_scale)^2),
    broadcasting its arguments."""
    inv_s = torch.exp(-log_scale)
    m = (_centre(k) - loc) * inv_s               # standardised bin centre
    h = _HALF * inv_s                            # standardised half-width
    low, high = k == 0, k == LEVELS - 1
    interior = ~(low | high)
    zero = torch.zeros_like(m)
    # Each branch sees harmless inputs where it is not selected, so no inf or NaN reaches the
    # gradient through torch.where.
    lp_low = _log_ndtr(torch.where(low, m + h, zero))
    lp_high = _log_ndtr(torch.where(high, h - m, zero))
    a = -m.abs()                                 # the mass is symmetric in m: use the lower tail
    mid = interior & (2.0 * h * (1.0 - a) < _MIDPOINT_BELOW)
    exact = interior & ~mid
    ae = torch.where(exact, a, -torch.ones_like(a))
    he = torch.where(exact, h, torch.full_like(h, 0.5))
    lv, lu = _log_ndtr(ae + he), _log_ndtr(ae - he)
    lp_exact = lv + _log1mexp(lu - lv)
    am = torch.where(mid, a, zero)
    wm = torch.where(mid, 2.0 * h, zero)
    log_wm = torch.where(mid, _LOG_WIDTH - log_scale, zero)
    lp_mid = -0.5 * am * am - _LOG_SQRT_2PI + log_wm + torch.log1p(wm * wm * (am * am - 1.0) / 24.0)
    return torch.where(low, lp_low, torch.where(high, lp_high, torch.where(mid, lp_mid, lp_exact)))


def _logistic_log_mass(k: torch.Tensor, loc: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """Returns the log mass of level ``k`` under the discretised logistic(loc, exp(log_scale)),
    broadcasting its arguments."""
    inv_s = torch.exp(-log_scale)
    centred = _centre(k) - loc
    plus = (centred + _HALF) * inv_s
    minus = (centred - _HALF) * inv_s
    upper, lower = F.logsigmoid(plus), F.logsigmoid(-minus)
    interior = upper + lower + _log1mexp(-(2.0 * _HALF) * inv_s)
    return torch.where(k == 0, upper, torch.where(k == LEVELS - 1, lower, interior))


def _expected_level(survival, like: torch.Tensor) -> torch.Tensor:
    """Returns E[k] / 255 of a discretised variable, (1/255) sum_{k=1}^{255} P(Y >= t_k) with t_k
    the lower edge of bin k; ``survival(t)`` maps thresholds [n] to probabilities [..., n]."""
    edges = -1.0 + (2.0 * torch.arange(1, LEVELS, dtype=like.dtype, device=like.device) - 1.0) / 255.0
    total = torch.zeros_like(like)
    for chunk in edges.split(_CHUNK):
        total = total + survival(chunk).sum(-1)
    return total / 255.0


def _clamped_logistic_mean(loc: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """E[clamp(Y, -1, 1)] / 2 + 1/2 for Y ~ Logistic(loc, exp(log_scale)), in closed form:
    ``-1 + s (softplus((loc + 1) / s) - softplus((loc - 1) / s))`` on the [-1, 1] scale."""
    s = torch.exp(log_scale)
    e = -1.0 + s * (F.softplus((loc + 1.0) / s) - F.softplus((loc - 1.0) / s))
    return ((e + 1.0) / 2.0).clamp(0.0, 1.0)


def _clamped_gaussian_mean(loc: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """E[clamp(Y, -1, 1)] / 2 + 1/2 for Y ~ N(loc, exp(log_scale)^2), in closed form:
    ``a Phi(alpha) + b (1 - Phi(beta)) + loc (Phi(beta) - Phi(alpha)) + s (phi(alpha) - phi(beta))``
    with a = -1, b = 1, alpha = (a - loc) / s, beta = (b - loc) / s."""
    s = torch.exp(log_scale)
    alpha, beta = (-1.0 - loc) / s, (1.0 - loc) / s
    cdf_a, cdf_b = torch.special.ndtr(alpha), torch.special.ndtr(beta)

    def pdf(t):
        return torch.exp(-0.5 * t * t - _LOG_SQRT_2PI)

    e = -cdf_a + (1.0 - cdf_b) + loc * (cdf_b - cdf_a) + s * (pdf(alpha) - pdf(beta))
    return ((e + 1.0) / 2.0).clamp(0.0, 1.0)


def _event_dims(event_dims: int) -> int:
    if not isinstance(event_dims, int) or event_dims < 0:
        raise ModelError(f"event_dims must be a non-negative integer, got {event_dims!r}; use 3 for "
                         "images (C, H, W) or 1 for vectors")
    return event_dims


class DiscretizedGaussian(Distribution):
    """Models the sub-pixels of 8-bit images in [0, 1] as independent discretised Gaussians.

    ``loc`` and ``log_scale`` live on the [-1, 1] scale (``loc = 0`` is mid-grey; ``loc`` outside
    [-1, 1] is allowed and piles mass on an extreme bin). The last ``event_dims`` dimensions form
    the event (``(C, H, W)`` by default), so ``log_prob`` returns one log-probability mass per
    image, in nats.
    """

    arg_constraints = {"loc": constraints.real, "log_scale": constraints.real}
    has_rsample = False

    def __init__(self, loc: torch.Tensor, log_scale: torch.Tensor, event_dims: int = 3,
                 validate_args: bool | None = None):
        e = _event_dims(event_dims)
        self.loc, self.log_scale = torch.broadcast_tensors(torch.as_tensor(loc), torch.as_tensor(log_scale))
        if self.loc.dim() < e:
            raise ModelError(f"loc has shape {tuple(self.loc.shape)}, fewer than event_dims={e} dimensions")
        self.event_dims = e
        shape = self.loc.shape
        super().__init__(shape[:len(shape) - e], shape[len(shape) - e:], validate_args=validate_args)

    @property
    def support(self):
        return constraints.independent(constraints.unit_interval, self.event_dims)

    def _sum_event(self, t: torch.Tensor) -> torch.Tensor:
        return t.sum(tuple(range(-self.event_dims, 0))) if self.event_dims else t

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Returns the log-probability mass of ``value`` (levels k / 255), summed over the event
        dimensions."""
        if self._validate_args:
            self._validate_sample(value)
        return self._sum_event(_gaussian_log_mass(to_levels(value), self.loc, self.log_scale))

    def bin_log_probs(self, value: torch.Tensor | None = None) -> torch.Tensor:
        """Returns the log-probabilities of all 256 levels of every sub-pixel, shape
        ``batch + event + (256,)``. The sub-pixels are independent, so ``value`` (accepted for a
        common interface with the conditional mixture) changes nothing."""
        k = torch.arange(LEVELS, dtype=self.loc.dtype, device=self.loc.device)
        return _gaussian_log_mass(k, self.loc.unsqueeze(-1), self.log_scale.unsqueeze(-1))

    @property
    def mean(self) -> torch.Tensor:
        """Gives the exact expected value in [0, 1] of every discretised (clamped, quantised)
        sub-pixel, from 255 CDF evaluations per sub-pixel."""
        loc, inv_s = self.loc.unsqueeze(-1), torch.exp(-self.log_scale).unsqueeze(-1)
        return _expected_level(lambda t: torch.special.ndtr((loc - t) * inv_s), self.loc)

    @property
    def image_mean(self) -> torch.Tensor:
        """The mean of the continuous Gaussian clamped to the pixel range, in [0, 1]: one
        closed-form evaluation per sub-pixel instead of ``mean``'s 255; the two differ by less
        than half a grey level (the quantisation). What reconstructions and samples show."""
        return _clamped_gaussian_mean(self.loc, self.log_scale)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        """Draws levels k / 255: a Gaussian draw on the [-1, 1] scale, clamped and quantised."""
        shape = self._extended_shape(sample_shape)
        with torch.no_grad():
            noise = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)
            return _quantise(self.loc + torch.exp(self.log_scale) * noise) / 255.0
