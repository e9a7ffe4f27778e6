"""Export a fitted AutoencoderDetector as a standalone scorer: ONNX or TorchScript, plus manifest.json.

``ScorerModule`` is an ``nn.Module`` built from a fitted detector: the autoencoder's networks and
the score's fitted state as buffers (normalisation anchors, threshold; a density score's whitener
and Gaussian mixture, a kNN score's whitened training bank, a combo's member means and stds). Its
forward takes float images [B, C, H, W] in [0, 1] and returns

- ``raw_score`` [B] float64: what ``detector.raw_scores`` gives,
- ``score`` [B] float64: the detector's normalisation, unclipped (``decision_function(X, clip=False)``),
- ``flag`` [B] int64: ``score > threshold_`` (``predict``),
- ``error_map`` [B, H, W] float32: the reconstruction's squared error, averaged over channels.

The densities are computed in float64 in torch exactly as scikit-learn's ``GaussianMixture.score_samples``
does (log-weights + Cholesky-whitened quadratic forms, log-sum-exp). ``nelbo`` exports with the
score's common noise as a buffer (the Python score reuses one draw for every image, so the two agree);
a posterior that is not a diagonal Gaussian, or a discretised likelihood, is refused. ``nll`` draws
fresh importance samples per image and is not exported; neither is a rank combo (a search over
sorted training scores).
``load_exported`` (vaelab.exported) runs a bundle without vaelab's training stack."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError, ModelError
from ..exported import MODEL_FILES, OUTPUT_NAMES, load_exported
from ..fileio import atomic_write_json
from .scores import (BCEScore, ClassEnergyScore, ClassEntropyScore, ComboScore, GMMScore, KNNScore, MahalanobisScore, MSEScore, NELBOScore, PatchMSEScore,
                     Score, SSIMScore, Whitener, free_energy, gaussian_parts, log_entropy, nelbo_at_noise)

__all__ = ["EXPORTABLE_SCORES", "FORMATS", "ScorerModule", "check_exportable", "export_detector", "load_exported"]

FORMATS = tuple(MODEL_FILES)
# every score of vaelab.detect.scores that the exported module computes; nll samples afresh per image
EXPORTABLE_SCORES = ("mse", "bce", "patch_mse", "ssim", "nelbo", "mahalanobis", "latent_gmm", "latent_knn",
                     "feature_knn", "feature_gmm", "class_entropy", "class_energy", "combo")


def _refuse(what: str, why: str) -> ConfigError:
    return ConfigError(f"the {what} score cannot be exported: {why}. Exportable scores: {', '.join(EXPORTABLE_SCORES)} "
                       "(combo with combo_method='zscore' and exportable members)")


def check_exportable(score: str, combo: Any = None, combo_method: str | None = None) -> None:
    """Refuse, before any fitting, a score the exporter cannot compute (nll, a rank combo)."""
    from .scores import DEFAULT_COMBO

    members = [score]
    if score == "combo":
        members = [c.strip() for c in combo.split(",")] if isinstance(combo, str) else list(combo or DEFAULT_COMBO)
        if combo_method not in (None, "zscore"):
            raise _refuse("combo", "combo_method='rank' looks each member score up among the sorted training scores; "
                                   "export a zscore combo")
    for m in members:
        if m == "nll":
            raise _refuse(repr(m), "it draws fresh importance samples for every image, so the same image would not get "
                                   "the same score; export 'nelbo', whose noise is drawn once")


class _Context:
    """What the heads read, each computed once per forward: the reconstruction, its error, E[z|x], features."""

    def __init__(self, model: nn.Module, x: torch.Tensor):
        self.model, self.x, self._cache = model, x, {}

    def get(self, key: str) -> torch.Tensor:
        if key not in self._cache:
            m, x = self.model, self.x
            if key == "recon":
                v = m.reconstruct(x)
            elif key == "err":
                v = (self.get("recon") - x).pow(2)
            elif key == "latent":
                v = m.encode(x).mean
            elif key == "feature":
                v = m.features(x)
            else:  # pragma: no cover
                raise KeyError(key)
            self._cache[key] = v
        return self._cache[key]


class _WhitenerModule(nn.Module):
    def __init__(self, w: Whitener):
        super().__init__()
        self.register_buffer("mean", w.mean_.double().clone())
        self.register_buffer("scale", w.scale_.double().clone())
        self.rotate = w.components_ is not None
        self.register_buffer("components", (w.components_ if self.rotate else torch.zeros(0)).double().clone())

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        c = v.double() - self.mean
        if self.rotate:
            c = c @ self.components
        return c / self.scale


class _MSEHead(nn.Module):
    def forward(self, ctx: _Context) -> torch.Tensor:
        return ctx.get("err").flatten(1).mean(1)


class _PatchMSEHead(nn.Module):
    def __init__(self, patch_size: int, image_shape: tuple[int, ...]):
        super().__init__()  # the window clipped to the image, fixed here: a traced kernel size must be a constant
        self.kernel = (min(patch_size, image_shape[-2]), min(patch_size, image_shape[-1]))

    def forward(self, ctx: _Context) -> torch.Tensor:
        err = ctx.get("err").mean(1, keepdim=True)
        return F.avg_pool2d(err, self.kernel, stride=1).flatten(1).amax(1)


class _BCEHead(nn.Module):
    def forward(self, ctx: _Context) -> torch.Tensor:
        m, x = ctx.model, ctx.x
        p = m.decode(ctx.get("latent")).mean.clamp(1e-6, 1 - 1e-6)
        return (-(x * p.log() + (1 - x) * (1 - p).log())).flatten(1).sum(1)


class _SSIMHead(nn.Module):
    """1 - SSIM as vaelab.evaluate.image_quality.ssim_per_image (torchmetrics' arithmetic: reflect
    padding, Gaussian window 11 / sigma 1.5, variances clamped at 0, the valid region averaged)."""

    def __init__(self, image_shape: tuple[int, ...], window: int = 11, sigma: float = 1.5):
        super().__init__()
        from torchmetrics.functional.image.ssim import _gaussian_kernel_2d

        size = int(3.5 * sigma + 0.5) * 2 + 1
        self.pad, self.crop = (size - 1) // 2, (window - 1) // 2
        channels = self.channels = image_shape[0]
        self.register_buffer("kernel", _gaussian_kernel_2d(channels, [size, size], [sigma, sigma], torch.float32, "cpu"))
        q = self.crop
        self.valid = image_shape[-1] > 2 * q and image_shape[-2] > 2 * q  # else the whole (reflect-padded) map, as ssim_per_image

    def forward(self, ctx: _Context) -> torch.Tensor:
        a, b = ctx.get("recon").float(), ctx.x.float()
        p, n = self.pad, a.shape[0]
        a, b = F.pad(a, (p, p, p, p), mode="reflect"), F.pad(b, (p, p, p, p), mode="reflect")
        o = F.conv2d(torch.cat((a, b, a * a, b * b, a * b)), self.kernel, groups=self.channels)
        mu_a, mu_b, saa, sbb, sab = o[:n], o[n : 2 * n], o[2 * n : 3 * n], o[3 * n : 4 * n], o[4 * n :]
        c1, c2 = 0.01**2, 0.03**2
        mu_aa, mu_bb, mu_ab = mu_a.pow(2), mu_b.pow(2), mu_a * mu_b
        upper = 2 * (sab - mu_ab) + c2
        lower = (saa - mu_aa).clamp_min(0.0) + (sbb - mu_bb).clamp_min(0.0) + c2
        full = ((2 * mu_ab + c1) * upper) / ((mu_aa + mu_bb + c1) * lower)
        if self.valid:
            q = self.crop
            full = full[..., q:-q, q:-q]
        return 1.0 - full.flatten(1).mean(1)


def _bernoulli_log_prob(px, x: torch.Tensor) -> torch.Tensor:
    """log p(x | logits l) summed per example, x * l - softplus(l) with softplus(l) = max(l, 0) +
    log(1 + exp(-|l|)): torch's Bernoulli log_prob exports to ONNX as log(sigmoid(l)), which is -inf
    (and the sum NaN) where a logit saturates."""
    logits = px.base_dist.logits
    softplus = logits.clamp_min(0) + torch.log(1 + torch.exp(-logits.abs()))
    return (x * logits - softplus).flatten(1).sum(1)


class _NELBOHead(nn.Module):
    """-ELBO at the score's common noise (vaelab.detect.scores.nelbo_at_noise), the noise a buffer."""

    def __init__(self, s: NELBOScore, model: nn.Module):
        super().__init__()
        if model.config.likelihood in ("dgaussian", "dlogistic"):
            raise _refuse("'nelbo'", f"the {model.config.likelihood} likelihood's log-probability has no exported form "
                                     "yet; train with likelihood=bernoulli or gaussian, or export a reconstruction score")
        c, h, w = model.image_shape
        with torch.no_grad():
            q = model.encode(torch.full((1, c, h, w), 0.5))
        parts = gaussian_parts(q)
        if parts is None:
            raise _refuse("'nelbo'", f"{model.config.name}'s posterior is not a diagonal Gaussian, so the score samples "
                                     "it afresh for every image")
        self.register_buffer("eps", s.noise(parts[0].shape[-1]).float().clone())
        self.bernoulli = model.config.likelihood == "bernoulli"

    def forward(self, ctx: _Context) -> torch.Tensor:
        return nelbo_at_noise(ctx.model, ctx.x, self.eps, log_prob=_bernoulli_log_prob if self.bernoulli else None)


