"""A trained run finished in its directory: its test metrics and health flags in metrics.json, its
figures under figures/ and report.html. The train job calls ``finish_run`` after training, and again
from the checkpoint when a killed run left these unwritten; the evaluate job redraws the report with
``make_report``."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from ..config import dump_yaml
from ..data import ImageSet
from ..errors import VaelabError
from ..evaluate import default_metrics, evaluate
from ..evaluate.health import health_flags, health_notes
from ..fileio import atomic_write_json
from ..generate import interpolate, latent_traversal, make_sampler
from ..models import Autoencoder
from ..plotting import interleave_rows, save_grid
from ..progress import track
from ..runfiles import inside, read_text
from ..train import RunConfig
from .figures import loss_curves
from .html import write_report

log = logging.getLogger("vaelab")


def finish_run(run_dir: Path, model: Autoencoder, cfg: RunConfig, data: tuple[ImageSet, ImageSet, ImageSet],
               segments: list[float] | None = None) -> dict[str, Any]:
    """Evaluate ``model`` on the test split, write metrics.json (with the health flags and, given
    ``segments``, the training sessions' times) and draw report.html; returns the metrics."""
    train, val, test = data
    metrics = evaluate(model, test, default_metrics(), batch_size=cfg.train.eval_batch_size, seed=cfg.seed, train=train)
    if segments:
        metrics.update({"train_seconds": sum(segments), "train_seconds_segments": segments})
    metrics.update({"parameters": model.num_parameters(), "n_train": len(train), "n_val": len(val), "n_test": len(test)})
    check_health(metrics)
    atomic_write_json(run_dir / "metrics.json", metrics)
    make_report(run_dir, model, cfg, metrics, test, train)
    return metrics


def check_health(metrics: dict[str, Any]) -> None:
    """Put the run's health flags (vaelab.evaluate.health) in ``metrics['health']`` and say each one."""
    metrics["health"] = health_flags(metrics)
    for line in health_notes(metrics["health"]):
        log.warning("%s", line)



class _Figures:
    """The report's figures, each drawn on its own: a figure that cannot be drawn for this run's
    data (one test image, constant codes, a single class...) becomes a note in the report naming
    the figure and why, instead of ending the run. ``add`` lists a figure, ``draw`` draws them all
    (then those of ``last``), saying how far it is every few seconds (vaelab.progress)."""

    def __init__(self, last: list[tuple[str, Any]] | None = None) -> None:
        self.jobs: list[tuple[str, Any]] = []
        self.last = list(last or [])
        self.figs: list[tuple[str, Path]] = []
        self.notes: list[str] = []

    def add(self, what: str, draw: Any) -> None:
        self.jobs.append((what, draw))

    def draw(self, notes: list[str] | None = None) -> list[tuple[str, Path]]:
        """Draw every figure added (its notes appended to ``notes``); the figures drawn, with their captions."""
        for what, draw in track(self.jobs + self.last, "drawing the report's figures", unit="figures"):
            self._draw_one(what, draw)
        self.jobs, self.last = [], []
        if notes is not None:
            notes += self.notes
        return self.figs

    def _draw_one(self, what: str, draw: Any) -> None:
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
                 notes: list[str] | None = None, extra: list[tuple[str, Any]] | None = None) -> list[tuple[str, Path]]:
    """The run report's figures; what cannot be drawn is explained in ``notes`` (appended to).
    ``extra``: more (name, draw) figures drawn after them and counted with them (the attention maps)."""
    fig = inside(run_dir, "figures")  # a symlinked figures/ is refused: its target's files would be replaced
    F = _Figures(last=extra)

    def curves():
        path = loss_curves(run_dir / "logs" / "metrics.csv", fig / "loss_curves.png")
        return path and ("Loss terms: training (every step) and validation (every epoch)", path)
    F.add("loss curves", curves)
    n = min(16, len(test))
    if n == 0:
        F.notes.append("The test split is empty: no reconstructions, samples or latent figures")
        return F.draw(notes)
    if test.is_vector:
        F.notes.append("The data are vectors: reconstructions, samples, interpolations and traversals are image grids "
                       "and are left out; the metrics hold the reconstruction error")
        _latent_map_figure(F, model, test, fig, seed)
        return F.draw(notes)
    x = test.subset(torch.arange(n)).float().to(next(model.parameters()).device)
    F.add("reconstructions", lambda: ("Reconstructions: originals (odd rows) above their reconstructions (even rows)",
                                      save_grid(interleave_rows(x, model.reconstruct(x), 8), fig / "reconstructions.png", nrow=8)))
    if model.denoises:
        def denoising():
            noisy, den = model.denoise(x[:8], torch.Generator().manual_seed(seed))
            return ("Denoising: clean (top), corrupted (middle), denoised (bottom)",
                    save_grid(torch.cat([x[:8], noisy, den]), fig / "denoising.png", nrow=8))
        F.add("denoising figure", denoising)
    if model.can_sample:
        from ..objectives import describe_prior

        g = torch.Generator().manual_seed(seed)
        F.add("prior samples", lambda: (f"Samples from the prior {describe_prior(model.prior())}",
                                        save_grid(model.sample(64, g), fig / "samples.png", nrow=8)))
    if train is not None and len(train) >= 50:
        def gmm_samples():
            log.info("fitting a Gaussian mixture to %d training codes for the report's samples", min(len(train), 10_000))
            return ("Samples from a 10-component Gaussian mixture fitted to the training codes",
                    save_grid(make_sampler("gmm", seed=seed, max_fit_images=10_000).fit(model, train).sample(64),
                              fig / "samples_gmm.png", nrow=8))
        F.add("GMM samples", gmm_samples)
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
    return F.draw(notes)


