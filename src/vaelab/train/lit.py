"""The one Lightning adapter that trains any model of the contract, and its data plumbing."""
from __future__ import annotations

import math
from typing import Any, Iterator

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import TrainingError
from ..models import Autoencoder
from .config import TrainConfig


class InMemoryImages(Dataset):
    """Indexed by a whole batch of indices at once: x[idx] -> float in [0, 1]. No per-sample Python."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, idx: torch.Tensor) -> torch.Tensor:
        return self.images[idx].float().div_(255.0)


class EpochBatchSampler(Sampler):
    """Yields index tensors. The order depends only on (seed, epoch), so a resumed run sees the
    same batches; with several processes each takes its own shard of the same permutation."""

    def __init__(self, n: int, batch_size: int, seed: int, shuffle: bool = True, drop_last: bool = False,
                 rank: int = 0, world_size: int = 1):
        self.n, self.batch_size, self.seed, self.shuffle, self.drop_last = n, batch_size, seed, shuffle, drop_last
        self.rank, self.world_size, self.epoch = rank, world_size, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> torch.Tensor:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            idx = torch.randperm(self.n, generator=g)
        else:
            idx = torch.arange(self.n)
        per_rank = self.n // self.world_size
        return idx[self.rank :: self.world_size][:per_rank]

    def __len__(self) -> int:
        m = self.n // self.world_size
        return m // self.batch_size if self.drop_last else math.ceil(m / self.batch_size)

    def __iter__(self) -> Iterator[torch.Tensor]:
        idx = self._indices()
        for i in range(len(self)):
            yield idx[i * self.batch_size : (i + 1) * self.batch_size]


def make_loader(images: torch.Tensor, batch_size: int, seed: int, shuffle: bool, rank: int = 0, world_size: int = 1) -> DataLoader:
    sampler = EpochBatchSampler(len(images), batch_size, seed, shuffle, rank=rank, world_size=world_size)
    return DataLoader(InMemoryImages(images), sampler=sampler, batch_size=None, num_workers=0)


def kl_warmup(step: int, warmup_steps: int) -> float:
    """Linear KL warm-up per optimisation step: 0 at step 0, 1 from ``warmup_steps`` on."""
    return 1.0 if warmup_steps <= 0 else min(1.0, step / warmup_steps)


class LitAutoencoder(pl.LightningModule):
    def __init__(self, model: Autoencoder, cfg: TrainConfig, steps_per_epoch: int):
        super().__init__()
        self.model, self.cfg, self.steps_per_epoch = model, cfg, steps_per_epoch
        self.skipped_steps = 0

    def forward(self, x: torch.Tensor) -> Any:
        return self.model.loss(x)

    def _log_terms(self, prefix: str, out: Any, on_step: bool) -> None:
        n = out.terms[next(iter(out.terms))].shape[0]
        self.log(f"{prefix}/loss", out.loss.detach(), on_step=on_step, on_epoch=not on_step, prog_bar=True, batch_size=n)
        for k, v in out.terms.items():
            self.log(f"{prefix}/{k}", v.detach().mean(), on_step=on_step, on_epoch=not on_step, batch_size=n)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor | None:
        w = kl_warmup(self.global_step, self.cfg.kl_warmup_steps)
        out = self.model.loss(batch, kl_weight=w)
        if not torch.isfinite(out.loss):
            if self.cfg.nan_policy == "skip":
                self.skipped_steps += 1
                return None
            raise TrainingError(
                f"the loss became {float(out.loss)} at epoch {self.current_epoch}, step {self.global_step}; "
                "training stopped and the last good checkpoint is kept. Try a lower train.lr, "
                "train.grad_clip=1.0, or train.nan_policy=skip"
            )
        self._log_terms("train", out, on_step=True)
        if self.cfg.kl_warmup_steps:
            self.log("train/kl_weight", w, on_step=True, on_epoch=False)
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=True, on_epoch=False)
        return out.loss

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self._log_terms("val", self.model.loss(batch), on_step=False)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # the reparameterisation noise comes from torch's generator: resuming must continue its stream
        checkpoint["vaelab_rng"] = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            checkpoint["vaelab_rng"]["cuda"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        rng = checkpoint.get("vaelab_rng")
        if rng:
            torch.set_rng_state(rng["cpu"])
            if "cuda" in rng and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(rng["cuda"])

    def configure_optimizers(self) -> Any:
        c = self.cfg
        opt_cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[c.optimizer]
        opt = opt_cls(self.model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        total = c.epochs * self.steps_per_epoch
        if c.schedule == "constant":
            return opt
        if c.schedule == "step":
            ms = [m * self.steps_per_epoch for m in c.step_milestones]
            sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=ms, gamma=c.step_gamma)
        else:
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=c.lr, total_steps=max(total, 1))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
