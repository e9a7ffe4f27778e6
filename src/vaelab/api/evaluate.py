"""The evaluate job: test-set metrics of a trained run, written into its metrics.json and report."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..data import load_data
from ..evaluate import DEFAULT_METRICS, evaluate
from ..fileio import atomic_write_json
from ..train import RunConfig, load_run
from .train import make_report

log = logging.getLogger("vaelab")


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
