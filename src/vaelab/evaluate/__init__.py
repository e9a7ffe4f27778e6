"""Metrics. Each is a function (model, data, **options) -> dict, independent of any model class."""
from .image_quality import fid, frechet_distance, reconstruction
from .likelihood import log_likelihood, nll
from .metrics import ALL_METRICS, DEFAULT_METRICS, METRICS, active_units, elbo_terms, evaluate
from .representation import few_label, mig, mutual_information_gap, probes

__all__ = ["ALL_METRICS", "DEFAULT_METRICS", "METRICS", "active_units", "elbo_terms", "evaluate", "few_label", "fid",
           "frechet_distance", "log_likelihood", "mig", "mutual_information_gap", "nll", "probes", "reconstruction"]
