"""The model contract every family meets, and the pieces they share."""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import nn
from torch.distributions import Distribution

from ..errors import ConfigError, ModelError
from ..nn import ACTIVATIONS, build_networks
from ..objectives import pixel_likelihood


@dataclass
class ModelConfig:
    """Options every model shares. ``image_shape`` is filled in from the data when built."""

    # a model whose decoder can take the encoder's skip tensors (the deterministic AEs) sets True
    supports_unet: ClassVar[bool] = False

    name: str = "vae"
    latent_dim: int = 16
    arch: Literal["conv", "resnet", "mlp", "linear", "unet"] = "conv"  # unet: the deterministic AEs only
    res_blocks: int = 1  # residual blocks per resolution stage when arch=resnet
    conv_channels: list[int] | None = None  # None: chosen from the image size
    hidden_dim: int = 256
    mlp_hidden: list[int] = field(default_factory=lambda: [512, 256])
    activation: str = "relu"
    likelihood: Literal["bernoulli", "gaussian"] = "bernoulli"
    gaussian_std: float = 1.0  # fixed std, or the initial one when learn_std
    learn_std: bool = False  # learn one shared std of the Gaussian likelihood
    image_shape: list[int] | None = None

    def __post_init__(self) -> None:
        if self.latent_dim < 1:
            raise ConfigError(f"model.latent_dim must be >= 1, got {self.latent_dim}")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"unknown activation {self.activation!r}; choose one of: {', '.join(ACTIVATIONS)}")
        if self.res_blocks < 1:
            raise ConfigError(f"model.res_blocks (residual blocks per resolution, arch=resnet) must be >= 1, got {self.res_blocks}")
        if self.gaussian_std <= 0:
            raise ConfigError(f"model.gaussian_std must be > 0, got {self.gaussian_std}")
        if self.arch == "unet" and not self.supports_unet:
            raise ConfigError(f"model.arch=unet is for the deterministic autoencoders (ae, denoising-ae, sparse-ae, "
                              f"contractive-ae), not {self.name}: a U-Net's decoder sees the input through its skips, so "
                              "its likelihood would no longer be p(x | z) alone. Use model.arch=conv, or one of those models")
        if self.image_shape is not None and (len(self.image_shape) != 3 or self.image_shape[0] not in (1, 3)):
            raise ConfigError(f"model.image_shape must be [C, H, W] with C in 1, 3; got {self.image_shape}")

    def fill_from_data(self, n_train: int | None, image_shape: tuple[int, int, int]) -> None:
        """Complete what only the training data can tell (the image shape; some models more)."""
        self.image_shape = list(image_shape)


@dataclass
class LossOutput:
    """``loss``: the scalar to back-propagate. ``terms``: per-sample tensors (rec, kl, ...)."""

    loss: torch.Tensor
    terms: dict[str, torch.Tensor]


