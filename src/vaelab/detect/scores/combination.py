"""Combinations: ``combo``, the mean of its member scores, each put on one scale by its training scores.

The default members (``DEFAULT_COMBO``) and what they become on vectors or on a model with a
classifier on its code (``ComboScore.options_for``) live here, beside the score that uses them."""
from __future__ import annotations

import logging
import time
from typing import Annotated, Any, Literal, Sequence

import torch
import torch.nn as nn

from ...errors import ConfigError
from ...models import Autoencoder
from .base import ExportContext, Score, has_classifier, has_head_net
from .registry import export_head_for, export_refusal, get_score, register_score, single_scores

log = logging.getLogger("vaelab")

# Chosen by benchmarks/detect_scores.py on the trained one-class models (README, "Which score"): the
# best mean one-class ROC-AUC over Fashion-MNIST and MNIST of every combination of up to four scores
# that meets both targets. Structural error, a local pixel error and two densities (latent codes,
# encoder features) fail on different normal classes.
DEFAULT_COMBO = ("ssim", "latent_gmm", "feature_knn", "patch_mse")
# a model that classifies its code (ssvae trained with the OOD study's labelled images) adds its classifier's
# free energy, counted twice, and its class entropy, once (the z-score mean then weighs them as three of seven
# members): on study-shaped tasks an image of none of the known classes sits between them, and the energy
# catches the simple anomalies (the digit 1) that the reconstruction members rate normal. Chosen on the
# choosing draws of benchmarks/detect_tasks.py (--weigh: eight weightings of the two in the two-seed
# ensemble, by a rule written before) over the entropy alone counted twice, the earlier default
DEFAULT_CLASSIFIER_COMBO = (*DEFAULT_COMBO, "class_energy", "class_energy", "class_entropy")
# a model with a rotation head network (arnet, model.head_net=true): its head's transform_nll alone. On one-class
# CIFAR-10 (benchmarks/one_class_cifar10.py) the combo of transform_nll and restoration lost to it on the classes it was
# tried on, and the reconstruction scores are near chance there
DEFAULT_HEAD_NET_COMBO = ("transform_nll",)


def vector_combo() -> tuple[str, ...]:
    """The default combo on vectors (tabular data): its members that are not image-only."""
    return tuple(c for c in DEFAULT_COMBO if not get_score(c).cls.image_only)


def member_names(combo: Sequence[str] | str) -> list[str]:
    """The members of a combo given as a sequence or as the command line's comma list."""
    if isinstance(combo, str):
        return [c.strip() for c in combo.split(",") if c.strip()]
    return list(combo)


