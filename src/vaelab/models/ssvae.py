"""The semi-supervised VAE: the (CNN) VAE trained on labelled and unlabelled images together.

    loss = mean over the batch of   rec_i + beta * kl_weight * kl_i                (every image)
                                  + xi * (N / n) * [y_i known] * (-log p(y_i | z_i))

``p(y | z)`` is a small classifier on the latent code: on the posterior MEAN by default
(``classify_on=mean``; the label gradient then shapes the mean head and the encoder), or on the
posterior SAMPLE that is also decoded (``classify_on=sample``). ``predict(x)`` always classifies
the posterior mean. Unlabelled images carry the label -1 and add nothing to the label term.

N / n (training-set size over the number of visible labels) makes the label term's batch mean an
unbiased estimate of xi times the MEAN label NLL over the n labelled images, so xi means the same
at 100 labels as at 60,000 and never depends on the dataset size (like beta): the expected loss is
mean-ELBO + xi * mean-label-NLL. With xi = 0 the loss is the VAE's, term for term.

Labels reach ``loss(x, kl_weight, labels=y)`` through the trainer: vaelab.train passes a labels
tensor (-1 where unknown) to every model whose ``loss`` takes ``labels``, and shows it only the
labels of ``model.n_labels`` training images (the seeded subset
``vaelab.train.batches.labelled_indices``, which ``vaelab pretrain`` uses too). Without labels
(evaluation, validation) the loss is the VAE's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, ModelError
from .base import LossOutput
from .registry import register_model
from .vae import VAE, VAEConfig


@dataclass
class SSVAEConfig(VAEConfig):
    name: str = "ssvae"
    xi: float = 1.0  # weight of the mean label NLL against the mean negative ELBO
    n_classes: int = 10  # filled in from the training data's labels unless set
    n_labels: int | None = None  # labelled training images the trainer shows (seeded subset); None: all
    classifier_hidden: int = 128  # hidden units of the classifier on z; 0: a linear classifier
    classify_on: Literal["mean", "sample"] = "mean"
    dataset_size: int | None = None  # N of the training set; filled in from the data when trained
    # n: the training images whose label the trainer shows (model.n_labels of them, or fewer when the
    # data mark others unknown with -1); filled in when trained
    labelled_images: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.xi < 0:
            raise ConfigError(f"model.xi (weight of the label term) must be >= 0, got {self.xi}")
        if self.n_classes < 2:
            raise ConfigError(f"model.n_classes must be >= 2, got {self.n_classes}")
        if self.n_labels is not None and self.n_labels < 1:
            raise ConfigError(f"model.n_labels must be >= 1 (or null for every training label), got {self.n_labels}")
        if self.classifier_hidden < 0:
            raise ConfigError(f"model.classifier_hidden must be >= 0 (0: linear), got {self.classifier_hidden}")
        if self.dataset_size is not None and self.dataset_size < 1:
            raise ConfigError(f"model.dataset_size must be >= 1, got {self.dataset_size}")
        if self.labelled_images is not None and self.labelled_images < 1:
            raise ConfigError(f"model.labelled_images must be >= 1, got {self.labelled_images}: the training data carry "
                              "no known label (all -1); give the ssvae some labelled images")

    def fill_from_labels(self, num_classes: int | None) -> None:
        """The classifier's classes from the data's labels, unless model.n_classes was set."""
        if num_classes is not None and "n_classes" not in getattr(self, "_set_keys", set()):
            self.n_classes = max(2, num_classes)

    def fill_from_data(self, n_train: int | None, image_shape: tuple[int, int, int]) -> None:
        super().fill_from_data(n_train, image_shape)
        if self.dataset_size is None and n_train is not None:
            self.dataset_size = n_train

    @property
    def label_scale(self) -> float:
        """N / n: training images per visible label (1 when the training-set size is unknown)."""
        if self.dataset_size is None:
            return 1.0
        if self.labelled_images is not None:
            return self.dataset_size / self.labelled_images
        n = self.dataset_size if self.n_labels is None else min(self.n_labels, self.dataset_size)
        return self.dataset_size / n


@register_model("ssvae", "semi-supervised VAE: ELBO on every image + xi * label NLL of a classifier on z (model.n_labels)")
class SSVAE(VAE):
    """VAE + xi * label NLL of a classifier on the latent code, for the images whose label is known."""

    config_class = SSVAEConfig
    takes_labels = True

    def __init__(self, config: SSVAEConfig, encoder: nn.Module | None = None, decoder: nn.Module | None = None):
        super().__init__(config, encoder, decoder)
        d, k, hid = config.latent_dim, config.n_classes, config.classifier_hidden
        self.classifier = nn.Linear(d, k) if hid == 0 else nn.Sequential(nn.Linear(d, hid), nn.ReLU(), nn.Linear(hid, k))

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.classifier(z)

    def label_nll(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """-log p(y_i | z_i) per image, 0 where the label is unknown (-1)."""
        if labels.shape != logits.shape[:1]:
            raise ModelError(f"labels must have one entry per image ({logits.shape[0]}), got shape {tuple(labels.shape)}")
        known = labels >= 0
        # checked where it costs no device sync; on a GPU cross_entropy asserts on such a label itself
        if labels.device.type == "cpu" and bool((labels >= self.config.n_classes).any()):
            raise ModelError(f"a label is >= model.n_classes={self.config.n_classes}; set model.n_classes to the number "
                             "of classes of the data")
        nll = F.cross_entropy(logits, labels.clamp_min(0), reduction="none")
        return torch.where(known, nll, torch.zeros_like(nll))

    def loss(self, x: torch.Tensor, kl_weight: float | torch.Tensor = 1.0, labels: torch.Tensor | None = None) -> LossOutput:
        c = self.config
        mu, logvar, q, z, rec = self.sample_and_reconstruct(x)
        kl = self.kl(q, z)
        per_image = rec + (c.beta * kl_weight) * kl
        terms = {"rec": rec, "kl": kl, "nelbo": rec + kl}
        if labels is not None:
            lab = self.label_nll(self.logits(mu if c.classify_on == "mean" else z), labels.to(x.device))
            per_image = per_image + (c.xi * c.label_scale) * lab
            terms["label_nll"] = lab
            terms["labelled"] = (labels >= 0).to(rec.dtype)
        return LossOutput(per_image.mean(), terms)

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """p(y | E[z | x]) per image, (N, n_classes)."""
        return self.logits(self.posterior_params(x)[0]).softmax(1)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The most probable class of each image, from the classifier on the posterior mean."""
        return self.logits(self.posterior_params(x)[0]).argmax(1)
