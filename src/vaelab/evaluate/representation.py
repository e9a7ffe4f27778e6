"""What the latent code is good for: probes on latent means, few-label transfer from a frozen
encoder, 2-D latent maps, and the mutual information gap against known factors."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data import ImageSet
from ..errors import ConfigError
from ..models import Autoencoder, embed_images
from .registry import register_metric


embed = embed_images


def _need_labels(*sets: ImageSet | None) -> None:
    for s in sets:
        if s is None or s.labels is None:
            raise ConfigError("this metric needs labelled training and test sets")


@register_metric("probes", "linear and one-hidden-layer probes on the latent means: test accuracy (labels)",
                 probe_hidden="hidden units of the MLP probe (null: 100; 256 on 3 x 32 x 32 images)",
                 probe_train_images="at most this many training images fit the probes (null: all)")
def probes(model: Autoencoder, data: ImageSet, train: ImageSet | None = None, seed: int = 0, batch_size: int = 1000,
           probe_hidden: int | None = None, probe_train_images: int | None = 20_000, **_) -> dict[str, float]:
    """Test accuracy of a linear probe (logistic regression) and a one-hidden-layer probe (100
    units; 256 for 3-channel 32x32 data such as CIFAR-10) fitted on standardised latent means of
    (at most ``probe_train_images``) training images. scikit-learn does the fitting."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if train is None or train.labels is None or data.labels is None:
        return {}
    train, data = train.labelled(), data.labelled()  # images of unknown label (-1) do not train or test a probe
    if not len(train) or not len(data):
        return {}
    tr = train.limit(probe_train_images, seed)
    ztr, zte = embed(model, tr, batch_size).numpy(), embed(model, data, batch_size).numpy()
    ytr, yte = tr.labels.numpy(), data.labels.numpy()
    hidden = probe_hidden or (256 if data.shape == (3, 32, 32) else 100)
    lin = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(ztr, ytr)
    mlp = make_pipeline(StandardScaler(), MLPClassifier((hidden,), max_iter=300, early_stopping=True, random_state=seed)).fit(ztr, ytr)
    return {"probe_linear_acc": float(lin.score(zte, yte)), "probe_mlp_acc": float(mlp.score(zte, yte)),
            "probe_mlp_hidden": float(hidden), "probe_train_images": float(len(tr))}


class _Head(nn.Module):
    """The two-layer head of the few-label task."""

    def __init__(self, d_in: int, n_classes: int, hidden: int = 256):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _fit_head(xtr: torch.Tensor, ytr: torch.Tensor, xte: torch.Tensor, yte: torch.Tensor, n_classes: int, seed: int,
              epochs: int = 200, lr: float = 1e-3, weight_decay: float = 1e-4) -> float:
    """Full-batch Adam on the small labelled set; features standardised on the training labels."""
    mu, sd = xtr.mean(0, keepdim=True), xtr.std(0, keepdim=True).clamp_min(1e-6)
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    with torch.random.fork_rng(devices=[]), torch.enable_grad():
        torch.manual_seed(seed)
        head = _Head(xtr[0].numel(), n_classes)
        opt = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=weight_decay)
        for _ in range(epochs):
            loss = F.cross_entropy(head(xtr), ytr)
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        return float((head(xte).argmax(1) == yte).double().mean())


@torch.no_grad()
def encoder_features(model: Autoencoder, data: ImageSet, batch_size: int = 1000) -> torch.Tensor:
    """``model.features`` (the frozen encoder's output before the latent heads) of every image."""
    return embed_images(model, data, batch_size, "features")


@register_metric("few_label", "few-label transfer: a head on the frozen encoder trained on a few labelled images",
                 n_labels="labelled training images", few_label_repeats="draws of the labelled images, averaged")
def few_label(model: Autoencoder, data: ImageSet, train: ImageSet | None = None, seed: int = 0, batch_size: int = 1000,
              n_labels: int = 2000, few_label_repeats: int = 3, **_) -> dict[str, float]:
    """Transfer with ``n_labels`` labelled training images: the same two-layer head trained on
    (a) the frozen encoder's features (its network output before the latent heads: the transfer
    the metric is about), (b) the frozen encoder's latent means and (c) raw pixels (from scratch).
    Mean test accuracy over ``few_label_repeats`` draws of the labelled images (seeds seed, seed+1, ...)."""
    if train is None or train.labels is None or data.labels is None:
        return {}
    train, data = train.labelled(), data.labelled()
    if not len(train) or not len(data):
        return {}
    n_classes = int(max(train.labels.max(), data.labels.max())) + 1
    fte, zte, xte = encoder_features(model, data, batch_size), embed(model, data, batch_size), data.float().flatten(1)
    accs: dict[str, list[float]] = {"encoder": [], "latent": [], "pixels": []}
    for r in range(few_label_repeats):
        small = train.limit(n_labels, seed + r)
        inputs = {"encoder": (encoder_features(model, small, batch_size), fte), "latent": (embed(model, small, batch_size), zte),
                  "pixels": (small.float().flatten(1), xte)}
        for k, (xtr, xev) in inputs.items():
            accs[k].append(_fit_head(xtr, small.labels, xev, data.labels, n_classes, seed + r))
    out = {f"few_label_{k}_acc": float(np.mean(v)) for k, v in accs.items()}
    return out | {f"few_label_{k}_std": float(np.std(v)) for k, v in accs.items()} | {
        "few_label_n": float(min(n_labels, len(train))), "few_label_repeats": float(few_label_repeats)}


# -- disentanglement ------------------------------------------------------------------------
def _discretize(x: np.ndarray, bins: int) -> np.ndarray:
    out = np.zeros_like(x, dtype=np.int64)
    for j in range(x.shape[1]):
        edges = np.histogram_bin_edges(x[:, j], bins)
        out[:, j] = np.digitize(x[:, j], edges[1:-1])
    return out


def mutual_information_gap(codes: np.ndarray, factors: np.ndarray, bins: int = 20) -> dict[str, float]:
    """MIG (Chen et al. 2018): for each ground-truth factor, the gap between the two latent units
    sharing most mutual information with it, divided by the factor's entropy; averaged over factors.
    Codes are discretised into ``bins`` equal-width bins; factors are discrete."""
    from sklearn.metrics import mutual_info_score

    if codes.shape[0] != factors.shape[0]:
        raise ConfigError(f"codes ({codes.shape[0]}) and factors ({factors.shape[0]}) differ in length")
    if codes.shape[1] < 2:
        raise ConfigError("MIG needs at least 2 latent units")
    dz = _discretize(codes, bins)
    gaps = []
    for k in range(factors.shape[1]):
        f = factors[:, k]
        h = mutual_info_score(f, f)
        if h <= 0:
            continue
        mi = np.sort([mutual_info_score(f, dz[:, j]) for j in range(dz.shape[1])])[::-1]
        gaps.append((mi[0] - mi[1]) / h)
    if not gaps:
        raise ConfigError("every factor is constant: MIG is undefined")
    return {"mig": float(np.mean(gaps)), "mig_per_factor": [float(g) for g in gaps]}


@register_metric("mig", "mutual information gap against known factors (shapes, dsprites)")
def mig(model: Autoencoder, data: ImageSet, batch_size: int = 1000, factors: np.ndarray | None = None, **_) -> dict[str, float]:
    """MIG of the latent means against ``factors`` (one row of discrete factor values per image).
    Only defined for data with known factors (vaelab's ``shapes`` set, dSprites)."""
    if factors is None:
        factors = getattr(data, "factors", None)
    if factors is None:
        return {}
    return mutual_information_gap(embed(model, data, batch_size).numpy(), np.asarray(factors))
