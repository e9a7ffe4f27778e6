"""Deterministic undercomplete autoencoder: a point-mass posterior, loss = -log p(x | z)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..objectives import PointMass
from .base import Autoencoder, LossOutput, ModelConfig


@dataclass
class AEConfig(ModelConfig):
    name: str = "ae"
    likelihood: Literal["bernoulli", "gaussian"] = "gaussian"  # Gaussian with std 1: 0.5 * squared error + const


class AE(Autoencoder):
    config_class = AEConfig

    def __init__(self, config: AEConfig):
        super().__init__(config)
        self.code = nn.Linear(self.feature_dim, config.latent_dim)

    def encode(self, x: torch.Tensor) -> PointMass:
        return PointMass(self.code(self.encoder(x)))

    def loss(self, x: torch.Tensor, kl_weight: float | torch.Tensor = 1.0) -> LossOutput:
        z = self.encode(x).rsample()
        rec = -self.decode(z).log_prob(x)
        return LossOutput(rec.mean(), {"rec": rec})