@register_score("combo", "mean of the members' z-scores (or ranks) against their training scores")
class ComboScore(Score):
    """The mean over member scores of each one's standardised value: ``combo_method='zscore'``
    (s - mean) / std of its training scores, or ``'rank'``: its rank among the training scores as a
    fraction in [0, 1] (scale-free, but every value beyond the training range ties at 1). ``combo``:
    the members, by name (any single score) or as Score objects; the other options go to the members."""

    combines = True

    def __init__(self, combo: Annotated[Sequence[Any] | str, "the scores combo averages, a comma list"] = DEFAULT_COMBO,
                 combo_method: Annotated[Literal["zscore", "rank"], "how combo puts its members on one scale"] = "zscore",
                 **member_options: Any):
        if combo_method not in ("zscore", "rank"):
            raise ConfigError(f"combo_method must be 'zscore' or 'rank', got {combo_method!r}")
        members = member_names(combo)
        if not members:
            raise ConfigError("the combo score needs at least one member score, e.g. combo=('mse', 'latent_gmm')")
        names = [m for m in members if not isinstance(m, Score)]
        bad = [m for m in names if m not in single_scores()]
        if bad:
            raise ConfigError(f"unknown combo member(s) {bad}; combine any of: {', '.join(single_scores())}")
        self.members = [m if isinstance(m, Score) else get_score(m).make(**member_options) for m in members]
        self.method = combo_method

    @classmethod
    def options_for(cls, model: Autoencoder | None, options: dict[str, Any]) -> dict[str, Any]:
        """The default members made to fit ``model``: on a model with a rotation head network, DEFAULT_HEAD_NET_COMBO;
        on vectors, those defined on vectors; on a model with a classifier on its code, DEFAULT_CLASSIFIER_COMBO's
        extra members too. Members given are kept."""
        combo = options.get("combo", DEFAULT_COMBO)
        if model is None or tuple(combo) != DEFAULT_COMBO:
            return options
        if has_head_net(model):
            log.info("the model has a rotation head network: the default combo is its %s", " + ".join(DEFAULT_HEAD_NET_COMBO))
            return {**options, "combo": DEFAULT_HEAD_NET_COMBO}
        if model.is_vector:
            combo = vector_combo()
            log.info("vectors: the default combo keeps its members defined on vectors, %s", " + ".join(combo))
        if has_classifier(model):
            combo = (*combo, *DEFAULT_CLASSIFIER_COMBO[len(DEFAULT_COMBO):])
            log.info("the model classifies its code: the default combo adds its classifier's energy and entropy, %s",
                     " + ".join(combo))
        return {**options, "combo": combo}

    @classmethod
    def describe_needs(cls) -> str:
        return "what its members need"

    @property
    def needs_density(self) -> bool:  # type: ignore[override]
        return any(m.needs_density for m in self.members)

    def spec(self) -> str:
        return f"combo({self.method}: " + " + ".join(m.spec() for m in self.members) + ")"

    def check(self, model: Autoencoder) -> None:
        for m in self.members:
            m.check(model)

    def fit(self, model: Autoencoder, images: torch.Tensor, batch_size: int = 500, seed: int = 0) -> "ComboScore":
        self.check(model)
        cols = []
        for i, m in enumerate(self.members, 1):
            t0 = time.perf_counter()
            m.fit(model, images, batch_size, seed)
            cols.append(m.training_scores(model, images, batch_size, seed))
            log.info("score %d of %d (%s) fitted on %d images in %.1f s", i, len(self.members), m.spec(), len(images),
                     time.perf_counter() - t0)
        train = torch.stack(cols, 1)  # [N, M]
        self.fit_images_, self.train_scores_ = images, train
        self.mean_, self.std_ = train.mean(0), train.std(0, unbiased=False).clamp_min(1e-12)
        self.sorted_ = train.sort(0).values.T.contiguous()  # [M, N]
        return self

    def training_scores(self, model: Autoencoder, images: torch.Tensor, batch_size: int = 500, seed: int = 0) -> torch.Tensor:
        if images is getattr(self, "fit_images_", None):  # the images fit() just scored
            return self._combine(self.train_scores_)
        return self._combine(torch.stack([m.training_scores(model, images, batch_size, seed) for m in self.members], 1))

    def batch(self, model: Autoencoder, x: torch.Tensor) -> torch.Tensor:
        return self._combine(torch.stack([m.batch(model, x).double().cpu() for m in self.members], 1))

    def _combine(self, s: torch.Tensor) -> torch.Tensor:  # [B, M] member scores -> [B]
        if self.method == "zscore":
            return ((s - self.mean_) / self.std_).mean(1)
        ref = self.sorted_  # mid-rank of each value among the training scores of its member
        lo = torch.searchsorted(ref, s.T.contiguous(), right=False)
        hi = torch.searchsorted(ref, s.T.contiguous(), right=True)
        return ((lo + hi).double() / (2.0 * ref.shape[1])).mean(0)

    def export_head(self, model: nn.Module) -> nn.Module:
        return ComboHead(self, model)


RANK_REFUSAL = "combo_method='rank' looks each member score up among the sorted training scores; export a zscore combo"


class ComboHead(nn.Module):
    """The zscore combination of the members' heads."""

    def __init__(self, s: ComboScore, model: nn.Module):
        super().__init__()
        if s.method != "zscore":
            raise export_refusal(s.spec(), RANK_REFUSAL)
        self.members = nn.ModuleList(export_head_for(m, model) for m in s.members)
        self.register_buffer("mean", s.mean_.double().clone())
        self.register_buffer("std", s.std_.double().clone())

    def forward(self, ctx: ExportContext) -> torch.Tensor:
        s = torch.stack([h(ctx).double() for h in self.members], 1)
        return ((s - self.mean) / self.std).mean(1)
