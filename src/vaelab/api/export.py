"""The export job: fit a run's detector on its training split and write a standalone scorer bundle."""
from __future__ import annotations

import logging
from pathlib import Path

from ..data import load_run_data
from ..detect import DEFAULT_SCORE, AutoencoderDetector
from ..detect.export import FORMATS, check_exportable, export_detector
from ..errors import ConfigError
from .detect import load_ensemble, run_dirs

log = logging.getLogger("vaelab")


def export_run(run_dir: str | Path | list[str | Path], out: str | Path, format: str = "onnx", score: str | None = None,
               run_data: str | Path | None = None, **detector_options) -> Path:
    """Fit the detector of ``run_dir`` on the run's training split, as ``vaelab detect`` calibrates
    it (normalisation and a contamination-0.1 threshold unless ``detector_options`` say otherwise),
    and write ``out`` with the scorer (``format``: onnx or torchscript) and manifest.json; returns
    ``out``. ``vaelab.exported.load_exported(out)`` runs it. Several run directories (runs of the same
    data) export their ensemble: one scorer whose score is the mean of their raw scores."""

    if format not in FORMATS:
        raise ConfigError(f"unknown export format {format!r}; choose one of: {', '.join(FORMATS)}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out {out} already exists and is not empty; choose a new or empty directory")

    runs = run_dirs(run_dir)
    cfg, models = load_ensemble(runs)
    model = models if len(models) > 1 else models[0]
    train, held_out, _ = load_run_data(cfg.data, cfg.seed, runs[0], run_data)
    score = score or DEFAULT_SCORE

    check_exportable(score, detector_options.get("combo"), detector_options.get("combo_method"))
    opts = {"contamination": 0.1, **detector_options}
    det = AutoencoderDetector(model, score, seed=cfg.seed, batch_size=cfg.train.eval_batch_size, **opts).fit(
        train, calibration_set=held_out if len(held_out) else None)  # as vaelab detect: the run's validation split
    log.info("exporting the %r detector of %s as %s to %s", score, ", ".join(map(str, runs)), format, out)
    return export_detector(det, out, format)
