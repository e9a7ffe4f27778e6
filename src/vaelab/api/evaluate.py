"""The evaluate job: test-set metrics of a trained run, written into its metrics.json and report."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..data import load_run_data
from ..evaluate import evaluate
from ..fileio import atomic_write_json
from ..generate import kept_in
from ..report.run import check_health, make_report
from ..runfiles import read_text
from ..train import RunConfig, load_run

log = logging.getLogger("vaelab")


def evaluate_run(run_dir: str | Path, metrics: list[str] | None = None, update_report: bool = True,
                 test_data: str | None = None, redraw: bool = True, run_data: str | Path | None = None,
                 figures: bool | None = None, **options: Any) -> dict[str, Any]:
    """Metrics of a trained run on its test split (default: the registry's default ones; ``["all"]``:
    every metric). ``options`` go to the metrics that declare them (`vaelab metrics -v`: nll_k, ...).
    ``test_data``: score another set instead of the run's test split: a dataset name or an .npz
    (its x_test, y_test), e.g. CIFAR-10's exact-pixel images for a model trained on the JPEG copy.
    Its metrics go to metrics.json under ``evaluations`` -> that set, never over the run's own.
    ``update_report``: merge the numbers into metrics.json; with ``redraw`` also draw report.html
    again (its figures, mixture fit and t-SNE included: the slow part). ``vaelab evaluate --json``
    redraws nothing unless ``--report`` is given. ``run_data``: where the run's own data (its recorded
    data.path) is now, when it has moved. ``figures``: draw the report's figures (default: as the run's
    train.figures says; True draws them for a run trained without)."""
    run_dir = Path(run_dir)
    cfg = RunConfig.load(run_dir / "config.yaml")
    model = load_run(run_dir)
    train, _, test = load_run_data(cfg.data, cfg.seed, run_dir, run_data)
    if test_data is not None:
        test = _other_test_set(cfg, test_data, test)
    kw = {"batch_size": cfg.train.eval_batch_size, "seed": cfg.seed, "train": train, **options}
    with kept_in(run_dir):  # the samplers FID fits are kept in the run and reused
        result = evaluate(model, test, metrics or None, **kw)
    if test_data is not None:
        result = {"test_data": test_data, "n_test": len(test), **result}
        if update_report:
            import json

            path = run_dir / "metrics.json"
            try:
                old = json.loads(read_text(path)) if path.is_file() else {}
            except (json.JSONDecodeError, UnicodeDecodeError):
                old = {}
            old = old if isinstance(old, dict) else {}
            evals = old.get("evaluations") if isinstance(old.get("evaluations"), dict) else {}
            evals[test_data] = {**evals.get(test_data, {}), **result}
            old["evaluations"] = evals
            atomic_write_json(path, old)
        return result
    if update_report:
        path = run_dir / "metrics.json"
        import json

        try:
            old = json.loads(read_text(path)) if path.is_file() else {}
        except (json.JSONDecodeError, UnicodeDecodeError):
            old = {}  # a damaged metrics.json is rewritten from the fresh numbers
        if not isinstance(old, dict):
            old = {}
        old.update(result)
        check_health(old)  # the flags of the run's numbers as they now stand
        atomic_write_json(path, old)
        if redraw:
            make_report(run_dir, model, cfg, old, test, train, figures=figures)
        else:
            log.info("metrics.json updated; report.html not redrawn (vaelab evaluate --report redraws it)")
    return result


def _other_test_set(cfg: RunConfig, test_data: str, like: Any) -> Any:
    """The test split of ``test_data`` (a dataset name, or a file or folder a source reads: an .npz, a
    CSV, a folder of images), prepared as the run's data
    (size, channels); refused when its images do not have the run's shape."""
    from dataclasses import replace

    from ..data import SOURCES, load_split, source_for_path
    from ..errors import ConfigError, DataError

    path = Path(test_data)
    if test_data in SOURCES and not path.is_file():
        dcfg = replace(cfg.data, name=test_data, path=None, classes=None, drop_classes=None, test_limit=None)
    else:
        src = source_for_path(path)  # the source that reads this file or folder (npz, csv, folder, ...)
        if src is None:
            raise ConfigError(f"--test-data {test_data!r} is neither a file or folder a source reads (an .npz, ...) nor "
                              f"a dataset ({', '.join(SOURCES)})")
        if not path.exists():
            raise DataError(f"--test-data {test_data}: no such file")
        dcfg = replace(cfg.data, name=src.name, path=str(test_data), classes=None, drop_classes=None, test_limit=None)
    test = load_split(dcfg, "test", apply_class_filter=False)
    if tuple(test.shape) != tuple(like.shape):
        raise DataError(f"--test-data {test_data}: images of shape {tuple(test.shape)}, but the run was trained on "
                        f"{tuple(like.shape)}; give a set of the run's image size and channels")
    return test