class Autoencoder(nn.Module):
    """encode(x) -> Posterior, decode(z) -> Likelihood, loss(x) -> LossOutput."""

    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    has_prior: ClassVar[bool] = False  # can sample new images from p(z)

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.image_shape is None:
            raise ModelError("model config has no image_shape; build models with vaelab.models.build(config, image_shape)")
        self.config = config
        self.image_shape = tuple(config.image_shape)
        self.latent_dim = config.latent_dim
        self.build_networks(config)
        self.input_checks = True  # the trainer turns the value-range check off: its batches are uint8 / 255
        if config.likelihood == "gaussian" and config.learn_std:
            self.log_std = nn.Parameter(torch.tensor(math.log(config.gaussian_std)))
        else:
            self.register_buffer("log_std", torch.tensor(math.log(config.gaussian_std)), persistent=False)

    def build_networks(self, config: ModelConfig) -> None:
        """Set ``encoder``, ``decoder`` and ``feature_dim``; a family with other networks overrides this."""
        self.encoder, self.decoder, self.feature_dim = build_networks(
            config.arch, self.image_shape, config.latent_dim, self.image_shape[0],
            conv_channels=config.conv_channels, hidden_dim=config.hidden_dim,
            mlp_hidden=config.mlp_hidden, activation=config.activation, res_blocks=config.res_blocks,
        )

    # -- the contract --------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> Distribution:
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> Distribution:
        return self.likelihood(self.decoder(z))

    def loss(self, x: torch.Tensor, kl_weight: float | torch.Tensor = 1.0) -> LossOutput:
        raise NotImplementedError

    # -- shared helpers ----------------------------------------------------------------------
    def likelihood(self, params: torch.Tensor) -> Distribution:
        std = self.log_std.exp().clamp_min(1e-3) if self.config.likelihood == "gaussian" else None
        return pixel_likelihood(self.config.likelihood, params, std)

    def check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise ModelError(
                f"{self.config.name} expects images of shape (N, {', '.join(map(str, self.image_shape))}); "
                f"got {tuple(x.shape)}. Resize the data (data.size, data.channels) or train a model for this shape."
            )

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every model's ``encode`` and ``loss`` check their input first (check_values), so a
        model written in one file gets the same checks as the built-in ones."""
        super().__init_subclass__(**kwargs)
        for name in ("encode", "loss"):
            fn = cls.__dict__.get(name)
            if fn is not None and not getattr(fn, "_checks_input", False):
                setattr(cls, name, _checking_input(fn))

    def check_values(self, x: Any) -> None:
        """Images reach a model as floats in [0, 1]: a uint8 tensor or 0..255 floats is refused with
        the fix, instead of a raw torch error or a silently huge loss. The value check costs a
        reduction per batch; it is skipped inside function transforms (vmap, jvp), for CUDA batches
        while training (a host sync per step) and while vaelab's trainer feeds uint8 / 255 batches."""
        if not isinstance(x, torch.Tensor) or len(self.image_shape) != 3:
            return
        if not x.is_floating_point():
            raise ModelError(f"{self.config.name} takes images as floats in [0, 1], got a {x.dtype} tensor; "
                             "convert uint8 images with x.float() / 255")
        if not self.input_checks or (x.is_cuda and self.training) or x.numel() == 0:
            return
        if torch._C._functorch.is_functorch_wrapped_tensor(x):
            return
        lo, hi = torch.aminmax(x.detach())
        lo, hi = float(lo), float(hi)
        if lo < -1e-6 or hi > 1 + 1e-6:
            # a Bernoulli likelihood needs [0, 1]; a Gaussian one models any real values (a PCA-like linear AE on
            # centred data), so there only what looks like 0..255 pixel values is refused
            looks_8bit = lo >= 0 and hi > 1.5 and bool((x.detach() == x.detach().round()).all())
            if self.config.likelihood != "bernoulli" and not looks_8bit:
                return
            fix = "divide 0..255 images by 255" if hi > 1.5 else "clamp or rescale them to [0, 1]"
            raise ModelError(f"{self.config.name} takes images with values in [0, 1], got values in [{lo:.4g}, {hi:.4g}]; {fix}")

    @staticmethod
    def mean_image(px: Distribution) -> torch.Tensor:
        """The likelihood's mean as an image in [0, 1]."""
        return px.mean.clamp(0, 1)

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Posterior means: the representation used by probes and detectors."""
        return self.encode(x).mean

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder network's output before the latent heads, one flat vector per image (what
        the few-label transfer trains its head on when the encoder is frozen)."""
        return self.encoder(x).flatten(1)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.mean_image(self.decode(self.encode(x).mean))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        if not self.has_prior:
            raise ModelError(f"{self.config.name} has no prior to sample from; use a VAE, or a GMM sampler fitted on its codes")
        dev = next(self.parameters()).device
        z = torch.randn(n, self.latent_dim, generator=generator).to(dev)
        return self.mean_image(self.decode(z))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def _checking_input(fn: Any) -> Any:
    @functools.wraps(fn)
    def checked(self: Autoencoder, x: Any, *args: Any, **kwargs: Any) -> Any:
        self.check_values(x)
        return fn(self, x, *args, **kwargs)

    checked._checks_input = True  # type: ignore[attr-defined]
    return checked


@torch.no_grad()
def embed_images(model: Autoencoder, data, batch_size: int = 1000) -> torch.Tensor:
    """Posterior means E[z|x] of every image of an ImageSet, on the CPU (what probes, samplers and
    detectors use as the representation)."""
    model.eval()
    dev = next(model.parameters()).device
    return torch.cat([model.embed(data.images[i : i + batch_size].to(dev).float().div_(255.0)).cpu()
                      for i in range(0, len(data), batch_size)])
