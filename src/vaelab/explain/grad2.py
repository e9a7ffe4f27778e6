"""The grad2 explanation: a grad2vae's own second-order attention (see vaelab.models.grad2vae)."""
from __future__ import annotations

import torch

from ..models.grad2vae import check_grad2vae


def grad2_attention(model, x: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """'maps' [B, 1, H, W] in [0, 1], 'attention' (aggregated, [B, c1, H, W]), 'units'
    ([d, B, c1, H, W]), 'reconstruction' and 'attention_reconstruction' of the images ``x``
    (floats in [0, 1]); the posterior noise from ``generator`` (default seed 0)."""
    check_grad2vae(model, "the grad2 explanation")
    was = model.training
    model.eval()
    try:
        return model.attention_outputs(x.to(next(model.parameters()).device).float(), generator)
    finally:
        model.train(was)
