"""The user-facing jobs, one module each, composing the stages: train -> evaluate -> figures ->
report; generate; detect; export; app; explain; pretrain; the data layouts, the one-class protocol and the
catalogue of sources, models and metrics. ``vaelab.cli`` is a thin layer over these."""
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

__all__ = ["app_run", "config_keys_help", "import_modules", "train_job", "trust_imports", "build_defects_file", "build_ood_study_file", "list_datasets", "list_metrics", "list_models", "metric_options", "list_scores", "one_class_run", "compare_runs", "default_run_dir", "detect_run", "evaluate_run", "explain_run", "export_run", "interpolate_run", "load_pretrained", "load_run",
           "make_figures", "make_report", "pretrain_run", "reconstruct_run", "sample_run", "train_run", "traverse_run"]
