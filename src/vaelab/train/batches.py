"""The in-memory data plumbing of training: datasets that index a whole batch at once, the seeded
batch order that a resumed run replays, and the loader Lightning checkpoints."""
from __future__ import annotations

from typing import Any, Iterator

import torch
import torch.distributed
from torch.utils.data import DataLoader, Dataset, Sampler

from ..data.imageset import to_unit_float
from ..errors import TrainingError


class InMemoryImages(Dataset):
    """Indexed by a whole batch of indices at once: x[idx] -> float in [0, 1]. No per-sample Python.
    With ``labels`` (int64, -1 where unknown) a batch is the pair (x[idx], labels[idx]).

    ``to(device)`` moves the uint8 images (and labels) once; batches are then formed on that device:
    the index tensor goes there and the uint8 -> float conversion happens there, so a GPU run copies
    a few hundred bytes of indices per step instead of a float batch."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None = None):
        if labels is not None and labels.shape != images.shape[:1]:
            raise TrainingError(f"{len(images)} images but labels of shape {tuple(labels.shape)}; give one label per image (-1: unknown)")
        self.images, self.labels = images, labels

    @property
    def device(self) -> torch.device:
        return self.images.device

    def to(self, device: torch.device | str) -> "InMemoryImages":
        self.images = self.images.to(device)
        if self.labels is not None:
            self.labels = self.labels.to(device)
        return self

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, idx: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        idx = idx.to(self.images.device, non_blocking=True)
        x = to_unit_float(self.images[idx])
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
    (unknown): what a semi-supervised model is shown. None: every label is visible. Labels that are
    already unknown (-1) stay so, and the ``n_visible`` are drawn among the known ones (the same draw
    as before when every label is known)."""
    known = (labels >= 0).nonzero().squeeze(1)
    keep = known[labelled_indices(len(known), n_visible, seed)]
    out = torch.full_like(labels, -1)
    out[keep] = labels[keep]
    return out


class EpochBatchSampler(Sampler):
    """Yields index tensors, one per optimisation step. The order depends only on (seed, epoch), so
    a resumed run sees the same batches.

    ``batch_size`` is the global batch whatever the number of processes: under DDP each process
    takes every ``world_size``-th index of the same global batch (rank r: positions r, r + W, ...),
    so the processes see disjoint parts of exactly the batches one process would see, and DDP's
    averaged gradient is the single-process gradient. ``rank`` / ``world_size`` left as None are
    those of torch.distributed's default group once it is initialised (Lightning's DDP does that
    in every process before it asks for batches), else a single process. With several processes a
    last partial batch with fewer images than processes is dropped.

    Resumable mid-epoch: ``batches_done`` counts the batches handed out in the current epoch, and
    ``resume(epoch, batches_done)`` makes the next pass over that epoch skip them."""

    def __init__(self, n: int, batch_size: int, seed: int, shuffle: bool = True, drop_last: bool = False,
                 rank: int | None = None, world_size: int | None = None):
        self.n, self.batch_size, self.seed, self.shuffle, self.drop_last = n, batch_size, seed, shuffle, drop_last
        self.rank, self.world_size, self.epoch = rank, world_size, 0
        self.batches_done = 0
        self._resume_at: tuple[int, int] | None = None

    def shard(self) -> tuple[int, int]:
        """(rank, world size) of this process."""
        rank, world = self.rank, self.world_size
        if rank is None or world is None:
            dist = torch.distributed
            on = dist.is_available() and dist.is_initialized()
            rank = rank if rank is not None else (dist.get_rank() if on else 0)
            world = world if world is not None else (dist.get_world_size() if on else 1)
        if self.shuffle and self.batch_size % world:  # a training loader: every process gets an equal share
            raise TrainingError(
                f"train.batch_size={self.batch_size} is the global batch and must be divisible by the number of "
                f"processes ({world} = train.devices x train.num_nodes); use e.g. train.batch_size={self.batch_size // world * world or world}"
            )
        return rank, world

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
            return torch.randperm(self.n, generator=g)
        return torch.arange(self.n)

    def __len__(self) -> int:
        _, world = self.shard()
        full, rest = divmod(self.n, self.batch_size)
        return full + (0 if self.drop_last or rest < world else 1)

    def __iter__(self) -> Iterator[torch.Tensor]:
        start = 0
        if self._resume_at is not None:
            epoch, done = self._resume_at
            self._resume_at = None
            if epoch == self.epoch:
                start = done
        rank, world = self.shard()
        idx, b = self._indices(), self.batch_size
        self.batches_done = start
        for i in range(start, len(self)):
            self.batches_done = i + 1
            yield idx[i * b : (i + 1) * b][rank::world]


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


def make_loader(images: torch.Tensor, batch_size: int, seed: int, shuffle: bool, rank: int | None = None,
                world_size: int | None = None, labels: torch.Tensor | None = None) -> DataLoader:
    """Batches of images, or of (images, labels) when ``labels`` is given (-1: unknown). ``batch_size``
    is the global batch; see :class:`EpochBatchSampler` for how processes share it."""
    sampler = EpochBatchSampler(len(images), batch_size, seed, shuffle, rank=rank, world_size=world_size)
    # its own generator: otherwise every iter() of a DataLoader draws a worker seed from torch's global
    # generator, and a run resumed mid-epoch (one extra iter()) would see other reparameterisation noise
    return ResumableLoader(InMemoryImages(images, labels), sampler=sampler, batch_size=None, num_workers=0,
                           generator=torch.Generator().manual_seed(seed))