class _MahalanobisHead(nn.Module):
    def __init__(self, s: MahalanobisScore):
        super().__init__()
        self.register_buffer("location", s.location_.double().clone())
        self.register_buffer("precision", s.precision_.double().clone())

    def forward(self, ctx: _Context) -> torch.Tensor:
        d = ctx.get("latent").double() - self.location
        return ((d @ self.precision) * d).sum(1).clamp_min(0).sqrt()


class _GMMHead(nn.Module):
    """-log p(v) under scikit-learn's full-covariance GaussianMixture, as its score_samples computes it."""

    def __init__(self, s: GMMScore):
        super().__init__()
        g = s.gmm_
        if g.covariance_type != "full":  # pragma: no cover - vaelab fits full covariances
            raise ModelError(f"exporting a GaussianMixture needs covariance_type='full', got {g.covariance_type!r}")
        self.source = s.source
        self.whiten = _WhitenerModule(s.whitener_)
        self.register_buffer("log_weights", torch.from_numpy(g.weights_).double().log())
        self.register_buffer("means", torch.from_numpy(g.means_).double())  # [K, D]
        chol = torch.from_numpy(g.precisions_cholesky_).double()  # [K, D, D]
        self.register_buffer("prec_chol", chol)
        self.register_buffer("log_det", torch.diagonal(chol, dim1=1, dim2=2).log().sum(1))  # [K]
        self.register_buffer("mu_chol", torch.einsum("kd,kde->ke", self.means, chol))  # [K, D]
        self.n_features = g.means_.shape[1]

    def forward(self, ctx: _Context) -> torch.Tensor:
        v = self.whiten(ctx.get(self.source))  # [B, D]
        y = torch.einsum("bd,kde->bke", v, self.prec_chol) - self.mu_chol  # [B, K, D]
        log_prob = y.pow(2).sum(2)
        a = -0.5 * (self.n_features * math.log(2 * math.pi) + log_prob) + self.log_det + self.log_weights  # [B, K]
        m = a.amax(1, keepdim=True)
        return -(m.squeeze(1) + (a - m).exp().sum(1).log())


