"""Attribute restoration (ARNet, Ye et al. 2020) with an optional transformation-prediction head
(GEOM, Golan and El-Yaniv 2018): an autoencoder that sees an image with attributes erased - its
colour turned to gray, its orientation turned by a multiple of 90 degrees - and learns to give the
original back. Restoring an attribute takes knowing what normal images look like, so the
restoration error of an image unlike the training set is larger: that error, averaged over every
erased view, is the anomaly score ``restoration``; the head's negative log-probability of the true
rotation is the score ``transform_nll``.

The views are exact: ``rotate(x, k)`` is a permutation of pixels (``rotate(rotate(x, k), -k) == x``
bit for bit) and ``gray`` is the ITU-R 601 luma on every channel (idempotent, the identity on
one-channel images)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .ae import AE, AEConfig
from .base import LossOutput
from .registry import register_model

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601


def gray(x: torch.Tensor) -> torch.Tensor:
    """Colour erased: the luma of [B, 3, H, W] images on all three channels; other images unchanged."""
    if x.shape[-3] != 3:
        return x
    w = x.new_tensor(LUMA).view(3, 1, 1)
    return (x * w).sum(-3, keepdim=True).expand_as(x).contiguous()


def rotate(x: torch.Tensor, k: int | torch.Tensor) -> torch.Tensor:
    """Orientation erased: ``x`` turned by k x 90 degrees counter-clockwise (k an int, or one per image)."""
    if isinstance(k, int):
        return torch.rot90(x, k % 4, dims=(-2, -1))
    out = torch.empty_like(x)
    for r in range(4):
        idx = (k % 4 == r).nonzero(as_tuple=True)[0]
        if len(idx):
            out[idx] = torch.rot90(x[idx], r, dims=(-2, -1))
    return out


@dataclass
class RestoreAEConfig(AEConfig):
    name: str = "arnet"
    erase: Literal["rotate+gray", "rotate", "gray"] = "rotate+gray"  # the attributes erased from the input
    transform_head: bool = False  # also predict the rotation from the code (GEOM-style); the score transform_nll
    head_weight: float = 1.0  # weight of the head's cross-entropy in the loss

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.head_weight < 0:
            raise ConfigError(f"model.head_weight must be >= 0, got {self.head_weight}")
        if self.transform_head and "rotate" not in self.erase:
            raise ConfigError("model.transform_head predicts the rotation: it needs model.erase=rotate or rotate+gray")


@register_model("arnet", "attribute restoration: restores images whose colour and orientation were erased")
class RestoreAE(AE):
    """Trained on erased views: loss = -log p(x | code(erase(x))) for a random rotation per image
    (+ head_weight x the cross-entropy of the rotation head). ``restoration_error(x)`` averages the
    squared error of the restorations of all erased views; ``transform_nll(x)`` the head's
    -log p(true rotation) over the four rotations."""

    config_class = RestoreAEConfig
    restores: ClassVar[bool] = True

    def __init__(self, config: RestoreAEConfig, encoder: nn.Module | None = None, decoder: nn.Module | None = None):
        super().__init__(config, encoder, decoder)
        if self.is_vector:
            raise ConfigError("arnet erases the colour and orientation of images; these data are vectors: use ae or vae")
        if "rotate" in config.erase and self.image_shape[-1] != self.image_shape[-2]:
            raise ConfigError(f"model.erase={config.erase} turns images by 90 degrees, which needs square images; these "
                              f"are {self.image_shape[-2]}x{self.image_shape[-1]}: use model.erase=gray or resize them")
        if "gray" == config.erase and self.image_shape[0] != 3:
            raise ConfigError("model.erase=gray erases colour, and these images have none: use model.erase=rotate")
        self.head = nn.Linear(config.latent_dim, 4) if config.transform_head else None

    @property
    def rotations(self) -> tuple[int, ...]:
        return (0, 1, 2, 3) if "rotate" in self.config.erase else (0,)

    def erase(self, x: torch.Tensor, k: int | torch.Tensor = 0) -> torch.Tensor:
        """The view the model restores: gray (when erased) and turned by k x 90 degrees."""
        v = gray(x) if "gray" in self.config.erase else x
        return rotate(v, k) if "rotate" in self.config.erase else v

    def loss(self, x: torch.Tensor, kl_weight: float | torch.Tensor = 1.0) -> LossOutput:
        k = torch.randint(len(self.rotations), (x.shape[0],), device=x.device)
        rec, h = self.reconstruction_nll(self.erase(x, k), x)
        terms = {"rec": rec}
        total = rec
        if self.head is not None:
            ce = F.cross_entropy(self.head(h), k, reduction="none")
            terms["transform_ce"] = ce
            total = rec + self.config.head_weight * ce
        return LossOutput(total.mean(), terms)

    @torch.no_grad()
    def restore(self, x: torch.Tensor, k: int = 0) -> torch.Tensor:
        """The model's restoration of the view ``erase(x, k)``."""
        return self.reconstruct(self.erase(x, k))

    @torch.no_grad()
    def restoration_error(self, x: torch.Tensor) -> torch.Tensor:
        """[B]: the mean over the erased views of the mean squared error of their restorations."""
        errs = [(self.restore(x, k) - x).pow(2).flatten(1).mean(1) for k in self.rotations]
        return torch.stack(errs).mean(0)

    @torch.no_grad()
    def transform_nll(self, x: torch.Tensor) -> torch.Tensor:
        """[B]: the head's mean -log p(k | code(erase(x, k))) over the four rotations (needs transform_head)."""
        if self.head is None:
            raise ConfigError("transform_nll needs the rotation head: train arnet with model.transform_head=true")
        out = []
        for k in self.rotations:
            logp = F.log_softmax(self.head(self.code_of(self.erase(x, k))), dim=1)
            out.append(-logp[:, k])
        return torch.stack(out).mean(0)
