"""Weights in safetensors with the model's name and config in the header; no pickle."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .._version import __version__
from ..errors import CheckpointError
from ..fileio import atomic_path
from .base import Autoencoder


def save_weights(model: Autoencoder, path: str | Path, checkpoint: dict[str, int] | None = None) -> None:
    """``checkpoint``: the state of the run's resumable checkpoint these weights are (its epochs and
    steps), recorded so that weights older than the checkpoint are recognised."""
    from ..config import to_dict

    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    meta = {"vaelab_version": __version__, "model": model.config.name, "config": json.dumps(to_dict(model.config))}
    if checkpoint is not None:
        meta["checkpoint"] = json.dumps(checkpoint, sort_keys=True)
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=meta)


def read_metadata(path: str | Path) -> dict[str, str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None


def describe_mismatch(own: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> str | None:
    """What differs between two state dicts (missing / unexpected keys, shapes), or None if they fit."""
    missing = sorted(set(own) - set(theirs))
    extra = sorted(set(theirs) - set(own))
    wrong = sorted(k for k in set(own) & set(theirs)
                   if not isinstance(theirs[k], torch.Tensor) or own[k].shape != theirs[k].shape)
    if not (missing or extra or wrong):
        return None
    parts = []
    if missing:
        parts.append(f"missing {missing[:5]}")
    if extra:
        parts.append(f"unexpected {extra[:5]}")
    if wrong:
        parts.append("shape mismatch " + ", ".join(
            f"{k}: file {tuple(getattr(theirs[k], 'shape', ()))} vs model {tuple(own[k].shape)}" for k in wrong[:5]))
    return "; ".join(parts)


def load_weights(model: Autoencoder, path: str | Path) -> Autoencoder:
    """Load ``path`` into ``model``; refuse another model's weights, another major vaelab version or
    mismatched shapes, saying what differs. Nothing is unpickled: safetensors holds raw tensors."""
    from ..config import check_version

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} not found")
    meta = read_metadata(path)
    if meta.get("model") and meta["model"] != model.config.name:
        raise CheckpointError(f"{path} holds weights of a {meta['model']!r} model, not {model.config.name!r}; "
                              "load it with the config it was trained with")
    if meta.get("vaelab_version"):
        check_version(meta["vaelab_version"], str(path))
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: corrupt weights file ({e}); retrain, or resume from checkpoints/last.ckpt") from None
    problem = describe_mismatch(model.state_dict(), state)
    if problem:
        raise CheckpointError(f"{path} does not fit this {model.config.name} model ({problem}); "
                              f"it was written by vaelab {meta.get('vaelab_version', '?')} for another configuration")
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{path} holds NaN or infinite weights ({', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''}); "
                              "the file is damaged or the training diverged. Resume from checkpoints/last.ckpt, or retrain "
                              "(train.grad_clip, a smaller train.lr)")
    model.load_state_dict(state)
    return model
