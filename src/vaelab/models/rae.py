"""Regularised deterministic autoencoders (Ghosh, Sajjadi, Vergari, Black & Schoelkopf, "From
Variational to Deterministic Autoencoders", ICLR 2020).

    loss = rec + beta * 0.5 ||z||^2 + lambda * R(decoder)

with z = E(x) the deterministic code and R either
  - ``rae-l2``: ||theta_dec||^2, the squared L2 norm of every decoder parameter (weight decay on
    the decoder alone), or
  - ``rae-gp``: ||d D(z) / d z||_F^2, the squared Frobenius norm of the decoder network's
    Jacobian at the code (its output is the likelihood's parameters: the Gaussian mean or the
    Bernoulli logits), computed exactly per image by forward mode, one column per latent unit.

No prior: an RAE generates by ex-post density estimation, a density fitted to the training codes
after training (the GMM sampler, ``vaelab sample RUN --sampler gmm``), so can_sample and
has_density are False. The code regulariser 0.5 ||z||^2 keeps the code space bounded, the
decoder regulariser smooth."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch.func import jacfwd, vmap

from ..errors import ConfigError
from .ae import AE, AEConfig
from .base import LossOutput
from .registry import register_model


@dataclass
class RAEConfig(AEConfig):
    supports_unet: ClassVar[bool] = False  # the decoder regulariser is of decode(z) alone, without skips

    name: str = "rae-l2"
    beta: float = 1e-4  # weight of the code regulariser 0.5 * ||z||^2
    lambda_: float = 1e-7  # weight of the decoder regulariser: ||theta_dec||^2 (rae-l2) or the gradient penalty (rae-gp)

    def __post_init__(self) -> None:
        super().__post_init__()
        for k in ("beta", "lambda_"):
            if getattr(self, k) < 0:
                raise ConfigError(f"model.{k} must be >= 0, got {getattr(self, k)}")


class RAE(AE):
    """The shared objective; a subclass names its decoder regulariser (``penalty_name``) and
    computes it per image (``decoder_penalty``)."""

    config_class = RAEConfig
    can_sample = False
    has_density = False
    penalty_name: ClassVar[str] = ""

    def decoder_penalty(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, x: torch.Tensor, kl_weight: float | torch.Tensor = 1.0) -> LossOutput:
        c = self.config
        rec, z = self.reconstruction_nll(x, x)
        zreg = 0.5 * z.pow(2).sum(1)
        pen = self.decoder_penalty(z)
        loss = (rec + c.beta * zreg + c.lambda_ * pen).mean()
        return LossOutput(loss, {"rec": rec, "zreg": zreg, self.penalty_name: pen})


@register_model("rae-l2", "regularised AE (RAE): rec + beta * 0.5||z||^2 + lambda * ||decoder weights||^2; sample with --sampler gmm")
class RAEL2(RAE):
    """RAE-L2: R = sum of the squares of every decoder parameter (one value per batch, logged per image as ``l2``)."""

    penalty_name = "l2"

    def decoder_penalty(self, z: torch.Tensor) -> torch.Tensor:
        sq = sum(p.pow(2).sum() for p in self.decoder.parameters())
        return torch.as_tensor(sq, dtype=z.dtype, device=z.device).expand(z.shape[0])


@register_model("rae-gp", "regularised AE (RAE): rec + beta * 0.5||z||^2 + lambda * ||d decoder / d z||^2; sample with --sampler gmm")
class RAEGP(RAE):
    """RAE-GP: R = ||d D(z) / d z||_F^2 per image, the full Jacobian of the decoder network by
    forward mode (latent_dim columns, vectorised over the batch with torch.func), logged as ``gp``."""

    penalty_name = "gp"

    def decoder_penalty(self, z: torch.Tensor) -> torch.Tensor:
        jac = vmap(jacfwd(lambda zi: self.decoder(zi.unsqueeze(0)).squeeze(0)))(z)  # (B, *out shape, latent_dim)
        return jac.pow(2).flatten(1).sum(1)
