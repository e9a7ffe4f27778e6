"""Test-set metrics behind one signature: metric(model, data, batch_size=..., seed=...) -> dict."""
from __future__ import annotations

from typing import Callable

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio

from ..data import ImageSet
from ..errors import ConfigError
from ..models import Autoencoder


def _batches(data: ImageSet, batch_size: int, device: torch.device):
    for i in range(0, len(data), batch_size):
        yield data.images[i : i + batch_size].to(device).float().div_(255.0)


def _device(model: Autoencoder) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def elbo_terms(model: Autoencoder, data: ImageSet, batch_size: int = 1000, seed: int = 0) -> dict[str, float]:
    """Every loss term of the model averaged over the set (e.g. nelbo, rec, kl), in nats per image.
    One posterior sample per image, drawn under ``seed``."""
    model.eval()
    sums: dict[str, torch.Tensor] = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for x in _batches(data, batch_size, _device(model)):
            out = model.loss(x)
            for k, v in out.terms.items():
                sums[k] = sums.get(k, 0) + v.double().sum()
    return {k: float(v) / len(data) for k, v in sums.items()}


@torch.no_grad()
def reconstruction(model: Autoencoder, data: ImageSet, batch_size: int = 1000, seed: int = 0) -> dict[str, float]:
    """Mean squared error per pixel and PSNR (dB, per image then averaged) of the reconstruction
    decode(E[z|x]) against x, both in [0, 1]."""
    model.eval()
    se, psnr = 0.0, 0.0
    for x in _batches(data, batch_size, _device(model)):
        r = model.reconstruct(x)
        se += float((r - x).pow(2).mean(dim=(1, 2, 3)).double().sum())
        p = peak_signal_noise_ratio(r, x, data_range=1.0, reduction="none", dim=(1, 2, 3))
        psnr += float(p.double().sum())
    return {"mse": se / len(data), "psnr": psnr / len(data)}


@torch.no_grad()
def active_units(model: Autoencoder, data: ImageSet, batch_size: int = 1000, seed: int = 0, threshold: float = 0.01) -> dict[str, float]:
    """Units u with Cov_x(E_q[z_u | x]) > threshold (Burda et al.). Defined for stochastic
    posteriors only: a deterministic AE returns nothing."""
    if not model.has_prior:
        return {}
    model.eval()
    means = torch.cat([model.encode(x).mean.double() for x in _batches(data, batch_size, _device(model))])
    var = means.var(0, unbiased=False)
    return {"active_units": float((var > threshold).sum()), "active_fraction": float((var > threshold).double().mean())}


METRICS: dict[str, Callable[..., dict[str, float]]] = {
    "elbo": elbo_terms,
    "recon": reconstruction,
    "au": active_units,
}
DEFAULT_METRICS = ("elbo", "recon", "au")


def evaluate(model: Autoencoder, data: ImageSet, metrics: tuple[str, ...] | list[str] = DEFAULT_METRICS, **options) -> dict[str, float]:
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ConfigError(f"unknown metric(s) {unknown}; choose from: {', '.join(METRICS)}")
    out: dict[str, float] = {}
    for m in metrics:
        out.update(METRICS[m](model, data, **options))
    return out
