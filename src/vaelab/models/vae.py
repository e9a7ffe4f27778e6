"""The variational autoencoder (Kingma & Welling): Gaussian posterior, N(0, I) prior,
loss = rec + beta * kl_weight * KL, with kl_weight the warm-up factor from the trainer."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError
from ..objectives import diag_gaussian, kl_to_standard_normal
from .base import Autoencoder, LossOutput, ModelConfig


@dataclass
class VAEConfig(ModelConfig):
    name: str = "vae"
    beta: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.beta < 0:
            raise ConfigError(f"model.beta must be >= 0, got {self.beta}")


class VAE(Autoencoder):
    config_class = VAEConfig
    has_prior = True

    def __init__(self, config: VAEConfig):
        super().__init__(config)
        self.mu = nn.Linear(self.feature_dim, config.latent_dim)
        self.logvar = nn.Linear(self.feature_dim, config.latent_dim)

    def encode(self, x: torch.Tensor):
        h = self.encoder(x)
        return diag_gaussian(self.mu(h), self.logvar(h).clamp(-30.0, 20.0))

    def loss(self, x: torch.Tensor, kl_weight: float | torch.Tensor = 1.0) -> LossOutput:
        q = self.encode(x)
        z = q.rsample()
        rec = -self.decode(z).log_prob(x)
        kl = kl_to_standard_normal(q)
        loss = (rec + (self.config.beta * kl_weight) * kl).mean()
        return LossOutput(loss, {"rec": rec, "kl": kl, "nelbo": rec + kl})
