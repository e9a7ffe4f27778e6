"""Training a model of the contract into a run directory: Lightning does the loop."""
from __future__ import annotations

import csv
import fcntl
import io
import logging
import os
import pickle
import signal
import warnings
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Iterator

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from ..config import check_version
from ..data import ImageSet, load_data
from ..errors import CheckpointError, ConfigError, DataError, TrainingError
from ..fileio import atomic_path, atomic_write_text
from ..models import Autoencoder, build
from ..models.persist import describe_mismatch, save_weights
from .callbacks import model_callbacks
from .config import RunConfig, TrainConfig
from .lit import LitAutoencoder, make_loader, visible_labels

CHECKPOINT = "checkpoints/last.ckpt"
log = logging.getLogger("vaelab")


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
        self._last_step_saved = trainer.global_step

    def on_train_batch_end(self, trainer: pl.Trainer, lit: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        n, step = self.every_n_steps, trainer.global_step
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
    """Lightning's progress bar, showing the training loss that LitAutoencoder logs itself."""

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.update({k: f"{v:.4g}" for k, v in getattr(pl_module, "progress_metrics", {}).items()})
        return metrics


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


# Lightning's CSV logger deletes logs/metrics.csv when it starts, so a resumed run keeps the earlier
# rows aside (metrics.part<i>.csv) and merges them back when it finishes.
def _stash_metrics(run_dir: Path) -> None:
    cur = run_dir / "logs" / "metrics.csv"
    if cur.is_file():
        i = 0
        while cur.with_name(f"metrics.part{i}.csv").exists():
            i += 1
        os.replace(cur, cur.with_name(f"metrics.part{i}.csv"))


def read_metrics_rows(path: Path) -> list[dict[str, str]]:
    """The complete rows of a Lightning metrics.csv. It is an append-only log, so a killed writer
    can leave a torn last line: rows with missing fields, no integer step, or values that are not
    numbers are dropped."""
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, csv.Error, UnicodeDecodeError):
        return []
    good = []
    for r in rows:
        if None in r or None in r.values() or not str(r.get("step", "")).isdigit():
            continue
        try:
            [float(v) for v in r.values() if v != ""]
        except ValueError:
            continue
        good.append(r)
    return good


def merge_metrics(run_dir: Path) -> None:
    """One logs/metrics.csv from the segments of a run resumed any number of times: from each
    segment the rows before the step the next one resumed at (later steps were done again)."""
    logs = run_dir / "logs"
    parts = sorted(logs.glob("metrics.part*.csv"), key=lambda p: int(p.stem[len("metrics.part"):] or 0))
    if not parts:
        return
    segments = [read_metrics_rows(p) for p in parts] + [read_metrics_rows(logs / "metrics.csv")]
    rows: list[dict[str, str]] = []
    for i, seg in enumerate(segments):
        later = [int(r["step"]) for s in segments[i + 1 :] for r in s]
        cut = min(later) if later else None
        rows += [r for r in seg if cut is None or int(r["step"]) < cut]
    fields = sorted({k for r in rows for k in r})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(logs / "metrics.csv", buf.getvalue())
    for p in parts:
        p.unlink()


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


