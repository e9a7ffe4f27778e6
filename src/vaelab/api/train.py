"""The train job: train a run, evaluate it on the test split, draw its figures and write its report."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch

from ..data import ImageSet, load_data
from ..errors import CheckpointError, ConfigError, VaelabError
from ..report.run import finish_run
from ..runfiles import read_text
from ..train import RunConfig, load_run
from ..train.rundir import earlier_segments, epochs_done, is_finished, is_marked, mark_finished, record_command, restore_weights, run_lock
from ..train.trackers import log_final

log = logging.getLogger("vaelab")


def default_run_dir(model: str, data: str) -> Path:
    return Path("runs") / f"{model}-{data}-{time.strftime('%Y%m%d-%H%M%S')}"


def train_job(model: str | None = None, overrides: dict[str, Any] | None = None, out: str | Path | None = None,
              resume: str | Path | None = None) -> tuple[Path, dict[str, Any]]:
    """``vaelab train``: train ``model`` with config ``overrides`` (nested dicts: data, model, train,
    seed) into ``out``; or, with ``resume`` (a run directory), continue that run, the overrides
    changing what may change on a resume (epochs, ...). Returns (run directory, metrics)."""

    over = overrides or {}
    if resume:
        run_dir = Path(resume)
        cfg = RunConfig.load(run_dir / "config.yaml")
        if model and model != cfg.model.name:
            raise ConfigError(f"{run_dir} is a {cfg.model.name} run; --resume cannot change the model to {model}")
        if over:
            cfg = cfg.resumed_with(over)
        return train_run(cfg, run_dir, resume=True)
    if not model:
        raise ConfigError("name a model to train (see `vaelab models`), or --resume RUN_DIR")
    return train_run(RunConfig.build(model, over), out)


def train_run(cfg: RunConfig, run_dir: str | Path | None = None, resume: bool = False,
              data: tuple[ImageSet, ImageSet, ImageSet] | None = None, encoder: torch.nn.Module | None = None,
              decoder: torch.nn.Module | None = None) -> tuple[Path, dict[str, Any]]:
    """Train, evaluate on the test split, draw the figures and write report.html.

    ``encoder`` / ``decoder``: networks of your own instead of the ones ``cfg.model.arch`` builds
    (encoder: (B, *example shape) -> the posterior's parameters, (B, 2 * latent_dim) for a VAE
    (mean, then log-variance) or (B, latent_dim) for an AE; decoder: (B, latent_dim) -> (B, *example
    shape), the likelihood's parameters). Resuming or loading such a run takes them again.

    With ``resume``: continue ``run_dir`` from its last checkpoint up to ``cfg.train.epochs``; a
    run stopped before its first checkpoint starts again from the beginning; a finished run is
    left as it is (its metrics are returned), unless its weights or metrics were lost, which are
    written again from the checkpoint."""
    run_dir = Path(run_dir) if run_dir else default_run_dir(cfg.model.name, cfg.data.name)
    if resume:
        if not run_dir.is_dir():
            raise CheckpointError(f"{run_dir} does not exist; --resume takes the directory of an earlier run")
        with run_lock(run_dir):  # a run another process is training is refused before its files are read
            done = epochs_done(run_dir)
        if done is None:
            if not (run_dir / "config.yaml").is_file() or not is_marked(run_dir):
                raise CheckpointError(f"{run_dir} is not a vaelab run (no config.yaml, or not vaelab's marker); train a new "
                                      "run into a new directory instead")
            log.info("%s was stopped before its first checkpoint: training it from the beginning", run_dir)
            resume = False
        elif cfg.train.epochs < done:
            raise ConfigError(f"{run_dir} has already trained {done} epochs, so --epochs {cfg.train.epochs} would end "
                              f"before where it is. To train longer, pass --epochs N with N > {done}")
        elif cfg.train.epochs == done:
            return run_dir, _finished_run(run_dir, cfg, done, data, encoder, decoder)

    earlier = earlier_segments(run_dir) if resume else []
    t0 = time.perf_counter()
    from ..train import fit  # Lightning is imported when a run trains, not when vaelab.api is

    model, (train, val, test) = fit(cfg, run_dir, resume=resume, data=data, encoder=encoder, decoder=decoder)
    segments = [*earlier, time.perf_counter() - t0]
    log.info("trained in %.1f s%s; evaluating on %d test images and drawing the report", segments[-1],
             f" ({sum(segments):.1f} s over {len(segments)} sessions)" if len(segments) > 1 else "", len(test))
    record_command(run_dir)
    metrics = finish_run(run_dir, model, cfg, (train, val, test), segments)
    log_final(run_dir, metrics, cfg)
    mark_finished(run_dir)  # last: until it is written, --resume finishes what is missing
    return run_dir, metrics


def _finished_run(run_dir: Path, cfg: RunConfig, done: int, data: tuple[ImageSet, ImageSet, ImageSet] | None,
                  encoder: torch.nn.Module | None = None, decoder: torch.nn.Module | None = None) -> dict[str, Any]:
    """A resumed run that has already trained every epoch. Finished (the weights, metrics.json and
    report of its last checkpoint all written, ``is_finished``): nothing is trained or changed.
    Otherwise (killed, or a full disk, after its last checkpoint) the missing steps are done from
    the checkpoint: the weights written again from it, the metrics computed again, the report drawn."""
    import json

    if is_finished(run_dir):
        restored = False
        try:
            load_run(run_dir, encoder, decoder, finished_only=False)
        except VaelabError as e:  # lost or damaged weights: the checkpoint holds them
            log.info("%s; writing model.safetensors again from the checkpoint", str(e).split(". ")[0])
            with run_lock(run_dir):
                restore_weights(run_dir, RunConfig.load(run_dir / "config.yaml"), encoder, decoder)
            log.info("%s written again from the checkpoint", run_dir / "model.safetensors")
            restored = True
        try:
            metrics = json.loads(read_text(run_dir / "metrics.json"))
            if isinstance(metrics, dict) and metrics:
                log.info("%s is finished (%d of %d epochs); nothing %schanged. To train longer: vaelab train --resume %s "
                         "--epochs N with N > %d", run_dir, done, cfg.train.epochs, "else " if restored else "", run_dir,
                         done)
                return metrics
        except (OSError, ValueError, VaelabError) as e:
            log.info("%s: %s", run_dir, str(e).split(". ")[0])
    log.info("%s trained every epoch, but the weights, metrics and report of its last checkpoint were not all written: "
             "writing them from the checkpoint", run_dir)
    with run_lock(run_dir):
        model = restore_weights(run_dir, RunConfig.load(run_dir / "config.yaml"), encoder, decoder)  # as it trained
        segments = earlier_segments(run_dir)  # the training sessions metrics.json recorded (a killed one's time is lost)
        metrics = finish_run(run_dir, model, cfg, data if data is not None else load_data(cfg.data, cfg.seed), segments)
        mark_finished(run_dir)
    return metrics
