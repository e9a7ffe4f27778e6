"""Test-set metrics behind one signature: metric(model, data, **options) -> dict of floats.

Options every metric accepts (and ignores when it does not need them): ``batch_size``, ``seed``,
``train`` (the training split, for probes, transfer, GMM sampling and the FID feature network).
"""
from __future__ import annotations

import logging

from typing import Any, Callable

import torch

from ..data.imageset import to_unit_float
from ..data import ImageSet
from ..errors import ConfigError
from ..models import Autoencoder
from .classification import accuracy
from .image_quality import fid, reconstruction
from .likelihood import nll
from .representation import few_label, mig, probes


def _device(model: Autoencoder) -> torch.device:
    return next(model.parameters()).device


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


@torch.no_grad()
def active_units(model: Autoencoder, data: ImageSet, batch_size: int = 1000, threshold: float = 0.01, **_) -> dict[str, float]:
    """Units u with Cov_x(E_q[z_u | x]) > threshold (Burda et al.). Defined for stochastic
    posteriors only: a deterministic AE returns nothing."""
    if not model.has_density:
        return {}
    from ..models import embed_images

    var = embed_images(model, data, batch_size).double().var(0, unbiased=False)
    return {"active_units": float((var > threshold).sum()), "active_fraction": float((var > threshold).double().mean())}


METRICS: dict[str, Callable[..., dict[str, Any]]] = {
    "elbo": elbo_terms,
    "recon": reconstruction,
    "au": active_units,
    "nll": nll,
    "fid": fid,
    "probes": probes,
    "few_label": few_label,
    "mig": mig,
    "accuracy": accuracy,
}
DEFAULT_METRICS = ("elbo", "recon", "au", "accuracy")
IMAGE_ONLY_METRICS = ("fid",)  # skipped, with a note, on vectors
ALL_METRICS = tuple(METRICS)


def evaluate(model: Autoencoder, data: ImageSet, metrics: tuple[str, ...] | list[str] = DEFAULT_METRICS, **options) -> dict[str, Any]:
    """Run the named metrics (``"all"`` for every one) and merge their dicts."""
    metrics = ALL_METRICS if list(metrics) == ["all"] else tuple(metrics)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ConfigError(f"unknown metric(s) {unknown}; choose from: {', '.join(METRICS)} (or all)")
    out: dict[str, Any] = {}
    for m in metrics:
        if data.is_vector and m in IMAGE_ONLY_METRICS:
            logging.getLogger("vaelab").info("note: %s is defined for images only; skipped on vectors", m)
            continue
        out.update(METRICS[m](model, data, **options))
    return out
