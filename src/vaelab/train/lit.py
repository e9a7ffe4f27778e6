"""The one Lightning adapter that trains any model of the contract, and its data plumbing."""
from __future__ import annotations

import inspect
import math
from typing import Any, Iterator

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .. import __version__
from ..errors import TrainingError
from ..models import Autoencoder
from .config import TrainConfig


class InMemoryImages(Dataset):
    """Indexed by a whole batch of indices at once: x[idx] -> float in [0, 1]. No per-sample Python.
    With ``labels`` (int64, -1 where unknown) a batch is the pair (x[idx], labels[idx])."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None = None):
        if labels is not None and labels.shape != images.shape[:1]:
            raise TrainingError(f"{len(images)} images but labels of shape {tuple(labels.shape)}; give one label per image (-1: unknown)")
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, idx: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        x = self.images[idx].float().div_(255.0)
        return x if self.labels is None else (x, self.labels[idx])


def labelled_indices(n_images: int, n_labels: int | None, seed: int) -> torch.Tensor:
    """The sorted indices of the ``n_labels`` images whose labels a few-label run may use (all when
    None or >= n_images), a seeded random subset. Drawn by sorting uniform keys rather than with
    ``randperm``, so that it is independent of the batch order, which is a randperm of the same
    seed in the first epoch of seed 0 (EpochBatchSampler): otherwise those batches would hold
    every labelled image first."""
    if n_labels is None or n_labels >= n_images:
        return torch.arange(n_images)
    if n_labels < 1:
        raise TrainingError(f"the number of labelled images must be >= 1, got {n_labels}")
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n_images, generator=g).argsort()[:n_labels].sort().values


def visible_labels(labels: torch.Tensor, n_visible: int | None, seed: int) -> torch.Tensor:
    """``labels`` with all but the ``labelled_indices(len(labels), n_visible, seed)`` replaced by -1
    (unknown): what a semi-supervised model is shown. None: every label is visible."""
    keep = labelled_indices(len(labels), n_visible, seed)
    out = torch.full_like(labels, -1)
    out[keep] = labels[keep]
    return out


def loss_takes_labels(model: Autoencoder) -> bool:
    """Whether ``model.loss`` accepts ``labels=`` (semi-supervised models); the others never see labels."""
    return "labels" in inspect.signature(model.loss).parameters


class EpochBatchSampler(Sampler):
    """Yields index tensors. The order depends only on (seed, epoch), so a resumed run sees the
    same batches; with several processes each takes its own shard of the same permutation.

    Resumable mid-epoch: ``batches_done`` counts the batches handed out in the current epoch, and
    ``resume(epoch, batches_done)`` makes the next pass over that epoch skip them."""

    def __init__(self, n: int, batch_size: int, seed: int, shuffle: bool = True, drop_last: bool = False,
                 rank: int = 0, world_size: int = 1):
        self.n, self.batch_size, self.seed, self.shuffle, self.drop_last = n, batch_size, seed, shuffle, drop_last
        self.rank, self.world_size, self.epoch = rank, world_size, 0
        self.batches_done = 0
        self._resume_at: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume(self, epoch: int, batches_done: int) -> None:
        """The next pass over ``epoch`` starts after its first ``batches_done`` batches."""
        if not 0 <= batches_done <= len(self):
            raise TrainingError(
                f"the checkpoint says {batches_done} batches of epoch {epoch} were done, but an epoch has {len(self)}; "
                "the data or train.batch_size changed since it was written. Resume with the original data and config"
            )
        self._resume_at = (epoch, batches_done)

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
        start = 0
        if self._resume_at is not None:
            epoch, done = self._resume_at
            self._resume_at = None
            if epoch == self.epoch:
                start = done
        idx = self._indices()
        self.batches_done = start
        for i in range(start, len(self)):
            self.batches_done = i + 1
            yield idx[i * self.batch_size : (i + 1) * self.batch_size]


class ResumableLoader(DataLoader):
    """A DataLoader over an :class:`EpochBatchSampler` that Lightning can checkpoint and restore.

    Lightning saves ``state_dict()`` of every train loader that has one into the checkpoint
    (``loops.fit_loop.state_dict.combined_loader``) and calls ``load_state_dict`` when it resumes
    mid-epoch; it does not skip batches itself. The state is two integers, so the checkpoint
    stays loadable with ``torch.load(weights_only=True)``. With ``num_workers=0`` and no
    prefetching (the loader has a length) ``batches_done`` is exactly the number of batches
    the training loop has taken when a checkpoint is written from ``on_train_batch_end``."""

    sampler: EpochBatchSampler

    def state_dict(self) -> dict[str, int]:
        return {"epoch": int(self.sampler.epoch), "batches_done": int(self.sampler.batches_done)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.resume(int(state["epoch"]), int(state["batches_done"]))


def make_loader(images: torch.Tensor, batch_size: int, seed: int, shuffle: bool, rank: int = 0, world_size: int = 1,
                labels: torch.Tensor | None = None) -> DataLoader:
    """Batches of images, or of (images, labels) when ``labels`` is given (-1: unknown)."""
    sampler = EpochBatchSampler(len(images), batch_size, seed, shuffle, rank=rank, world_size=world_size)
    # its own generator: otherwise every iter() of a DataLoader draws a worker seed from torch's global
    # generator, and a run resumed mid-epoch (one extra iter()) would see other reparameterisation noise
    return ResumableLoader(InMemoryImages(images, labels), sampler=sampler, batch_size=None, num_workers=0,
                           generator=torch.Generator().manual_seed(seed))


def kl_warmup(step: int, warmup_steps: int) -> float:
    """Linear KL warm-up per optimisation step: 0 at step 0, 1 from ``warmup_steps`` on."""
    return 1.0 if warmup_steps <= 0 else min(1.0, step / warmup_steps)


class LitAutoencoder(pl.LightningModule):
    def __init__(self, model: Autoencoder, cfg: TrainConfig, steps_per_epoch: int):
        super().__init__()
        self.model, self.cfg, self.steps_per_epoch = model, cfg, steps_per_epoch
        self.skipped_steps = 0
        self.takes_labels = loss_takes_labels(model)

    def _loss(self, batch: torch.Tensor | tuple[torch.Tensor, torch.Tensor], **kw: Any) -> Any:
        """model.loss of an image batch, or of an (images, labels) batch: the labels go only to a
        model whose loss takes ``labels``."""
        if isinstance(batch, (tuple, list)):
            x, y = batch
            if self.takes_labels:
                kw["labels"] = y
        else:
            x = batch
        return self.model.loss(x, **kw)

    def forward(self, x: torch.Tensor) -> Any:
        return self.model.loss(x)

    def _log_terms(self, prefix: str, out: Any, on_step: bool) -> None:
        n = out.terms[next(iter(out.terms))].shape[0]
        self.log(f"{prefix}/loss", out.loss.detach(), on_step=on_step, on_epoch=not on_step, prog_bar=True, batch_size=n)
        for k, v in out.terms.items():
            self.log(f"{prefix}/{k}", v.detach().mean(), on_step=on_step, on_epoch=not on_step, batch_size=n)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor | None:
        w = kl_warmup(self.global_step, self.cfg.kl_warmup_steps)
        out = self._loss(batch, kl_weight=w)
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
        self._log_terms("val", self._loss(batch), on_step=False)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # the reparameterisation noise comes from torch's generator: resuming must continue its stream
        checkpoint["vaelab_rng"] = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            checkpoint["vaelab_rng"]["cuda"] = torch.cuda.get_rng_state_all()
        checkpoint["vaelab_skipped_steps"] = int(self.skipped_steps)
        checkpoint["vaelab"] = {"model": self.model.config.name, "vaelab_version": __version__}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        rng = checkpoint.get("vaelab_rng")
        if rng:
            torch.set_rng_state(rng["cpu"])
            if "cuda" in rng and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(rng["cuda"])
        self.skipped_steps = int(checkpoint.get("vaelab_skipped_steps", 0))

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
