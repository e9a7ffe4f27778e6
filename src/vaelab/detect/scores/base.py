"""What every anomaly score shares: the ``Score`` base class, ``score_images`` (a score over a whole set,
batch by batch, under a seed), the batching helpers, and what an exported head reads (``ExportContext``).

A score is a small object in the estimator style: ``fit(model, images)`` learns what it needs from
the normal training images (latent statistics, the scale of its members), then ``batch(model, x)``
scores one batch of float images in [0, 1] -> a [B] tensor, higher = more anomalous. Every score is
vectorised over the batch (and over Monte Carlo / importance samples). Its capabilities are declared
in class attributes (``needs_density``, ``needs_classifier``, ``image_only``), never found by inspection.

Scores fitted on the training images (the kNN ones) score those images leave-one-out in
``training_scores`` (an image is not its own neighbour), so the statistics a detector or a combo
takes from the training set describe images it has not seen."""
from __future__ import annotations

from typing import Any, ClassVar, Iterator

import torch
import torch.nn as nn

from ...data.imageset import to_unit_float
from ...errors import ModelError
from ...models import Autoencoder, embed_images
from ...progress import Progress
from .registry import density_free_scores, vector_scores


def model_device(model: Autoencoder) -> torch.device:
    return next(model.parameters()).device


def iter_batches(images: torch.Tensor, batch_size: int, device: torch.device) -> Iterator[torch.Tensor]:
    """Float batches in [0, 1] on ``device`` from uint8 (or float) images, by indexing."""
    for i in range(0, len(images), batch_size):
        x = images[i : i + batch_size].to(device)
        yield to_unit_float(x)


@torch.no_grad()
def latent_means(model: Autoencoder, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """E[z|x] of every image, float64 on the CPU."""
    model.eval()
    return embed_images(model, images, batch_size).double()


def has_head_net(model: Autoencoder) -> bool:
    """Whether ``model`` predicts rotations with a classifier of its own (arnet with model.head_net=true)."""
    return bool(getattr(getattr(model, "config", None), "head_net", False))


def has_classifier(model: Autoencoder) -> bool:
    """Whether ``model`` classifies its code (the scores with ``needs_classifier`` apply)."""
    return callable(getattr(model, "logits", None)) and callable(getattr(model, "predict_proba", None))


class Score:
    """Base class: ``fit`` (optional state from the training images), ``batch`` (the score).

    Subclasses declare what they need (``needs_density``: a posterior density and a prior;
    ``needs_classifier``: a classifier on the code; ``image_only``: images, not vectors), their options
    as constructor keyword arguments with defaults (see vaelab.detect.scores.registry), and, to be
    exported, ``export_head``."""

    name: ClassVar[str] = ""
    needs_density: ClassVar[bool] = False
    needs_classifier: ClassVar[bool] = False
    image_only: ClassVar[bool] = False  # defined on images only (windows, structure, pixel values in [0, 1])
    combines: ClassVar[bool] = False  # a combination of other scores (not itself a member of one)
    sums_feature_errors: ClassVar[bool] = False  # a sum of per-feature reconstruction errors (explained per feature)
    why_not_exportable: ClassVar[str] = "the exporter has no torch version of it"  # why it has no export head

    def __init__(self) -> None:  # no options; a subclass's keyword arguments are its options
        pass

    def spec(self) -> str:
        """What the score computes, e.g. 'patch_mse(patch_size=15)': its name and constructor
        parameters (the public attributes set before ``fit``). A cached result is reused only
        under the same spec, so changing a default (a combo's members, a window) rescores."""
        params = {k: v for k, v in vars(self).items() if k != "name" and not k.startswith("_") and not k.endswith("_")
                  and isinstance(v, (int, float, str, bool, type(None)))}
        return f"{self.name}(" + ", ".join(f"{k}={v!r}" for k, v in sorted(params.items())) + ")"

    @classmethod
    def describe_needs(cls) -> str:
        """What a model needs for this score, in words (``vaelab scores``)."""
        parts = (["a prior (has_density)"] if cls.needs_density else []) + (
            ["a classifier on the code (ssvae)"] if cls.needs_classifier else [])
        return ", ".join(parts or ["any model"]) + (", images" if cls.image_only else "")

    @classmethod
    def options_for(cls, model: Autoencoder | None, options: dict[str, Any]) -> dict[str, Any]:
        """The options a detector gives this score for ``model`` (None: not known yet); by default as given."""
        return options

    @classmethod
    def exportable(cls) -> bool:
        """Whether the class declares an export head."""
        return cls.export_head is not Score.export_head

    def check(self, model: Autoencoder) -> None:
        if self.image_only and getattr(model, "is_vector", False):
            raise ModelError(f"the {self.name!r} score is defined for images; this model's data are vectors. Use one of: "
                             f"{', '.join(vector_scores())}")
        if self.needs_density and not model.has_density:
            raise ModelError(
                f"the {self.name!r} score needs a model with a posterior density and a prior (has_density: a VAE, IWAE, "
                f"BVAE...); {model.config.name} has none. Use one of: {', '.join(density_free_scores())}"
            )
        if self.needs_classifier and not has_classifier(model):
            raise ModelError(f"the {self.name!r} score needs a model with a classifier on its code (ssvae, trained with "
                             f"some labelled images); {model.config.name} has none. Use one of: "
                             f"{', '.join(density_free_scores(classifier=False))}")

    def fit(self, model: Autoencoder, images: torch.Tensor, batch_size: int = 500, seed: int = 0) -> "Score":
        self.check(model)
        return self

    def batch(self, model: Autoencoder, x: torch.Tensor) -> torch.Tensor:  # overridden
        raise NotImplementedError

    def training_scores(self, model: Autoencoder, images: torch.Tensor, batch_size: int = 500, seed: int = 0) -> torch.Tensor:
        """The scores of the (fitted-on) training images: by default ``score_images``; overridden
        where a training image would otherwise be scored against itself."""
        return score_images(model, self, images, batch_size, seed)

    def export_head(self, model: nn.Module) -> nn.Module | None:
        """The module that computes the fitted score inside an exported scorer: its ``forward(ctx)``
        takes an ``ExportContext`` and returns the [B] scores; None (the default): not exportable,
        for the reason ``why_not_exportable`` gives. ``BatchHead(self)`` serves a score whose ``batch``
        is plain torch."""
        return None


@torch.no_grad()
def score_images(model: Autoencoder, score: Score, images: torch.Tensor, batch_size: int = 500, seed: int = 0) -> torch.Tensor:
    """``score`` of every image as a float64 CPU tensor [N]; sampling scores are seeded. A long pass
    says how far it is every few seconds (vaelab.progress; silent under --quiet)."""
    model.eval()
    dev = model_device(model)
    out = []
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []), \
            Progress(f"scoring with {score.name}", total=len(images), unit="images") as progress:
        torch.manual_seed(seed)
        for x in iter_batches(images, batch_size, dev):
            model.check_input(x)
            out.append(score.batch(model, x).double().cpu())
            progress.update(len(x))
    s = torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)
    if not torch.isfinite(s).all():
        bad = int((~torch.isfinite(s)).sum())
        raise ModelError(f"the {score.name!r} score is not finite for {bad} of {len(s)} images; the model diverged or "
                         "the images are far outside what it was trained on. Retrain, or use score='mse'")
    return s


