"""The user-facing jobs, composing the stages: train -> evaluate -> figures -> report."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch

from .config import dump_yaml
from .data import ImageSet, load_data, load_split
from .evaluate import DEFAULT_METRICS, evaluate
from .generate import interpolate, latent_traversal, make_sampler
from .fileio import atomic_write_json
from .errors import VaelabError
from .models import Autoencoder
from .report import loss_curves, save_grid, write_report
from .report.figures import image_format
from .train import RunConfig, fit, load_run_model
from .train.run import epochs_done, run_lock

log = logging.getLogger("vaelab")


def default_run_dir(model: str, data: str) -> Path:
    return Path("runs") / f"{model}-{data}-{time.strftime('%Y%m%d-%H%M%S')}"


def load_run(run_dir: str | Path, encoder: torch.nn.Module | None = None, decoder: torch.nn.Module | None = None) -> Autoencoder:
    """The trained model of ``run_dir`` in eval mode; refuses weights of another model or shape. A
    run trained with networks of your own takes the same (untrained) ``encoder`` and ``decoder``."""
    return load_run_model(run_dir, encoder, decoder)


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
            from .errors import CheckpointError

            raise CheckpointError(f"{run_dir} does not exist; --resume takes the directory of an earlier run")
        with run_lock(run_dir):  # a run another process is training is refused before its files are read
            done = epochs_done(run_dir)
        if done is None:
            if not (run_dir / "config.yaml").is_file():
                from .errors import CheckpointError

                raise CheckpointError(f"{run_dir} is not a vaelab run (no config.yaml); train a new run into it instead")
            log.info("%s was stopped before its first checkpoint: training it from the beginning", run_dir)
            resume = False
        elif cfg.train.epochs < done:
            from .errors import ConfigError

            raise ConfigError(f"{run_dir} has already trained {done} epochs, so --epochs {cfg.train.epochs} would end "
                              f"before where it is. To train longer, pass --epochs N with N > {done}")
        elif cfg.train.epochs == done:
            return run_dir, _finished_run(run_dir, cfg, done, data, encoder, decoder)
    t0 = time.perf_counter()
    model, (train, val, test) = fit(cfg, run_dir, resume=resume, data=data, encoder=encoder, decoder=decoder)
    train_seconds = time.perf_counter() - t0
    log.info("trained in %.1f s; evaluating on %d test images and drawing the report", train_seconds, len(test))
    metrics = evaluate(model, test, DEFAULT_METRICS, batch_size=cfg.train.eval_batch_size, seed=cfg.seed, train=train)
    metrics.update({"train_seconds": train_seconds, "parameters": model.num_parameters(),
                    "n_train": len(train), "n_val": len(val), "n_test": len(test)})
    atomic_write_json(run_dir / "metrics.json", metrics)
    make_report(run_dir, model, cfg, metrics, test, train)
    return run_dir, metrics


def _finished_run(run_dir: Path, cfg: RunConfig, done: int, data: tuple[ImageSet, ImageSet, ImageSet] | None,
                  encoder: torch.nn.Module | None = None, decoder: torch.nn.Module | None = None) -> dict[str, Any]:
    """A resumed run that has already trained every epoch: nothing is trained or changed; lost
    weights are written again from the checkpoint, and lost metrics (a run killed while it was
    being evaluated) are computed again."""
    import json

    from .errors import CheckpointError
    from .train.run import restore_weights

    restored = False
    try:
        model = load_run(run_dir, encoder, decoder)
    except CheckpointError as e:
        log.info("%s; writing model.safetensors again from the checkpoint", str(e).split(". ")[0])
        model = restore_weights(run_dir, cfg, encoder, decoder)
        log.info("%s written again from the checkpoint", run_dir / "model.safetensors")
        restored = True
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text())
        if isinstance(metrics, dict) and metrics:
            log.info("%s is finished (%d of %d epochs); nothing %schanged. To train longer: vaelab train --resume %s "
                     "--epochs N with N > %d", run_dir, done, cfg.train.epochs, "else " if restored else "", run_dir, done)
            return metrics
    except (OSError, ValueError):
        pass
    log.info("%s finished training but has no metrics.json: evaluating it again", run_dir)
    train, val, test = data if data is not None else load_data(cfg.data, cfg.seed)
    metrics = evaluate(model, test, DEFAULT_METRICS, batch_size=cfg.train.eval_batch_size, seed=cfg.seed, train=train)
    metrics.update({"parameters": model.num_parameters(), "n_train": len(train), "n_val": len(val), "n_test": len(test)})
    atomic_write_json(run_dir / "metrics.json", metrics)
    make_report(run_dir, model, cfg, metrics, test, train)
    return metrics


class _Figures:
    """The report's figures, each drawn on its own: a figure that cannot be drawn for this run's
    data (one test image, constant codes, a single class...) becomes a note in the report naming
    the figure and why, instead of ending the run."""

    def __init__(self) -> None:
        self.figs: list[tuple[str, Path]] = []
        self.notes: list[str] = []

    def add(self, what: str, draw: Any) -> None:
        try:
            result = draw()
        except VaelabError as e:
            self.notes.append(f"No {what}: {e}")
            return
        except Exception as e:  # noqa: BLE001 - a figure never ends a run; the note says what went wrong
            log.warning("the %s could not be drawn (%s: %s)", what, type(e).__name__, e)
            self.notes.append(f"No {what}: drawing it failed ({type(e).__name__}: {e})")
            return
        if result is None:
            return
        for caption, path in result if isinstance(result, list) else [result]:
            self.figs.append((caption, path))


def make_figures(run_dir: Path, model: Autoencoder, test: ImageSet, seed: int = 0, train: ImageSet | None = None,
                 notes: list[str] | None = None) -> list[tuple[str, Path]]:
    """The run report's figures; what cannot be drawn is explained in ``notes`` (appended to)."""
    fig = run_dir / "figures"
    F = _Figures()
    curves = loss_curves(run_dir / "logs" / "metrics.csv", fig / "loss_curves.png")
    if curves:
        F.figs.append(("Loss terms: training (every step) and validation (every epoch)", curves))
    n = min(16, len(test))
    if n == 0:
        F.notes.append("The test split is empty: no reconstructions, samples or latent figures")
        if notes is not None:
            notes += F.notes
        return F.figs
    if test.is_vector:
        F.notes.append("The data are vectors: reconstructions, samples, interpolations and traversals are image grids "
                       "and are left out; the metrics hold the reconstruction error")
        _latent_map_figure(F, model, test, fig, seed)
        if notes is not None:
            notes += F.notes
        return F.figs
    x = test.subset(torch.arange(n)).float().to(next(model.parameters()).device)
    F.add("reconstructions", lambda: ("Reconstructions: originals (odd rows) above their reconstructions (even rows)",
                                      save_grid(_interleave_rows(x, model.reconstruct(x), 8), fig / "reconstructions.png", nrow=8)))
    if model.denoises:
        def denoising():
            noisy, den = model.denoise(x[:8], torch.Generator().manual_seed(seed))
            return ("Denoising: clean (top), corrupted (middle), denoised (bottom)",
                    save_grid(torch.cat([x[:8], noisy, den]), fig / "denoising.png", nrow=8))
        F.add("denoising figure", denoising)
    if model.can_sample:
        from .objectives import describe_prior

        g = torch.Generator().manual_seed(seed)
        F.add("prior samples", lambda: (f"Samples from the prior {describe_prior(model.prior())}",
                                        save_grid(model.sample(64, g), fig / "samples.png", nrow=8)))
    if train is not None and len(train) >= 50:
        log.info("fitting a Gaussian mixture to %d training codes for the report's samples", min(len(train), 10_000))
        F.add("GMM samples", lambda: ("Samples from a 10-component Gaussian mixture fitted to the training codes",
                                      save_grid(make_sampler("gmm", seed=seed, max_fit_images=10_000).fit(model, train).sample(64),
                                                fig / "samples_gmm.png", nrow=8)))
    if n >= 2:
        F.add("interpolation", lambda: ("Linear interpolation between pairs of test images (10 steps)", save_grid(
            torch.cat([interpolate(model, x[2 * i], x[2 * i + 1], 10, "linear") for i in range(min(4, n // 2))]),
            fig / "interpolation.png", nrow=10)))
    else:
        F.notes.append("No interpolation: it needs two test images, and the test split has one")
    units = list(range(min(model.latent_dim, 10)))
    F.add("latent traversals", lambda: (f"Latent traversals of units {units[0]}..{units[-1]} over the prior's mean +- 3 standard deviations (one row per unit)",
                                        save_grid(latent_traversal(model, x[0], 3.0, 9, units), fig / "traversal.png", nrow=9)))
    _latent_map_figure(F, model, test, fig, seed)
    if notes is not None:
        notes += F.notes
    return F.figs


def _latent_map_figure(F: "_Figures", model: Autoencoder, test: ImageSet, fig: Path, seed: int) -> None:
    from .report.latent import latent_map

    def lmap():
        path = latent_map(model, test, fig / "latent_map.png", seed=seed)
        return ("Latent map of the test set, coloured by label" if test.labels is not None
                else "Latent map of the test set", path)
    F.add("latent map", lmap)


def _interleave_rows(a: torch.Tensor, b: torch.Tensor, per_row: int) -> torch.Tensor:
    """Rows of ``per_row`` originals, each followed by the row of their reconstructions."""
    out = []
    for i in range(0, len(a), per_row):
        out += [a[i : i + per_row], b[i : i + per_row]]
    return torch.cat(out)


def make_report(run_dir: Path, model: Autoencoder, cfg: RunConfig, metrics: dict[str, Any], test: ImageSet,
                train: ImageSet | None = None) -> Path:
    log.info("drawing the report's figures")
    fig_notes: list[str] = []
    figs = make_figures(run_dir, model, test, cfg.seed, train, fig_notes)
    F = _Figures()
    F.add("attention figures", lambda: _attention_figures(run_dir, model, cfg, test))
    figs += F.figs
    title = f"vaelab run: {cfg.model.name} on {cfg.data.name}"
    notes = [f"Run directory: {run_dir.resolve()}", f"{metrics.get('parameters', model.num_parameters()):,} parameters; "
             f"{cfg.train.epochs} epochs; latent dimension {cfg.model.latent_dim}. Losses are in nats per image "
             "(summed over pixels, averaged over images)."]
    data_notes = list(dict.fromkeys((train.notes if train is not None else []) + test.notes))
    notes += [f"Data: {n}" for n in data_notes] + fig_notes + F.notes
    return write_report(run_dir, title, dump_yaml(cfg.to_dict()), metrics, figs, notes)


def _attention_figures(run_dir: Path, model: Autoencoder, cfg: RunConfig, test: ImageSet) -> list[tuple[str, Path]]:
    """The report's attention section: the online grids of some epochs, and (a model with its own
    attention) the attention of test images, half normal and half anomalous for a one-class run."""
    from .report.attention import attention_epoch_figures

    figs = attention_epoch_figures(run_dir)
    if not callable(getattr(model, "attention_maps", None)) or len(test) == 0:
        return figs
    from .explain import explanation_figure

    y = None
    d = cfg.data
    if test.labels is not None and (d.classes is not None or d.drop_classes is not None):
        keep = torch.ones(len(test), dtype=torch.bool)
        if d.classes is not None:
            keep &= torch.isin(test.labels, torch.as_tensor(d.classes))
        if d.drop_classes is not None:
            keep &= ~torch.isin(test.labels, torch.as_tensor(d.drop_classes))
        y = (~keep).long().numpy()
    idx, titles = _explain_picks(test, y, 8)
    kind = "normal (left) and anomalous (right) " if titles and "anomaly" in titles else ""
    path = explanation_figure(model, test.subset(idx).float(), run_dir / "figures" / "attention_test.png", "grad2",
                              col_titles=titles, generator=torch.Generator().manual_seed(cfg.seed))
    return figs + [(f"Second-order attention of {kind}test images, their reconstruction and the reconstruction "
                    "with the attention fused into the decoder", path)]


def evaluate_run(run_dir: str | Path, metrics: list[str] | None = None, update_report: bool = True,
                 **options: Any) -> dict[str, Any]:
    """Metrics of a trained run on its test split (default: elbo, recon, au; ``["all"]``: every
    metric). ``options`` go to the metrics (nll_k, nll_images, fid_features, n_labels, ...)."""
    run_dir = Path(run_dir)
    cfg = RunConfig.load(run_dir / "config.yaml")
    model = load_run(run_dir)
    train, _, test = load_data(cfg.data, cfg.seed)
    kw = {"batch_size": cfg.train.eval_batch_size, "seed": cfg.seed, "train": train, **options}
    result = evaluate(model, test, metrics or DEFAULT_METRICS, **kw)
    if update_report:
        path = run_dir / "metrics.json"
        import json

        try:
            old = json.loads(path.read_text()) if path.is_file() else {}
        except (json.JSONDecodeError, UnicodeDecodeError):
            old = {}  # a damaged metrics.json is rewritten from the fresh numbers
        if not isinstance(old, dict):
            old = {}
        old.update(result)
        atomic_write_json(path, old)
        make_report(run_dir, model, cfg, old, test, train)
    return result


def sample_run(run_dir: str | Path, n: int, out: str | Path, seed: int = 0, sampler: str = "prior") -> Path:
    """``n`` new images from the prior, or from a GMM fitted to the training codes."""
    _positive("-n (images to draw)", n)
    image_format(out)
    run_dir = Path(run_dir)
    model = load_run(run_dir)
    train = None
    if sampler == "gmm":
        cfg = RunConfig.load(run_dir / "config.yaml")
        train = load_data(cfg.data, cfg.seed)[0]
    return save_grid(make_sampler(sampler, seed=seed).fit(model, train).sample(n), out)


def _positive(what: str, value: int, least: int = 1) -> None:
    if value < least:
        from .errors import ConfigError

        raise ConfigError(f"{what} must be at least {least}, got {value}")


def _test_images(run_dir: Path, n: int, start: int = 0, what: str = "test images") -> tuple[Autoencoder, torch.Tensor]:
    cfg = RunConfig.load(run_dir / "config.yaml")
    model = load_run(run_dir)
    test = load_split(cfg.data, "test", apply_class_filter=False)
    if start < 0 or start + n > len(test):
        from .errors import ConfigError

        raise ConfigError(f"{what}: the test split of {cfg.data.name} has {len(test)} images (indices 0..{len(test) - 1}); "
                          f"images {start}..{start + n - 1} were asked for")
    return model, test.subset(torch.arange(start, start + n)).float()


def interpolate_run(run_dir: str | Path, out: str | Path, pairs: int = 4, steps: int = 10, mode: str = "linear") -> Path:
    """Rows of ``steps`` images between consecutive pairs of test images."""
    _positive("--pairs", pairs)
    _positive("--steps", steps, 2)
    image_format(out)
    model, x = _test_images(Path(run_dir), 2 * pairs, what=f"--pairs {pairs} needs {2 * pairs} test images")
    rows = [interpolate(model, x[2 * i], x[2 * i + 1], steps, mode) for i in range(len(x) // 2)]
    return save_grid(torch.cat(rows), out, nrow=steps)


def traverse_run(run_dir: str | Path, out: str | Path, index: int = 0, span: float = 3.0, steps: int = 9,
                 units: list[int] | None = None) -> Path:
    """One row per latent unit, swept over [-span, span] around the code of test image ``index``."""
    _positive("--steps", steps, 2)
    image_format(out)
    if span <= 0:
        from .errors import ConfigError

        raise ConfigError(f"--span must be positive (the sweep is [-span, span]), got {span}")
    model, x = _test_images(Path(run_dir), 1, index, what=f"--index {index}")
    if units is not None:
        bad = [u for u in units if not 0 <= u < model.latent_dim]
        if bad or not units:
            from .errors import ConfigError

            raise ConfigError(f"--units {','.join(map(str, units))}: the model has {model.latent_dim} latent units, "
                              f"numbered 0..{model.latent_dim - 1}" + (f"; {bad} are outside" if bad else ""))
    return save_grid(latent_traversal(model, x[0], span, steps, units), out, nrow=steps)


def reconstruct_run(run_dir: str | Path, out: str | Path, n: int = 32, noisy: bool = False) -> Path:
    """Test images above their reconstructions; with ``noisy`` (denoising models) clean / corrupted / denoised rows."""
    _positive("-n (images)", n)
    image_format(out)
    run_dir = Path(run_dir)
    cfg = RunConfig.load(run_dir / "config.yaml")
    model = load_run(run_dir)
    test = load_split(cfg.data, "test", apply_class_filter=False)
    x = test.subset(torch.arange(min(n, len(test)))).float()
    if noisy:
        model.require("denoises", "--noisy")
        rows = []
        for i in range(0, len(x), 8):
            corrupted, den = model.denoise(x[i : i + 8], torch.Generator().manual_seed(i))
            rows += [x[i : i + 8], corrupted, den]
        return save_grid(torch.cat(rows), out, nrow=8)
    return save_grid(_interleave_rows(x, model.reconstruct(x), 8), out, nrow=8)


# -- greedy layer-wise pretraining ---------------------------------------------------------------
from typing import TYPE_CHECKING  # noqa: E402

if TYPE_CHECKING:
    from .train.pretrain import PretrainRunConfig


def pretrain_run(cfg: "PretrainRunConfig", run_dir: str | Path | None = None,
                 data: tuple[ImageSet, ImageSet, ImageSet] | None = None) -> tuple[Path, dict[str, Any]]:
    """Greedy layer-wise pretraining of a stacked autoencoder, fine-tuning step 1 (head) and step 2
    (whole network) on ``cfg.pretrain.n_labels`` labels, and the from-scratch baseline (see
    vaelab.train.pretrain). Writes config.yaml, model/pretrained/scratch.safetensors,
    pretrain_log.csv, metrics.json, figures/pretrain.png and report.html into ``run_dir``."""
    from .report.pretrain import pretrain_curves
    from .train.pretrain import run_pretraining

    run_dir = Path(run_dir) if run_dir else default_run_dir("pretrain", cfg.data.name)
    run_dir, result = run_pretraining(cfg, run_dir, data)
    fig = pretrain_curves(result.log, run_dir / "figures" / "pretrain.png")
    p = cfg.pretrain
    notes = [f"Run directory: {run_dir.resolve()}",
             f"Stacked layers {p.layers} ({p.activation}), {result.metrics['parameters']:,} classifier parameters. "
             f"Greedy pretraining: {p.epochs_per_layer} epochs per layer on {result.metrics['n_train']} unlabelled "
             f"images, each layer reconstructing the codes of the frozen layers below (rec_layer*: squared error per "
             f"image, summed over the layer's inputs). Fine-tuning on {result.metrics['n_labels']} labels: "
             f"step 1 trains the head only, step 2 the whole network, {p.finetune_epochs} epochs each; the baseline "
             f"trains the same network from the same initial weights for {2 * p.finetune_epochs} epochs."]
    figs = [("Pretraining and fine-tuning losses per epoch", fig)] if fig else []
    write_report(run_dir, f"vaelab pretrain on {cfg.data.name}", dump_yaml(cfg.to_dict()), result.metrics, figs, notes)
    return run_dir, result.metrics


def load_pretrained(run_dir: str | Path, weights: str = "model"):
    """The network of a ``vaelab pretrain`` directory: 'model' (fine-tuned), 'pretrained' or 'scratch'."""
    from .train.pretrain import load_stacked

    return load_stacked(run_dir, weights)  # type: ignore[arg-type]


# -- anomaly / out-of-distribution detection ------------------------------------------------------
def detect_run(run_dir: str | Path, data: str, split: str | None = None, score: str | None = None,
               threshold: float | None = None, contamination: float | None = None, out: str | Path | None = None,
               anomaly_classes: list[int] | None = None, max_flagged: int = 64,
               **detector_options: Any) -> tuple[Path, dict[str, Any]]:
    """Score ``data`` (a dataset name, an .npz, an OOD-study file or a folder) with the model of
    ``run_dir``, calibrated on the run's training split (normalisation and, with
    ``contamination``, the threshold); write ``out`` (default RUN_DIR/detect-<data>-<time>) with
    metrics.json, scores.csv, figures/ (histogram; ROC, PR, confusion matrix when anomaly labels
    are known), figures/flagged.png and a self-contained report.html."""
    import numpy as np

    from .detect import DEFAULT_SCORE, AutoencoderDetector, detection_figures, evaluate_detection, load_detection_set
    from .fileio import atomic_write_text

    run_dir = Path(run_dir)
    if out is not None and Path(out).exists() and (not Path(out).is_dir() or any(Path(out).iterdir())):
        from .errors import ConfigError

        raise ConfigError(f"--out {out} already exists and is not empty; the report would overwrite what is there. "
                          "Choose a new or empty directory")
    cfg = RunConfig.load(run_dir / "config.yaml")
    model = load_run(run_dir)
    target, y, desc = load_detection_set(data, cfg.data, split, anomaly_classes)
    train = load_data(cfg.data, cfg.seed)[0]
    score = score or DEFAULT_SCORE
    det = AutoencoderDetector(model, score, contamination=contamination if contamination is not None else 0.1,
                              threshold=threshold, seed=cfg.seed, batch_size=cfg.train.eval_batch_size,
                              **detector_options).fit(train)
    log.info("scoring %d images of %s", len(target), desc)
    s = det.decision_function(target, clip=False)  # unclipped: images beyond the training range keep their order
    flagged = (s > det.threshold_).astype(np.int64)  # = det.predict(target), without scoring twice
    stem = Path(data).stem if Path(data).suffix else Path(data).name
    out = Path(out) if out else run_dir / f"detect-{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    metrics: dict[str, Any] = {
        "data": desc, "score": score, "normalized": True, "norm_range": [float(q) for q in det.norm_range],
        "threshold": det.threshold_,
        "threshold_from": "threshold" if threshold is not None else f"contamination {det.contamination}",
        "n": len(target), "n_flagged": int(flagged.sum()), "flagged_fraction": float(flagged.mean()),
        "n_calibration": det.n_train_, "calibration_flagged_fraction": float(det.labels_.mean()),
    }
    if y is not None:
        metrics.update({k: v for k, v in evaluate_detection(y, s, det.threshold_).items() if k != "threshold"})
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
    settings = {"run_dir": str(run_dir.resolve()), "model": cfg.model.name, "data": desc, "score": score,
                "threshold": threshold, "contamination": None if threshold is not None else det.contamination,
                "calibration": f"{cfg.data.name} training split ({det.n_train_} images)", **detector_options}
    lo, hi = (float(q) for q in det.norm_range)
    anchors = ("0 = the most normal training image, 1 = the most anomalous" if (lo, hi) == (0.0, 1.0) else
               f"0 = the training scores' {lo:g} quantile, 1 = their {hi:g} quantile")
    notes = [f"Scores of {len(target)} images of {desc} by the {cfg.model.name} of {run_dir.resolve()}: '{score}', "
             f"min-max normalised with the training split's scores ({anchors}); higher is more anomalous. "
             f"Images above the threshold {det.threshold_:.4g} are flagged."]
    if y is None:
        notes.append("The set has no anomaly labels, so no ROC-AUC: use an OOD-study file, a one-class run "
                     "(data.classes) on its own dataset, or --anomaly-classes.")
    write_report(out, f"vaelab detect: {cfg.model.name} on {desc}", dump_yaml(settings), metrics, figs, notes)
    return out, metrics


# -- explanations ---------------------------------------------------------------------------------
def _explain_picks(target: ImageSet, y: Any, n: int) -> tuple[torch.Tensor, list[str] | None]:
    """``n`` images to explain: half normal, half anomalous when anomaly labels are known (the
    first of each), else the first ``n``; and their column titles."""
    if y is not None and 0 < int(y.sum()) < len(y):
        yt = torch.as_tensor(y)
        normal = torch.nonzero(yt == 0).flatten()[: n - n // 2]
        anomalous = torch.nonzero(yt == 1).flatten()[: n // 2]
        idx = torch.cat([normal, anomalous])
        return idx, ["normal"] * len(normal) + ["anomaly"] * len(anomalous)
    idx = torch.arange(min(n, len(target)))
    if target.labels is None:
        return idx, None
    names = target.class_names
    return idx, [names[int(c)] if names and int(c) < len(names) else str(int(c)) for c in target.labels[idx]]


def explain_run(run_dir: str | Path, method: str = "grad2", data: str | None = None, n: int = 8,
                out: str | Path | None = None, anomaly: bool = False, layer: str | int | None = None,
                unit: int | None = None, seed: int = 0) -> Path:
    """Attention maps of ``n`` test images of ``data`` (default: the run's own dataset; a name, an
    .npz or a folder, shaped like the run's data) drawn over the images, with the reconstructions:
    'grad2' (a grad2vae's own second-order attention) or 'gradcam' (Liu et al., any conv VAE;
    ``anomaly``: its variant against the run's training posterior statistics; ``layer``: a conv
    layer's name or index, default the encoder's last; ``unit``: one latent unit instead of their
    mean). With anomaly labels (a one-class run's own dataset, an OOD-study file) half the images
    are normal and half anomalous. Writes ``out`` (default RUN_DIR/figures/explain-METHOD.png)."""
    from .detect import load_detection_set
    from .errors import ConfigError
    from .explain import METHODS, explanation_figure, normal_statistics
    from .models.grad2vae import check_grad2vae

    run_dir = Path(run_dir)
    if method not in METHODS:
        raise ConfigError(f"unknown explanation method {method!r}; choose one of: {', '.join(METHODS)}")
    if n < 1:
        raise ConfigError(f"explain at least one image (n >= 1), got n={n}")
    if anomaly and method != "gradcam":
        raise ConfigError("the anomaly variant belongs to gradcam; use --method gradcam --anomaly")
    if out is not None:
        from .fileio import figure_format

        figure_format(out)
    cfg = RunConfig.load(run_dir / "config.yaml")
    model = load_run(run_dir)
    if method == "grad2":
        check_grad2vae(model, "--method grad2")
    else:
        from .explain import resolve_layer

        resolve_layer(model, layer)  # refuses a model without conv layers before any data is loaded
    target, y, desc = load_detection_set(data or cfg.data.name, cfg.data)
    idx, titles = _explain_picks(target, y, n)
    x = target.subset(idx).float()
    options: dict[str, Any] = {"generator": torch.Generator().manual_seed(seed)}
    if method == "gradcam":
        options.update(layer=layer, unit=unit)
        if anomaly:
            options["stats"] = normal_statistics(model, load_data(cfg.data, cfg.seed)[0], cfg.train.eval_batch_size)
    suffix = "-anomaly" if anomaly else ""
    out = Path(out) if out else run_dir / "figures" / f"explain-{method}{suffix}.png"
    what = {"grad2": "second-order attention", "gradcam": "gradient attention"}[method]
    title = f"{cfg.model.name}: {what}{' (anomaly variant)' if anomaly else ''} on {desc}"
    return explanation_figure(model, x, out, method, col_titles=titles, title=title, **options)
