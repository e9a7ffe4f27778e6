"""InfoVAE with the MMD divergence (Zhao, Song & Ermon, "InfoVAE: Balancing Learning and
Inference in Variational Autoencoders", AAAI 2019; the MMD-VAE).

    loss = rec + (1 - alpha) * KL(q(z|x) || p(z)) + (alpha + lambda - 1) * MMD^2(q(z), p(z))

the paper's objective (its eq. 6 with D = MMD): alpha trades the mutual information between x
and z, lambda the weight of matching the aggregate posterior q(z) to the prior. alpha = 0,
lambda = 1 is the VAE. MMD^2 is the unbiased U-statistic between the codes z ~ q(z|x) of the
minibatch and as many prior draws (vaelab.objectives.mmd), with a Gaussian kernel by default, the
paper's kernel family, though not its authors' bandwidth nor their biased estimate (see
vaelab.objectives.mmd). The posterior is the VAE's, so the ELBO (``nelbo``) is logged and scored."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from ..errors import ConfigError, ModelError
from ..objectives.mmd import mmd
from .base import LossOutput, ModelConfig
from .registry import register_model
from .vae import VAE


@dataclass
class InfoVAEConfig(ModelConfig):
    name: str = "info-vae"
    alpha: float = 0.0  # the KL is weighted 1 - alpha and the MMD alpha + lambda_ - 1 (Zhao et al.)
    lambda_: float = 1000.0  # lambda of InfoVAE: the MMD is weighted alpha + lambda_ - 1
    kernel: Literal["imq", "rbf"] = "rbf"  # MMD kernel: the Gaussian RBF of the paper, or the inverse multiquadratic

    def __post_init__(self) -> None:
        super().__post_init__()
        if 1 - self.alpha < 0:
            raise ConfigError(f"model.alpha must be <= 1 (the KL is weighted 1 - alpha, which must not be negative), got {self.alpha}")
        if self.alpha + self.lambda_ - 1 < 0:
            raise ConfigError(f"model.alpha + model.lambda_ - 1 weights the MMD and must be >= 0; got alpha={self.alpha}, "
                              f"lambda_={self.lambda_}")


@register_model("info-vae", "InfoVAE (MMD-VAE): KL weighted 1 - alpha plus MMD between q(z) and p(z) weighted alpha + lambda - 1")
class InfoVAE(VAE):
    """loss = rec + kl_weight * ((1 - alpha) * KL + (alpha + lambda - 1) * MMD^2_u) (Zhao et al.);
    the warm-up factor ramps both terms that pull q towards p(z). Terms: rec, kl, nelbo, mmd."""

    config_class = InfoVAEConfig

    def loss(self, x: torch.Tensor, kl_weight: float | torch.Tensor = 1.0) -> LossOutput:
        c = self.config
        if x.shape[0] < 2:
            raise ModelError("info-vae compares the minibatch's codes with prior samples (MMD): use batches of at least 2 examples")
        q = self.encode(x)
        z = q.rsample()
        rec = -self.decode(z).log_prob(x)
        kl = self.kl(q, z)
        m = mmd(z, self.prior().sample((x.shape[0],)), c.kernel)
        loss = rec.mean() + kl_weight * ((1 - c.alpha) * kl.mean() + (c.alpha + c.lambda_ - 1) * m)
        return LossOutput(loss, {"rec": rec, "kl": kl, "nelbo": rec + kl, "mmd": m.expand(x.shape[0])})
