"""The user-facing jobs, one module each, composing the stages: train -> evaluate -> figures ->
report; generate; detect; export; app; explain; pretrain; the data layouts, the one-class protocol and the
catalogue of sources, models and metrics. ``vaelab.cli`` is a thin layer over these.

Each job is imported when it is first used (``vaelab.api.sample_run`` does not import the detector,
scikit-learn or the metrics), so that a command pays only for what it runs."""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_HOME = {
    "metric_options": "..evaluate",
    "trust_imports": "..models",
    "make_figures": "..report.run",
    "make_report": "..report.run",
    "load_run": "..train.rundir",
    "app_run": ".app",
    "one_class_run": ".bench",
    "config_keys_help": ".catalog",
    "import_modules": ".catalog",
    "list_datasets": ".catalog",
    "list_metrics": ".catalog",
    "list_models": ".catalog",
    "list_scores": ".catalog",
    "compare_runs": ".compare",
    "build_defects_file": ".data",
    "build_ood_study_file": ".data",
    "detect_run": ".detect",
    "evaluate_run": ".evaluate",
    "explain_run": ".explain",
    "export_run": ".export",
    "interpolate_run": ".generate",
    "reconstruct_run": ".generate",
    "sample_run": ".generate",
    "traverse_run": ".generate",
    "load_pretrained": ".pretrain",
    "pretrain_run": ".pretrain",
    "default_run_dir": ".train",
    "train_job": ".train",
    "train_run": ".train",
}
__all__ = [
    "app_run",
    "build_defects_file",
    "build_ood_study_file",
    "compare_runs",
    "config_keys_help",
    "default_run_dir",
    "detect_run",
    "evaluate_run",
    "explain_run",
    "export_run",
    "import_modules",
    "interpolate_run",
    "list_datasets",
    "list_metrics",
    "list_models",
    "list_scores",
    "load_pretrained",
    "load_run",
    "make_figures",
    "make_report",
    "metric_options",
    "one_class_run",
    "pretrain_run",
    "reconstruct_run",
    "sample_run",
    "train_job",
    "train_run",
    "traverse_run",
    "trust_imports",
]  # the names of _HOME, written out so that linters see them


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'vaelab.api' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOME[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME))


if TYPE_CHECKING:  # for type checkers and editors: the same names, imported eagerly
    from ..evaluate import metric_options
    from ..models import trust_imports
    from ..report.run import make_figures, make_report
    from ..train.rundir import load_run
    from .app import app_run
    from .bench import one_class_run
    from .catalog import config_keys_help, import_modules, list_datasets, list_metrics, list_models, list_scores
    from .compare import compare_runs
    from .data import build_defects_file, build_ood_study_file
    from .detect import detect_run
    from .evaluate import evaluate_run
    from .explain import explain_run
    from .export import export_run
    from .generate import interpolate_run, reconstruct_run, sample_run, traverse_run
    from .pretrain import load_pretrained, pretrain_run
    from .train import default_run_dir, train_job, train_run
