"""Bidirectional VAEs (Kosko & Adigun, "Bidirectional Variational Autoencoders", arXiv 2505.16074).

One network encodes in its forward pass and decodes in its backward pass through the same
weights (see vaelab.nn.bidirectional):

    q_f(z | x) = N(mu, diag(exp(logvar))),  mu = head(net(x)),  logvar = logvar_head(net(x))
    p_b(x | z) = pixel likelihood of net.backward(z)  (starts with head^T, ends with the first
                                                        layer's transpose)

and trains on the bidirectional ELBO, BELBO = E_q_f[log p_b(x|z)] - KL(q_f(z|x) || N(0, I)).
The log-variance head is forward-only. With about half the weights of the unidirectional twin.

With a discretised likelihood (``model.likelihood=dgaussian|dlogistic``, arch conv or resnet) the
likelihood needs more parameters per pixel than the image has channels. The shared backward pass
still gives the location: its output (the first kernel's transpose, C channels) is added to every
location slot (the Gaussian's location; each mixture component's mean); a small unidirectional
head, a transposed convolution of the first layer's shape from the same features, gives all the
likelihood's parameters around it (scales, mixture logits, per-component offsets, colour
coefficients). The head holds ``first_channels * 16 * P`` weights, a few percent of the network.

The objectives are NOT re-implemented: each class here only changes how the networks are built
and how ``posterior_params`` / ``decode`` route through the shared network, and inherits its loss
from the unidirectional class (multiple inheritance puts BVAE between that class and VAE in the
method order):

    BVAE        = VAE loss        (rec + beta * KL; 'beta-bvae' is BVAE with beta = 4)
    BetaTCBVAE  = BetaTCVAE loss  (alpha * MI + beta * TC + gamma * dimension-wise KL)
    BIWAE       = IWAE loss       (importance-weighted bound, k samples in one batched pass)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import nn
from torch.distributions import Distribution

from ..errors import ConfigError
from ..nn import MapHead, build_bidirectional
from .registry import register_model
from .vae import IWAE, VAE, BetaTCVAE, BetaTCVAEConfig, IWAEConfig, VAEConfig

BiArch = Literal["conv", "mlp", "resnet"]


def check_bidirectional_options(cfg: "BVAEConfig | BetaTCBVAEConfig | BIWAEConfig") -> None:
    if cfg.likelihood in ("dgaussian", "dlogistic") and cfg.arch == "mlp":
        raise ConfigError(f"model.likelihood={cfg.likelihood} on a bidirectional network needs a convolutional likelihood "
                          "head beside the first layer's transpose, which arch=mlp has not: use model.arch=conv or resnet, "
                          "or model.likelihood=bernoulli|gaussian")
    if cfg.arch not in get_args(BiArch):
        raise ConfigError(f"model.arch={cfg.arch!r} has no bidirectional network; set model.arch to one of "
                          f"{', '.join(get_args(BiArch))} (arch=linear exists for the unidirectional models only)")
    if cfg.res_blocks < 1:
        raise ConfigError(f"model.res_blocks (residual blocks per resolution, arch=resnet) must be >= 1, got {cfg.res_blocks}")


@dataclass
class BVAEConfig(VAEConfig):
    name: str = "bvae"
    arch: BiArch = "conv"
    res_blocks: int = 1  # BiResBlocks per resolution stage when arch=resnet

    def __post_init__(self) -> None:
        super().__post_init__()
        check_bidirectional_options(self)


@register_model("beta-bvae", "bidirectional VAE with the KL weighted by beta (default 4)", beta=4.0)
@register_model("bvae", "bidirectional VAE: one network encodes forward and decodes backward through the same weights (BELBO)")
class BVAE(VAE):
    """VAE whose encoder and decoder are the forward and backward passes of one network.
    loss = rec + beta * kl_weight * KL (the negative BELBO when beta = 1)."""

    config_class = BVAEConfig
    custom_networks = False  # its one network serves as encoder and decoder

    def build_networks(self, config: BVAEConfig) -> None:
        """One bidirectional network instead of an encoder and a decoder."""
        self.net = build_bidirectional(
            config.arch, self.image_shape, config.latent_dim, conv_channels=config.conv_channels,
            hidden_dim=config.hidden_dim, mlp_hidden=config.mlp_hidden, activation=config.activation,
            res_blocks=config.res_blocks, latent_channels=config.latent_channels,
        )
        self.feature_dim = self.net.out_dim
        self.likelihood_head = None
        if self.discrete_likelihood:
            first = self.net.first
            P = self.likelihood_channels()
            self.likelihood_head = nn.ConvTranspose2d(first.out_channels, P, first.kernel_size, first.stride,
                                                      first.padding, first.output_padding)
            self.register_buffer("_location_slots", self._location_slot_index(), persistent=False)

    def _location_slot_index(self) -> torch.Tensor:
        """Where the likelihood's parameters hold a location, one C-channel group per mixture component,
        in the layout of vaelab.objectives.logistic_mixture.from_params (or [loc | log_scale] for dgaussian)."""
        c = self.image_shape[0]
        if self.config.likelihood == "dgaussian":
            return torch.arange(c)
        k = self.config.n_mix
        start = k if self.config.channel_conditioning else k * c  # after the mixture logits
        return torch.arange(start, start + k * c)

    def build_heads(self, config: BVAEConfig) -> None:
        """The mean head is the network's own (shared with the backward pass); log-variance is forward-only."""
        if config.latent_channels:
            self.logvar = MapHead(self.net.feature_shape, config.latent_channels)
            return
        self.logvar = nn.Linear(self.feature_dim, config.latent_dim)

    def posterior_params(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) of q_f(z|x): the forward pass, then the mean head and the log-variance head."""
        h = self.net(x)
        return self.net.head(h), self.logvar(h).clamp(-30.0, 20.0)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)

    def decode(self, z: torch.Tensor) -> Distribution:
        """p_b(x|z): the backward pass of the same network, from z through the mean head's transpose
        (with a discretised likelihood, its output is the location and the likelihood head gives the rest)."""
        if self.likelihood_head is None:
            return self.likelihood(self.net.backward(z))
        a = self.net.backward_to_first(z)
        loc = self.net.first.backward(a)
        reps = len(self._location_slots) // loc.shape[1]
        return self.likelihood(self.likelihood_head(a).index_add(1, self._location_slots, loc.repeat(1, reps, 1, 1)))


# --------------------------------------------------------------------------------------------
@dataclass
class BetaTCBVAEConfig(BetaTCVAEConfig):
    name: str = "beta-tcbvae"
    arch: BiArch = "conv"
    res_blocks: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        check_bidirectional_options(self)


@register_model("beta-tcbvae", "bidirectional beta-TCVAE: MI, TC and dimension-wise KL on the shared network")
class BetaTCBVAE(BetaTCVAE, BVAE):
    """Bidirectional beta-TCVAE: BetaTCVAE's loss and dataset-size check (method order
    BetaTCBVAE -> BetaTCVAE -> BVAE -> VAE), BVAE's shared network."""

    config_class = BetaTCBVAEConfig


# --------------------------------------------------------------------------------------------
@dataclass
class BIWAEConfig(IWAEConfig):
    name: str = "biwae"
    arch: BiArch = "conv"
    res_blocks: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        check_bidirectional_options(self)


@register_model("biwae", "bidirectional importance-weighted autoencoder, k samples vectorised")
class BIWAE(IWAE, BVAE):
    """Bidirectional IWAE: log (1/k) sum_k p_b(x|z_k) p(z_k) / q_f(z_k|x), the k samples decoded
    in one batched backward pass (IWAE's code, BVAE's network)."""

    config_class = BIWAEConfig
