"""Importance-sampled log-likelihood: log p(x) ~ log (1/k) sum_k p(x|z_k) p(z_k) / q(z_k|x), z_k ~ q(z|x).

Each image is encoded once; its k samples are decoded in memory-bounded chunks (several images
and several samples per decoder call), and the chunks are combined with log-sum-exp, so the
estimate is exact arithmetic of the same k samples whatever the chunk size. Memory is bounded by
``max_decoded`` images per decoder call, whatever k and the number of images."""
from __future__ import annotations

import math

import torch

from ..data.imageset import to_unit_float
from ..data import ImageSet
from ..errors import ModelError
from ..models import Autoencoder
from ..progress import Progress
from ..train.speed import cpu_channels_last
from .registry import register_metric

# images per decoder call. On the CPU a few hundred keep the activations in cache and fresh memory
# out of the allocator (decoded images per second of the conv VAE on 28x28, k = 200, 100 images,
# one thread: ~7,500 at 250-500, ~6,300 at 1,000, ~5,500 at 20,000); a GPU wants large batches
MAX_DECODED = {"cpu": 512}
MAX_DECODED_ACCELERATOR = 16_384




@torch.no_grad()
def log_likelihood(model: Autoencoder, x: torch.Tensor, k: int = 1000, max_decoded: int | None = None) -> torch.Tensor:
    """Per-image importance-sampled log p(x) with ``k`` samples; at most ``max_decoded`` images
    are decoded at once (memory bound; None: MAX_DECODED for the device)."""
    model.require("has_density", "the importance-sampled NLL")
    if k < 1:
        raise ModelError(f"the number of importance samples must be >= 1, got {k}")
    if max_decoded is None:
        max_decoded = MAX_DECODED.get(x.device.type, MAX_DECODED_ACCELERATOR)
    with cpu_channels_last(model, x) as x:
        q = model.encode(x)
        chunk = max(1, min(k, max_decoded // max(1, x.shape[0])))
        acc = torch.full((x.shape[0],), -math.inf, dtype=torch.float64, device=x.device)
        done = 0
        while done < k:
            c = min(chunk, k - done)
            lw = model.log_weights(x, c, q)[0].double()
            acc = torch.logaddexp(acc, torch.logsumexp(lw, 0))
            done += c
    return acc - math.log(k)


@register_metric("nll", "importance-sampled negative log-likelihood, nats per image (and bits per dimension)",
                 nll_k="importance samples per image", nll_images="evaluate on the first N test images (null: all)")
@torch.no_grad()
def nll(model: Autoencoder, data: ImageSet, batch_size: int = 100, seed: int = 0, nll_k: int = 1000,
        nll_images: int | None = None, **_) -> dict[str, float]:
    """Negative log-likelihood in nats per image, and in bits per dimension when the likelihood is
    discretised over the 8-bit levels (a density of continuous values is no code length), on the first
    ``nll_images`` images of the set (all by default), ``nll_k`` importance samples each.
    The sum stays on the device until the end (no host sync per batch)."""
    if not model.has_density:
        return {}
    model.eval()
    n = len(data) if nll_images is None else min(nll_images, len(data))
    dev = next(model.parameters()).device
    total = torch.zeros((), dtype=torch.float64, device=dev)
    bs = min(batch_size, 100)
    with torch.random.fork_rng(devices=[]), Progress(f"nll, {nll_k} importance samples per image", n, "images") as p:
        torch.manual_seed(seed)
        for i in range(0, n, bs):
            x = to_unit_float(data.images[i : min(i + bs, n)].to(dev))
            total -= log_likelihood(model, x, nll_k).sum()
            p.update(len(x))
    total = float(total)
    dims = math.prod(data.shape)
    out = {"nll": total / n, "nll_k": float(nll_k), "nll_images": float(n)}
    if model.discrete_likelihood:  # a probability mass over the 256 levels: -log p(x) is a code length
        out["bpd"] = total / n / (dims * math.log(2))
    return out
