"""A whole set through a model's encoder, batch by batch: the one place any stage embeds a set."""
from __future__ import annotations

from typing import Any

import torch

from ..data.imageset import to_unit_float
from ..progress import Progress
from .base import Autoencoder


@torch.no_grad()
def embed_images(model: Autoencoder, data: Any, batch_size: int = 1000, what: str = "mean") -> torch.Tensor:
    """The representation of every example of an ImageSet or a tensor (uint8 or float), batch by
    batch, on the CPU: the posterior means E[z|x] (``what="mean"``: what probes, samplers and the
    latent scores use), the encoder's features before the latent heads (``"features"``: the
    few-label transfer and the feature scores) or a rotation head network's features (``"head_features"``:
    arnet's, the score head_knn). The one place any stage embeds a whole set."""
    if what not in ("mean", "features", "head_features"):
        raise ValueError(f"what must be 'mean', 'features' or 'head_features', got {what!r}")
    images = data.images if hasattr(data, "images") else data
    model.eval()
    dev = next(model.parameters()).device
    fn = model.embed if what == "mean" else getattr(model, what)
    out = []
    with Progress(f"embedding ({what})", total=len(images), unit="images") as progress:
        for i in range(0, len(images), batch_size):
            out.append(fn(to_unit_float(images[i : i + batch_size].to(dev))).cpu())
            progress.update(len(out[-1]))
    return torch.cat(out) if out else torch.zeros(0, model.latent_dim)
