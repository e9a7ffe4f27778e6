"""Training: the Lightning adapter, schedules, callbacks, run directories.

``fit``, ``LitAutoencoder`` and ``kl_warmup`` import Lightning, which takes seconds: they load on
first use, so that the commands that only read a run (evaluate, sample, detect, ...) start fast."""
from typing import Any

from .config import RunConfig, TrainConfig
from .batches import EpochBatchSampler, make_loader
from .rundir import CHECKPOINT, load_run

__all__ = ["CHECKPOINT", "EpochBatchSampler", "LitAutoencoder", "RunConfig", "TrainConfig", "fit", "load_run", "kl_warmup", "make_loader"]


def __getattr__(name: str) -> Any:
    if name in ("LitAutoencoder", "kl_warmup"):
        from . import lit

        return getattr(lit, name)
    if name == "fit":
        from .run import fit

        return fit
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
