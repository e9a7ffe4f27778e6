"""The user-facing jobs, one module each, composing the stages: train -> evaluate -> figures ->
report; generate; detect; export; app; explain; pretrain. ``vaelab.cli`` is a thin layer over these."""
from ..train.rundir import load_run
from .app import app_run
from .compare import compare_runs
from .detect import detect_run
from .evaluate import evaluate_run
from .explain import explain_run
from .export import export_run
from .generate import interpolate_run, reconstruct_run, sample_run, traverse_run
from .pretrain import load_pretrained, pretrain_run
from .train import default_run_dir, make_figures, make_report, train_run

__all__ = ["app_run", "compare_runs", "default_run_dir", "detect_run", "evaluate_run", "explain_run", "export_run", "interpolate_run", "load_pretrained", "load_run",
           "make_figures", "make_report", "pretrain_run", "reconstruct_run", "sample_run", "train_run", "traverse_run"]
