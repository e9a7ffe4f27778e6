"""Training a model of the contract into a run directory: Lightning does the loop."""
from __future__ import annotations

import logging
import pickle
import signal
import sys
import time
import warnings
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Iterator

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ProgressBar as ProgressBarBase
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from ..config import check_version
from ..data import ImageSet, absolute_data_path, load_data
from ..errors import CheckpointError, ConfigError, DataError, Interrupted, TrainingError
from ..fileio import atomic_path
from ..models import Autoencoder, build
from ..models.persist import describe_mismatch, save_weights
from ..progress import is_quiet
from .callbacks import model_callbacks
from .config import RunConfig, TrainConfig
from .batches import make_loader, visible_labels
from .lit import LitAutoencoder
from .speed import cpu_has_bf16
from .trackers import check_packages, make_loggers, start_trackers
from .rundir import CHECKPOINT, _stash_metrics, check_new_run_dir, checkpoint_stamp, epochs_done, mark_run, merge_metrics, run_lock

log = logging.getLogger("vaelab")




class AtomicCheckpoint(pl.Callback):
    """The resumable checkpoint, replaced atomically: after every epoch (with the weights,
    model.safetensors) and, with ``every_n_steps``, every that many optimisation steps inside an
    epoch. Killed at any moment, the run directory holds the previous complete checkpoint. The
    per-step log rows are written before each checkpoint (LitAutoencoder.on_save_checkpoint)."""

    def __init__(self, run_dir: Path, every_n_steps: int | None = None):
        self.run_dir, self.every_n_steps = run_dir, every_n_steps
        self._last_step_saved = -1

    def _save_checkpoint(self, trainer: pl.Trainer) -> None:
        final = self.run_dir / CHECKPOINT
        if trainer.is_global_zero:
            with atomic_path(final) as tmp:
                trainer.save_checkpoint(tmp)
        else:  # every rank takes part (save_checkpoint has a barrier); only rank 0 writes
            trainer.save_checkpoint(final)
        self._last_step_saved = getattr(trainer.lightning_module, "train_step", trainer.global_step)

    def on_train_batch_end(self, trainer: pl.Trainer, lit: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        # training batches, not optimizer steps (an adversarial model takes two per batch)
        n, step = self.every_n_steps, getattr(lit, "train_step", trainer.global_step)
        if not n or step == 0 or step % n or step == self._last_step_saved:
            return
        if batch_idx + 1 >= trainer.num_training_batches:
            return  # the last batch of the epoch: the end-of-epoch checkpoint follows at once
        # Lightning saves mid-epoch state here by design: optimizer and scheduler have stepped, the
        # loop counters say "batch done"; the loader's state says how many batches were taken
        self._save_checkpoint(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, lit: pl.LightningModule) -> None:
        self._save_checkpoint(trainer)
        if trainer.is_global_zero:
            save_weights(lit.model, self.run_dir / "model.safetensors")
        if trainer.world_size > 1:
            trainer.strategy.barrier()


class ProgressBar(TQDMProgressBar):
    """Lightning's progress bar, showing the training loss that LitAutoencoder logs itself (and not
    Lightning's logger version, v_num, which says nothing about a vaelab run)."""

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        metrics.update({k: f"{v:.4g}" for k, v in getattr(pl_module, "progress_metrics", {}).items()})
        return metrics


class PlainProgress(ProgressBarBase):
    """The progress of a run whose output is not a terminal (a log file, CI): one line per epoch, with
    no carriage returns, instead of a bar redrawn hundreds of times."""

    def __init__(self) -> None:
        super().__init__()
        self._enabled, self._t0 = True, 0.0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not (self._enabled and trainer.is_global_zero):
            return
        shown = ", ".join(f"{k} {v:.4g}" for k, v in getattr(pl_module, "progress_metrics", {}).items())
        log.info("epoch %d/%d: %d steps in %.1f s%s", trainer.current_epoch + 1, trainer.max_epochs,
                 trainer.num_training_batches, time.perf_counter() - self._t0, f", {shown}" if shown else "")


def progress_callback() -> pl.Callback:
    """Lightning's bar when stdout (where it draws) is a terminal, one log line per epoch otherwise (a file, a pipe)."""
    return ProgressBar() if sys.stdout.isatty() else PlainProgress()


def check_checkpoint(ckpt: Path, lit: LitAutoencoder) -> None:
    """Refuse to resume from a checkpoint that is not plain data or belongs to another model,
    saying what differs, before Lightning restores anything."""
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{ckpt} holds pickled Python objects, which vaelab never writes and will not load "
            f"({str(e).splitlines()[0][:200]}); it was not written by vaelab. Train a new run instead"
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError) as e:
        raise CheckpointError(f"{ckpt} is not a readable checkpoint ({str(e).splitlines()[0][:200]}); "
                              "it is truncated or damaged. Train a new run, or restore the file") from None
    if not isinstance(state, dict) or not isinstance(state.get("state_dict"), dict):
        raise CheckpointError(f"{ckpt} is not a vaelab training checkpoint (no state_dict); train a new run instead")
    info = state.get("vaelab") if isinstance(state.get("vaelab"), dict) else {}
    name = lit.model.config.name
    if info.get("model") not in (None, name):
        raise CheckpointError(f"{ckpt} is the checkpoint of a {info['model']!r} model, but this run trains {name!r}; "
                              "resume with the config.yaml that belongs to it")
    if info.get("vaelab_version"):
        check_version(str(info["vaelab_version"]), str(ckpt))
    problem = describe_mismatch(lit.state_dict(), state["state_dict"])
    if problem:
        raise CheckpointError(f"{ckpt} does not fit the {name} model of this config ({problem}); "
                              "config.yaml or the data changed since it was written. Resume with the original ones")








