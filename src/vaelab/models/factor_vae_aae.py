"""Models trained against a discriminator, with an optimizer of its own (``adversarial = True``: the
trainer alternates a step of the model on ``loss`` and a step of ``discriminator`` on
``discriminator_loss``; both optimizers' states are in the checkpoint, so a resumed run is exact).

- ``factor-vae`` (Kim & Mnih, "Disentangling by Factorising", ICML 2018): the VAE's loss plus
  gamma times the total correlation of q(z), estimated by a discriminator D that tells codes z ~ q(z)
  from codes whose dimensions were shuffled across the batch (a sample of prod_j q(z_j)):
  TC ~ E_q[log D(z) / (1 - D(z))]. D is trained by cross-entropy on the two kinds of codes.
- ``aae`` (Makhzani et al., "Adversarial Autoencoders", 2015): an autoencoder whose codes are
  matched to the prior N(0, I) by a discriminator that tells prior samples from codes; the encoder
  is trained to fool it (loss = rec + lambda * adv, the non-saturating GAN loss)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, ModelError
from ..objectives.adversarial import density_ratio_tc, discriminator_mlp, permute_dims
from .base import LossOutput, ModelConfig
from .registry import register_model
from .vae import VAE, VAEConfig
from .wae import WAE


def _check_disc(cfg) -> None:
    if cfg.disc_hidden < 1 or cfg.disc_layers < 1:
        raise ConfigError(f"model.disc_hidden and model.disc_layers must be >= 1, got {cfg.disc_hidden}, {cfg.disc_layers}")
    if cfg.disc_lr <= 0:
        raise ConfigError(f"model.disc_lr (the discriminator's learning rate) must be > 0, got {cfg.disc_lr}")
    if len(cfg.disc_betas) != 2 or not all(0 <= b < 1 for b in cfg.disc_betas):
        raise ConfigError(f"model.disc_betas are Adam's two betas in [0, 1), e.g. [0.5, 0.9]; got {cfg.disc_betas}")


@dataclass
class FactorVAEConfig(VAEConfig):
    name: str = "factor-vae"
    gamma: float = 10.0  # weight of the discriminator's total-correlation estimate
    disc_hidden: int = 512  # discriminator: hidden units per layer (the paper: 1000)
    disc_layers: int = 4  # discriminator: hidden layers (the paper: 6)
    disc_lr: float = 1e-4  # the discriminator's Adam learning rate (the paper's)
    disc_betas: list[float] = field(default_factory=lambda: [0.5, 0.9])  # the discriminator's Adam betas (the paper's)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.gamma < 0:
            raise ConfigError(f"model.gamma (weight of the total correlation) must be >= 0, got {self.gamma}")
        _check_disc(self)


@register_model("factor-vae", "VAE + gamma * total correlation estimated by a discriminator (Kim & Mnih 2018)")
class FactorVAE(VAE):
    """loss = rec + kl_weight * (KL + gamma * TC), TC the discriminator's density-ratio estimate on
    the batch's codes; discriminator_loss = cross-entropy of D on the codes (class 0) and on the
    dimension-wise permuted codes (class 1). Terms: rec, kl, nelbo, tc; d_loss, d_accuracy."""

    config_class = FactorVAEConfig
    adversarial = True

    def __init__(self, config: FactorVAEConfig, encoder: nn.Module | None = None, decoder: nn.Module | None = None):
        if config.capacity_max is not None:
            raise ConfigError("model.capacity_max anneals vae / beta-vae; factor-vae has no capacity annealing: leave it null")
        super().__init__(config, encoder, decoder)
        self.discriminator = discriminator_mlp(config.latent_dim, config.disc_hidden, config.disc_layers, 2)

    def tc_estimate(self, z: torch.Tensor) -> torch.Tensor:
        """Per code, the discriminator's estimate of log q(z) / prod_j q(z_j)."""
        return density_ratio_tc(self.discriminator(z))

    def loss(self, x: torch.Tensor, kl_weight: float | torch.Tensor = 1.0) -> LossOutput:
        q = self.encode(x)
        z = q.rsample()
        rec = -self.decode(z).log_prob(x)
        kl = self.kl(q, z)
        tc = self.tc_estimate(z)
        loss = (rec + kl_weight * (self.config.beta * kl + self.config.gamma * tc)).mean()
        return LossOutput(loss, {"rec": rec, "kl": kl, "nelbo": rec + kl, "tc": tc})

    def discriminator_loss(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> LossOutput:
        if x.shape[0] < 2:
            raise ModelError("factor-vae's discriminator compares codes with codes permuted across the batch: use batches "
                             "of at least 2 images")
        with torch.no_grad():
            z = self.encode(x).rsample()
        logits = self.discriminator(torch.cat([z, permute_dims(z)]))
        target = torch.cat([torch.zeros(len(z), dtype=torch.long, device=z.device),
                            torch.ones(len(z), dtype=torch.long, device=z.device)])
        ce = F.cross_entropy(logits, target, reduction="none")
        acc = (logits.argmax(1) == target).to(ce.dtype)
        n = len(z)
        return LossOutput(ce.mean(), {"d_loss": 0.5 * (ce[:n] + ce[n:]), "d_accuracy": 0.5 * (acc[:n] + acc[n:])})


@dataclass
class AAEConfig(ModelConfig):
    name: str = "aae"
    likelihood: Literal["bernoulli", "gaussian"] = "gaussian"  # std 1: 0.5 * squared error + const
    encoder_kind: Literal["deterministic", "gaussian"] = "deterministic"  # a point mass at the code, or a diagonal Gaussian
    lambda_: float = 1.0  # weight of the adversarial term that pulls the codes to the prior
    disc_hidden: int = 512  # discriminator: hidden units per layer
    disc_layers: int = 2  # discriminator: hidden layers
    disc_lr: float = 1e-4  # the discriminator's Adam learning rate
    disc_betas: list[float] = field(default_factory=lambda: [0.5, 0.9])  # the discriminator's Adam betas

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.lambda_ < 0:
            raise ConfigError(f"model.lambda_ (the adversarial weight) must be >= 0, got {self.lambda_}")
        _check_disc(self)


@register_model("aae", "adversarial autoencoder: codes matched to the prior by a discriminator (Makhzani et al. 2015)")
class AAE(WAE):
    """loss = rec + kl_weight * lambda * adv, adv = -log D(code) (the encoder fools D);
    discriminator_loss = -log D(z_prior) - log(1 - D(code)). The WAE's encoder (a point mass or a
    diagonal Gaussian) and prior N(0, I); samples come from the prior. Terms: rec, adv; d_loss,
    d_accuracy."""

    config_class = AAEConfig
    adversarial = True

    def __init__(self, config: AAEConfig, encoder: nn.Module | None = None, decoder: nn.Module | None = None):
        super().__init__(config, encoder, decoder)
        self.discriminator = discriminator_mlp(config.latent_dim, config.disc_hidden, config.disc_layers, 1)

    def loss(self, x: torch.Tensor, kl_weight: float | torch.Tensor = 1.0) -> LossOutput:
        z = self.encode(x).rsample()
        rec = -self.decode(z).log_prob(x)
        adv = F.softplus(-self.discriminator(z)[:, 0])  # -log sigmoid(D(z)): the codes labelled 'prior'
        loss = (rec + (self.config.lambda_ * kl_weight) * adv).mean()
        return LossOutput(loss, {"rec": rec, "adv": adv})

    def discriminator_loss(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> LossOutput:
        with torch.no_grad():
            z = self.encode(x).rsample()
        prior = self.prior().sample((len(z),))
        real, fake = self.discriminator(prior)[:, 0], self.discriminator(z)[:, 0]
        d = F.softplus(-real) + F.softplus(fake)  # -log D(prior) - log(1 - D(code))
        acc = 0.5 * ((real > 0).to(d.dtype) + (fake <= 0).to(d.dtype))
        return LossOutput(d.mean(), {"d_loss": d, "d_accuracy": acc})
