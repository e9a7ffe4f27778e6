"""Metrics, a registry like vaelab.models: each is a function (model, data, **options) -> dict,
independent of any model class, registered with ``register_metric`` and its options where it is
defined. Importing the package imports every module (no central list), so a new metric is one new
file here, or one file of your own passed with ``--import``."""
import importlib
import pkgutil

from .registry import (COMMON_OPTIONS, METRICS, MetricOption, MetricSpec, default_metrics, get_metric, metric_options,
                       register_metric)


def discover() -> None:
    """Import every module of this package once: each registers the metrics it defines."""
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        importlib.import_module(f"{__name__}.{info.name}")


discover()

from .image_quality import fid, frechet_distance, reconstruction  # noqa: E402
from .likelihood import log_likelihood, nll  # noqa: E402
from .metrics import active_units, elbo_terms, evaluate  # noqa: E402
from .representation import few_label, mig, mutual_information_gap, probes  # noqa: E402

DEFAULT_METRICS = default_metrics()  # vaelab's own; default_metrics() also has those registered since
ALL_METRICS = tuple(METRICS)

__all__ = ["ALL_METRICS", "COMMON_OPTIONS", "DEFAULT_METRICS", "METRICS", "MetricOption", "MetricSpec", "active_units",
           "default_metrics", "elbo_terms", "evaluate", "few_label", "fid", "frechet_distance", "get_metric",
           "log_likelihood", "metric_options", "mig", "mutual_information_gap", "nll", "probes", "reconstruction",
           "register_metric"]