def _latent_map_figure(F: "_Figures", model: Autoencoder, test: ImageSet, fig: Path, seed: int) -> None:
    from .latent import latent_map

    def lmap():
        path = latent_map(model, test, fig / "latent_map.png", seed=seed)
        return ("Latent map of the test set, coloured by label" if test.labels is not None
                else "Latent map of the test set", path)
    F.add("latent map", lmap)


def make_report(run_dir: Path, model: Autoencoder, cfg: RunConfig, metrics: dict[str, Any], test: ImageSet,
                train: ImageSet | None = None, figures: bool | None = None) -> Path:
    """report.html: the metrics, the notes, the command and (``figures``, default the run's train.figures)
    the figures."""
    fig_notes: list[str] = []
    if cfg.train.figures if figures is None else figures:
        log.info("drawing the report's figures")
        figs = make_figures(run_dir, model, test, cfg.seed, train, fig_notes,
                            extra=[("attention figures", lambda: _attention_figures(run_dir, model, cfg, test))])
    else:
        figs = []
        fig_notes.append("The figures were not drawn (train.figures=false): `vaelab evaluate RUN --figures` draws them.")
    title = f"vaelab run: {cfg.model.name} on {cfg.data.name}"
    notes = [f"Run directory: {run_dir.resolve()}", f"{metrics.get('parameters', model.num_parameters()):,} parameters; "
             f"{cfg.train.epochs} epochs; latent dimension {cfg.model.latent_dim}. "
             + ("Losses are in nats per example (summed over the vector's entries, averaged over examples)."
                if model.is_vector else "Losses are in nats per image (summed over pixels, averaged over images).")]
    if getattr(model, "discrete_likelihood", False):
        notes.append(f"Likelihood: {cfg.model.likelihood}, a probability mass on each of the 256 levels of every "
                     "sub-pixel, so the NLL is a code length and is also given in bits per dimension (bpd). "
                     "Reconstructions and samples show the likelihood's mean: each component's continuous "
                     "distribution clamped to [0, 1] (within half a grey level of the discretised mean).")
    data_notes = list(dict.fromkeys((train.notes if train is not None else []) + test.notes))
    notes += [f"Data: {n}" for n in data_notes] + fig_notes
    notes = health_notes(metrics.get("health") or []) + notes  # what went wrong, first
    cmd = inside(run_dir, "command.txt")
    command = " ; then ".join(read_text(cmd).splitlines()) if cmd.is_file() else None
    return write_report(run_dir, title, dump_yaml(cfg.to_dict()), metrics, figs, notes, command=command, vectors=model.is_vector)


def _attention_figures(run_dir: Path, model: Autoencoder, cfg: RunConfig, test: ImageSet) -> list[tuple[str, Path]]:
    """The report's attention section: the online grids of some epochs, and (a model with its own
    attention) the attention of test images, half normal and half anomalous for a one-class run."""
    from .attention import attention_epoch_figures

    figs = attention_epoch_figures(run_dir)
    if not callable(getattr(model, "attention_maps", None)) or len(test) == 0:
        return figs
    from ..explain.figures import explanation_figure, pick_examples

    y = None
    d = cfg.data
    if test.labels is not None and (d.classes is not None or d.drop_classes is not None):
        keep = torch.ones(len(test), dtype=torch.bool)
        if d.classes is not None:
            keep &= torch.isin(test.labels, torch.as_tensor(d.classes))
        if d.drop_classes is not None:
            keep &= ~torch.isin(test.labels, torch.as_tensor(d.drop_classes))
        y = (~keep).long().numpy()
    idx, titles = pick_examples(test, y, 8)
    kind = "normal (left) and anomalous (right) " if titles and "anomaly" in titles else ""
    path = explanation_figure(model, test.subset(idx).float(), run_dir / "figures" / "attention_test.png", "grad2",
                              col_titles=titles, generator=torch.Generator().manual_seed(cfg.seed))
    return figs + [(f"Second-order attention of {kind}test images, their reconstruction and the reconstruction "
                    "with the attention fused into the decoder", path)]
