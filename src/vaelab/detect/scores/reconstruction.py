"""Reconstruction scores: how far decode(E[z|x]) is from x. Any model backs them.

| name        | what                                                                   |
|-------------|------------------------------------------------------------------------|
| `mse`       | mean squared error of decode(E[z|x]) against x                         |
| `bce`       | binary cross-entropy of decode(E[z|x]) against x (nats per image)      |
| `patch_mse` | the largest mean squared error over any `patch_size` square window     |
| `ssim`      | 1 - SSIM of decode(E[z|x]) against x (structure, not pixel error)      |
"""
from __future__ import annotations

from typing import Annotated

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...errors import ConfigError
from ...models import Autoencoder
from .base import ExportContext, Score
from .registry import register_score


@register_score("mse", "mean squared reconstruction error of decode(E[z|x])")
class MSEScore(Score):
    """Mean squared error per pixel of the reconstruction decode(E[z|x]) (the likelihood's mean)."""

    sums_feature_errors = True

    def batch(self, model: Autoencoder, x: torch.Tensor) -> torch.Tensor:
        return (model.reconstruct(x) - x).pow(2).flatten(1).mean(1)

    def export_head(self, model: nn.Module) -> nn.Module:
        return MSEHead()


class MSEHead(nn.Module):
    def forward(self, ctx: ExportContext) -> torch.Tensor:
        return ctx.get("err").flatten(1).mean(1)


# patch_mse's window: of 3, 5, ..., 15 pixels, the best single score on the one-class runs of both
# datasets (benchmarks/detect_scores.py), on 28 x 28 images; scale it with larger images.
DEFAULT_PATCH_SIZE = 15


@register_score("patch_mse", "largest mean squared error over any patch_size x patch_size window of the reconstruction")
class PatchMSEScore(Score):
    """The largest mean squared error of decode(E[z|x]) over any ``patch_size`` x ``patch_size``
    window (stride 1, channels averaged; a window larger than the image is clipped to it, which
    gives ``mse``). A small defect (the closed loop that makes a 4 a 9) is a few pixels of large
    error that the mean over the whole image dilutes among the small errors a blurry
    reconstruction makes everywhere; the window's maximum keeps it."""

    image_only = True

    def __init__(self, patch_size: Annotated[int, "the window's side in pixels (patch_mse)"] = DEFAULT_PATCH_SIZE):
        if not isinstance(patch_size, int) or isinstance(patch_size, bool) or patch_size < 1:
            raise ConfigError(f"patch_size must be a whole number of pixels >= 1, got {patch_size!r}")
        self.patch_size = patch_size

    def batch(self, model: Autoencoder, x: torch.Tensor) -> torch.Tensor:
        err = (model.reconstruct(x) - x).pow(2).mean(1, keepdim=True)  # [B, 1, H, W]
        k = (min(self.patch_size, err.shape[-2]), min(self.patch_size, err.shape[-1]))
        return F.avg_pool2d(err, k, stride=1).flatten(1).amax(1)

    def export_head(self, model: nn.Module) -> nn.Module:
        return PatchMSEHead(self.patch_size, tuple(model.image_shape))


class PatchMSEHead(nn.Module):
    def __init__(self, patch_size: int, image_shape: tuple[int, ...]):
        super().__init__()  # the window clipped to the image, fixed here: a traced kernel size must be a constant
        self.kernel = (min(patch_size, image_shape[-2]), min(patch_size, image_shape[-1]))

    def forward(self, ctx: ExportContext) -> torch.Tensor:
        err = ctx.get("err").mean(1, keepdim=True)
        return F.avg_pool2d(err, self.kernel, stride=1).flatten(1).amax(1)


@register_score("bce", "binary cross-entropy of decode(E[z|x]) against x")
class BCEScore(Score):
    """Binary cross-entropy of the reconstruction decode(E[z|x]) against x, summed over pixels."""

    image_only = True
    sums_feature_errors = True

    def batch(self, model: Autoencoder, x: torch.Tensor) -> torch.Tensor:
        p = model.decode(model.encode(x).mean).mean.clamp(1e-6, 1 - 1e-6)
        return F.binary_cross_entropy(p, x, reduction="none").flatten(1).sum(1)

    def export_head(self, model: nn.Module) -> nn.Module:
        return BCEHead()


class BCEHead(nn.Module):
    def forward(self, ctx: ExportContext) -> torch.Tensor:
        m, x = ctx.model, ctx.x
        p = m.decode(ctx.get("latent")).mean.clamp(1e-6, 1 - 1e-6)
        return (-(x * p.log() + (1 - x) * (1 - p).log())).flatten(1).sum(1)


@register_score("ssim", "1 - SSIM of decode(E[z|x]) against x")
class SSIMScore(Score):
    """1 - SSIM of decode(E[z|x]) against x, per image (Gaussian window 11, sigma 1.5, over the
    valid region: the reconstruction metric's ``ssim_per_image``, which agrees with scikit-image):
    sensitive to wrong structure (edges, texture) where the squared error is dominated by bright areas."""

    image_only = True

    def batch(self, model: Autoencoder, x: torch.Tensor) -> torch.Tensor:
        from ...evaluate.image_quality import ssim_per_image  # torchmetrics, imported when first used

        return 1.0 - ssim_per_image(model.reconstruct(x).float(), x.float())

    def export_head(self, model: nn.Module) -> nn.Module:
        return SSIMHead(tuple(model.image_shape))


class SSIMHead(nn.Module):
    """1 - SSIM as vaelab.evaluate.image_quality.ssim_per_image (torchmetrics' arithmetic: reflect
    padding, Gaussian window 11 / sigma 1.5, variances clamped at 0, the valid region averaged)."""

    def __init__(self, image_shape: tuple[int, ...], window: int = 11, sigma: float = 1.5):
        super().__init__()
        from torchmetrics.functional.image.ssim import _gaussian_kernel_2d

        size = int(3.5 * sigma + 0.5) * 2 + 1
        self.pad, self.crop = (size - 1) // 2, (window - 1) // 2
        channels = self.channels = image_shape[0]
        self.register_buffer("kernel", _gaussian_kernel_2d(channels, [size, size], [sigma, sigma], torch.float32, "cpu"))
        q = self.crop
        self.valid = image_shape[-1] > 2 * q and image_shape[-2] > 2 * q  # else the whole (reflect-padded) map, as ssim_per_image

    def forward(self, ctx: ExportContext) -> torch.Tensor:
        a, b = ctx.get("recon").float(), ctx.x.float()
        p, n = self.pad, a.shape[0]
        a, b = F.pad(a, (p, p, p, p), mode="reflect"), F.pad(b, (p, p, p, p), mode="reflect")
        o = F.conv2d(torch.cat((a, b, a * a, b * b, a * b)), self.kernel, groups=self.channels)
        mu_a, mu_b, saa, sbb, sab = o[:n], o[n : 2 * n], o[2 * n : 3 * n], o[3 * n : 4 * n], o[4 * n :]
        c1, c2 = 0.01**2, 0.03**2
        mu_aa, mu_bb, mu_ab = mu_a.pow(2), mu_b.pow(2), mu_a * mu_b
        upper = 2 * (sab - mu_ab) + c2
        lower = (saa - mu_aa).clamp_min(0.0) + (sbb - mu_bb).clamp_min(0.0) + c2
        full = ((2 * mu_ab + c1) * upper) / ((mu_aa + mu_bb + c1) * lower)
        if self.valid:
            q = self.crop
            full = full[..., q:-q, q:-q]
        return 1.0 - full.flatten(1).mean(1)
