"""Test-set metrics behind one signature, metric(model, data, **options) -> dict of floats, each
registered with its options (see registry.py); ``evaluate`` runs the ones named. The loss terms and
the active units are here; the other metrics are in the modules of their kind.
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

import torch

from ..data.imageset import to_unit_float
from ..data import ImageSet
from ..errors import ConfigError
from ..models import Autoencoder
from .registry import METRICS, OWN_METRIC_HINT, default_metrics, register_metric


def _device(model: Autoencoder) -> torch.device:
    return next(model.parameters()).device


@register_metric("elbo", "every loss term of the model (nelbo, rec, kl, ...) in nats per image", default=True)
@torch.no_grad()
def elbo_terms(model: Autoencoder, data: ImageSet, batch_size: int = 1000, seed: int = 0, **_) -> dict[str, float]:
    """Every loss term of the model averaged over the set (e.g. nelbo, rec, kl, mi, tc, dwkl), in
    nats per image. One posterior sample per image, drawn under ``seed``."""
    model.eval()
    sums: dict[str, torch.Tensor] = {}
    dev = _device(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for i in range(0, len(data), batch_size):
            out = model.loss(to_unit_float(data.images[i : i + batch_size].to(dev)))
            for k, v in out.terms.items():
                sums[k] = sums.get(k, 0) + v.double().sum()
    return {k: float(v) / len(data) for k, v in sums.items()}


@register_metric("au", "active units: latent units whose posterior mean varies over the images", default=True)
@torch.no_grad()
def active_units(model: Autoencoder, data: ImageSet, batch_size: int = 1000, threshold: float = 0.01, **_) -> dict[str, float]:
    """Units u with Cov_x(E_q[z_u | x]) > threshold (Burda et al.). Defined for stochastic
    posteriors only: a deterministic AE returns nothing."""
    if not model.has_density:
        return {}
    from ..models import embed_images

    var = embed_images(model, data, batch_size).double().var(0, unbiased=False)
    return {"active_units": float((var > threshold).sum()), "active_fraction": float((var > threshold).double().mean())}


def evaluate(model: Autoencoder, data: ImageSet, metrics: Sequence[str] | None = None, **options) -> dict[str, Any]:
    """Run the named metrics (None: the default ones, ``default_metrics()``; ``["all"]``: every
    registered one) and merge their dicts. Each metric takes the ``options`` it names."""
    names = default_metrics() if metrics is None else tuple(METRICS) if list(metrics) == ["all"] else tuple(metrics)
    unknown = [m for m in names if m not in METRICS]
    if unknown:
        raise ConfigError(f"unknown metric(s) {unknown}; choose from: {', '.join(METRICS)} (or all). {OWN_METRIC_HINT}")
    out: dict[str, Any] = {}
    for m in names:
        if data.is_vector and METRICS[m].images_only:
            logging.getLogger("vaelab").info("note: %s is defined for images only; skipped on vectors", m)
            continue
        out.update(METRICS[m](model, data, **options))
    return out
