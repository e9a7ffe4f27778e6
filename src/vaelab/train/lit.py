"""The one Lightning adapter that trains any model of the contract, and its data plumbing."""
from __future__ import annotations

import logging
import math
from typing import Any

import lightning.pytorch as pl
import torch
import torch.distributed

from .._version import __version__
from ..errors import TrainingError
from ..models import Autoencoder
from .config import TrainConfig
from .batches import InMemoryImages
from .speed import has_conv_layers, resolve_compile, tune_cpu_allocator

log = logging.getLogger("vaelab")














def kl_warmup(step: int, warmup_steps: int) -> float:
    """Linear KL warm-up per optimisation step: 0 at step 0, 1 from ``warmup_steps`` on."""
    return 1.0 if warmup_steps <= 0 else min(1.0, step / warmup_steps)


# the per-step log rows are handed to the loggers and written to disk every this many steps, and
# before validation, every checkpoint and the end of training: one host transfer (a sync on a GPU)
# and one burst of logger work per LOG_FLUSH_STEPS steps instead of per logged value and step
LOG_FLUSH_STEPS = 50








class LitAutoencoder(pl.LightningModule):
    """Trains ``model`` (any model of the contract) with Lightning.

    Every loss term is logged every step, but not through ``self.log``: that costs about a
    millisecond per value and step in Lightning's bookkeeping, and a host sync per value on a GPU.
    Each step's loss and term means are stacked into one small tensor and kept; ``flush_logs``
    hands the rows to the loggers (one host transfer for all of them) every LOG_FLUSH_STEPS steps,
    and before validation, checkpoints and the end of training.

    Speed switches of :class:`TrainConfig`: ``fast`` (the fused optimizer step; on the CPU also the
    channels_last layout for conv networks and glibc's allocator told to keep freed memory),
    ``compile`` (torch.compile of the model's loss); ``precision`` is Lightning's."""

    def __init__(self, model: Autoencoder, cfg: TrainConfig, steps_per_epoch: int):
        super().__init__()
        self.model, self.cfg, self.steps_per_epoch = model, cfg, steps_per_epoch
        self.skipped_steps = 0
        self.takes_labels = model.takes_labels
        self.channels_last = False  # decided in setup, where the device is known
        self._loss_fn = model.loss
        self._pending: list[tuple[int, int, tuple[str, ...], torch.Tensor, dict[str, float]]] = []
        self.progress_metrics: dict[str, float] = {}  # the latest flushed train/loss, for the progress bar
        self._noise_seed = torch.initial_seed()
        self._fused = False  # set by configure_optimizers
        self.compiled, self.compile_reason = False, ""  # train.compile resolved in setup (the device is known there)
        # an adversarial model has a second optimizer for its discriminator: this module steps both
        # (Lightning's manual optimisation); their states, the scheduler's and the RNG's are in the checkpoint
        self.adversarial = model.adversarial
        if self.adversarial:
            self.automatic_optimization = False

    def setup(self, stage: str) -> None:
        # in the process that trains (also each DDP worker), before the optimizer is built. The
        # channels_last layout and the allocator are CPU measurements (benchmarks/throughput.py);
        # on a GPU the fast path is the fused optimizer step and the data on the device
        on_cpu = self.trainer.strategy.root_device.type == "cpu"
        if self.cfg.fast and on_cpu:
            tune_cpu_allocator()
        self.channels_last = self.cfg.fast and on_cpu and has_conv_layers(self.model)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.compiled, self.compile_reason = resolve_compile(
            self.cfg.compile, self.model.compile_pays, self.trainer.strategy.root_device.type,
            self.steps_per_epoch * self.cfg.epochs)
        if (self.cfg.compile is True or self.model.compile_pays) and self.trainer.is_global_zero:
            log.info("torch.compile of the loss: %s (%s)", "on" if self.compiled else "off", self.compile_reason)
        if self.compiled and self._loss_fn == self.model.loss:
            # torch.compile's caches start afresh for every run: the loss's code is shared by all
            # models, each model (and each grad mode) adds a cache entry, and past dynamo's
            # recompile limit (8) a process that trains models in turn (the one-class protocol, an
            # ensemble) would silently train the later ones eager
            torch._dynamo.reset()
            # the compiled loss draws its noise from torch's generator as the eager one does (inductor's
            # own generator would draw other numbers): compiling changes how fast, not what is computed
            import torch._inductor.config as inductor_config

            inductor_config.fallback_random = True
            self._loss_fn = torch.compile(self.model.loss)

    def _loss(self, batch: torch.Tensor | tuple[torch.Tensor, torch.Tensor], **kw: Any) -> Any:
        """model.loss of an image batch, or of an (images, labels) batch: the labels go only to a
        model whose loss takes ``labels``."""
        if isinstance(batch, (tuple, list)):
            x, y = batch
            if self.takes_labels:
                kw["labels"] = y
        else:
            x = batch
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self._loss_fn(x, **kw)

    def forward(self, x: torch.Tensor) -> Any:
        return self.model.loss(x)

    # -- data on the training device ---------------------------------------------------------------
    def _place_data(self, loaders: Any) -> None:
        """Move in-memory datasets to this module's device once, when they fit in half of its free
        memory (else batches are copied per step, as Lightning does by default)."""
        for dl in loaders if isinstance(loaders, (list, tuple)) else [loaders]:
            ds = getattr(dl, "dataset", None)
            if not isinstance(ds, InMemoryImages) or ds.device == self.device:
                continue
            if self.device.type == "cuda":
                free, _ = torch.cuda.mem_get_info(self.device)
                if ds.images.nbytes > free // 2:
                    continue
            ds.to(self.device)

    def _conform_optimizer_state(self) -> None:
        """After a resume, make the optimizer what this config asks for: loading a state dict
        also restores the checkpoint's ``fused`` flag, and its moments keep the layout they were
        saved in, while the fused step works on raw memory and needs each moment in its
        parameter's layout (a checkpoint written with another train.fast holds the other one;
        unconformed, the updates would mix up elements)."""
        for opt in self.trainer.optimizers:
            for group in opt.param_groups:
                if "fused" in group:
                    group["fused"] = self._fused or None
            for p, state in opt.state.items():
                for k, v in state.items():
                    if torch.is_tensor(v) and v.shape == p.shape and v.stride() != p.stride():
                        state[k] = torch.empty_like(p, dtype=v.dtype).copy_(v)

    def on_train_start(self) -> None:
        self._place_data(self.trainer.train_dataloader)
        self._conform_optimizer_state()
        if self.trainer.world_size > 1:
            # every process draws its own reparameterisation noise (seed_everything gave them all
            # the same stream); the weights are the same everywhere, DDP broadcasts rank 0's
            torch.manual_seed((self._noise_seed * 1_000_003 + self.global_rank * 7919 + self.global_step) % 2**63)

    def on_validation_start(self) -> None:
        self.flush_logs(save=False)  # the validation row comes next; Lightning writes it and saves
        self._place_data(self.trainer.val_dataloaders)

    def on_train_epoch_end(self) -> None:
        self.flush_logs()

    def on_train_end(self) -> None:
        self.flush_logs()

    # -- logging -----------------------------------------------------------------------------------
    def _record(self, out: Any, kl_weight: float, step: int | None = None) -> None:
        names = ("loss", *out.terms)
        values = torch.stack([out.loss.detach(), *(v.detach().mean() for v in out.terms.values())]).float()
        extra = {"train/lr": float(self.trainer.optimizers[0].param_groups[0]["lr"])}
        if self.cfg.kl_warmup_steps:
            extra["train/kl_weight"] = float(kl_weight)
        self._pending.append((self.train_step if step is None else step, self.current_epoch, names, values, extra))
        if self.device.type == "cpu":  # free here; on an accelerator the bar shows the last flushed value
            self.progress_metrics = {"train/loss": values[0].item()}
        if len(self._pending) >= LOG_FLUSH_STEPS:
            self.flush_logs()

    def flush_logs(self, save: bool = True) -> None:
        """Hand the pending per-step rows to the loggers (and write them with ``save``). A row with a
        non-finite loss (possible only when the check is deferred, on an accelerator) stops training
        here, before any later checkpoint is written."""
        rows, self._pending = self._pending, []
        try:
            loggers = self.trainer.loggers
        except RuntimeError:  # not attached to a Trainer
            return
        if rows:
            flat = torch.cat([r[3] for r in rows]).tolist()
            i = 0
            for step, epoch, names, _, extra in rows:
                vals = flat[i : i + len(names)]
                i += len(names)
                if not math.isfinite(vals[0]):
                    for lg in loggers:
                        lg.save()
                    self._non_finite(vals[0], epoch, step)
                metrics = {f"train/{n}": v for n, v in zip(names, vals)}
                metrics.update(extra)
                metrics["epoch"] = epoch
                for lg in loggers:
                    lg.log_metrics(metrics, step)
                self.progress_metrics = {"train/loss": vals[0]}
        if save:
            for lg in loggers:
                lg.save()

    def _non_finite(self, value: float, epoch: int, step: int) -> None:
        raise TrainingError(
            f"the loss became {value} at epoch {epoch}, step {step}; "
            "training stopped and the last good checkpoint is kept. Try a lower train.lr, "
            "train.grad_clip=1.0, or train.nan_policy=skip"
        )

    # -- steps -------------------------------------------------------------------------------------
    @property
    def check_loss_each_step(self) -> bool:
        """Whether a non-finite loss is caught in the step itself. On the CPU the check costs
        nothing; on an accelerator it is a host sync, so with nan_policy=stop it is deferred to
        flush_logs (every LOG_FLUSH_STEPS steps, and before every checkpoint: no checkpoint is
        written from weights a non-finite loss has touched)."""
        return self.cfg.nan_policy == "skip" or self.device.type == "cpu"

    @property
    def train_step(self) -> int:
        """Training batches done: Lightning's global_step counts optimizer steps, two per batch for
        an adversarial model."""
        return self.global_step // 2 if self.adversarial else self.global_step

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor | None:
        if self.adversarial:
            return self._adversarial_step(batch)
        w = kl_warmup(self.global_step, self.cfg.kl_warmup_steps)
        out = self._loss(batch, kl_weight=w)
        if self.check_loss_each_step and not torch.isfinite(out.loss):
            if self.cfg.nan_policy == "skip":
                self.skipped_steps += 1
                return None
            self.flush_logs()
            self._non_finite(float(out.loss.detach()), self.current_epoch, self.global_step)
        self._record(out, w)
        return out.loss

    def _adversarial_step(self, batch: Any) -> None:
        """One batch of an adversarial model: a step of every other parameter on ``loss`` (the
        discriminator frozen), then a step of the discriminator on ``discriminator_loss``."""
        opt, opt_d = self.optimizers()
        step = self.train_step  # this batch's step, logged as a one-optimizer model logs it
        w = kl_warmup(step, self.cfg.kl_warmup_steps)
        x, y = batch if isinstance(batch, (tuple, list)) else (batch, None)
        self.toggle_optimizer(opt)  # the discriminator's parameters get no gradient from the model's loss
        out = self._loss(batch, kl_weight=w)
        if self.check_loss_each_step and not torch.isfinite(out.loss):
            self.untoggle_optimizer(opt)
            if self.cfg.nan_policy == "skip":
                self.skipped_steps += 1
                return None
            self.flush_logs()
            self._non_finite(float(out.loss), self.current_epoch, step)
        opt.zero_grad(set_to_none=True)
        self.manual_backward(out.loss)
        if self.cfg.grad_clip:
            self.clip_gradients(opt, gradient_clip_val=self.cfg.grad_clip, gradient_clip_algorithm="norm")
        opt.step()
        sched = self.lr_schedulers()
        if sched is not None:
            sched.step()
        self.untoggle_optimizer(opt)
        self.toggle_optimizer(opt_d)
        kw = {"labels": y} if self.takes_labels and y is not None else {}
        d_out = self.model.discriminator_loss(x, **kw)
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(d_out.loss)
        if self.cfg.grad_clip:
            self.clip_gradients(opt_d, gradient_clip_val=self.cfg.grad_clip, gradient_clip_algorithm="norm")
        opt_d.step()
        self.untoggle_optimizer(opt_d)
        self._record(type(out)(out.loss, {**out.terms, **d_out.terms}), w, step)
        return None

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        out = self._loss(batch)
        n = out.terms[next(iter(out.terms))].shape[0]
        sync = self.trainer.world_size > 1  # the mean over every process's share of the validation set
        self.log("val/loss", out.loss.detach(), on_step=False, on_epoch=True, prog_bar=True, batch_size=n, sync_dist=sync)
        for k, v in out.terms.items():
            self.log(f"val/{k}", v.detach().mean(), on_step=False, on_epoch=True, batch_size=n, sync_dist=sync)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.flush_logs()  # the log on disk covers every step the checkpoint covers
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
        params = list(self.model.parameters())
        # the fused step: one kernel over all parameters (fast path). Lightning cannot clip the
        # gradients of a fused optimizer under fp16 loss scaling (it unscales them itself)
        fused = (c.fast and not (c.precision == "16-mixed" and c.grad_clip)
                 and all(p.device.type in ("cpu", "cuda") and p.dtype.is_floating_point for p in params))
        self._fused = fused
        if self.adversarial:
            params = self.model.generator_parameters()
        opt = opt_cls(params, lr=c.lr, weight_decay=c.weight_decay, **({"fused": True} if fused else {}))
        total = c.epochs * self.steps_per_epoch
        if self.adversarial:
            mc = self.model.config
            disc = list(self.model.discriminator.parameters())
            opt_d = torch.optim.Adam(disc, lr=mc.disc_lr, betas=tuple(mc.disc_betas), **({"fused": True} if fused else {}))
            sched = self._scheduler(opt, total)
            first = {"optimizer": opt} if sched is None else {"optimizer": opt, "lr_scheduler": {"scheduler": sched,
                                                                                                   "interval": "step"}}
            return [first, {"optimizer": opt_d}]
        if c.schedule == "constant":
            return opt
        return {"optimizer": opt, "lr_scheduler": {"scheduler": self._scheduler(opt, total), "interval": "step"}}

    def _scheduler(self, opt: torch.optim.Optimizer, total: int) -> Any:
        """train.schedule's learning-rate scheduler of ``opt``, stepped per batch (None: constant)."""
        c = self.cfg
        if c.schedule == "constant":
            return None
        if c.schedule in ("step", "paper"):
            # paper: the Grad2VAE paper's schedule, lr divided by 100 after half of the epochs
            epochs, gamma = (c.step_milestones, c.step_gamma) if c.schedule == "step" else ([c.epochs // 2], 0.01)
            ms = [m * self.steps_per_epoch for m in epochs]
            return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=ms, gamma=gamma)
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=c.lr, total_steps=max(total, 1))
