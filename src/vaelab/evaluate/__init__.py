"""Metrics. Each is a function (model, data, **options) -> dict of plain floats."""
from .metrics import DEFAULT_METRICS, METRICS, active_units, elbo_terms, evaluate, reconstruction

__all__ = ["DEFAULT_METRICS", "METRICS", "active_units", "elbo_terms", "evaluate", "reconstruction"]
