"""Pieces of the adversarial objectives (FactorVAE, the adversarial autoencoder): the discriminator
network, the dimension-wise permutation of a batch of codes, and the density-ratio estimate of the
total correlation."""
from __future__ import annotations

import torch
from torch import nn


def discriminator_mlp(in_dim: int, hidden: int, layers: int, out_dim: int) -> nn.Sequential:
    """``layers`` hidden layers of ``hidden`` units with LeakyReLU(0.2), then ``out_dim`` logits
    (the discriminators of Kim & Mnih 2018 and Makhzani et al. 2015 are MLPs of this shape)."""
    mods: list[nn.Module] = []
    d = in_dim
    for _ in range(layers):
        mods += [nn.Linear(d, hidden), nn.LeakyReLU(0.2)]
        d = hidden
    mods.append(nn.Linear(d, out_dim))
    return nn.Sequential(*mods)


def permute_dims(z: torch.Tensor) -> torch.Tensor:
    """[B, d] -> [B, d] with every column shuffled across the batch by its own permutation: a
    sample of the product of the marginals prod_j q(z_j) (Kim & Mnih 2018, Algorithm 1)."""
    b, d = z.shape
    idx = torch.argsort(torch.rand(b, d, device=z.device), dim=0)
    return torch.gather(z, 0, idx)


def density_ratio_tc(logits: torch.Tensor) -> torch.Tensor:
    """Per code, log D(z) / (1 - D(z)) from a two-logit discriminator (logit 0: 'from q(z)', logit 1:
    'from the permuted product'): the density-ratio estimate of log q(z) / prod_j q(z_j), whose mean
    over q is the total correlation."""
    return logits[:, 0] - logits[:, 1]
