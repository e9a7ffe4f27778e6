"""Deterministic autoencoders: the undercomplete AE and its sparse, denoising and contractive
regularisations. The posterior is a point mass at the code; loss = -log p(x | code) + penalty."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn
from torch.distributions import Distribution
from torch.func import jacrev, vmap

from ..errors import ConfigError
from ..objectives import PointMass
from .base import Autoencoder, LossOutput, ModelConfig
from .registry import register_model

CODE_ACTIVATIONS = {"none": nn.Identity, "sigmoid": nn.Sigmoid, "relu": nn.ReLU, "tanh": nn.Tanh}


@dataclass
class AEConfig(ModelConfig):
    supports_unet: ClassVar[bool] = True  # model.arch=unet: see AE and vaelab.nn.unet

    name: str = "ae"
    likelihood: Literal["bernoulli", "gaussian"] = "gaussian"  # std 1: 0.5 * squared error + const
    code_activation: Literal["none", "sigmoid", "relu", "tanh"] = "none"


@register_model("linear-ae", "linear encoder and decoder; with squared error it spans the PCA subspace", arch="linear")
@register_model("ae", "undercomplete autoencoder (deterministic code)")
class AE(Autoencoder):
    """Undercomplete AE. With ``arch=linear`` and the Gaussian likelihood (squared error) its
    decoder spans the principal subspace of the data (tested against scikit-learn's PCA).

    With ``arch=unet`` (vaelab.nn.unet) the decoder also takes the encoder's feature maps at every
    scale above the bottleneck. Whatever maps an image to its reconstruction - ``loss`` (through
    ``reconstruction_nll``), ``reconstruct``, ``denoise`` - runs the encoder once and hands its skips
    to the decoder. ``decode(z)`` alone has no image to take skips from: it decodes with every skip
    set to ZERO (samples, interpolations and traversals of a U-Net show that bottleneck-only path,
    not reconstructions). ``encode(x)`` stays a point mass at the code."""

    config_class = AEConfig
    custom_networks = True

    def __init__(self, config: AEConfig, encoder: nn.Module | None = None, decoder: nn.Module | None = None):
        if encoder is not None and config.arch == "unet":
            raise ConfigError("model.arch=unet builds its own networks; with encoder= / decoder= leave model.arch as it is")
        super().__init__(config, encoder, decoder)
        head = nn.Identity() if getattr(self, "own_networks", False) else nn.Linear(self.feature_dim, config.latent_dim)
        self.code = nn.Sequential(head, CODE_ACTIVATIONS[config.code_activation]())

    def code_of(self, x: torch.Tensor) -> torch.Tensor:
        return self.code(self.encoder(x))

    def code_and_skips(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """(code, the U-Net's skip tensors finest first); skips is None for the other architectures."""
        if self.config.arch != "unet":
            return self.code_of(x), None
        features, skips = self.encoder.features_and_skips(x)
        return self.code(features), skips

    def decode_with_skips(self, h: torch.Tensor, skips: list[torch.Tensor] | None) -> Distribution:
        """p(x | code, skips); without skips (None) the same as ``decode``."""
        if skips is None:
            return self.decode(h)
        return self.likelihood(self.decoder(h, skips))

    def encode(self, x: torch.Tensor) -> PointMass:
        return PointMass(self.code_of(x))

    def reconstruction_nll(self, x_in: torch.Tensor, x_target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, skips = self.code_and_skips(x_in)
        return -self.decode_with_skips(h, skips).log_prob(x_target), h

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.arch != "unet":
            return super().reconstruct(x)
        return self.mean_image(self.decode_with_skips(*self.code_and_skips(x)))

    def loss(self, x: torch.Tensor, kl_weight: float | torch.Tensor = 1.0) -> LossOutput:
        rec, _ = self.reconstruction_nll(x, x)
        return LossOutput(rec.mean(), {"rec": rec})


# --------------------------------------------------------------------------------------------
@dataclass
class SparseAEConfig(AEConfig):
    name: str = "sparse-ae"
    code_activation: Literal["none", "sigmoid", "relu", "tanh"] = "sigmoid"
    sparsity: Literal["kl", "l1"] = "kl"
    sparsity_weight: float = 1.0  # lambda
    target_rate: float = 0.05  # p, for the KL penalty

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.sparsity_weight < 0:
            raise ConfigError(f"model.sparsity_weight must be >= 0, got {self.sparsity_weight}")
        if not 0 < self.target_rate < 1:
            raise ConfigError(f"model.target_rate must be in (0, 1), got {self.target_rate}")
        if self.sparsity == "kl" and self.code_activation != "sigmoid":
            raise ConfigError("the KL sparsity penalty needs code activations in (0, 1): set model.code_activation=sigmoid "
                              "(or use model.sparsity=l1)")


def bernoulli_kl(p: float, p_hat: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """KL(Bernoulli(p) || Bernoulli(p_hat)), elementwise."""
    p_hat = p_hat.clamp(eps, 1 - eps)
    return p * torch.log(p / p_hat) + (1 - p) * torch.log((1 - p) / (1 - p_hat))


@register_model("sparse-ae", "AE + sparsity on the code: KL to a target rate, or L1")
class SparseAE(AE):
    """AE + lambda * sparsity. 'l1': sum_j |h_j| per image. 'kl': sum_j KL(p || p_hat_j) with
    p_hat_j the mean activation of code unit j over the minibatch (a batch-level penalty, shown
    per image as that batch value)."""

    config_class = SparseAEConfig

    def sparsity_penalty(self, h: torch.Tensor) -> torch.Tensor:
        c = self.config
        if c.sparsity == "l1":
            return h.abs().sum(1)
        return bernoulli_kl(c.target_rate, h.mean(0)).sum().expand(h.shape[0])

    def loss(self, x: torch.Tensor, kl_weight: float | torch.Tensor = 1.0) -> LossOutput:
        rec, h = self.reconstruction_nll(x, x)
        pen = self.sparsity_penalty(h)
        return LossOutput((rec + self.config.sparsity_weight * pen).mean(), {"rec": rec, "sparsity": pen})


# --------------------------------------------------------------------------------------------
@dataclass
class DenoisingAEConfig(AEConfig):
    name: str = "denoising-ae"
    noise: Literal["gaussian", "masking"] = "gaussian"
    noise_std: float = 0.3  # additive Gaussian noise; the result is clipped to [0, 1]
    drop_prob: float = 0.25  # masking noise: each pixel set to 0 with this probability

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.noise_std <= 0:
            raise ConfigError(f"model.noise_std must be > 0, got {self.noise_std}")
        if not 0 <= self.drop_prob < 1:
            raise ConfigError(f"model.drop_prob must be in [0, 1), got {self.drop_prob}")


@register_model("denoising-ae", "AE trained on Gaussian- or masking-corrupted inputs, scored on clean ones")
class DenoisingAE(AE):
    """Trained on corrupted inputs, scored against the clean ones: -log p(x | code(corrupt(x)))."""

    config_class = DenoisingAEConfig
    denoises = True

    def corrupt(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        c = self.config
        if c.noise == "gaussian":
            eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype) if generator else torch.randn_like(x)
            return (x + c.noise_std * eps).clamp(0, 1)
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) if generator else torch.rand_like(x)
        return x * (u >= c.drop_prob)

    def loss(self, x: torch.Tensor, kl_weight: float | torch.Tensor = 1.0) -> LossOutput:
        rec, _ = self.reconstruction_nll(self.corrupt(x), x)
        return LossOutput(rec.mean(), {"rec": rec})

    @torch.no_grad()
    def denoise(self, x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(noisy, denoised) for clean ``x``."""
        noisy = self.corrupt(x, generator)
        return noisy, self.reconstruct(noisy)


# --------------------------------------------------------------------------------------------
@dataclass
class ContractiveAEConfig(AEConfig):
    name: str = "contractive-ae"
    code_activation: Literal["none", "sigmoid", "relu", "tanh"] = "sigmoid"
    contractive_weight: float = 0.1  # lambda
    jacobian: Literal["exact", "closed_form"] = "exact"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.contractive_weight < 0:
            raise ConfigError(f"model.contractive_weight must be >= 0, got {self.contractive_weight}")
        if self.jacobian == "closed_form" and (self.arch != "linear" or self.code_activation != "sigmoid"):
            raise ConfigError("model.jacobian=closed_form holds for a one-layer sigmoid encoder only: "
                              "set model.arch=linear and model.code_activation=sigmoid, or use jacobian=exact")


@register_model("contractive-ae", "AE + squared Frobenius norm of the encoder Jacobian")
class ContractiveAE(AE):
    """AE + lambda * ||d code / d x||_F^2 (Rifai et al. 2011)."""

    config_class = ContractiveAEConfig

    def jacobian_frobenius(self, x: torch.Tensor) -> torch.Tensor:
        """Squared Frobenius norm of the encoder Jacobian per image. 'exact': the full Jacobian of
        any encoder by reverse mode, vectorised over the batch with torch.func (one backward per
        code unit, all at once). 'closed_form': for h = sigmoid(W x + b),
        ||J||^2 = sum_j (h_j (1 - h_j))^2 sum_i W_ji^2."""
        if self.config.jacobian == "closed_form":
            h = self.code_of(x)
            w2 = self.code[0].weight.pow(2).sum(1)
            return ((h * (1 - h)).pow(2) * w2).sum(1)
        jac = vmap(jacrev(lambda xi: self.code_of(xi.unsqueeze(0)).squeeze(0)))(x)
        return jac.pow(2).flatten(1).sum(1)

    def loss(self, x: torch.Tensor, kl_weight: float | torch.Tensor = 1.0) -> LossOutput:
        rec, _ = self.reconstruction_nll(x, x)
        jac = self.jacobian_frobenius(x)
        return LossOutput((rec + self.config.contractive_weight * jac).mean(), {"rec": rec, "contractive": jac})
