"""Metrics. Each is a function (model, data, **options) -> dict of plain floats."""
from .metrics import METRICS, elbo_terms, evaluate, reconstruction

__all__ = ["METRICS", "elbo_terms", "evaluate", "reconstruction"]
