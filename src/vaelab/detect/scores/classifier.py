"""A classifier's uncertainty: scores of a model with a classifier on its code (``logits``: the ssvae
trained with some labelled images). An image of none of the classes the labelled images showed tends
to sit between them.

| name            | what                                                                  |
|-----------------|-----------------------------------------------------------------------|
| `class_entropy` | log(H + 1e-6), H the entropy (nats) of p(y | E[z|x])                  |
| `class_energy`  | the free energy -logsumexp of the classifier's logits on E[z|x]       |
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...models import Autoencoder
from .base import ExportContext, Score
from .registry import register_score

ENTROPY_FLOOR = 1e-6  # nats: the floor under the entropy before its log


def class_log_probs(model: Autoencoder, x: torch.Tensor) -> torch.Tensor:
    """log p(y | E[z|x]) of a model with a classifier on its code (``logits``: the ssvae), [B, K]."""
    return F.log_softmax(model.logits(model.encode(x).mean), 1)


def log_entropy(log_probs: torch.Tensor) -> torch.Tensor:
    """log(H + ENTROPY_FLOOR) of each row of class log-probabilities [B, K] (also the exported head's)."""
    return torch.log((-(log_probs.exp() * log_probs).sum(1)).clamp_min(0.0) + ENTROPY_FLOOR)


def free_energy(logits: torch.Tensor) -> torch.Tensor:
    """-logsumexp over classes of logits [B, K], [B] (shared with the exported head)."""
    return -torch.logsumexp(logits, 1)


def class_energy(model: Autoencoder, x: torch.Tensor) -> torch.Tensor:
    """The free energy of the classifier's logits on E[z|x], [B]."""
    return free_energy(model.logits(model.encode(x).mean))


@register_score("class_entropy", "log of the entropy of the model's class probabilities p(y | E[z|x]) (needs a "
                                 "classifier: ssvae)")
class ClassEntropyScore(Score):
    """log(H + 1e-6), H the entropy in nats of the model's class probabilities p(y | E[z|x]): an image
    of none of the classes the labelled images showed tends to sit between them (Hendrycks and
    Gimpel's softmax baseline; an entropy uses every class's probability, not only the largest). The
    log puts the confident bulk of normal images near H = 0 on a scale where a z-score against the
    training scores is not dominated by a few uncertain ones; a ranking is the same as H's."""

    needs_classifier = True

    def batch(self, model: Autoencoder, x: torch.Tensor) -> torch.Tensor:
        return log_entropy(class_log_probs(model, x))

    def export_head(self, model: nn.Module) -> nn.Module:
        return ClassEntropyHead()


class ClassEntropyHead(nn.Module):
    def forward(self, ctx: ExportContext) -> torch.Tensor:
        return log_entropy(F.log_softmax(ctx.model.logits(ctx.get("latent")), 1))


@register_score("class_energy", "free energy -logsumexp of the classifier's logits on E[z|x] (needs a classifier: ssvae)")
class ClassEnergyScore(ClassEntropyScore):
    """The free energy of the classifier on the code, -logsumexp_y f_y(E[z|x]) with f the logits (Liu et
    al., NeurIPS 2020): low where some class's logit is large. Unlike the softmax's entropy it keeps the
    logits' scale, so an image the classifier gives no class a large logit for scores high even when
    its probabilities are peaked."""

    def batch(self, model: Autoencoder, x: torch.Tensor) -> torch.Tensor:
        return class_energy(model, x)

    def export_head(self, model: nn.Module) -> nn.Module:
        return ClassEnergyHead()


class ClassEnergyHead(nn.Module):
    def forward(self, ctx: ExportContext) -> torch.Tensor:
        return free_energy(ctx.model.logits(ctx.get("latent")))
