"""The variational autoencoder (Kingma & Welling) and its beta-VAE, beta-TCVAE and IWAE
objectives. Gaussian posterior, N(0, I) prior; ``kl_weight`` is the trainer's warm-up factor."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.distributions import Independent, Normal

from ..errors import ConfigError, ModelError
from ..objectives import diag_gaussian, kl_to_standard_normal, log_mean_exp
from ..objectives.tc import tc_decomposition
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
    """loss = rec + beta * kl_weight * KL(q(z|x) || N(0, I)) (analytic KL). With beta = 1 this
    is the negative ELBO; the 'beta-vae' entry is this class with beta = 4 by default."""

    config_class = VAEConfig
    has_prior = True

    def __init__(self, config: VAEConfig):
        super().__init__(config)
        self.build_heads(config)

    def build_heads(self, config: VAEConfig) -> None:
        """The posterior's mean and log-variance heads on the encoder features."""
        self.mu = nn.Linear(self.feature_dim, config.latent_dim)
        self.logvar = nn.Linear(self.feature_dim, config.latent_dim)

    def posterior_params(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.mu(h), self.logvar(h).clamp(-30.0, 20.0)

    def encode(self, x: torch.Tensor) -> Independent:
        return diag_gaussian(*self.posterior_params(x))

    def loss(self, x: torch.Tensor, kl_weight: float | torch.Tensor = 1.0) -> LossOutput:
        q = self.encode(x)
        z = q.rsample()
        rec = -self.decode(z).log_prob(x)
        kl = kl_to_standard_normal(q)
        loss = (rec + (self.config.beta * kl_weight) * kl).mean()
        return LossOutput(loss, {"rec": rec, "kl": kl, "nelbo": rec + kl})


# --------------------------------------------------------------------------------------------
@dataclass
class BetaTCVAEConfig(VAEConfig):
    name: str = "beta-tcvae"
    alpha: float = 1.0  # weight of the index-code mutual information
    beta: float = 6.0  # weight of the total correlation
    gamma: float = 1.0  # weight of the dimension-wise KL
    estimator: Literal["mss", "mws"] = "mss"
    dataset_size: int | None = None  # N of the training set; filled in from the data when trained

    def __post_init__(self) -> None:
        super().__post_init__()
        for k in ("alpha", "gamma"):
            if getattr(self, k) < 0:
                raise ConfigError(f"model.{k} must be >= 0, got {getattr(self, k)}")
        if self.dataset_size is not None and self.dataset_size < 2:
            raise ConfigError(f"model.dataset_size must be >= 2, got {self.dataset_size}")

    def fill_from_data(self, n_train: int | None, image_shape: tuple[int, int, int]) -> None:
        super().fill_from_data(n_train, image_shape)
        if self.dataset_size is None and n_train is not None:
            self.dataset_size = n_train


class BetaTCVAE(VAE):
    """loss = rec + alpha * MI + beta * TC + gamma * dimension-wise KL, the three estimated on the
    minibatch (see vaelab.objectives.tc). The analytic KL is logged beside them."""

    config_class = BetaTCVAEConfig

    def __init__(self, config: BetaTCVAEConfig):
        if config.dataset_size is None:
            raise ModelError("beta-tcvae needs the training-set size for its q(z) estimator: set model.dataset_size=N "
                             "(vaelab train fills it in from the data)")
        super().__init__(config)

    def loss(self, x: torch.Tensor, kl_weight: float | torch.Tensor = 1.0) -> LossOutput:
        c = self.config
        mu, logvar = self.posterior_params(x)
        q = diag_gaussian(mu, logvar)
        z = q.rsample()
        rec = -self.decode(z).log_prob(x)
        if x.shape[0] < 2:
            raise ModelError("beta-tcvae estimates q(z) from the minibatch: use batches of at least 2 images")
        t = tc_decomposition(z, mu, logvar, c.dataset_size, c.estimator)
        kl = kl_to_standard_normal(q)
        reg = c.alpha * t["mi"] + c.beta * t["tc"] + c.gamma * t["dwkl"]
        loss = (rec + kl_weight * reg).mean()
        return LossOutput(loss, {"rec": rec, "kl": kl, "nelbo": rec + kl, "mi": t["mi"], "tc": t["tc"], "dwkl": t["dwkl"]})


# --------------------------------------------------------------------------------------------
@dataclass
class IWAEConfig(VAEConfig):
    name: str = "iwae"
    k: int = 5  # importance samples per image

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.k < 1:
            raise ConfigError(f"model.k (importance samples) must be >= 1, got {self.k}")


class IWAE(VAE):
    """Importance-weighted bound (Burda et al.): log (1/k) sum_k p(x, z_k) / q(z_k | x), all k
    samples decoded in one batched pass. loss = -bound; with k = 1 it is the ELBO with a
    single-sample KL. 'nelbo' logs rec + analytic KL for comparison with the VAE."""

    config_class = IWAEConfig

    def log_weights(self, x: torch.Tensor, k: int, kl_weight: float | torch.Tensor = 1.0) -> tuple[torch.Tensor, torch.Tensor, Independent]:
        """([k, B] log importance weights, [k, B] log p(x|z), q)."""
        q = self.encode(x)
        z = q.rsample((k,))  # [k, B, d]
        b = x.shape[0]
        px = self.decode(z.reshape(k * b, -1))
        log_px_z = px.log_prob(x.unsqueeze(0).expand(k, *x.shape).reshape(k * b, *x.shape[1:])).view(k, b)
        prior = Independent(Normal(torch.zeros_like(z), torch.ones_like(z)), 1)
        return log_px_z + kl_weight * (prior.log_prob(z) - q.log_prob(z)), log_px_z, q

    def loss(self, x: torch.Tensor, kl_weight: float | torch.Tensor = 1.0) -> LossOutput:
        lw, log_px_z, q = self.log_weights(x, self.config.k, kl_weight)
        bound = log_mean_exp(lw, 0)
        kl = kl_to_standard_normal(q)
        rec = -log_px_z[0]
        return LossOutput(-bound.mean(), {"iwae": -bound, "rec": rec, "kl": kl, "nelbo": rec + kl})
