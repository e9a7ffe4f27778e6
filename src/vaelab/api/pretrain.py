"""The pretrain job: greedy layer-wise pretraining and fine-tuning into a run directory."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import dump_yaml
from ..data import ImageSet
from ..pretrain import PretrainRunConfig, load_stacked, run_pretraining
from ..report import write_report
from ..report.pretrain import pretrain_curves
from .train import default_run_dir

if TYPE_CHECKING:
    from ..pretrain import PretrainRunConfig

log = logging.getLogger("vaelab")


def pretrain_run(cfg: "PretrainRunConfig | dict[str, Any]", run_dir: str | Path | None = None,
                 data: tuple[ImageSet, ImageSet, ImageSet] | None = None) -> tuple[Path, dict[str, Any]]:
    """Greedy layer-wise pretraining of a stacked autoencoder, fine-tuning step 1 (head) and step 2
    (whole network) on ``cfg.pretrain.n_labels`` labels, and the from-scratch baseline (see
    vaelab.pretrain). Writes config.yaml, model/pretrained/scratch.safetensors,
    pretrain_log.csv, metrics.json, figures/pretrain.png and report.html into ``run_dir``. ``cfg`` may
    also be the overrides (data, pretrain, seed) of the default config, as the command line gives them."""
    if isinstance(cfg, dict):
        cfg = PretrainRunConfig.build(cfg)

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

    return load_stacked(run_dir, weights)  # type: ignore[arg-type]
