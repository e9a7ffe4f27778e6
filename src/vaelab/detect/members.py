"""The detector's models: trained on the normal data with vaelab's trainer, or given (an Autoencoder, a
run directory, a list of them for an ensemble), each with the standardiser of its vectors."""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..data import SOURCES
from ..errors import ConfigError, DataError
from ..models import Autoencoder
from ..train import load_run
from .inputs import as_images, as_imageset, standardizer

log = logging.getLogger("vaelab")


# model_name="auto" on colour images: arnet whose rotation head is a classifier of its own, scored by that head
# (the default combo of such a model is its transform_nll). Chosen on one-class CIFAR-10 (python -m benchmarks
# one_class_cifar10: mean ROC-AUC 0.8115 against the vae's combo, --config vae) and reported on the study-shaped
# CIFAR-10 draws of benchmarks/detect_tasks.py (candidate arnet-head-net)
COLOUR_MODEL = {"head_net": True, "latent_dim": 64}


def auto_model(data: Any, images: torch.Tensor) -> tuple[str, str]:
    """The model ``model_name="auto"`` trains on ``data`` and why: arnet with its rotation head network on square
    colour images, else an ssvae on a partly labelled set (two or more known classes), else a vae."""
    if not data.is_vector and images.dim() == 4 and images.shape[1] == 3 and images.shape[2] == images.shape[3]:
        return "arnet", "square colour images: attribute restoration with a rotation head network, score transform_nll"
    known = data.labelled().labels if data.has_unknown_labels else None
    if known is not None and len(torch.unique(known)) >= 2:
        return "ssvae", "some labels known, the others -1"
    return "vae", "no partly labelled training set"


def train_member(det: Any, X: Any, images: torch.Tensor, member: int = 0, held_out: Any = None) -> tuple[Autoencoder, Any]:
    """Train member ``member`` of ``det``'s models on X with vaelab's trainer (its settings: model_name,
    epochs, overrides, train_dir, seed + member), ``held_out`` its validation set; the model and its
    standardiser of vectors (None for images)."""
    from ..config import deep_merge
    from ..train import RunConfig, fit

    data = as_imageset(X, images)
    if held_out is not None:
        held_out = as_imageset(held_out, as_images(held_out))
    base = {"seed": det.seed + member, "data": {"name": data.name if data.name in SOURCES else "npz"},
            "train": {"epochs": det.epochs, "progress_bar": False}}
    name = det.model_name
    if name == "auto":
        name, why = auto_model(data, images)
        if member == 0:
            log.info("model_name=auto: training %s (%s)", name, why)
        if name == "arnet":
            base = deep_merge(base, {"model": dict(COLOUR_MODEL)})
    det.model_name_ = name
    cfg = RunConfig.build(name, deep_merge(base, det.overrides or {}))
    if held_out is None:
        train, val = data.split(cfg.data.val_fraction, cfg.seed)
    else:  # the calibration part: never fitted, it is the trainer's validation set
        train, val = data, held_out
    std = None
    if data.is_vector:
        from ..data import _standardized, fit_standardizer

        fit_standardizer(train, cfg.data)
        std = standardizer(cfg.data.center, cfg.data.scale)
        train, val = _standardized(train, cfg.data), _standardized(val, cfg.data)
    if len(train) == 0:
        raise DataError(f"fit got {len(data)} images: too few to train a model; give more, or a trained model")
    splits = (train, val, val if len(val) else train)
    if det.n_models > 1:
        log.info("training model %d of %d of the ensemble (seed %d)", member + 1, det.n_models, cfg.seed)
    if det.train_dir is not None:
        model, _ = fit(cfg, Path(det.train_dir) / f"model-{member}" if det.n_models > 1 else det.train_dir, data=splits)
    else:
        with tempfile.TemporaryDirectory(prefix="vaelab-detector-") as tmp:
            model, _ = fit(cfg, Path(tmp) / "run", data=splits)
    return model.eval(), std


def given_member(given: Any) -> tuple[Autoencoder, Any]:
    """One given model (an Autoencoder or a run directory) and the standardiser of its vectors."""
    if isinstance(given, (str, Path)):
        model = load_run(given)
        if model.is_vector:  # a run's vectors are standardised as its training data were
            from ..train import RunConfig

            d = RunConfig.load(Path(given) / "config.yaml").data
            if d.center is not None:
                return model, standardizer(d.center, d.scale)
        return model, None
    if isinstance(given, Autoencoder):
        return given.eval(), None
    raise ConfigError(f"model must be None, an Autoencoder, a run directory or a list of them; got {type(given).__name__}")


def detector_members(det: Any, X: Any, images: torch.Tensor, held_out: Any = None) -> list[tuple[Autoencoder, Any]]:
    """The (model, standardiser) of every member of ``det``: trained on X when ``det.model`` is None, else as given."""
    if det.model is None:
        return [train_member(det, X, images, i, held_out) for i in range(det.n_models)]
    given = list(det.model) if isinstance(det.model, (list, tuple)) else [det.model]
    if not given:
        raise ConfigError("model is an empty list; give one or more Autoencoders or run directories, or None to train one")
    members = [given_member(g) for g in given]
    shapes = {(m.is_vector, tuple(m.image_shape)) for m, _ in members}
    if len(shapes) > 1:
        raise ConfigError(f"the ensemble's models take different inputs ({sorted(shapes)}); ensemble models trained "
                          "on the same kind of data")
    return members