def _check_data(train: ImageSet, val: ImageSet, test: ImageSet, cfg: RunConfig) -> None:
    if len(train) == 0:
        raise DataError(f"{cfg.data.name}: no training images are left after data.classes / data.limit / "
                        "data.val_fraction; select more data")
    shapes = {"train": train.shape, "val": val.shape, "test": test.shape}
    if len(set(shapes.values())) > 1:
        raise DataError(f"the splits have different image shapes {shapes}; make them equal with data.size "
                        "and data.channels")


def _quiet_lightning() -> None:
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # a resumed run keeps its earlier log rows aside (_stash_metrics) and merges them back: nothing is lost
    warnings.filterwarnings("ignore", ".*Previous log files in this directory will be deleted.*")
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*GPU available but not used.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*")
    warnings.filterwarnings("ignore", ".*defined a `validation_step` but have no `val_dataloader`.*")


def make_trainer(t: TrainConfig, run_dir: Path, callbacks: list[pl.Callback], has_val: bool,
                 manual: bool = False) -> pl.Trainer:
    """The Trainer of a run: Lightning's loop, devices, precision and DDP, vaelab's checkpoints.
    Its loggers (train.loggers) are given to it by ``fit`` once the run directory is checked.
    ``manual``: the model steps its own optimizers (an adversarial model), which clip themselves."""
    callbacks = [AtomicCheckpoint(run_dir, t.checkpoint_every_n_steps), *callbacks]
    bar = t.progress_bar and not is_quiet()  # vaelab --quiet silences the bar with every other progress line
    if bar:
        callbacks.append(progress_callback())
    try:
        with warnings.catch_warnings():  # Lightning would quietly turn 16-mixed into bf16-mixed on a CPU
            warnings.filterwarnings("ignore", ".*AMP with fp16 is not supported on CPU.*")
            trainer = pl.Trainer(
                max_epochs=t.epochs, accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes, strategy=t.strategy,
                precision=t.precision, logger=False, callbacks=callbacks, enable_checkpointing=False,
                log_every_n_steps=1, enable_progress_bar=bar, enable_model_summary=False,
                gradient_clip_val=None if manual else t.grad_clip, deterministic=True, use_distributed_sampler=False,
                num_sanity_val_steps=0, limit_val_batches=1.0 if has_val else 0,
            )
    except MisconfigurationException as e:  # e.g. devices=4 on a machine with 2 GPUs
        raise ConfigError(f"Lightning refused the train settings: {e}") from None
    if trainer.strategy.root_device.type == "cpu":
        if t.precision == "16-mixed":
            raise ConfigError("train.precision=16-mixed (fp16 autocast) needs a GPU; on the CPU use 32, or bf16-mixed "
                              "where the CPU has bf16 units (avx512_bf16 or AMX)")
        if t.precision == "bf16-mixed" and not cpu_has_bf16():
            warnings.warn("train.precision=bf16-mixed on a CPU without bf16 units (no avx512_bf16 / AMX): bf16 arithmetic is "
                          "emulated and much slower than fp32 here (benchmarks/throughput.py measures it); use 32")
    return trainer




