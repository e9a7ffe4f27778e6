"""The Wasserstein autoencoder with the MMD penalty (Tolstikhin, Bousquet, Gelly & Schoelkopf,
"Wasserstein Auto-Encoders", ICLR 2018).

    loss = rec + lambda * MMD^2(q(z), p(z)),   p(z) = prior() (N(0, I))

MMD^2 is the unbiased U-statistic (vaelab.objectives.mmd) between the minibatch's codes, a
sample of the aggregate posterior q(z), and as many draws from the prior; the IMQ kernel by
default, as in the paper's code. The encoder is deterministic by default (the posterior a point
mass at the code); ``encoder_kind=gaussian`` gives it a diagonal Gaussian posterior, sampled
once per image. A WAE matches q(z) to p(z) without a per-image density bound: it samples from
the prior (can_sample) but has no ELBO (has_density = False)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.distributions import Distribution

from ..errors import ConfigError, ModelError
from ..objectives import PointMass, diag_gaussian
from ..objectives.mmd import mmd
from .base import Autoencoder, LossOutput, ModelConfig, Split
from .registry import register_model


@dataclass
class WAEConfig(ModelConfig):
    name: str = "wae"
    likelihood: Literal["bernoulli", "gaussian"] = "gaussian"  # std 1: 0.5 * squared error + const, the paper's squared L2 cost up to a factor
    encoder_kind: Literal["deterministic", "gaussian"] = "deterministic"  # the posterior: a point mass at the code, or a diagonal Gaussian
    kernel: Literal["imq", "rbf"] = "imq"  # MMD kernel: inverse multiquadratic summed over 7 scales, or one Gaussian RBF
    lambda_: float = 10.0  # weight of the MMD penalty between q(z) and p(z)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.lambda_ < 0:
            raise ConfigError(f"model.lambda_ (the MMD weight) must be >= 0, got {self.lambda_}")


@register_model("wae", "Wasserstein autoencoder (WAE-MMD): reconstruction + lambda * MMD between q(z) and the prior")
class WAE(Autoencoder):
    """loss = rec + kl_weight * lambda * MMD^2_u(codes, prior samples) (Tolstikhin et al. 2018);
    the trainer's warm-up factor ramps the MMD as it ramps a VAE's KL. Terms: rec, mmd."""

    config_class = WAEConfig
    can_sample = True
    has_density = False
    custom_networks = True

    def __init__(self, config: WAEConfig, encoder: nn.Module | None = None, decoder: nn.Module | None = None):
        super().__init__(config, encoder, decoder)
        d = config.latent_dim
        gaussian = config.encoder_kind == "gaussian"
        if getattr(self, "own_networks", False):
            self.mu = Split(0, d)
            self.logvar = Split(d, 2 * d) if gaussian else None
        else:
            self.mu = nn.Linear(self.feature_dim, d)
            self.logvar = nn.Linear(self.feature_dim, d) if gaussian else None

    def posterior_width(self) -> int:
        return (2 if self.config.encoder_kind == "gaussian" else 1) * self.latent_dim

    def encode(self, x: torch.Tensor) -> Distribution:
        h = self.encoder(x)
        if self.logvar is None:
            return PointMass(self.mu(h))
        return diag_gaussian(self.mu(h), self.logvar(h).clamp(-30.0, 20.0))

    def loss(self, x: torch.Tensor, kl_weight: float | torch.Tensor = 1.0) -> LossOutput:
        if x.shape[0] < 2:
            raise ModelError("wae compares the minibatch's codes with prior samples (MMD): use batches of at least 2 examples")
        z = self.encode(x).rsample()
        rec = -self.decode(z).log_prob(x)
        z_prior = self.prior().sample((x.shape[0],))
        m = mmd(z, z_prior, self.config.kernel)
        loss = rec.mean() + (self.config.lambda_ * kl_weight) * m
        return LossOutput(loss, {"rec": rec, "mmd": m.expand(x.shape[0])})
