"""Attribute restoration (ARNet, Ye et al. 2020) with an optional transformation-prediction head
(GEOM, Golan and El-Yaniv 2018): an autoencoder that sees an image with attributes erased - its
colour turned to gray, its orientation turned by a multiple of 90 degrees - and learns to give the
original back (the code's view is gray and turned). Restoring an attribute takes knowing what normal images look like, so the
restoration error of an image unlike the training set is larger: that error, averaged over every
erased view, is the anomaly score ``restoration``; the head's negative log-probability of the true
rotation is the score ``transform_nll``. The head is a linear layer on the code, or with
``model.head_net=true`` a classifier of its own on the colour image (RotNet, Gidaris et al. 2018),
trained on all four rotations of every image, with random flips and crops (``model.head_augment``).

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
from ..nn import ViewClassifier
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
    """Orientation erased: ``x`` turned by k x 90 degrees counter-clockwise (k an int, or one per image), as
    ``torch.rot90(x, k, dims=(-2, -1))`` does, written with flips and a transpose, which ONNX exports."""
    if isinstance(k, int):
        k %= 4
        if k == 0:
            return x
        if k == 2:
            return x.flip(-2).flip(-1)
        return x.flip(-1).transpose(-2, -1) if k == 1 else x.transpose(-2, -1).flip(-1)
    out = torch.empty_like(x)
    for r in range(4):
        idx = (k % 4 == r).nonzero(as_tuple=True)[0]
        if len(idx):
            out[idx] = rotate(x[idx], r)
    return out


@dataclass
class RestoreAEConfig(AEConfig):
    name: str = "arnet"
    erase: Literal["rotate+gray", "rotate", "gray"] = "rotate+gray"  # the attributes erased from the input
    transform_head: bool = False  # also predict the rotation from the code (GEOM-style); the score transform_nll
    head_weight: float = 1.0  # weight of the head's cross-entropy in the loss
    # the head as its own conv classifier of the colour image turned four ways (RotNet), not a linear layer on
    # the code: a code that must give the upright image back cannot tell rotations apart. Implies transform_head
    head_net: bool = False
    head_width: int = 32  # channels of the head network's first stage (doubling per stage)
    head_augment: bool = True  # the head network trains (not validates) on random flips and reflect-padded crops (shift <= 1/8)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.head_net:
            self.transform_head = True
        if self.head_width < 1:
            raise ConfigError(f"model.head_width must be >= 1, got {self.head_width}")
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
        self.head: nn.Module | None = None
        if config.head_net:
            self.head = ViewClassifier(tuple(self.image_shape), 4, config.head_width)
        elif config.transform_head:
            self.head = nn.Linear(config.latent_dim, 4)

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
        if self.config.head_net:
            ce = self._head_net_ce(self._augment(x) if self.config.head_augment and self.training else x)
            terms["transform_ce"] = ce
            total = rec + self.config.head_weight * ce
        elif self.head is not None:
            ce = F.cross_entropy(self.head(h), k, reduction="none")
            terms["transform_ce"] = ce
            total = rec + self.config.head_weight * ce
        return LossOutput(total.mean(), terms)

    def _head_net_ce(self, x: torch.Tensor) -> torch.Tensor:
        """[B]: the head network's cross-entropy over the four rotations of each image, averaged."""
        views = torch.cat([rotate(x, k) for k in self.rotations])
        labels = torch.arange(len(self.rotations), device=x.device).repeat_interleave(x.shape[0])
        ce = F.cross_entropy(self.head(views), labels, reduction="none")
        return ce.view(len(self.rotations), x.shape[0]).mean(0)

    @staticmethod
    def _augment(x: torch.Tensor) -> torch.Tensor:
        """Each image flipped left-right with probability 1/2, and all shifted by one random offset of
        up to 1/8 of the side (reflect padding): the head learns rotations, not the training images."""
        flip = torch.rand(x.shape[0], device=x.device) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        pad = max(1, x.shape[-1] // 8)
        padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        i, j = torch.randint(0, 2 * pad + 1, (2,)).tolist()
        return padded[..., i:i + x.shape[-2], j:j + x.shape[-1]]

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
    def head_features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 4 x C]: the head network's pooled features of the four rotations of each image, side by side."""
        if not self.config.head_net:
            raise ConfigError("head_features are the rotation head network's: train arnet with model.head_net=true")
        return torch.cat([self.head.features(rotate(x, k)) for k in self.rotations], 1)

    @torch.no_grad()
    def transform_nll(self, x: torch.Tensor) -> torch.Tensor:
        """[B]: the head's mean -log p(k | code(erase(x, k))) over the four rotations (needs transform_head);
        with head_net, -log p(k | rotate(x, k)) from the head network."""
        if self.head is None:
            raise ConfigError("transform_nll needs the rotation head: train arnet with model.transform_head=true")
        out = []
        for k in self.rotations:
            logits = self.head(rotate(x, k)) if self.config.head_net else self.head(self.code_of(self.erase(x, k)))
            logp = F.log_softmax(logits, dim=1)
            out.append(-logp[:, k])
        return torch.stack(out).mean(0)
