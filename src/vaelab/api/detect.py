"""The detect job: score a set with a trained run, write scores.csv, metrics, figures and a report."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch

from ..config import dump_yaml, to_dict
from ..data import load_run_data
from ..detect import DEFAULT_SCORE, AutoencoderDetector, detection_figures, evaluate_detection, load_detection_set
from ..detect.conformal import benjamini_hochberg, check_rate, conformal_pvalues
from ..detect.features import top_features
from ..detect.figures import feature_figure
from ..detect.inputs import resolve_norm_range
from ..detect.maps import MAP_KINDS, anomaly_maps, pixel_metrics
from ..detect.persist import MAX_ARRAY_BYTES
from ..detect.thresholds import THRESHOLD_RULES
from ..errors import ConfigError, VaelabError
from ..fileio import atomic_path, atomic_write_json, atomic_write_text
from ..plotting import draw_rows, normalize_maps, save_grid
from ..report import write_report
from ..report.glossary import for_vectors
from ..runfiles import inside, read_bytes
from ..train import RunConfig, load_run

log = logging.getLogger("vaelab")


# -- anomaly / out-of-distribution detection ------------------------------------------------------
def run_dirs(run_dir: str | Path | list[str | Path]) -> list[Path]:
    """One run directory or several (an ensemble) as a list of paths."""
    runs = [Path(r) for r in run_dir] if isinstance(run_dir, (list, tuple)) else [Path(run_dir)]
    if not runs:
        raise ConfigError("give at least one run directory")
    return runs


def load_ensemble(runs: list[Path]) -> tuple[RunConfig, list[Any]]:
    """The first run's config and every run's model; runs trained on other data than the first are refused."""
    cfg = RunConfig.load(runs[0] / "config.yaml")
    for other in runs[1:]:
        d = RunConfig.load(other / "config.yaml").data
        if (d.name, d.path, d.classes) != (cfg.data.name, cfg.data.path, cfg.data.classes):
            raise ConfigError(f"the ensemble's runs were trained on different data: {runs[0]} on {cfg.data.name} "
                              f"{cfg.data.path or ''} {cfg.data.classes or ''}, {other} on {d.name} {d.path or ''} "
                              f"{d.classes or ''}; ensemble runs of the same data (e.g. one configuration, several seeds)")
    return cfg, [load_run(r) for r in runs]


def threshold_record(det: Any, threshold: float | None, fdr: float | None = None) -> dict[str, Any]:
    """How the threshold was set, as the rule actually used: a rule that fell back (f1 on a
    validation set without both classes, an unseparated GMM) is recorded as the fallback rule,
    with the rule asked for and the reason beside it; ``fdr``: flagged by Benjamini-Hochberg instead."""
    info = dict(det.threshold_info_)
    reason = info.pop("reason", None)
    if fdr is not None:
        return {"threshold_from": f"fdr {fdr} (Benjamini-Hochberg on conformal p-values)", "threshold_info": info}
    if threshold is not None:
        return {"threshold_from": "threshold", "threshold_info": info}
    used = info.get("fallback") or det.threshold_rule
    record: dict[str, Any] = {"threshold_from": f"contamination {det.contamination}" if used == "contamination" else
                              f"conformal, fpr {det.fpr}" if used == "conformal" else used, "threshold_info": info}
    if info.get("fallback"):
        record.update(threshold_rule_asked=det.threshold_rule, threshold_fallback_reason=reason)
    return record


def _check_options(options: dict[str, Any]) -> None:
    if "norm_range" in options:
        resolve_norm_range(options["norm_range"])
    rule = options.get("threshold_rule")
    if rule is not None and rule not in THRESHOLD_RULES:
        raise ConfigError(f"unknown threshold_rule {rule!r}; choose one of: {', '.join(THRESHOLD_RULES)}")


def detect_run(run_dir: str | Path | list[str | Path], data: str, split: str | None = None, score: str | None = None,
               threshold: float | None = None, contamination: float | None = None, out: str | Path | None = None,
               anomaly_classes: list[int] | None = None, max_flagged: int = 64, val_data: str | None = None,
               val_split: str | None = None, maps: list[str] | None = None, run_data: str | Path | None = None,
               fdr: float | None = None, group_by_label: bool = False, **detector_options: Any) -> tuple[Path, dict[str, Any]]:
    """Score ``data`` (a dataset name, an .npz, an OOD-study file or a folder) with the model of
    ``run_dir``: the score's state is fitted on the run's training split, and the normalisation and
    (with ``contamination``) the threshold come from its validation split, which the model never fitted; write ``out`` (default RUN_DIR/detect-<data>-<time>) with
    metrics.json, scores.csv, figures/ (histogram; ROC, PR, confusion matrix when anomaly labels
    are known), figures/flagged.png and a self-contained report.html. ``threshold_rule='f1'``
    (in ``detector_options``) picks the threshold on the labelled ``val_data`` / ``val_split``.
    ``maps`` (kinds of vaelab.detect.maps: mse, ssim, gradient): per-pixel anomaly maps of every
    image, saved in maps.npz and drawn over the flagged images; when the set has defect masks (a
    `vaelab data build-defects` file, an MVTec AD category) also their pixel ROC-AUC and AUPRO.
    Several run directories (``run_dir`` a list; runs of one configuration with different seeds,
    trained on the same data) make an ensemble: the score is the mean of their raw scores,
    calibrated on the first run's validation split; pixel maps come from the first run's model.
    ``run_data``: where the run's own data (its recorded data.path) is now, when it has moved."""
    _check_options(detector_options)  # a mistyped option fails before the model and the data are loaded
    if maps:
        bad = [k for k in maps if k not in MAP_KINDS]
        if bad:
            raise ConfigError(f"unknown anomaly map(s) {bad}; choose from: {', '.join(MAP_KINDS)}")
    import numpy as np

    runs = run_dirs(run_dir)
    run_dir = runs[0]
    if out is not None and Path(out).exists() and (not Path(out).is_dir() or any(Path(out).iterdir())):
        raise ConfigError(f"--out {out} already exists and is not empty; the report would overwrite what is there. "
                          "Choose a new or empty directory")
    cfg, models = load_ensemble(runs)
    model = models[0]
    target, y, desc = load_detection_set(data, cfg.data, split, anomaly_classes)
    train, held_out, _ = load_run_data(cfg.data, cfg.seed, run_dir, run_data)
    score = score or DEFAULT_SCORE
    val = {}
    if val_data is not None:
        v, vy, vdesc = load_detection_set(val_data, cfg.data, val_split, anomaly_classes)
        if vy is None:
            raise ConfigError(f"--val-data {vdesc} has no anomaly labels; give an OOD-study file, the run's own data with "
                              "a class filter, or --anomaly-classes")
        val = {"val": v, "val_labels": vy}
    settings = dict(score=score, contamination=contamination if contamination is not None else 0.1, threshold=threshold,
                    seed=cfg.seed, batch_size=cfg.train.eval_batch_size, **detector_options)
    # the fitted detector is kept in the run (detectors/KEY), keyed by its settings, the data it was fitted and
    # calibrated on and the weights: the next call with the same key reuses it instead of rescoring the training split
    key = _detector_key(runs, settings, cfg, run_data, {"val_data": val_data, "val_split": val_split, "groups": group_by_label,
                                                        "anomaly_classes": anomaly_classes if val_data else None})
    groups: dict[str, Any] = {}
    if group_by_label:  # one calibration per class of the run's data (a CSV label column, class sub-folders)
        if train.labels is None or target.labels is None or (train.labels < 0).any():
            raise ConfigError("--group-by-label calibrates each class on its own: the run's data and --data need a label "
                              "for every item (a CSV label column, class sub-folders of a folder, an npz with y)")
        groups = {"groups": train.labels}
        if len(held_out):
            groups["calibration_groups"] = held_out.labels
    det = _cached_detector(runs[0], key)
    if det is None:
        det = AutoencoderDetector(models if len(models) > 1 else model, **settings)
        # calibrated on the run's validation split, which its model never fitted: the training images score
        # lower than new normal images, so their quantiles would flag more than the contamination says
        det.fit(train, calibration_set=held_out if len(held_out) else None, **val, **groups)
        _keep_detector(runs[0], key, det)
    log.info("scoring %d images of %s", len(target), desc)
    grouping = {"groups": target.labels} if group_by_label else {}
    s = det.decision_function(target, clip=False, **grouping)  # unclipped: images beyond the training range keep their order
    # conformal p-values against the held-out calibration scores (none when calibrated on fitted data)
    pvalues = None
    if det.held_out_ and group_by_label:  # each item against its own group's calibration scores
        pvalues, labels_now = np.empty(len(s)), target.labels.numpy()
        for g, sub in det.groups_.items():
            idx = np.nonzero(labels_now == g)[0]
            pvalues[idx] = conformal_pvalues(sub.calibration_scores_, s[idx])
    elif det.held_out_:
        pvalues = conformal_pvalues(det.calibration_scores_, s)
    thr = det.threshold_
    if fdr is not None:  # Benjamini-Hochberg on the batch's p-values: at most fdr of the flagged are normal on average
        if pvalues is None:
            raise ConfigError("--fdr needs conformal p-values, and this run has no validation split to calibrate on "
                              "(data.val_fraction=0); train it with one, or flag with --contamination")
        flagged = benjamini_hochberg(pvalues, check_rate(fdr, "--fdr"))
        # the flagged images are the highest scores: the cut lies at the highest score left unflagged
        if group_by_label:  # scores on each group's own scale: no single cut
            thr = None
        else:
            thr = float(s[flagged == 0].max()) if (flagged == 0).any() else float(s.min()) - 1.0
    elif group_by_label:  # each item at its own group's threshold
        thr = None
        flagged = np.array([v > det.thresholds_[g] for v, g in zip(s, target.labels.tolist())], dtype=np.int64)
    else:
        flagged = (s > thr).astype(np.int64)  # = det.predict(target), without scoring twice
    stem = Path(data).stem if Path(data).suffix else Path(data).name
    out = Path(out) if out else run_dir / f"detect-{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    metrics: dict[str, Any] = {
        "data": desc, "score": score, "normalized": True, "norm_range": [float(q) for q in det.norm_quantiles_],
        "threshold": thr,
        **threshold_record(det, threshold, fdr),
        "n": len(target), "n_flagged": int(flagged.sum()), "flagged_fraction": float(flagged.mean()),
        "n_calibration": det.n_calibration_, "calibrated_on": det.calibrated_on_,
        "calibration_flagged_fraction": _calibration_flagged(det),
        **({"thresholds": {str(k): v for k, v in det.thresholds_.items()}} if group_by_label else {}),
    }
    if y is not None:
        metrics.update({k: v for k, v in evaluate_detection(y, s, thr, flagged if thr is None else None).items() if k != "threshold"})
    pixel_maps = _pixel_maps(model, target, train, maps or [], metrics, out)
    atomic_write_json(out / "metrics.json", metrics)
    import csv
    import io

    labels = target.labels.tolist() if target.labels is not None else [""] * len(target)
    files = target.files or [""] * len(target)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")  # file names may hold commas or quotes
    # vectors: the features that make each row's score (scores.csv) and the flagged rows' (a figure)
    tops, contributions = [""] * len(target), None
    if target.is_vector:
        log.info("explaining the scores of %d rows by their %d features", len(target), target.shape[0])
        contributions = det.explain(target)
        tops = top_features(contributions, 3)
    w.writerow(["index", "file", "score", "pvalue", "flagged", "label", "anomaly"] + (["top_features"] if target.is_vector else []))
    for i, (v, f, lab, name) in enumerate(zip(s, flagged, labels, files)):
        w.writerow([i, name, f"{v:.6g}", "" if pvalues is None else f"{pvalues[i]:.6g}", f, lab, "" if y is None else int(y[i])]
                   + ([tops[i]] if target.is_vector else []))
    atomic_write_text(out / "scores.csv", buf.getvalue())
    figs = detection_figures(out / "figures", s, thr, y, metrics, score)
    if contributions is not None and flagged.any():
        figs.append((f"The columns that contribute most to the scores of the {int(flagged.sum())} flagged rows (the mean "
                     "of each column's contribution: its reconstruction error, or gradient x input of the score)",
                     feature_figure(contributions[flagged == 1], out / "figures" / "features.png")))
    idx = np.argsort(-s)[: min(max_flagged, int(flagged.sum()))]
    if len(idx) and not target.is_vector:
        figs.append((f"The {len(idx)} highest-scoring flagged images of {int(flagged.sum())} (highest first)",
                     save_grid(target.subset(torch.as_tensor(idx.copy())).float(), out / "figures" / "flagged.png", nrow=8)))
    if len(idx) and pixel_maps:
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
                "calibration": (f"{cfg.data.name} validation split ({det.n_calibration_} images the model never fitted)"
                                if len(held_out) else f"{det.n_calibration_} images held out of the {cfg.data.name} training split"),
                **detector_options}
    lo, hi = det.norm_quantiles_
    anchors = ("0 = the most normal calibration image, 1 = the most anomalous" if (lo, hi) == (0.0, 1.0) else
               f"0 = the calibration scores' {lo:g} quantile, 1 = their {hi:g} quantile")
    by = (f"the {cfg.model.name} of {run_dir.resolve()}" if len(runs) == 1 else
          f"an ensemble of {len(runs)} runs (the mean of their raw scores; the first: {cfg.model.name} of {run_dir.resolve()})")
    notes = [f"Scores of {len(target)} images of {desc} by {by}: '{score}', "
             f"normalised with the calibration scores ({anchors}); higher is more anomalous. "
             + (f"Images are flagged by the Benjamini-Hochberg procedure at a false-discovery rate of {fdr} on their "
                "conformal p-values (scores.csv)" + (f", which puts the cut at {thr:.4g}." if thr is not None else ".")
                if fdr is not None else f"Images above the threshold {thr:.4g} are flagged." if thr is not None else
                f"Each class is scored and flagged by its own calibration ({len(det.groups_)} classes; metrics.json: thresholds).")]
    if y is None:
        notes.append("The set has no anomaly labels, so no ROC-AUC: use an OOD-study file, a one-class run "
                     "(data.classes) on its own dataset, or --anomaly-classes.")
    if target.is_vector:  # rows of a table: examples and entries, not images and pixels

        notes = [for_vectors(n) for n in notes]
        settings["calibration"] = for_vectors(settings["calibration"])
    write_report(out, f"vaelab detect: {cfg.model.name} on {desc}", dump_yaml(settings), metrics, figs, notes,
                 vectors=target.is_vector)
    return out, metrics


