"""The VAE with an inverse autoregressive flow posterior (Kingma et al., "Improved Variational
Inference with Inverse Autoregressive Flow", NeurIPS 2016).

q(z|x) is the diagonal Gaussian q0 = N(mu(x), diag(sigma(x)^2)) followed by T invertible
autoregressive transforms, each conditioned on the encoder's features h(x) (the paper's context h):

    z_0 = mu + sigma * eps,   z_t = exp(a_t(z_{t-1}, h)) * z_{t-1} + b_t(z_{t-1}, h),   z = z_T

where (a_t, b_t)_i depends on the units of z_{t-1} before i (a MADE, zuko's masked MLP), and the
unit order flips between transforms. Sampling is one network pass per transform, and

    log q(z|x) = log q0(z_0|x) - sum_t sum_i a_{t,i}

comes with the sample. The transforms are zuko's masked autoregressive transforms used in the
inverse direction (``zuko.flows.MaskedAutoregressiveTransform``; an IAF is a MAF run backwards),
with zuko's affine update (exp(a) z + b, a soft-bounded) rather than the paper's LSTM-style gated
one. Their last layers start at zero, so each transform starts as the identity and the model starts
as the VAE with the same encoder and decoder.

The posterior is a zuko ``NormalizingFlow`` (a torch Distribution): the contract's Monte Carlo KL
(no closed form), the importance weights (NLL) and the detector's nelbo / nll scores use its
``rsample`` and ``log_prob`` unchanged. ``log_prob`` at the sample ``rsample`` just returned is the
value computed with it (the identity cache torch.distributions' transforms use); at any other z it
inverts the flow exactly (one pass per latent unit and transform). ``mean`` - what ``embed``, the
reconstruction and the latent scores take as E[z|x] - is the flow applied to the Gaussian's mean,
an approximation: exact while the transforms are the identity (at initialisation), otherwise the
flow's value at the Gaussian's mean rather than the flow's mean. The posterior has no closed-form
variance, standard deviation or entropy and refuses them."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.distributions import Distribution

from .._zuko import zuko
from ..errors import ConfigError
from ..nn import ACTIVATIONS
from ..objectives import diag_gaussian
from .registry import register_model
from .sampled import NoClosedForms
from .vae import VAE, VAEConfig


@dataclass
class VAEIAFConfig(VAEConfig):
    name: str = "vae-iaf"
    flow_transforms: int = 2  # inverse autoregressive transforms after the Gaussian (0: the plain VAE posterior)
    flow_hidden: list[int] = field(default_factory=lambda: [64, 64])  # hidden widths of each transform's masked MLP (MADE)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.flow_transforms < 0:
            raise ConfigError(f"model.flow_transforms (IAF transforms after the Gaussian) must be >= 0, got {self.flow_transforms}")
        if not self.flow_hidden or any(int(w) < 1 for w in self.flow_hidden):
            raise ConfigError(f"model.flow_hidden must be a non-empty list of positive widths, e.g. [64, 64]; got {self.flow_hidden}")


class IAFPosterior(NoClosedForms, zuko.distributions.NormalizingFlow):
    """q(z|x): zuko's normalizing flow whose base is the Gaussian q0(z_0|x) (``gaussian``) and whose
    sampling direction is the IAF. Adds to zuko's distribution: the log-density of the latest
    ``rsample`` kept with it, ``mean`` (the flow at the Gaussian's mean, an approximation of E[z|x])
    and clear refusals of the moments it has no closed form for."""

    _last: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def gaussian(self) -> Distribution:
        """q0(z_0|x), the diagonal Gaussian before the flow."""
        return self.base

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        z, log_q = self.rsample_and_log_prob(torch.Size(sample_shape))
        self._last = (z, log_q)
        return z

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._last is not None and value is self._last[0]:
            return self._last[1]
        return super().log_prob(value)

    @property
    def mean(self) -> torch.Tensor:
        return self.transform.inv(self.base.mean)

    entropy_hint = " (its Monte Carlo estimate is -q.log_prob(q.rsample()))"

    def _refuse(self, what: str) -> NotImplementedError:
        return NotImplementedError(f"the IAF posterior has no closed-form {what}; estimate it from samples "
                                   "(q.rsample((k,))), or use a model with a Gaussian posterior (vae)")


@register_model("vae-iaf", "VAE whose posterior is a Gaussian followed by an inverse autoregressive flow (zuko)")
class VAEIAF(VAE):
    """loss = rec + beta * kl_weight * KL(q(z|x) || p(z)) with q the IAF posterior above, the KL
    the one-sample Monte Carlo estimate log q(z|x) - log p(z) at the reconstruction's z (the VAE's
    loss; only the posterior differs). ``flow_transforms`` = 0 gives the VAE's Gaussian posterior."""

    code_maps = False  # its flow is conditioned on a feature vector

    config_class = VAEIAFConfig

    def build_heads(self, config: VAEIAFConfig) -> None:
        """The Gaussian's heads (the VAE's), then the transforms, conditioned on the encoder's
        output h (the features before the heads; with your own encoder, its output)."""
        super().build_heads(config)
        self.flow = None
        if config.flow_transforms == 0:
            return
        # zuko's MAF: its transforms alternate the unit order; only they are kept (the base is q0)
        maf = zuko.flows.MAF(config.latent_dim, self.feature_dim, transforms=config.flow_transforms,
                             hidden_features=list(config.flow_hidden), activation=ACTIVATIONS[config.activation])
        self.flow = maf.transform  # a lazy composed transform: flow(h) is the composed MAF transform given h
        for step in self.flow.transforms:  # the hyper-network's last layer at zero: shift 0, log-scale 0, the identity
            last = step.hyper[-1]  # a masked linear layer (an elementwise one's plain linear layer at latent_dim 1)
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def encode(self, x: torch.Tensor) -> Distribution:
        h = self.encoder(x)
        q0 = diag_gaussian(self.mu(h), self.logvar(h).clamp(-30.0, 20.0))
        if self.flow is None:
            return q0
        # zuko's NormalizingFlow takes the map from a sample to its base: the MAF transforms,
        # inverted, take z_T back to z_0 (sampling runs them forward: one pass each)
        return IAFPosterior(self.flow(h).inv, q0)