# -- what an exported head reads -----------------------------------------------------------------
class ExportContext:
    """What the heads of an exported scorer read, each computed once per forward: ``get('recon')`` the
    reconstruction decode(E[z|x]), ``'err'`` its squared error, ``'latent'`` E[z|x], ``'feature'`` the
    encoder's features, ``'head'`` a rotation head network's (arnet's ``head_features``); ``model`` and ``x`` (float images [B, C, H, W] in [0, 1]) as they are."""

    def __init__(self, model: nn.Module, x: torch.Tensor):
        self.model, self.x, self._cache = model, x, {}

    def get(self, key: str) -> torch.Tensor:
        if key not in self._cache:
            m, x = self.model, self.x
            if key == "recon":
                v = m.reconstruct(x)
            elif key == "err":
                v = (self.get("recon") - x).pow(2)
            elif key == "latent":
                v = m.encode(x).mean
            elif key == "feature":
                v = m.features(x)
            elif key == "head":
                v = m.head_features(x)
            else:
                raise KeyError(f"an export head reads 'recon', 'err', 'latent', 'feature' or 'head', not {key!r}")
            self._cache[key] = v
        return self._cache[key]


class BatchHead(nn.Module):
    """The export head of a score whose ``batch(model, x)`` is plain torch: the exported graph traces
    that method, with the fitted state it reads as constants."""

    def __init__(self, score: Score):
        super().__init__()
        self.score = score

    def forward(self, ctx: ExportContext) -> torch.Tensor:
        return self.score.batch(ctx.model, ctx.x)


__all__ = ["BatchHead", "ExportContext", "Score", "has_classifier", "has_head_net", "iter_batches", "latent_means", "model_device",
           "score_images"]
