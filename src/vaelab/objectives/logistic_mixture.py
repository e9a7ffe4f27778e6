"""The PixelCNN++ mixture of discretised logistics over 8-bit sub-pixels (Salimans et al., 2017),
and the split of a decoder's output into one. The bins, the [-1, 1] scale and the numerics are those
of ``discretized.py``, which documents them."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.distributions import Distribution, constraints

from ..errors import ConfigError, ModelError
from .discretized import LEVELS, to_levels, _centre, _clamped_logistic_mean, _event_dims, _expected_level, _logistic_log_mass, _quantise

__all__ = ["DiscretizedLogisticMixture", "from_params", "num_params"]


class DiscretizedLogisticMixture(Distribution):
    """Models the sub-pixels of 8-bit images in [0, 1] with PixelCNN++ mixtures of K discretised
    logistics.

    Shapes, with ``event = (C, H, W)`` (or any ``event_dims`` trailing dimensions) and the mixture
    components in the dimension just before the event:

    - ``means``, ``log_scales``: ``batch + (K,) + event``, on the [-1, 1] scale.
    - without ``coeffs``: ``logit_probs`` broadcasts to the same shape; every sub-pixel is its own
      mixture, independent of the others.
    - with ``coeffs`` (Salimans et al., 2017; images with ``C = 3`` and ``event_dims = 3``):
      ``logit_probs`` is ``batch + (K, 1, H, W)``, one component draw per pixel shared by its
      three channels, and ``coeffs`` is ``batch + (K, 3, H, W)`` holding the coefficients
      (alpha, beta, gamma) that shift the component means by the pixel's own earlier channels:
      ``mu_g + alpha * r`` and ``mu_b + beta * r + gamma * g``, with r and g on the [-1, 1] scale.
      The coefficients are used as given (:func:`from_params` bounds them with tanh).

    ``log_prob`` returns one log-probability mass per image (per event), in nats. With ``coeffs``
    the three channels of a pixel are dependent; ``bin_log_probs`` and ``mean`` document what
    they return then.
    """

    has_rsample = False

    def __init__(self, logit_probs: torch.Tensor, means: torch.Tensor, log_scales: torch.Tensor,
                 coeffs: torch.Tensor | None = None, event_dims: int = 3, validate_args: bool | None = None):
        e = _event_dims(event_dims)
        self.conditional = coeffs is not None
        means, log_scales = torch.broadcast_tensors(torch.as_tensor(means), torch.as_tensor(log_scales))
        if means.dim() < e + 1:
            raise ModelError(f"means has shape {tuple(means.shape)}; it needs a component dimension "
                             f"before the event_dims={e} event dimensions")
        shape = means.shape
        self.event_dims, self.n_mix = e, shape[-e - 1]
        logit_probs = torch.as_tensor(logit_probs)
        if self.conditional:
            if e != 3 or shape[-3] != 3:
                raise ModelError(f"coeffs condition the green and blue means on the red and green values, "
                                 f"so they need RGB images: means of shape batch + (K, 3, H, W), got "
                                 f"{tuple(shape)} with event_dims={e}; pass coeffs=None for other images")
            if logit_probs.dim() < 4 or logit_probs.shape[-3] != 1:
                raise ModelError(f"with coeffs, logit_probs holds one weight per component and pixel, "
                                 f"shape batch + (K, 1, H, W); got {tuple(logit_probs.shape)}")
            self.logit_probs = logit_probs.expand(shape[:-4] + (self.n_mix, 1) + shape[-2:])
            self.coeffs = torch.as_tensor(coeffs).expand(shape)
        else:
            self.logit_probs = logit_probs.expand(shape)
            self.coeffs = None
        self.means, self.log_scales = means, log_scales
        super().__init__(shape[:len(shape) - e - 1], shape[len(shape) - e:], validate_args=validate_args)

    @property
    def arg_constraints(self):
        names = ("logit_probs", "means", "log_scales") + (("coeffs",) if self.conditional else ())
        return {name: constraints.real for name in names}

    @property
    def support(self):
        return constraints.independent(constraints.unit_interval, self.event_dims)

    @property
    def _component_dim(self) -> int:
        return -self.event_dims - 1

    def _sum_event(self, t: torch.Tensor) -> torch.Tensor:
        return t.sum(tuple(range(-self.event_dims, 0))) if self.event_dims else t

    def _conditional_means(self, r: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Returns the component means of (R, G, B) given red and green values ``r``, ``g`` on the
        [-1, 1] scale (each shaped like one channel, ``... x H x W`` with the component dimension)."""
        mu_r, mu_g, mu_b = self.means.unbind(-3)
        alpha, beta, gamma = self.coeffs.unbind(-3)
        return torch.stack(torch.broadcast_tensors(mu_r, mu_g + alpha * r, mu_b + beta * r + gamma * g), dim=-3)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Returns the log-probability mass of ``value`` (levels k / 255), summed over the event
        dimensions."""
        if self._validate_args:
            self._validate_sample(value)
        kdim = self._component_dim
        k = to_levels(value).unsqueeze(kdim)
        if not self.conditional:
            lp = _logistic_log_mass(k, self.means, self.log_scales)
            return self._sum_event(torch.logsumexp(F.log_softmax(self.logit_probs, dim=kdim) + lp, dim=kdim))
        c = _centre(k)
        means = self._conditional_means(c[..., 0, :, :], c[..., 1, :, :])
        lp = _logistic_log_mass(k, means, self.log_scales).sum(-3)                  # [..., K, H, W]
        log_w = F.log_softmax(self.logit_probs, dim=-4).squeeze(-3)
        return torch.logsumexp(log_w + lp, dim=-3).sum((-2, -1))

    def bin_log_probs(self, value: torch.Tensor | None = None) -> torch.Tensor:
        """Returns the log-probabilities of all 256 levels of every sub-pixel, shape
        ``batch + event + (256,)``.

        Without ``coeffs`` these are the marginals of the independent sub-pixels and ``value`` is
        not needed. With ``coeffs`` they are the chain-rule conditionals given ``value``: red's
        marginal log p(r = k), green's log p(g = k | r), blue's log p(b = k | r, g), with r and g
        read from ``value`` and the component weights updated by them; gathering them at
        ``value``'s levels and summing gives ``log_prob(value)``.
        """
        levels = torch.arange(LEVELS, dtype=self.means.dtype, device=self.means.device)
        kdim = self._component_dim - 1                                             # with the bin dim
        if not self.conditional:
            lp = _logistic_log_mass(levels, self.means.unsqueeze(-1), self.log_scales.unsqueeze(-1))
            log_w = F.log_softmax(self.logit_probs, dim=self._component_dim).unsqueeze(-1)
            return torch.logsumexp(log_w + lp, dim=kdim)
        if value is None:
            raise ModelError("with coeffs the green and blue levels depend on the red and green values: "
                             "pass the image they condition on, bin_log_probs(value)")
        k = to_levels(value).unsqueeze(-4)
        c = _centre(k)
        means = self._conditional_means(c[..., 0, :, :], c[..., 1, :, :])          # [..., K, 3, H, W]
        observed = _logistic_log_mass(k, means, self.log_scales)
        before = observed.cumsum(-3) - observed                                    # earlier channels
        prefix = F.log_softmax(self.logit_probs, dim=-4) + before                  # [..., K, 3, H, W]
        lp = _logistic_log_mass(levels, means.unsqueeze(-1), self.log_scales.unsqueeze(-1))
        joint = torch.logsumexp(prefix.unsqueeze(-1) + lp, dim=-5)                # [..., 3, H, W, 256]
        return joint - torch.logsumexp(prefix, dim=-4).unsqueeze(-1)

    @property
    def mean(self) -> torch.Tensor:
        """Gives the expected value in [0, 1] of every sub-pixel. Without ``coeffs`` it is exact for
        the discretised (clamped, quantised) variable. With ``coeffs`` red's is exact; green's and
        blue's shift each component's mean by that component's own expected red (and green)
        value, a plug-in that ignores the non-linearity of clamping and quantising (exact when the
        coefficients are zero, close away from 0 and 1)."""
        def expected(loc, log_scale):
            loc_, inv_s = loc.unsqueeze(-1), torch.exp(-log_scale).unsqueeze(-1)
            return _expected_level(lambda t: torch.sigmoid((loc_ - t) * inv_s), loc)

        return self._mixture_mean(expected)

    def _mixture_mean(self, expected) -> torch.Tensor:
        """The weights' average of ``expected(loc, log_scale)`` per component (the expected value in
        [0, 1] of one logistic); with ``coeffs``, green's and blue's locations shifted by the
        component's expected red (and green) values."""
        kdim = self._component_dim
        weights = F.softmax(self.logit_probs, dim=kdim)
        if not self.conditional:
            return (weights * expected(self.means, self.log_scales)).sum(kdim)
        mu_r, mu_g, mu_b = self.means.unbind(-3)
        s_r, s_g, s_b = self.log_scales.unbind(-3)
        alpha, beta, gamma = self.coeffs.unbind(-3)
        e_r = expected(mu_r, s_r)
        e_g = expected(mu_g + alpha * (2.0 * e_r - 1.0), s_g)
        e_b = expected(mu_b + beta * (2.0 * e_r - 1.0) + gamma * (2.0 * e_g - 1.0), s_b)
        return (weights * torch.stack([e_r, e_g, e_b], dim=-3)).sum(-4)

    @property
    def image_mean(self) -> torch.Tensor:
        """``mean`` with each component's discretised mean replaced by its continuous logistic's
        mean clamped to the pixel range (closed form: one evaluation per sub-pixel and component
        instead of 255); within half a grey level of ``mean``. What reconstructions and samples show."""
        return self._mixture_mean(_clamped_logistic_mean)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        """Draws levels k / 255: a component from the weights (one per pixel with ``coeffs``), a
        logistic draw on the [-1, 1] scale, clamped and quantised. With ``coeffs`` green's and
        blue's means shift by the already quantised red and green draws, so the samples follow
        exactly the distribution that ``log_prob`` scores."""
        sample_shape = torch.Size(sample_shape)
        kdim = self._component_dim
        full = sample_shape + self.means.shape
        with torch.no_grad():
            logits = self.logit_probs.expand(sample_shape + self.logit_probs.shape)
            u = torch.rand(logits.shape, dtype=logits.dtype, device=logits.device)
            tiny = torch.finfo(logits.dtype).tiny
            gumbel = -torch.log(-torch.log(u.clamp(min=tiny)))          # u < 1, so -log(u) > 0
            d = len(full) + kdim
            index = (logits + gumbel).argmax(kdim, keepdim=True).expand(full[:d] + (1,) + full[d + 1:])

            def pick(t):
                return t.expand(full).gather(kdim, index).squeeze(kdim)

            loc, log_scale = pick(self.means), pick(self.log_scales)
            eps = torch.finfo(loc.dtype).eps
            u = torch.rand(loc.shape, dtype=loc.dtype, device=loc.device).clamp(eps, 1.0 - eps)
            noise = torch.exp(log_scale) * (torch.log(u) - torch.log1p(-u))
            if not self.conditional:
                return _quantise(loc + noise) / 255.0
            coeffs = pick(self.coeffs)
            (mu_r, mu_g, mu_b), (alpha, beta, gamma), (n_r, n_g, n_b) = (
                loc.unbind(-3), coeffs.unbind(-3), noise.unbind(-3))
            r = _quantise(mu_r + n_r)
            g = _quantise(mu_g + alpha * _centre(r) + n_g)
            b = _quantise(mu_b + beta * _centre(r) + gamma * _centre(g) + n_b)
            return torch.stack([r, g, b], dim=-3) / 255.0