@contextmanager
def _no_distribution_checks() -> Iterator[None]:
    """torch.distributions validates arguments by default: a host sync per distribution on a GPU.
    The training loop checks the loss itself (nan_policy), so the checks are off while it runs."""
    before = torch.distributions.Distribution._validate_args
    torch.distributions.Distribution.set_default_validate_args(False)
    try:
        yield
    finally:
        torch.distributions.Distribution.set_default_validate_args(before)






def _interrupted_message(run_dir: Path) -> str:
    done = None
    try:
        done = epochs_done(run_dir)
    except CheckpointError:
        pass
    if done is None:
        return (f"interrupted before the first checkpoint of {run_dir}; `vaelab train --resume {run_dir}` starts it "
                "again from the beginning")
    return (f"interrupted; {run_dir} keeps its last checkpoint ({done} whole epochs done). Resume with "
            f"`vaelab train --resume {run_dir}`: the result is bit-identical to an uninterrupted run")



@contextmanager
def flush_denormals() -> Iterator[bool]:
    """Subnormal floats (below 1.2e-38 in float32) read and written as zero on the CPU while
    training, then back to IEEE behaviour. An importance-weighted bound's gradient weights the k
    samples by their normalised weights, most of them far below 1e-38 once the model is sharp; x86
    cores take a slow path for every subnormal, and a convolution's backward pass on such gradients
    runs tens of times slower (benchmarks/denormals.py). Numbers that small change no update."""
    flushed = torch.set_flush_denormal(True)  # False where the CPU has no flush-to-zero mode
    try:
        yield flushed
    finally:
        if flushed:
            torch.set_flush_denormal(False)


def init_weights(model: Autoencoder, source: str | Path) -> Autoencoder:
    """Load the weights of an earlier run (its directory, or a .safetensors file) into ``model``
    (train.init_from); a run of another model, or of other network settings, is refused with what differs."""
    from ..models.persist import load_weights

    src = Path(source).expanduser()
    path = src / "model.safetensors" if src.is_dir() else src
    if not path.is_file():
        what = (f"{src} is a directory without model.safetensors (a run that has not finished an epoch, or not a run)"
                if src.is_dir() else f"{src} does not exist")
        raise ConfigError(f"train.init_from: {what}; give a finished run's directory or a .safetensors file")
    try:
        load_weights(model, path)
    except CheckpointError as e:
        raise ConfigError(f"train.init_from: {e}. Fine-tuning starts from a run of the same model with the same "
                          "model.* settings (its config.yaml lists them)") from None
    log.info("starting from the weights of %s", path)
    return model


