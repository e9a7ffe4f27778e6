"""The variational autoencoder (Kingma & Welling) and its beta-VAE, beta-TCVAE and IWAE
objectives. Gaussian posterior, N(0, I) prior; ``kl_weight`` is the trainer's warm-up factor."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.distributions import Independent

from ..errors import ConfigError, ModelError
from ..nn import MapHead
from ..objectives import diag_gaussian, log_mean_exp
from ..objectives.tc import tc_decomposition
from .base import Autoencoder, LossOutput, ModelConfig, Split
from .registry import register_model


@dataclass
class VAEConfig(ModelConfig):
    name: str = "vae"
    beta: float = 1.0
    capacity_max: float | None = None  # nats; set: loss = rec + beta * |KL - C|, C rising 0 -> capacity_max (Burgess et al. 2018)
    capacity_steps: int = 10_000  # optimisation steps over which the capacity C rises linearly from 0 to capacity_max

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.beta < 0:
            raise ConfigError(f"model.beta must be >= 0, got {self.beta}")
        if self.capacity_max is not None and self.capacity_max < 0:
            raise ConfigError(f"model.capacity_max (nats) must be >= 0, or null for no capacity annealing; got {self.capacity_max}")
        if self.capacity_steps < 0:
            raise ConfigError(f"model.capacity_steps must be >= 0, got {self.capacity_steps}")


@register_model("beta-vae", "VAE with the KL weighted by beta (default 4)", beta=4.0)
@register_model("vae", "variational autoencoder, Bernoulli or Gaussian likelihood")
class VAE(Autoencoder):
    """loss = rec + beta * kl_weight * KL(q(z|x) || p(z)), p(z) = ``prior()`` (the standard normal
    unless a subclass overrides it; the KL is analytic when both are Gaussian, Monte Carlo at the
    reconstruction's z otherwise). With beta = 1 this is the negative ELBO; the 'beta-vae' entry is
    this class with beta = 4 by default.

    Capacity annealing (Burgess et al. 2018, "Understanding disentangling in beta-VAE"): with
    ``capacity_max`` set, loss = rec + gamma * |KL - C| with gamma = beta, KL the batch mean and
    C = min(capacity_max, capacity_max * s / capacity_steps) at training step s. The step s is the
    buffer ``capacity_step``, which counts this model's training steps (calls of ``loss`` in
    training mode with gradients on) and lives in the state dict: the checkpoint and the weights
    carry it, so a resumed run continues C where it stopped. The term ``capacity`` logs C."""

    config_class = VAEConfig
    can_sample = True
    has_density = True
    custom_networks = True
    code_maps = True  # MapHead heads on the conv encoder's last map (model.latent_channels)

    def __init__(self, config: VAEConfig, encoder: nn.Module | None = None, decoder: nn.Module | None = None):
        super().__init__(config, encoder, decoder)
        self.build_heads(config)
        if getattr(config, "capacity_max", None) is not None:
            if type(self).loss is not VAE.loss:
                raise ConfigError(f"model.capacity_max anneals the rec + beta * KL loss of vae / beta-vae; {config.name} has "
                                  "an objective of its own: leave model.capacity_max=null")
            # a training-step counter in the state dict (persistent, int64): it survives checkpoints and resume
            self.register_buffer("capacity_step", torch.zeros((), dtype=torch.long))

    def capacity(self) -> torch.Tensor:
        """C at the current training step, min(capacity_max, capacity_max * s / capacity_steps)."""
        c = self.config
        if c.capacity_steps == 0:
            return torch.full((), float(c.capacity_max), device=self.capacity_step.device)
        return c.capacity_max * torch.clamp(self.capacity_step.float() / c.capacity_steps, max=1.0)

    def posterior_width(self) -> int:
        return 2 * self.latent_dim

    def sample_and_reconstruct(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, Independent, torch.Tensor, torch.Tensor]:
        """(mu, logvar, q, z, rec): the posterior's parameters and distribution, one reparameterised
        sample z ~ q(z|x) and the reconstruction term -log p(x|z), the start of every ELBO-type loss."""
        mu, logvar = self.posterior_params(x)
        q = diag_gaussian(mu, logvar)
        z = q.rsample()
        return mu, logvar, q, z, -self.decode(z).log_prob(x)

    def build_heads(self, config: VAEConfig) -> None:
        """The posterior's mean and log-variance heads on the encoder features; with your own
        encoder, its output's first and second halves."""
        if getattr(self, "own_networks", False):
            self.mu, self.logvar = Split(0, config.latent_dim), Split(config.latent_dim, 2 * config.latent_dim)
            return
        if config.latent_channels:  # a code that is a map: 3x3 conv heads on the encoder's last feature map
            self.mu = MapHead(self.encoder.feature_shape, config.latent_channels)
            self.logvar = MapHead(self.encoder.feature_shape, config.latent_channels)
            return
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
        kl = self.kl(q, z)
        terms = {"rec": rec, "kl": kl, "nelbo": rec + kl}
        if getattr(self.config, "capacity_max", None) is None:
            return LossOutput((rec + (self.config.beta * kl_weight) * kl).mean(), terms)
        cap = self.capacity()
        if self.training and torch.is_grad_enabled():
            self.capacity_step += 1  # after C is read: step s uses C(s), as kl_warmup uses the global step s
        loss = rec.mean() + (self.config.beta * kl_weight) * (kl.mean() - cap).abs()
        return LossOutput(loss, {**terms, "capacity": cap.expand_as(kl)})


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


@register_model("beta-tcvae", "ELBO split into index-code MI, total correlation, dimension-wise KL, each weighted")
class BetaTCVAE(VAE):
    """loss = rec + alpha * MI + beta * TC + gamma * dimension-wise KL, the three estimated on the
    minibatch (see vaelab.objectives.tc). The analytic KL is logged beside them."""

    config_class = BetaTCVAEConfig

    def __init__(self, config: BetaTCVAEConfig, encoder: nn.Module | None = None, decoder: nn.Module | None = None):
        if config.dataset_size is None:
            raise ModelError("beta-tcvae needs the training-set size for its q(z) estimator: set model.dataset_size=N "
                             "(vaelab train fills it in from the data)")
        super().__init__(config, encoder, decoder)

    def loss(self, x: torch.Tensor, kl_weight: float | torch.Tensor = 1.0) -> LossOutput:
        c = self.config
        mu, logvar, q, z, rec = self.sample_and_reconstruct(x)
        if x.shape[0] < 2:
            raise ModelError("beta-tcvae estimates q(z) from the minibatch: use batches of at least 2 images")
        t = tc_decomposition(z, mu, logvar, c.dataset_size, c.estimator, log_pz=self.prior().log_prob(z))
        kl = self.kl(q, z)
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


@register_model("iwae", "importance-weighted autoencoder, k samples vectorised")
class IWAE(VAE):
    """Importance-weighted bound (Burda et al.): log (1/k) sum_k p(x, z_k) / q(z_k | x), all k
    samples decoded in one batched pass. loss = -bound; with k = 1 it is the ELBO with a
    single-sample KL. 'nelbo' logs rec + analytic KL for comparison with the VAE."""

    config_class = IWAEConfig

    def loss(self, x: torch.Tensor, kl_weight: float | torch.Tensor = 1.0) -> LossOutput:
        q = self.encode(x)
        lw, log_px_z = self.log_weights(x, self.config.k, q, kl_weight)
        bound = log_mean_exp(lw, 0)
        kl = self.kl(q)
        rec = -log_px_z[0]
        return LossOutput(-bound.mean(), {"iwae": -bound, "rec": rec, "kl": kl, "nelbo": rec + kl})