class _KNNHead(nn.Module):
    """Mean Euclidean distance to the k nearest rows of the whitened training bank (as torch.cdist)."""

    def __init__(self, s: KNNScore):
        super().__init__()
        self.source = s.source
        self.whiten = _WhitenerModule(s.whitener_)
        self.register_buffer("bank", s.train_.double().clone())  # [N, D]
        self.register_buffer("bank_sq", s.train_.double().pow(2).sum(1))  # [N]
        self.k = min(s.k, len(s.train_))

    def forward(self, ctx: _Context) -> torch.Tensor:
        q = self.whiten(ctx.get(self.source))
        d2 = q.pow(2).sum(1, keepdim=True) + self.bank_sq - 2 * (q @ self.bank.T)
        d = d2.clamp_min(0).sqrt()
        return torch.topk(d, self.k, dim=1, largest=False).values.mean(1)


class _ComboHead(nn.Module):
    def __init__(self, s: ComboScore, model: nn.Module):
        super().__init__()
        if s.method != "zscore":
            raise _refuse(s.spec(), "combo_method='rank' looks each member score up among the sorted training scores; "
                                    "export a zscore combo")
        self.members = nn.ModuleList(_head(m, model) for m in s.members)
        self.register_buffer("mean", s.mean_.double().clone())
        self.register_buffer("std", s.std_.double().clone())

    def forward(self, ctx: _Context) -> torch.Tensor:
        s = torch.stack([h(ctx).double() for h in self.members], 1)
        return ((s - self.mean) / self.std).mean(1)


class _ClassEntropyHead(nn.Module):
    def forward(self, ctx: _Context) -> torch.Tensor:
        return log_entropy(F.log_softmax(ctx.model.logits(ctx.get("latent")), 1))


class _ClassEnergyHead(nn.Module):
    def forward(self, ctx: _Context) -> torch.Tensor:
        return free_energy(ctx.model.logits(ctx.get("latent")))


def _head(s: Score, model: nn.Module) -> nn.Module:
    image_shape = tuple(model.image_shape)
    if isinstance(s, MSEScore):
        return _MSEHead()
    if isinstance(s, PatchMSEScore):
        return _PatchMSEHead(s.patch_size, image_shape)
    if isinstance(s, BCEScore):
        return _BCEHead()
    if isinstance(s, SSIMScore):
        return _SSIMHead(image_shape)
    if isinstance(s, NELBOScore):
        return _NELBOHead(s, model)
    if isinstance(s, MahalanobisScore):
        return _MahalanobisHead(s)
    if isinstance(s, GMMScore):
        return _GMMHead(s)
    if isinstance(s, KNNScore):
        return _KNNHead(s)
    if isinstance(s, ComboScore):
        return _ComboHead(s, model)
    if isinstance(s, ClassEnergyScore):  # before its parent class
        return _ClassEnergyHead()
    if isinstance(s, ClassEntropyScore):
        return _ClassEntropyHead()
    why = ("it draws fresh importance samples for every image, so the same image would not get the same score"
           if s.name == "nll" else "the exporter has no torch version of it")
    raise _refuse(repr(s.name), why)


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
            heads.append(_head(score, model))
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
            ctx = _Context(model, x)
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