def fit(cfg: RunConfig, run_dir: str | Path, resume: bool = False,
        data: tuple[ImageSet, ImageSet, ImageSet] | None = None, encoder: torch.nn.Module | None = None,
        decoder: torch.nn.Module | None = None) -> tuple[Autoencoder, tuple[ImageSet, ImageSet, ImageSet]]:
    """Train ``cfg`` into ``run_dir``; with ``resume`` continue from its last checkpoint.
    ``encoder`` / ``decoder``: networks of your own (see Autoencoder.use_networks).

    Returns the trained model and the (train, val, test) data it used. With several processes
    (train.strategy=ddp, devices x num_nodes > 1) every process calls this; the process of global
    rank 0 owns the run directory (lock, config, checkpoints, logs, weights) and every process
    returns the same trained model."""
    _quiet_lightning()
    check_packages(cfg.train)  # a tracker's missing package is named before anything is written
    run_dir = Path(run_dir)
    ckpt = run_dir / CHECKPOINT
    if resume and not ckpt.is_file():
        raise TrainingError(f"{run_dir} has no checkpoint to resume from ({ckpt} is missing)")
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    train, val, test = data if data is not None else load_data(cfg.data, cfg.seed)
    _check_data(train, val, test, cfg)
    # the classes a model learns come from its training data (train and validation), never from the test
    # split: a test set's anomaly class would otherwise become one more class of the classifier
    labelled = [s.labels for s in (train, val) if s.labels is not None and len(s.labels)]
    num_classes = max(int(y.max()) for y in labelled) + 1 if train.labels is not None and labelled else None
    model = build(cfg.model, train.shape, n_train=len(train), encoder=encoder, decoder=decoder, num_classes=num_classes)
    t = cfg.train
    if t.init_from and not resume:  # resuming: the checkpoint holds the weights
        init_weights(model, t.init_from)
    # the Trainer first: it knows which process this is (Lightning's launcher, torchrun and SLURM all
    # start every process with this same call)
    trainer = make_trainer(t, run_dir, model_callbacks(model, run_dir, train), has_val=len(val) > 0,
                           manual=model.adversarial)
    main = trainer.global_rank == 0
    if main and not resume and check_new_run_dir(run_dir):
        log.info("%s holds a run stopped before its first checkpoint; starting it again", run_dir)
    with run_lock(run_dir) if main else nullcontext():
        # a semi-supervised model (its loss takes labels=) sees the labels of model.n_labels training
        # images (all when unset), -1 for the rest; validation batches carry no labels
        labels = None
        if model.takes_labels and train.labels is not None:
            labels = visible_labels(train.labels, getattr(cfg.model, "n_labels", None), cfg.seed)
            if hasattr(model.config, "labelled_images"):  # n of the label term's N / n (none known: no label term)
                model.config.labelled_images = int((labels >= 0).sum()) or None
        world = trainer.world_size
        loader = make_loader(train.images, t.batch_size, cfg.seed, shuffle=True, labels=labels, world_size=world)
        val_loader = make_loader(val.images, t.eval_batch_size, cfg.seed, shuffle=False, world_size=world) if len(val) else None
        lit = LitAutoencoder(model, t, steps_per_epoch=len(loader))
        if main:
            if resume:
                check_checkpoint(ckpt, lit)
                _stash_metrics(run_dir)
            mark_run(run_dir)
            absolute_data_path(cfg.data)  # read from another directory, the run still finds its data
            cfg.save(run_dir / "config.yaml")
        # the loggers of train.loggers; a tracker (mlflow, wandb) opens or continues its run here
        loggers = make_loggers(t, run_dir, resume, main)
        trainer.loggers = list(loggers.values())
        if main:
            start_trackers(loggers, cfg, run_dir, resumed=resume)
        with warnings.catch_warnings(), _no_distribution_checks():
            # the loader is resumable (ResumableLoader): Lightning's caution does not apply
            warnings.filterwarnings("ignore", ".*checkpoint that ended before the epoch ended.*")
            model.input_checks = False  # batches are uint8 / 255: no per-step value check
            try:
                with flush_denormals():
                    trainer.fit(lit, loader, val_loader, ckpt_path=str(ckpt) if resume else None, weights_only=True)
            except SystemExit:
                # Lightning turns Ctrl-C into a graceful stop and sys.exit(1), leaving SIGINT ignored
                signal.signal(signal.SIGINT, signal.default_int_handler)
                if trainer.interrupted:
                    raise Interrupted(_interrupted_message(run_dir)) from None
                raise
        model.input_checks = True
        if lit.skipped_steps:
            warnings.warn(f"{lit.skipped_steps} steps with a non-finite loss were skipped")
        model.to(memory_format=torch.contiguous_format)  # the fast path's channels_last layout stays inside training
        if trainer.is_global_zero:
            save_weights(model, run_dir / "model.safetensors", checkpoint_stamp(run_dir))
            merge_metrics(run_dir)
        model.eval()
        return model, (train, val, test)




