"""Test accuracy of models that classify (those with a ``predict(x)``, such as the semi-supervised VAE)."""
from __future__ import annotations

import torch

from ..data.imageset import to_unit_float
from ..data import ImageSet
from ..models import Autoencoder
from .registry import register_metric


@register_metric("accuracy", "test accuracy of a model that classifies (predict(x), e.g. ssvae)", default=True)
@torch.no_grad()
def accuracy(model: Autoencoder, data: ImageSet, batch_size: int = 1000, **_) -> dict[str, float]:
    """Fraction of ``data`` whose ``model.predict`` equals the label. Empty for models without
    ``predict`` and for unlabelled data (like the active units of a model without a prior)."""
    predict = getattr(model, "predict", None)
    data = data.labelled()
    if predict is None or data.labels is None or len(data) == 0:
        return {}
    model.eval()
    dev = next(model.parameters()).device
    hits = torch.zeros((), dtype=torch.long, device=dev)
    for i in range(0, len(data), batch_size):
        x = to_unit_float(data.images[i : i + batch_size].to(dev))
        hits += (predict(x) == data.labels[i : i + batch_size].to(dev)).sum()
    return {"accuracy": float(hits) / len(data)}