def make_trainer(t: TrainConfig, run_dir: Path, callbacks: list[pl.Callback], has_val: bool) -> pl.Trainer:
    """The Trainer of a run: Lightning's loop, devices, precision and DDP, vaelab's checkpoints and logs."""
    loggers = [pl.loggers.CSVLogger(run_dir, name="logs", version=""),
               pl.loggers.TensorBoardLogger(run_dir, name="logs", version="tensorboard", default_hp_metric=False)]
    callbacks = [AtomicCheckpoint(run_dir, t.checkpoint_every_n_steps), *callbacks]
    if t.progress_bar:
        callbacks.append(ProgressBar())
    try:
        with warnings.catch_warnings():  # Lightning would quietly turn 16-mixed into bf16-mixed on a CPU
            warnings.filterwarnings("ignore", ".*AMP with fp16 is not supported on CPU.*")
            trainer = pl.Trainer(
                max_epochs=t.epochs, accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes, strategy=t.strategy,
                precision=t.precision, logger=loggers, callbacks=callbacks, enable_checkpointing=False,
                log_every_n_steps=1, enable_progress_bar=t.progress_bar, enable_model_summary=False,
                gradient_clip_val=t.grad_clip, deterministic=True, use_distributed_sampler=False,
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


def cpu_has_bf16() -> bool:
    """Whether this CPU has native bf16 arithmetic (avx512_bf16 or AMX), from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next((ln for ln in fh if ln.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


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


def epochs_done(run_dir: str | Path) -> int | None:
    """How many whole epochs the run's resumable checkpoint has trained, or None without one."""
    ckpt = Path(run_dir) / CHECKPOINT
    if not ckpt.is_file():
        return None
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
        return int(state["loops"]["fit_loop"]["epoch_progress"]["total"]["processed"])
    except Exception as e:  # noqa: BLE001 - any damage: say so with the fix
        raise CheckpointError(f"{ckpt} is not a readable training checkpoint ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200] if str(e) else ''}); it is truncated or damaged. "
                              "Train a new run, or restore the file") from None


def check_new_run_dir(run_dir: Path) -> bool:
    """May a new run be trained into ``run_dir``? Yes if it does not exist or is empty, or if it
    holds a run stopped before its first checkpoint (nothing trained to lose: returns True, the
    caller says it takes the directory over). A run with a checkpoint or weights, a file, or a
    non-empty directory that is not a vaelab run (the user's own files) is refused."""
    if not run_dir.exists():
        return False
    if not run_dir.is_dir():
        raise ConfigError(f"--out {run_dir} is an existing file, not a directory; choose a directory for the run")
    entries = [p.name for p in run_dir.iterdir() if p.name != ".lock"]
    if not entries:
        return False
    if (run_dir / "config.yaml").is_file():
        if (run_dir / CHECKPOINT).exists() or (run_dir / "model.safetensors").exists():
            raise TrainingError(f"{run_dir} already holds a run; resume it with `vaelab train --resume {run_dir}`, "
                                "or choose another --out")
        return True
    shown = ", ".join(sorted(entries)[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
    raise TrainingError(f"{run_dir} is not empty and is not a vaelab run (it holds {shown}); a run writes config.yaml, "
                        "report.html, metrics.json and figures/ there and would overwrite your files. Choose a new or "
                        "empty directory for --out")


class Interrupted(TrainingError):
    """Training was stopped by Ctrl-C (SIGINT); the message says how to resume."""


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
    run_dir = Path(run_dir)
    ckpt = run_dir / CHECKPOINT
    if resume and not ckpt.is_file():
        raise TrainingError(f"{run_dir} has no checkpoint to resume from ({ckpt} is missing)")
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    train, val, test = data if data is not None else load_data(cfg.data, cfg.seed)
    _check_data(train, val, test, cfg)
    model = build(cfg.model, train.shape, n_train=len(train), encoder=encoder, decoder=decoder)
    t = cfg.train
    # the Trainer first: it knows which process this is (Lightning's launcher, torchrun and SLURM all
    # start every process with this same call)
    trainer = make_trainer(t, run_dir, model_callbacks(model, run_dir, train), has_val=len(val) > 0)
    main = trainer.global_rank == 0
    if main and not resume and check_new_run_dir(run_dir):
        log.info("%s holds a run stopped before its first checkpoint; starting it again", run_dir)
    with run_lock(run_dir) if main else nullcontext():
        # a semi-supervised model (its loss takes labels=) sees the labels of model.n_labels training
        # images (all when unset), -1 for the rest; validation batches carry no labels
        labels = None
        if model.takes_labels and train.labels is not None:
            labels = visible_labels(train.labels, getattr(cfg.model, "n_labels", None), cfg.seed)
        world = trainer.world_size
        loader = make_loader(train.images, t.batch_size, cfg.seed, shuffle=True, labels=labels, world_size=world)
        val_loader = make_loader(val.images, t.eval_batch_size, cfg.seed, shuffle=False, world_size=world) if len(val) else None
        lit = LitAutoencoder(model, t, steps_per_epoch=len(loader))
        if main:
            if resume:
                check_checkpoint(ckpt, lit)
                _stash_metrics(run_dir)
            cfg.save(run_dir / "config.yaml")
        with warnings.catch_warnings(), _no_distribution_checks():
            # the loader is resumable (ResumableLoader): Lightning's caution does not apply
            warnings.filterwarnings("ignore", ".*checkpoint that ended before the epoch ended.*")
            model.input_checks = False  # batches are uint8 / 255: no per-step value check
            try:
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
            save_weights(model, run_dir / "model.safetensors")
            merge_metrics(run_dir)
        model.eval()
        return model, (train, val, test)


def load_run_model(run_dir: str | Path, encoder: torch.nn.Module | None = None,
                   decoder: torch.nn.Module | None = None) -> Autoencoder:
    """The trained model of a run directory (config.yaml + model.safetensors) in eval mode; refuses
    weights of another model or shape. ``vaelab.load`` is this function; a run trained with
    networks of your own needs the same (untrained) ``encoder`` and ``decoder`` again."""
    from ..errors import CheckpointError
    from ..models.persist import load_weights
    from .config import RunConfig

    run_dir = Path(run_dir)
    cfg = RunConfig.load(run_dir / "config.yaml")
    weights = run_dir / "model.safetensors"
    if not weights.is_file():
        if (run_dir / CHECKPOINT).is_file():
            raise CheckpointError(f"{run_dir} has no model.safetensors, but {run_dir / CHECKPOINT} holds the weights: "
                                  f"`vaelab train --resume {run_dir}` writes model.safetensors again from it")
        raise CheckpointError(f"{run_dir} has no model.safetensors yet (training never finished an epoch)")
    try:
        return load_weights(build(cfg.model, encoder=encoder, decoder=decoder), weights).eval()
    except CheckpointError as e:
        if (run_dir / CHECKPOINT).is_file() and ("corrupt" in str(e) or "not a readable" in str(e)):
            raise CheckpointError(f"{e}. {run_dir / CHECKPOINT} still holds the weights: "
                                  f"`vaelab train --resume {run_dir}` writes model.safetensors again from it") from None
        raise


def restore_weights(run_dir: str | Path, cfg: RunConfig, encoder: torch.nn.Module | None = None,
                    decoder: torch.nn.Module | None = None) -> Autoencoder:
    """The model of the run's resumable checkpoint, written again as model.safetensors (for a
    finished run whose weights file was lost or damaged)."""
    run_dir = Path(run_dir)
    model = build(cfg.model, encoder=encoder, decoder=decoder)
    state = torch.load(run_dir / CHECKPOINT, map_location="cpu", weights_only=True)
    sd = {k[len("model."):]: v for k, v in state["state_dict"].items() if k.startswith("model.")}
    problem = describe_mismatch(model.state_dict(), sd)
    if problem:
        raise CheckpointError(f"{run_dir / CHECKPOINT} does not fit the run's config ({problem})")
    model.load_state_dict(sd)
    save_weights(model, run_dir / "model.safetensors")
    return model.eval()
