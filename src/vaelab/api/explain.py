"""The explain job: attention maps of a trained run on chosen images."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from ..data import load_run_data
from ..detect import load_detection_set
from ..errors import ConfigError
from ..explain import METHODS, explanation_figure, normal_statistics, resolve_layer
from ..explain.figures import pick_examples
from ..fileio import figure_format
from ..models.grad2vae import check_grad2vae
from ..train import RunConfig, load_run

log = logging.getLogger("vaelab")


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

    run_dir = Path(run_dir)
    if method not in METHODS:
        raise ConfigError(f"unknown explanation method {method!r}; choose one of: {', '.join(METHODS)}")
    if n < 1:
        raise ConfigError(f"explain at least one image (n >= 1), got n={n}")
    if anomaly and method != "gradcam":
        raise ConfigError("the anomaly variant belongs to gradcam; use --method gradcam --anomaly")
    if out is not None:
        figure_format(out)
    cfg = RunConfig.load(run_dir / "config.yaml")
    model = load_run(run_dir)
    if method == "grad2":
        check_grad2vae(model, "--method grad2")
    else:
        resolve_layer(model, layer)  # refuses a model without conv layers before any data is loaded
    target, y, desc = load_detection_set(data or cfg.data.name, cfg.data)
    idx, titles = pick_examples(target, y, n)
    x = target.subset(idx).float()
    options: dict[str, Any] = {"generator": torch.Generator().manual_seed(seed)}
    if method == "gradcam":
        options.update(layer=layer, unit=unit)
        if anomaly:
            options["stats"] = normal_statistics(model, load_run_data(cfg.data, cfg.seed, run_dir)[0], cfg.train.eval_batch_size)
    suffix = "-anomaly" if anomaly else ""
    out = Path(out) if out else run_dir / "figures" / f"explain-{method}{suffix}.png"
    what = {"grad2": "second-order attention", "gradcam": "gradient attention"}[method]
    title = f"{cfg.model.name}: {what}{' (anomaly variant)' if anomaly else ''} on {desc}"
    return explanation_figure(model, x, out, method, col_titles=titles, title=title, **options)
