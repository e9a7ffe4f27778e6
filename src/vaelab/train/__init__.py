"""Training: the Lightning adapter, schedules, callbacks, run directories."""
from .config import RunConfig, TrainConfig
from .lit import EpochBatchSampler, LitAutoencoder, kl_warmup, make_loader
from .run import CHECKPOINT, fit, load_run_model

__all__ = ["CHECKPOINT", "EpochBatchSampler", "LitAutoencoder", "RunConfig", "TrainConfig", "fit", "load_run_model", "kl_warmup", "make_loader"]
