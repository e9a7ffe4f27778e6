"""Export a fitted AutoencoderDetector as a standalone scorer: ONNX or TorchScript, plus manifest.json.

``ScorerModule`` is an ``nn.Module`` built from a fitted detector: the autoencoder's networks and
the score's fitted state as buffers (normalisation anchors, threshold; a density score's whitener
and Gaussian mixture, a kNN score's whitened training bank, a combo's member means and stds). Its
forward takes float images [B, C, H, W] in [0, 1] and returns

- ``raw_score`` [B] float64: what ``detector.raw_scores`` gives,
- ``score`` [B] float64: the detector's normalisation, unclipped (``decision_function(X, clip=False)``),
- ``flag`` [B] int64: ``score > threshold_`` (``predict``),
- ``error_map`` [B, H, W] float32: the reconstruction's squared error, averaged over channels.

Each score computes itself in the exported graph through the head its class declares
(``Score.export_head``, found by the score's registration, so a user's score that declares one exports
too; ``EXPORTABLE_SCORES`` lists them). The densities are computed in float64 in torch exactly as scikit-learn's ``GaussianMixture.score_samples``
does (log-weights + Cholesky-whitened quadratic forms, log-sum-exp). ``nelbo`` exports with the
score's common noise as a buffer (the Python score reuses one draw for every image, so the two agree);
a posterior that is not a diagonal Gaussian, or a discretised likelihood, is refused. ``nll`` draws
fresh importance samples per image and is not exported; neither is a rank combo (a search over
sorted training scores).
``load_exported`` (vaelab.exported) runs a bundle without vaelab's training stack."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ..errors import ConfigError, ModelError
from ..exported import MODEL_FILES, OUTPUT_NAMES, load_exported
from ..fileio import atomic_write_json
from .scores import DEFAULT_COMBO, ExportContext, export_head_for, export_refusal, exportable_scores, get_score
from .scores.combination import RANK_REFUSAL, member_names
from .scores.density import GMMHead as _GMMHead  # noqa: F401 - the names the heads had here before
from .scores.likelihood import bernoulli_log_prob as _bernoulli_log_prob  # noqa: F401

_Context = ExportContext

__all__ = ["FORMATS", "ScorerModule", "check_exportable", "export_detector", "load_exported"]

FORMATS = tuple(MODEL_FILES)


def __getattr__(name: str) -> Any:
    if name == "EXPORTABLE_SCORES":  # every registered score with an export head, a user's too
        return tuple(exportable_scores())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def check_exportable(score: str, combo: Any = None, combo_method: str | None = None) -> None:
    """Refuse, before any fitting, a score the exporter cannot compute (one without an export head, a rank combo)."""
    spec = get_score(score)
    members = [spec]
    if spec.cls.combines:
        members = [get_score(m) for m in member_names(combo if combo is not None else DEFAULT_COMBO)]
        if combo_method not in (None, "zscore"):
            raise export_refusal("combo", RANK_REFUSAL)
    for m in members:
        if not m.exportable:
            raise export_refusal(repr(m.name), m.cls.why_not_exportable)


class ScorerModule(nn.Module):
    """The fitted detector as one module: images [B, C, H, W] in [0, 1] -> (raw score, normalised
    score, flag, squared-error map); see the module docstring."""

    def __init__(self, detector: Any):
        super().__init__()
        if not hasattr(detector, "score_"):
            raise ModelError("export a fitted detector: call fit(X) with normal training images first")
        if getattr(detector, "groups_", None):
            raise ConfigError("a grouped detector has one calibration per group: export each group's detector "
                              "(det.groups_[GROUP]) as its own scorer")
        import copy

        models_ = getattr(detector, "models_", [detector.model_])
        scores_ = getattr(detector, "scores_", [detector.score_])
        models, heads = [], []
        for fitted, score in zip(models_, scores_):  # an ensemble: one (model, head) per member
            model = copy.deepcopy(fitted).cpu().float().eval()
            if model.is_vector:
                raise ConfigError("exporting a detector of vectors (tabular data) is not supported yet: the exported scorer "
                                  "takes images [B, C, H, W] in [0, 1]")
            model.input_checks = False  # a value check is a data-dependent branch the exported graph cannot keep
            for p in model.parameters():
                p.requires_grad_(False)
            models.append(model)
            heads.append(export_head_for(score, model))
        self.models, self.heads = nn.ModuleList(models), nn.ModuleList(heads)
        span = detector.raw_max_ - detector.raw_min_
        lo, scale = (detector.raw_min_, span if span > 0 else 1.0) if detector.normalize else (0.0, 1.0)
        self.register_buffer("raw_min", torch.tensor(lo, dtype=torch.float64))
        self.register_buffer("raw_span", torch.tensor(scale, dtype=torch.float64))
        self.register_buffer("threshold", torch.tensor(float(detector.threshold_), dtype=torch.float64))
        # the calibration scores (normalised, unclipped) travel inside the scorer: its p-values are the detector's;
        # a detector calibrated on the data it fitted has none, and its p-value output is NaN
        held_out = bool(getattr(detector, "held_out_", False))
        cal = np.asarray(detector.calibration_scores_, dtype=np.float64) if held_out else np.zeros(0)
        self.register_buffer("calibration", torch.from_numpy(np.sort(cal)))
        self.has_pvalues = held_out

    @property
    def model(self) -> nn.Module:
        """The first member's model (the only one unless the detector is an ensemble)."""
        return self.models[0]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        raws, errs = [], []
        for model, head in zip(self.models, self.heads):
            ctx = ExportContext(model, x)
            raws.append(head(ctx).double())
            errs.append(ctx.get("err").mean(1))
        raw = torch.stack(raws).mean(0)  # an ensemble's score is the mean of its members' raw scores
        score = (raw - self.raw_min) / self.raw_span
        flag = (score > self.threshold).to(torch.int64)
        if self.has_pvalues:  # (1 + #{calibration >= score}) / (n + 1), vaelab.detect.conformal.conformal_pvalues
            at_least = (self.calibration.unsqueeze(0) >= score.unsqueeze(1)).to(torch.float64).sum(1)
            pvalue = (1.0 + at_least) / (self.calibration.shape[0] + 1.0)
        else:
            pvalue = torch.full_like(score, float("nan"))
        return raw, score, flag, torch.stack(errs).mean(0), pvalue


