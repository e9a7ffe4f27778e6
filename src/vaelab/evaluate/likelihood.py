"""Importance-sampled log-likelihood: log p(x) ~ log (1/k) sum_k p(x|z_k) p(z_k) / q(z_k|x), z_k ~ q(z|x).

Vectorised over the k samples in memory-bounded chunks; the chunks are combined with log-sum-exp,
so the estimate is exact arithmetic of the same k samples whatever the chunk size."""
from __future__ import annotations

import math

import torch
from torch.distributions import Independent, Normal

from ..data import ImageSet
from ..errors import ModelError
from ..models import Autoencoder


def log_importance_weights(model: Autoencoder, x: torch.Tensor, k: int, q=None) -> torch.Tensor:
    """[k, B] log p(x|z) + log p(z) - log q(z|x) for z ~ q(z|x)."""
    q = model.encode(x) if q is None else q
    z = q.sample((k,))
    b = x.shape[0]
    px = model.decode(z.reshape(k * b, -1))
    log_px_z = px.log_prob(x.unsqueeze(0).expand(k, *x.shape).reshape(k * b, *x.shape[1:])).view(k, b)
    log_pz = Independent(Normal(torch.zeros_like(z), torch.ones_like(z)), 1).log_prob(z)
    return log_px_z + log_pz - q.log_prob(z)


@torch.no_grad()
def log_likelihood(model: Autoencoder, x: torch.Tensor, k: int = 1000, max_decoded: int = 20_000) -> torch.Tensor:
    """Per-image importance-sampled log p(x) with ``k`` samples; at most ``max_decoded`` images
    are decoded at once (memory bound)."""
    if not model.has_prior:
        raise ModelError(f"NLL needs a model with a prior and a posterior density; {model.config.name} is deterministic")
    if k < 1:
        raise ModelError(f"the number of importance samples must be >= 1, got {k}")
    q = model.encode(x)
    chunk = max(1, min(k, max_decoded // max(1, x.shape[0])))
    acc = torch.full((x.shape[0],), -math.inf, dtype=torch.float64, device=x.device)
    done = 0
    while done < k:
        c = min(chunk, k - done)
        lw = log_importance_weights(model, x, c, q).double()
        acc = torch.logaddexp(acc, torch.logsumexp(lw, 0))
        done += c
    return acc - math.log(k)


@torch.no_grad()
def nll(model: Autoencoder, data: ImageSet, batch_size: int = 100, seed: int = 0, nll_k: int = 1000,
        nll_images: int | None = None, **_) -> dict[str, float]:
    """Negative log-likelihood in nats per image and bits per dimension, on the first
    ``nll_images`` images of the set (all by default), ``nll_k`` importance samples each."""
    if not model.has_prior:
        return {}
    model.eval()
    n = len(data) if nll_images is None else min(nll_images, len(data))
    dev = next(model.parameters()).device
    total = 0.0
    bs = min(batch_size, 100)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for i in range(0, n, bs):
            x = data.images[i : min(i + bs, n)].to(dev).float().div_(255.0)
            total += float(-log_likelihood(model, x, nll_k).sum())
    dims = math.prod(data.shape)
    return {"nll": total / n, "bpd": total / n / (dims * math.log(2)), "nll_k": float(nll_k), "nll_images": float(n)}
