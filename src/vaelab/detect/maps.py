"""Pixel anomaly maps of any model, at image resolution: where in an image the model sees the
anomaly. Each map kind is a function ``(model, x) -> [B, H, W]`` of a float batch in [0, 1]:

| kind | map |
|---|---|
| `mse` | squared error of the reconstruction decode(E[z|x]), averaged over channels |
| `ssim` | 1 - the local SSIM of the reconstruction (Gaussian window 11, sigma 1.5), averaged over channels |
| `gradient` | the gradient attention of the posterior's distance from the normal images' codes (conv models; vaelab.explain.gradcam_anomaly), fitted on the training images |

``anomaly_maps`` runs one kind over a whole set; ``pixel_metrics`` scores maps against defect masks
with vaelab.detect.pixel (pixel ROC-AUC and AUPRO)."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from ..data.imageset import to_unit_float
from ..errors import ConfigError, ModelError
from ..models import Autoencoder
from .pixel import aupro, pixel_roc_auc


def mse_map(model: Autoencoder, x: torch.Tensor, **_: Any) -> torch.Tensor:
    return (model.reconstruct(x) - x).pow(2).mean(1)


def ssim_map(model: Autoencoder, x: torch.Tensor, **_: Any) -> torch.Tensor:
    from torchmetrics.functional.image import structural_similarity_index_measure

    r = model.reconstruct(x).float()
    _, full = structural_similarity_index_measure(r, x.float(), data_range=1.0, kernel_size=11, sigma=1.5,
                                                  reduction="none", return_full_image=True)
    return (1.0 - full).mean(1)


def gradient_map(model: Autoencoder, x: torch.Tensor, stats: Any = None, **_: Any) -> torch.Tensor:
    from ..explain.gradcam import gradcam_anomaly

    if stats is None:
        raise ModelError("the gradient map needs the normal images' statistics: call anomaly_maps(..., train=images)")
    with torch.enable_grad():
        return gradcam_anomaly(model, x, stats, normalize=False)[:, 0].detach()


MAP_KINDS: dict[str, Callable[..., torch.Tensor]] = {"mse": mse_map, "ssim": ssim_map, "gradient": gradient_map}


@torch.no_grad()
def anomaly_maps(model: Autoencoder, images: Any, kind: str = "mse", batch_size: int = 256, train: Any = None) -> np.ndarray:
    """[N, H, W] float64 maps of ``kind`` (MAP_KINDS) for uint8 or [0, 1] images [N, C, H, W];
    ``train``: the normal training images, which the ``gradient`` kind takes its statistics from."""
    if kind not in MAP_KINDS:
        raise ConfigError(f"unknown anomaly map {kind!r}; choose from: {', '.join(MAP_KINDS)}")
    if model.is_vector:
        raise ModelError("anomaly maps are images of where the anomaly is; this model's data are vectors")
    images = images.images if hasattr(images, "images") else torch.as_tensor(images)
    model.eval()
    dev = next(model.parameters()).device
    stats = None
    if kind == "gradient":
        from ..explain.gradcam import normal_statistics

        if train is None:
            raise ConfigError("the gradient map is fitted on the normal training images: pass train=")
        stats = normal_statistics(model, train)
    out = [MAP_KINDS[kind](model, to_unit_float(images[i : i + batch_size].to(dev)), stats=stats).double().cpu()
           for i in range(0, len(images), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros((0, *images.shape[2:]))


def pixel_metrics(maps: np.ndarray, masks: Any, fpr_limit: float = 0.3) -> dict[str, float]:
    """Pixel-level ROC-AUC and AUPRO (up to ``fpr_limit``) of ``maps`` against bool ``masks`` [N, H, W]."""
    masks = np.asarray(masks, dtype=bool)
    return {"pixel_roc_auc": pixel_roc_auc(maps, masks), "aupro": aupro(maps, masks, fpr_limit=fpr_limit)}