def export_detector(detector: Any, out_dir: str | Path, format: str = "onnx", opset: int = 17) -> Path:
    """Write ``out_dir`` with the scorer (scorer.onnx or scorer.pt, a traced TorchScript module) and
    manifest.json; returns ``out_dir``. ``load_exported(out_dir)`` runs it."""
    if format not in FORMATS:
        raise ConfigError(f"unknown export format {format!r}; choose one of: {', '.join(FORMATS)}")
    import vaelab

    module = ScorerModule(detector).eval()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    c, h, w = module.model.image_shape
    example = torch.rand(2, c, h, w, generator=torch.Generator().manual_seed(0))
    path = out / MODEL_FILES[format]
    # argument validation of torch.distributions is a data-dependent check a trace cannot keep: off while tracing
    validate = torch.distributions.Distribution._validate_args
    torch.distributions.Distribution.set_default_validate_args(False)
    try:
        _write(module, example, path, format, opset)
    finally:
        torch.distributions.Distribution.set_default_validate_args(validate)
    span = detector.raw_max_ - detector.raw_min_
    manifest = {
        "format": format, "file": path.name, "vaelab_version": vaelab.__version__, "torch_version": torch.__version__,
        "input_name": "images", "input_shape": ["batch", c, h, w], "input_dtype": "float32", "value_range": [0.0, 1.0],
        "outputs": list(OUTPUT_NAMES),
        "output_info": {"raw_score": "[B] float64, higher = more anomalous", "score": "[B] float64, normalised, unclipped",
                        "flag": "[B] int64, 1 = score > threshold", "error_map": "[B, H, W] float32, squared error averaged over channels "
                                     "(and over an ensemble's models)",
                        "pvalue": "[B] float64, split-conformal p-value against the calibration scores inside the scorer"
                                  if module.has_pvalues else "[B] NaN: the detector was calibrated on the data it fitted"},
        "n_calibration": int(module.calibration.shape[0]),
        "score": detector.score, "score_spec": detector.score_.spec(), "model": detector.model_.config.name,
        "ensemble": len(module.models),
        "threshold": float(detector.threshold_), "normalize": bool(detector.normalize),
        "normalization": {"raw_min": float(detector.raw_min_), "raw_max": float(detector.raw_max_),
                          "span_used": float(span if span > 0 else 1.0), "norm_range": [float(q) for q in detector.norm_quantiles_]},
    }
    if format == "onnx":
        manifest["opset"] = opset
    from ..exported import file_digest, manifest_digest

    # what load_exported checks: an edited manifest or scorer is refused instead of half-used
    manifest["integrity"] = {"manifest_sha256": manifest_digest(manifest), "file_sha256": file_digest(path)}
    atomic_write_json(out / "manifest.json", manifest)
    return out


def _write(module: ScorerModule, example: torch.Tensor, path: Path, format: str, opset: int) -> None:
    with torch.no_grad():
        if format == "onnx":
            # the TorchScript-based exporter (dynamo=False) traces through the torch.distributions objects
            # that encode / decode return, for every model of the family; see docs/guide/export.md
            torch.onnx.export(module, (example,), str(path), input_names=["images"], output_names=list(OUTPUT_NAMES),
                              dynamic_axes={n: {0: "batch"} for n in ("images", *OUTPUT_NAMES)}, opset_version=opset,
                              dynamo=False)
        else:
            torch.jit.trace(module, (example,), check_trace=False).save(str(path))
