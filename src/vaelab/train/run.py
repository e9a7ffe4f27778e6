"""Training a model of the contract into a run directory: Lightning does the loop."""
from __future__ import annotations

import fcntl
import logging
import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import lightning.pytorch as pl
import torch

from ..data import ImageSet, load_data
from ..errors import TrainingError
from ..models import Autoencoder, build
from ..models.persist import save_weights
from .config import RunConfig
from .lit import LitAutoencoder, make_loader

CHECKPOINT = "checkpoints/last.ckpt"


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """One process per run directory: a second one is refused instead of interleaving."""
    run_dir.mkdir(parents=True, exist_ok=True)
    fh = open(run_dir / ".lock", "w")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise TrainingError(f"{run_dir} is in use by another vaelab process; wait for it or choose another --out") from None
    try:
        yield
    finally:
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


class AtomicCheckpoint(pl.Callback):
    """After every epoch: the resumable checkpoint and the weights, each replaced atomically."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir

    def on_train_epoch_end(self, trainer: pl.Trainer, lit: pl.LightningModule) -> None:
        if trainer.global_rank != 0 and trainer.world_size > 1:
            trainer.strategy.barrier()
            return
        final = self.run_dir / CHECKPOINT
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(".last.ckpt.tmp")
        trainer.save_checkpoint(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        save_weights(lit.model, self.run_dir / "model.safetensors")
        if trainer.world_size > 1:
            trainer.strategy.barrier()


def _quiet_lightning() -> None:
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*GPU available but not used.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*")


def fit(cfg: RunConfig, run_dir: str | Path, resume: bool = False,
        data: tuple[ImageSet, ImageSet, ImageSet] | None = None) -> tuple[Autoencoder, tuple[ImageSet, ImageSet, ImageSet]]:
    """Train ``cfg`` into ``run_dir``; with ``resume`` continue from its last checkpoint.

    Returns the trained model and the (train, val, test) data it used."""
    _quiet_lightning()
    run_dir = Path(run_dir)
    ckpt = run_dir / CHECKPOINT
    if resume and not ckpt.is_file():
        raise TrainingError(f"{run_dir} has no checkpoint to resume from ({ckpt} is missing)")
    if not resume and (run_dir / "config.yaml").exists():
        raise TrainingError(f"{run_dir} already holds a run; resume it with --resume, or choose another --out")
    with run_lock(run_dir):
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
        train, val, test = data if data is not None else load_data(cfg.data, cfg.seed)
        model = build(cfg.model, train.shape, n_train=len(train))
        cfg.save(run_dir / "config.yaml")
        t = cfg.train
        loader = make_loader(train.images, t.batch_size, cfg.seed, shuffle=True)
        val_loader = make_loader(val.images, t.eval_batch_size, cfg.seed, shuffle=False) if len(val) else None
        lit = LitAutoencoder(model, t, steps_per_epoch=len(loader))
        loggers = [pl.loggers.CSVLogger(run_dir, name="logs", version=""),
                   pl.loggers.TensorBoardLogger(run_dir, name="logs", version="tensorboard", default_hp_metric=False)]
        trainer = pl.Trainer(
            max_epochs=t.epochs, accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes, strategy=t.strategy,
            logger=loggers, callbacks=[AtomicCheckpoint(run_dir)], enable_checkpointing=False,
            log_every_n_steps=1, enable_progress_bar=t.progress_bar, enable_model_summary=False,
            gradient_clip_val=t.grad_clip, deterministic=True, use_distributed_sampler=False,
            num_sanity_val_steps=0, limit_val_batches=1.0 if val_loader is not None else 0,
        )
        trainer.fit(lit, loader, val_loader, ckpt_path=str(ckpt) if resume else None, weights_only=True)
        if lit.skipped_steps:
            warnings.warn(f"{lit.skipped_steps} steps with a non-finite loss were skipped")
        save_weights(model, run_dir / "model.safetensors")
        model.eval()
        return model, (train, val, test)
