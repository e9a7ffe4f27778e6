"""The detect job: score a set with a trained run, write scores.csv, metrics, figures and a report."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch

from ..config import dump_yaml
from ..data import load_data
from ..fileio import atomic_write_json
from ..plotting import save_grid
from ..report import write_report
from ..train import RunConfig, load_run

log = logging.getLogger("vaelab")


# -- anomaly / out-of-distribution detection ------------------------------------------------------
def run_dirs(run_dir: str | Path | list[str | Path]) -> list[Path]:
    """One run directory or several (an ensemble) as a list of paths."""
    runs = [Path(r) for r in run_dir] if isinstance(run_dir, (list, tuple)) else [Path(run_dir)]
    if not runs:
        from ..errors import ConfigError

        raise ConfigError("give at least one run directory")
    return runs


def load_ensemble(runs: list[Path]) -> tuple[RunConfig, list[Any]]:
    """The first run's config and every run's model; runs trained on other data than the first are refused."""
    cfg = RunConfig.load(runs[0] / "config.yaml")
    for other in runs[1:]:
        d = RunConfig.load(other / "config.yaml").data
        if (d.name, d.path, d.classes) != (cfg.data.name, cfg.data.path, cfg.data.classes):
            from ..errors import ConfigError

            raise ConfigError(f"the ensemble's runs were trained on different data: {runs[0]} on {cfg.data.name} "
                              f"{cfg.data.path or ''} {cfg.data.classes or ''}, {other} on {d.name} {d.path or ''} "
                              f"{d.classes or ''}; ensemble runs of the same data (e.g. one configuration, several seeds)")
    return cfg, [load_run(r) for r in runs]


def threshold_record(det: Any, threshold: float | None) -> dict[str, Any]:
    """How the threshold was set, as the rule actually used: a rule that fell back (f1 on a
    validation set without both classes, an unseparated GMM) is recorded as the fallback rule,
    with the rule asked for and the reason beside it."""
    info = dict(det.threshold_info_)
    reason = info.pop("reason", None)
    if threshold is not None:
        return {"threshold_from": "threshold", "threshold_info": info}
    used = info.get("fallback") or det.threshold_rule
    record: dict[str, Any] = {"threshold_from": f"contamination {det.contamination}" if used == "contamination" else used,
                              "threshold_info": info}
    if info.get("fallback"):
        record.update(threshold_rule_asked=det.threshold_rule, threshold_fallback_reason=reason)
    return record


def detect_run(run_dir: str | Path | list[str | Path], data: str, split: str | None = None, score: str | None = None,
               threshold: float | None = None, contamination: float | None = None, out: str | Path | None = None,
               anomaly_classes: list[int] | None = None, max_flagged: int = 64, val_data: str | None = None,
               val_split: str | None = None, maps: list[str] | None = None,
               **detector_options: Any) -> tuple[Path, dict[str, Any]]:
    """Score ``data`` (a dataset name, an .npz, an OOD-study file or a folder) with the model of
    ``run_dir``, calibrated on the run's training split (normalisation and, with
    ``contamination``, the threshold); write ``out`` (default RUN_DIR/detect-<data>-<time>) with
    metrics.json, scores.csv, figures/ (histogram; ROC, PR, confusion matrix when anomaly labels
    are known), figures/flagged.png and a self-contained report.html. ``threshold_rule='f1'``
    (in ``detector_options``) picks the threshold on the labelled ``val_data`` / ``val_split``.
    ``maps`` (kinds of vaelab.detect.maps: mse, ssim, gradient): per-pixel anomaly maps of every
    image, saved in maps.npz and drawn over the flagged images; when the set has defect masks (a
    `vaelab data build-defects` file, an MVTec AD category) also their pixel ROC-AUC and AUPRO.
    Several run directories (``run_dir`` a list; runs of one configuration with different seeds,
    trained on the same data) make an ensemble: the score is the mean of their raw scores,
    calibrated on the first run's training split; pixel maps come from the first run's model."""
    if maps:
        from ..detect.maps import MAP_KINDS

        bad = [k for k in maps if k not in MAP_KINDS]
        if bad:
            from ..errors import ConfigError

            raise ConfigError(f"unknown anomaly map(s) {bad}; choose from: {', '.join(MAP_KINDS)}")
    import numpy as np

    from ..detect import DEFAULT_SCORE, AutoencoderDetector, detection_figures, evaluate_detection, load_detection_set
    from ..fileio import atomic_write_text

    runs = run_dirs(run_dir)
    run_dir = runs[0]
    if out is not None and Path(out).exists() and (not Path(out).is_dir() or any(Path(out).iterdir())):
        from ..errors import ConfigError

        raise ConfigError(f"--out {out} already exists and is not empty; the report would overwrite what is there. "
                          "Choose a new or empty directory")
    cfg, models = load_ensemble(runs)
    model = models[0]
    target, y, desc = load_detection_set(data, cfg.data, split, anomaly_classes)
    train = load_data(cfg.data, cfg.seed)[0]
    score = score or DEFAULT_SCORE
    val = {}
    if val_data is not None:
        v, vy, vdesc = load_detection_set(val_data, cfg.data, val_split, anomaly_classes)
        if vy is None:
            from ..errors import ConfigError

            raise ConfigError(f"--val-data {vdesc} has no anomaly labels; give an OOD-study file, the run's own data with "
                              "a class filter, or --anomaly-classes")
        val = {"val": v, "val_labels": vy}
    det = AutoencoderDetector(models if len(models) > 1 else model, score, contamination=contamination if contamination is not None else 0.1,
                              threshold=threshold, seed=cfg.seed, batch_size=cfg.train.eval_batch_size,
                              **detector_options).fit(train, **val)
    log.info("scoring %d images of %s", len(target), desc)
    s = det.decision_function(target, clip=False)  # unclipped: images beyond the training range keep their order
    flagged = (s > det.threshold_).astype(np.int64)  # = det.predict(target), without scoring twice
    stem = Path(data).stem if Path(data).suffix else Path(data).name
    out = Path(out) if out else run_dir / f"detect-{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    metrics: dict[str, Any] = {
        "data": desc, "score": score, "normalized": True, "norm_range": [float(q) for q in det.norm_quantiles_],
        "threshold": det.threshold_,
        **threshold_record(det, threshold),
        "n": len(target), "n_flagged": int(flagged.sum()), "flagged_fraction": float(flagged.mean()),
        "n_calibration": det.n_train_, "calibration_flagged_fraction": float(det.labels_.mean()),
    }
    if y is not None:
        metrics.update({k: v for k, v in evaluate_detection(y, s, det.threshold_).items() if k != "threshold"})
    pixel_maps = _pixel_maps(model, target, train, maps or [], metrics, out)
    atomic_write_json(out / "metrics.json", metrics)
    import csv
    import io

    labels = target.labels.tolist() if target.labels is not None else [""] * len(target)
    files = target.files or [""] * len(target)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")  # file names may hold commas or quotes
    w.writerow(["index", "file", "score", "flagged", "label", "anomaly"])
    for i, (v, f, lab, name) in enumerate(zip(s, flagged, labels, files)):
        w.writerow([i, name, f"{v:.6g}", f, lab, "" if y is None else int(y[i])])
    atomic_write_text(out / "scores.csv", buf.getvalue())
    figs = detection_figures(out / "figures", s, det.threshold_, y, metrics, score)
    idx = np.argsort(-s)[: min(max_flagged, int(flagged.sum()))]
    if len(idx) and not target.is_vector:
        figs.append((f"The {len(idx)} highest-scoring flagged images of {int(flagged.sum())} (highest first)",
                     save_grid(target.subset(torch.as_tensor(idx.copy())).float(), out / "figures" / "flagged.png", nrow=8)))
    if len(idx) and pixel_maps:
        from ..plotting import draw_rows, normalize_maps

        pick = torch.as_tensor(idx[:8].copy())
        x = target.subset(pick).float()
        rows = [("images", x, None)] + [(k, x, normalize_maps(torch.from_numpy(m[pick.numpy()]).float()[:, None]))
                                        for k, m in pixel_maps.items()]
        if target.masks is not None:
            rows.append(("defect mask", x, target.masks[pick].float()[:, None]))
        figs.append(("Anomaly maps of the highest-scoring flagged images (each map min-max scaled per image)",
                     draw_rows(rows, out / "figures" / "maps.png")))
    settings = {"run_dir": str(run_dir.resolve()), **({"ensemble_of": [str(r.resolve()) for r in runs]} if len(runs) > 1 else {}),
                "model": cfg.model.name, "data": desc, "score": score,
                "threshold": threshold, "contamination": None if threshold is not None else det.contamination,
                "calibration": f"{cfg.data.name} training split ({det.n_train_} images)", **detector_options}
    lo, hi = det.norm_quantiles_
    anchors = ("0 = the most normal training image, 1 = the most anomalous" if (lo, hi) == (0.0, 1.0) else
               f"0 = the training scores' {lo:g} quantile, 1 = their {hi:g} quantile")
    by = (f"the {cfg.model.name} of {run_dir.resolve()}" if len(runs) == 1 else
          f"an ensemble of {len(runs)} runs (the mean of their raw scores; the first: {cfg.model.name} of {run_dir.resolve()})")
    notes = [f"Scores of {len(target)} images of {desc} by {by}: '{score}', "
             f"normalised with the training split's scores ({anchors}); higher is more anomalous. "
             f"Images above the threshold {det.threshold_:.4g} are flagged."]
    if y is None:
        notes.append("The set has no anomaly labels, so no ROC-AUC: use an OOD-study file, a one-class run "
                     "(data.classes) on its own dataset, or --anomaly-classes.")
    write_report(out, f"vaelab detect: {cfg.model.name} on {desc}", dump_yaml(settings), metrics, figs, notes)
    return out, metrics


def _pixel_maps(model: Any, target: Any, train: Any, kinds: list[str], metrics: dict[str, Any], out: Path) -> dict[str, Any]:
    """Each kind's maps of every image of ``target`` (written to OUT/maps.npz), and their pixel-level
    scores against the set's defect masks into ``metrics['pixel']``."""
    import numpy as np

    from ..detect.maps import anomaly_maps, pixel_metrics
    from ..fileio import atomic_path

    if not kinds:
        return {}
    done = {}
    for k in kinds:
        log.info("computing %s anomaly maps of %d images", k, len(target))
        done[k] = anomaly_maps(model, target, k, train=train.images if k == "gradient" else None)
    if target.masks is not None:
        masks = target.masks.numpy()
        metrics["pixel"] = {k: pixel_metrics(m, masks) for k, m in done.items()}
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "maps.npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **{k: m.astype(np.float32) for k, m in done.items()})
    return done
