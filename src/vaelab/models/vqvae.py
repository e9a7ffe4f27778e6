"""VQ-VAE (van den Oord et al. 2017): a discrete bottleneck. The encoder maps an image to a grid of
``code_dim``-vectors (the conv encoder's feature map through a 1x1 convolution), each is replaced by
its nearest of ``num_codes`` codebook vectors, and the decoder (the conv decoder's transposed
convolutions after a 1x1 convolution and a learned bias per grid position) maps the grid of codes
back to the likelihood's parameters.

Gradients pass the quantiser by the straight-through estimator: z_q = z_e + sg(q - z_e), whose
gradient with respect to z_e is the identity. loss = rec + commitment * ||z_e - sg(q)||^2, plus
||sg(z_e) - q||^2 when the codebook is learned by the loss (``codebook_update=loss``); with
``codebook_update=ema`` the codebook is the exponential moving average of the encoder outputs
assigned to each code (Razavi et al. 2019's variant of the paper's appendix), updated in training
steps. A code that no output has chosen for ``dead_after`` training steps is restarted at a random
encoder output of the batch (global RNG: a seeded run, and its resume, restart the same codes).
Codebook usage, as the perplexity of the batch's code histogram and the fraction of codes used, is
logged with every step's terms.

The latent vector of the contract is the flattened grid of quantised codes (code_dim x h x w): the
detector's latent scores, the probes and the GMM sampler work on it. Sampling new images needs a
prior over the code grid, which training does not learn (``can_sample = False``): the ``code-prior``
sampler (vaelab.generate.code_prior) fits an autoregressive one to the trained encoder's codes
(``vaelab sample RUN --sampler code-prior``)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..nn import make_activation
from ..nn.networks import ConvDecoder, ConvEncoder, auto_conv_channels
from ..objectives import PointMass
from .base import Autoencoder, LossOutput, ModelConfig
from .registry import register_model


@dataclass
class VQVAEConfig(ModelConfig):
    name: str = "vq-vae"
    num_codes: int = 512  # K: vectors in the codebook
    code_dim: int = 16  # D: the size of each code (channels of the code grid)
    commitment: float = 0.25  # weight of ||z_e - sg(q)||^2, which keeps the encoder near its codes
    codebook_update: Literal["ema", "loss"] = "ema"  # ema: moving averages of the assigned outputs; loss: ||sg(z_e) - q||^2
    ema_decay: float = 0.99  # codebook_update=ema: decay of the moving averages
    dead_after: int = 100  # restart a code that no output chose in this many training steps; 0: never

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.arch not in ("conv",):
            raise ConfigError(f"vq-vae quantises a convolutional feature map: model.arch={self.arch} is not available; "
                              "remove model.arch")
        if self.num_codes < 1 or self.code_dim < 1:
            raise ConfigError(f"model.num_codes and model.code_dim must be >= 1, got {self.num_codes}, {self.code_dim}")
        if not 0 < self.ema_decay < 1:
            raise ConfigError(f"model.ema_decay must be in (0, 1), got {self.ema_decay}")
        if self.commitment < 0 or self.dead_after < 0:
            raise ConfigError("model.commitment and model.dead_after must be >= 0")

    def fill_from_data(self, n_train: int | None, image_shape: tuple[int, ...]) -> None:
        if len(image_shape) != 3:
            raise ConfigError("vq-vae quantises a grid of image features; these data are vectors: use vae or ae")
        super().fill_from_data(n_train, image_shape)
        chans = self.conv_channels or auto_conv_channels(image_shape[1])
        h, w = image_shape[1] // 2 ** len(chans), image_shape[2] // 2 ** len(chans)
        self.latent_dim = self.code_dim * h * w  # the contract's latent vector: the flattened code grid


class PositionBias(nn.Module):
    """A learned bias per channel and grid position: the decoder knows where on the grid a code sits
    (a transposed-convolution stack alone maps a grid of equal codes to a periodic pattern, so a
    one-code model could not even draw the mean image)."""

    def __init__(self, channels: int, h: int, w: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels, h, w))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias


@register_model("vq-vae", "VQ-VAE: a grid of codes from a learned codebook (straight-through, commitment, EMA updates)")
class VQVAE(Autoencoder):
    """Vector-quantised autoencoder; see the module docstring."""

    config_class = VQVAEConfig

    def __init__(self, config: VQVAEConfig):
        super().__init__(config)
        k, d = config.num_codes, config.code_dim
        g = torch.Generator().manual_seed(0)
        init = torch.empty(k, d).uniform_(-1.0 / k, 1.0 / k, generator=g)
        self.codebook = nn.Parameter(init, requires_grad=config.codebook_update == "loss")
        self.register_buffer("ema_count", torch.ones(k))
        self.register_buffer("ema_sum", init.clone())
        self.register_buffer("idle_steps", torch.zeros(k, dtype=torch.long))

    def build_networks(self, config: VQVAEConfig) -> None:
        c, h, w = self.image_shape
        chans = config.conv_channels or auto_conv_channels(h)
        enc = ConvEncoder(self.image_shape, chans, config.hidden_dim, config.activation)
        dec = ConvDecoder(self.image_shape, chans, 1, config.hidden_dim, self.likelihood_channels(), config.activation)
        self.grid = (config.code_dim, h // 2 ** len(chans), w // 2 ** len(chans))
        self.encoder = nn.Sequential(enc.features, nn.Conv2d(chans[-1], config.code_dim, 1))
        self.decoder = nn.Sequential(nn.Conv2d(config.code_dim, chans[-1], 1), PositionBias(chans[-1], *self.grid[1:]),
                                     make_activation(config.activation), dec.deconv)
        self.feature_dim = math.prod(self.grid)
        self.latent_dim = config.latent_dim = self.feature_dim  # the flattened code grid, however the config was made

    # -- the quantiser ------------------------------------------------------------------------------
    def nearest(self, ze: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code of every grid position: [B, h, w] for z_e [B, D, h, w]."""
        flat = ze.permute(0, 2, 3, 1).reshape(-1, ze.shape[1])
        d = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.codebook.t() + self.codebook.pow(2).sum(1)
        return d.argmin(1).view(ze.shape[0], *ze.shape[2:])

    def quantise(self, ze: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(q, indices): the codes of every position, [B, D, h, w], and their indices."""
        idx = self.nearest(ze)
        return self.codebook[idx].permute(0, 3, 1, 2), idx

    @torch.no_grad()
    def ema_update(self, ze: torch.Tensor, idx: torch.Tensor) -> None:
        """One moving-average step of the codebook: count_k <- decay count_k + (1 - decay) n_k,
        sum_k <- decay sum_k + (1 - decay) (sum of the outputs assigned to k), code_k = sum_k / count_k."""
        c = self.config
        onehot = F.one_hot(idx.reshape(-1), c.num_codes).to(ze.dtype)  # [N, K]
        flat = ze.permute(0, 2, 3, 1).reshape(-1, ze.shape[1])
        self.ema_count.mul_(c.ema_decay).add_(onehot.sum(0), alpha=1 - c.ema_decay)
        self.ema_sum.mul_(c.ema_decay).add_(onehot.t() @ flat, alpha=1 - c.ema_decay)
        self.codebook.data.copy_(self.ema_sum / self.ema_count.clamp_min(1e-5).unsqueeze(1))

    @torch.no_grad()
    def restart_dead(self, ze: torch.Tensor, idx: torch.Tensor) -> None:
        used = torch.zeros(self.config.num_codes, dtype=torch.bool, device=idx.device)
        used[idx.reshape(-1)] = True
        self.idle_steps.add_(1).masked_fill_(used, 0)
        dead = (self.idle_steps >= self.config.dead_after).nonzero().flatten()
        if len(dead) == 0:
            return
        flat = ze.permute(0, 2, 3, 1).reshape(-1, ze.shape[1])
        pick = flat[torch.randint(0, len(flat), (len(dead),), device=flat.device)]
        self.codebook.data[dead] = pick
        self.ema_sum[dead] = pick
        self.ema_count[dead] = 1.0
        self.idle_steps[dead] = 0

    # -- the discrete codes, for a prior over the grid -------------------------------------------------
    @torch.no_grad()
    def code_indices(self, images, batch_size: int = 500) -> torch.Tensor:
        """[N, h * w] (raster order) the code index of every grid position of ``images`` (an ImageSet
        or a uint8 / [0, 1] float tensor)."""
        from ..data.imageset import to_unit_float

        x = getattr(images, "images", images)
        self.eval()
        dev = self.codebook.device
        out = [self.nearest(self.encoder(to_unit_float(x[i : i + batch_size].to(dev)))).flatten(1)
               for i in range(0, len(x), batch_size)]
        return torch.cat(out) if out else torch.zeros(0, self.grid[1] * self.grid[2], dtype=torch.long, device=dev)

    def codes_to_latent(self, idx: torch.Tensor) -> torch.Tensor:
        """The contract's latent (the flattened grid of codebook vectors) of code indices [N, h * w]."""
        d, h, w = self.grid
        return self.codebook[idx.view(-1, h, w)].permute(0, 3, 1, 2).reshape(len(idx), -1)

    def latent_to_codes(self, z: torch.Tensor) -> torch.Tensor:
        """Code indices [N, h * w] of latents (the nearest code of each position)."""
        return self.nearest(z.view(-1, *self.grid)).flatten(1)

    # -- the contract -----------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> PointMass:
        q, _ = self.quantise(self.encoder(x))
        return PointMass(q.flatten(1))

    def decode(self, z: torch.Tensor):
        return self.likelihood(self.decoder(z.view(-1, *self.grid)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x).flatten(1)

    def loss(self, x: torch.Tensor, kl_weight: float | torch.Tensor = 1.0) -> LossOutput:
        c = self.config
        ze = self.encoder(x)
        q, idx = self.quantise(ze)
        zq = ze + (q - ze).detach()  # straight-through: the decoder's gradient reaches the encoder unchanged
        rec = -self.likelihood(self.decoder(zq)).log_prob(x)
        commit = (ze - q.detach()).pow(2).flatten(1).sum(1)
        loss = rec + c.commitment * commit
        terms = {"rec": rec, "commitment": commit}
        if c.codebook_update == "loss":
            cb = (ze.detach() - q).pow(2).flatten(1).sum(1)
            loss = loss + cb
            terms["codebook"] = cb
        counts = torch.bincount(idx.reshape(-1), minlength=c.num_codes).to(ze.dtype)
        p = counts / counts.sum()
        ones = torch.ones_like(rec)
        terms["perplexity"] = ones * torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum())
        terms["codes_used"] = ones * (counts > 0).to(ze.dtype).mean()
        if self.training and torch.is_grad_enabled():
            if c.codebook_update == "ema":
                self.ema_update(ze.detach(), idx)
            if c.dead_after > 0:
                self.restart_dead(ze.detach(), idx)
        return LossOutput(loss.mean(), terms)
