"""Walks through latent space: interpolation between two images and traversals of single units."""
from __future__ import annotations

import torch

from ..models import Autoencoder


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of vectors a, b (rows) at fractions t; linear when they are parallel."""
    an, bn = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    omega = torch.acos((an * bn).sum(-1).clamp(-1 + 1e-7, 1 - 1e-7)).unsqueeze(-1)
    so = torch.sin(omega)
    t = t.view(-1, 1)
    lin = (1 - t) * a + t * b
    sph = torch.sin((1 - t) * omega) / so * a + torch.sin(t * omega) / so * b
    return torch.where(so.abs() < 1e-6, lin, sph)


@torch.no_grad()
def interpolate(model: Autoencoder, x0: torch.Tensor, x1: torch.Tensor, steps: int = 10, mode: str = "linear") -> torch.Tensor:
    """Decoded images along the path between the codes of x0 and x1 (each (C, H, W)); (steps, C, H, W)."""
    z = model.embed(torch.stack([x0, x1]))
    t = torch.linspace(0, 1, steps, device=z.device)
    if mode == "linear":
        path = (1 - t.view(-1, 1)) * z[0] + t.view(-1, 1) * z[1]
    elif mode == "slerp":
        path = slerp(z[0].expand(steps, -1), z[1].expand(steps, -1), t)
    else:
        from ..errors import ConfigError

        raise ConfigError(f"unknown interpolation {mode!r}; choose 'linear' or 'slerp'")
    return model.mean_image(model.decode(path))


@torch.no_grad()
def latent_traversal(model: Autoencoder, x: torch.Tensor, span: float = 3.0, steps: int = 9,
                     units: list[int] | None = None) -> torch.Tensor:
    """Each unit u of the code of ``x`` swept over mean_u +- span * std_u of the prior (``prior()``;
    [-span, span] for N(0, I); a prior without a closed-form mean or spread, such as a flow, is
    measured on 4,096 of its samples) with the others fixed; a model without a prior sweeps
    [-span, span] itself. (len(units) * steps, C, H, W), one row per unit."""
    z0 = model.embed(x.unsqueeze(0))[0]
    units = list(range(model.latent_dim)) if units is None else units
    centre, scale = torch.zeros_like(z0), torch.ones_like(z0)
    if model.can_sample:
        p = model.prior()
        try:
            mean, std = p.mean, p.stddev
        except NotImplementedError:
            draws = model.sample_prior(4096, torch.Generator().manual_seed(0))
            mean, std = draws.mean(0), draws.std(0)
        centre, scale = mean.to(z0).expand_as(z0), std.to(z0).expand_as(z0)
    t = torch.linspace(-span, span, steps, device=z0.device)
    z = z0.repeat(len(units) * steps, 1)
    for r, u in enumerate(units):
        z[r * steps : (r + 1) * steps, u] = centre[u] + t * scale[u]
    return model.mean_image(model.decode(z))