def num_params(n_mix: int, channels: int, conditional: bool = False) -> int:
    """Returns the number of decoder output channels P that :func:`from_params` splits into a
    :class:`DiscretizedLogisticMixture` of ``n_mix`` components over ``channels`` channels:
    ``3 * n_mix * channels`` without coefficients, ``10 * n_mix`` with them (RGB only)."""
    if not isinstance(n_mix, int) or n_mix < 1:
        raise ConfigError(f"n_mix must be a positive integer, got {n_mix!r}")
    if not isinstance(channels, int) or channels < 1:
        raise ConfigError(f"channels must be a positive integer, got {channels!r}")
    if conditional:
        if channels != 3:
            raise ConfigError(f"a conditional mixture couples R, G and B, so it needs channels=3, got "
                              f"{channels}; use conditional=False for {channels}-channel images")
        return n_mix * (1 + 3 * channels)
    return 3 * n_mix * channels


def from_params(params: torch.Tensor, n_mix: int, channels: int, conditional: bool = False,
                validate_args: bool | None = None) -> DiscretizedLogisticMixture:
    """Splits a decoder output of shape ``[..., P, H, W]`` (P from :func:`num_params`) into a
    :class:`DiscretizedLogisticMixture`. Along P, with K = ``n_mix``, C = ``channels`` and each
    group component-major (index ``j * C + c`` for component j, channel c):

    - ``conditional=False``: ``[logit_probs (K*C) | means (K*C) | log_scales (K*C)]``.
    - ``conditional=True`` (C = 3): ``[logit_probs (K) | means (3K) | log_scales (3K) | coeffs (3K)]``,
      the coefficients (alpha, beta, gamma) passed through tanh, as in PixelCNN++.

    Log-scales are used as given, without a lower clamp.
    """
    P = num_params(n_mix, channels, conditional)
    if params.dim() < 3 or params.shape[-3] != P:
        raise ModelError(f"decoder output has shape {tuple(params.shape)}, but a {n_mix}-component "
                         f"{'conditional ' if conditional else ''}mixture over {channels} channels needs "
                         f"[..., {P}, H, W]; size the decoder's last layer with num_params({n_mix}, "
                         f"{channels}, {conditional})")
    lead, hw = params.shape[:-3], params.shape[-2:]
    K, C = n_mix, channels

    def split(t, c):
        return t.reshape(lead + (K, c) + hw)

    if not conditional:
        logits, means, log_scales = params.split(K * C, dim=-3)
        return DiscretizedLogisticMixture(split(logits, C), split(means, C), split(log_scales, C),
                                          validate_args=validate_args)
    logits, means, log_scales, coeffs = params.split([K, 3 * K, 3 * K, 3 * K], dim=-3)
    return DiscretizedLogisticMixture(split(logits, 1), split(means, 3), split(log_scales, 3),
                                      torch.tanh(split(coeffs, 3)), validate_args=validate_args)
