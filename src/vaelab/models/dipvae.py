"""DIP-VAE (Kumar, Sattigeri & Balakrishnan, "Variational Inference of Disentangled Latent
Concepts from Unlabeled Observations", ICLR 2018).

The ELBO plus a penalty that pushes a covariance matrix of the codes towards the identity:

    loss = rec + KL(q(z|x) || p(z)) + lambda_od * sum_{i != j} Cov_ij^2 + lambda_d * sum_i (Cov_ii - 1)^2

with Cov, over the minibatch,
  - DIP-VAE-I  (``dip_type=i``):  Cov[mu(x)], the covariance of the posterior means;
  - DIP-VAE-II (``dip_type=ii``): Cov[z] = E[Sigma(x)] + Cov[mu(x)], the covariance of the
    aggregate posterior q(z) of the batch.
Covariances are the biased (1/M) minibatch estimates, as in the paper. lambda_d defaults as the
paper sets it: 10 * lambda_od for type i, lambda_od for type ii."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from ..errors import ConfigError
from .base import LossOutput, ModelConfig
from .registry import register_model
from .vae import VAE


@dataclass
class DIPVAEConfig(ModelConfig):
    name: str = "dip-vae"
    dip_type: Literal["i", "ii"] = "i"  # i: covariance of the posterior means; ii: of z, E[Sigma] + Cov[mu]
    lambda_od: float = 10.0  # weight of the squared off-diagonal entries of the covariance
    lambda_d: float | None = None  # weight of the squared deviations of its diagonal from 1; null: 10 * lambda_od (i), lambda_od (ii)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.lambda_d is None:
            self.lambda_d = (10.0 if self.dip_type == "i" else 1.0) * self.lambda_od
        for k in ("lambda_od", "lambda_d"):
            if getattr(self, k) < 0:
                raise ConfigError(f"model.{k} must be >= 0, got {getattr(self, k)}")


def dip_covariance(mu: torch.Tensor, logvar: torch.Tensor, dip_type: str) -> torch.Tensor:
    """The (d, d) covariance DIP-VAE regularises: Cov[mu] (type i) or E[exp(logvar)] on the
    diagonal + Cov[mu] (type ii), biased estimates over the batch of M rows."""
    centred = mu - mu.mean(0, keepdim=True)
    cov = centred.T @ centred / mu.shape[0]
    if dip_type == "i":
        return cov
    if dip_type == "ii":
        return cov + torch.diag(logvar.exp().mean(0))
    raise ValueError(f"unknown dip_type {dip_type!r}; choose 'i' or 'ii'")


def dip_penalties(cov: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum_{i != j} cov_ij^2, sum_i (cov_ii - 1)^2)."""
    diag = cov.diagonal()
    return cov.pow(2).sum() - diag.pow(2).sum(), (diag - 1).pow(2).sum()


@register_model("dip-vae", "DIP-VAE (i or ii): ELBO + penalties driving the covariance of the codes to the identity")
class DIPVAE(VAE):
    """loss = rec + kl_weight * KL + lambda_od * dip_od + lambda_d * dip_d (Kumar et al. 2018).
    Terms: rec, kl, nelbo and the batch's ``dip_od`` (squared off-diagonal covariances) and
    ``dip_d`` (squared deviations of the variances from 1), shown per image as the batch value."""

    config_class = DIPVAEConfig

    def loss(self, x: torch.Tensor, kl_weight: float | torch.Tensor = 1.0) -> LossOutput:
        c = self.config
        mu, logvar, q, z, rec = self.sample_and_reconstruct(x)
        kl = self.kl(q, z)
        od, d = dip_penalties(dip_covariance(mu, logvar, c.dip_type))
        loss = (rec + kl_weight * kl).mean() + c.lambda_od * od + c.lambda_d * d
        b = x.shape[0]
        return LossOutput(loss, {"rec": rec, "kl": kl, "nelbo": rec + kl, "dip_od": od.expand(b), "dip_d": d.expand(b)})