def _calibration_flagged(det: Any) -> float:
    """The share of the calibration scores above the threshold (each group's above its own)."""
    subs = list(det.groups_.values()) if getattr(det, "groups_", None) else [det]
    above = sum(int((d.calibration_scores_ > d.threshold_).sum()) for d in subs)
    return above / max(1, sum(len(d.calibration_scores_) for d in subs))


def _detector_key(runs: list[Path], settings: dict[str, Any], cfg: RunConfig, run_data: Any, extra: dict[str, Any]) -> str:
    """A digest of what a fitted detector depends on: its settings, the run's data config (and where its data
    is), the labelled validation set of the f1 rule, and every run's weights, byte for byte."""
    import hashlib
    import json

    h = hashlib.sha256()
    h.update(json.dumps({"settings": settings, "data": to_dict(cfg.data), "run_data": str(run_data) if run_data else None,
                         "extra": extra, "format": 1}, sort_keys=True, default=str).encode())

    for r in runs:  # read as every file of a run is: no symlink followed, bounded
        h.update(read_bytes(inside(r, "model.safetensors"), MAX_ARRAY_BYTES))
    return h.hexdigest()[:24]


def _cached_detector(run_dir: Path, key: str) -> Any:
    """The detector kept under RUN_DIR/detectors/KEY, or None (none kept, or one that does not load)."""

    home = run_dir / "detectors"
    if home.is_symlink() or (home / key).is_symlink() or not (home / key).is_dir():
        return None  # a symlinked detectors/ of a run from elsewhere is not followed
    try:
        det = AutoencoderDetector.load(home / key)
    except VaelabError as e:
        log.info("the kept detector %s does not load (%s); fitting it again", home / key, e)
        return None
    log.info("reusing the detector fitted and calibrated earlier with these settings (%s)", home / key)
    return det


def _keep_detector(run_dir: Path, key: str, det: Any) -> None:
    """Save ``det`` to RUN_DIR/detectors/KEY, written whole under a temporary name and then renamed; a run
    directory that cannot be written (read-only, a symlinked detectors/) only costs the reuse."""
    import shutil
    import tempfile

    home = run_dir / "detectors"
    try:
        if home.is_symlink():
            raise OSError(f"{home} is a symlink")
        home.mkdir(exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=home))
        try:
            det.save(tmp / "d")
            (tmp / "d").rename(home / key)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError as e:
        log.info("the fitted detector is not kept in %s (%s); the next call fits it again", home, e)


def _pixel_maps(model: Any, target: Any, train: Any, kinds: list[str], metrics: dict[str, Any], out: Path) -> dict[str, Any]:
    """Each kind's maps of every image of ``target`` (written to OUT/maps.npz), and their pixel-level
    scores against the set's defect masks into ``metrics['pixel']``."""
    import numpy as np

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
