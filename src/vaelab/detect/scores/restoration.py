"""Scores of a model that restores erased attributes (``restores``: arnet). Restoring the colour or
the orientation of an image takes knowing what normal images look like, so the restoration of an
image unlike the training set is worse (Ye et al. 2020); a rotation head that cannot tell how an
unusual image was turned is less sure of the answer (Golan and El-Yaniv 2018).

| name            | what                                                                              |
|-----------------|-----------------------------------------------------------------------------------|
| `restoration`   | mean squared error of the restorations, averaged over every erased view            |
| `transform_nll` | the rotation head's -log p(true rotation), averaged over the four rotations       |
| `head_knn`      | mean distance of the head network's whitened features to the k nearest training images' |

``head_knn`` is ``feature_knn`` on the rotation head network's features of the four rotations (side by side):
where several classes are normal, an image of another class can be easy to turn upright (a car), so the head
is sure of it, yet its features are far from every training image's.
"""
from __future__ import annotations

import torch

from ...errors import ModelError
from ...models import Autoencoder
from .base import BatchHead, Score, has_head_net
from .density import DEFAULT_FEATURE_DIMS, DEFAULT_KNN_K, FEATURE_DIMS, KNN_K, KNNScore
from .registry import register_score


class _RestorationBase(Score):
    image_only = True

    @classmethod
    def describe_needs(cls) -> str:
        return "a model that restores erased attributes (arnet), images"

    def check(self, model: Autoencoder) -> None:
        super().check(model)
        if not getattr(model, "restores", False):
            raise ModelError(f"the {self.name!r} score needs a model trained to restore erased attributes (arnet); "
                             f"{model.config.name} is not one. Train one with: vaelab train arnet --data ...")


@register_score("restoration", "error of restoring erased colour and orientation (attribute restoration, arnet)")
class RestorationScore(_RestorationBase):
    """The mean over the erased views (gray, each rotation) of the squared error of their restoration."""

    def export_head(self, model: torch.nn.Module) -> torch.nn.Module:
        return BatchHead(self)  # gray and the rotations are fixed linear maps and permutations: plain torch

    def batch(self, model: Autoencoder, x: torch.Tensor) -> torch.Tensor:
        return model.restoration_error(x)


@register_score("transform_nll", "the rotation head's -log p(true rotation) (arnet with model.transform_head=true)")
class TransformNLLScore(_RestorationBase):
    """How unsure the model's rotation head is of how each view was turned, averaged over the rotations."""

    def export_head(self, model: torch.nn.Module) -> torch.nn.Module:
        return BatchHead(self)  # rotations are permutations of pixels and the head is in eval mode: plain torch

    def check(self, model: Autoencoder) -> None:
        super().check(model)
        if getattr(model, "head", None) is None:
            raise ModelError("the 'transform_nll' score needs arnet's rotation head: train it with "
                             "--set model.transform_head=true")

    def batch(self, model: Autoencoder, x: torch.Tensor) -> torch.Tensor:
        return model.transform_nll(x)


@register_score("head_knn", "mean distance of the rotation head network's whitened features to the k nearest training images'")
class HeadKNNScore(KNNScore):
    """``KNNScore`` on arnet's rotation head network's features (``head_features``: the pooled features of the
    four rotations side by side), projected on their top ``feature_dims`` principal components and whitened;
    training images scored leave-one-out."""

    image_only = True

    def __init__(self, knn_k: KNN_K = DEFAULT_KNN_K, feature_dims: FEATURE_DIMS = DEFAULT_FEATURE_DIMS):
        super().__init__("head", knn_k, feature_dims)

    @classmethod
    def describe_needs(cls) -> str:
        return "arnet with its rotation head network (model.head_net=true), images"

    def check(self, model: Autoencoder) -> None:
        super().check(model)
        if not has_head_net(model):
            raise ModelError("the 'head_knn' score reads arnet's rotation head network: train it with "
                             "vaelab train arnet --set model.head_net=true")
