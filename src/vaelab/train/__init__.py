"""Training: the Lightning adapter, schedules, callbacks, run directories."""
from .config import RunConfig, TrainConfig
from .batches import EpochBatchSampler, make_loader
from .lit import LitAutoencoder, kl_warmup
from .run import fit
from .rundir import CHECKPOINT, load_run

__all__ = ["CHECKPOINT", "EpochBatchSampler", "LitAutoencoder", "RunConfig", "TrainConfig", "fit", "load_run", "kl_warmup", "make_loader"]
