"""Split-conformal p-values and false-discovery control from anomaly scores: pure numpy.

A detector calibrated on ``n`` held-out normal scores gives each new sample the p-value

    p(x) = (1 + #{i : s_i >= s(x)}) / (n + 1),

the share of calibration samples at least as anomalous, counting the new one (Bates et al. 2023,
"Testing for outliers with conformal p-values"). When the new sample is normal and exchangeable with the
calibration samples, P(p(x) <= alpha) <= alpha for every alpha: flagging p <= alpha bounds the
false-alarm rate, on average over draws of the calibration set. The p-values of one batch are
positively dependent (they share the calibration set) in the way Benjamini-Hochberg tolerates, so
``benjamini_hochberg(p, q)`` flags a batch with a false-discovery rate at most q (Bates et al., Thm. 3).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError


def _finite(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).ravel()
    if not np.isfinite(a).all():
        raise DataError(f"{name} must be finite numbers")
    return a


def conformal_pvalues(calibration_scores: Any, scores: Any) -> np.ndarray:
    """p-values of ``scores`` (higher = more anomalous) against held-out normal ``calibration_scores``:
    (1 + #{calibration >= score}) / (n + 1), in [1 / (n + 1), 1]."""
    cal = np.sort(_finite(calibration_scores, "calibration scores"))
    if len(cal) == 0:
        raise DataError("conformal p-values need at least one calibration score")
    s = _finite(scores, "scores")
    at_least = len(cal) - np.searchsorted(cal, s, side="left")  # calibration scores >= each score
    return (1.0 + at_least) / (len(cal) + 1.0)


def conformal_threshold(calibration_scores: Any, alpha: float) -> float:
    """The score above which p <= alpha: the k-th smallest calibration score, k = ceil((n + 1)(1 - alpha)).
    A new normal score exceeds it with probability (n + 1 - k) / (n + 1) <= alpha. Fewer than
    1 / alpha - 1 calibration scores cannot give any p-value that small, and are refused."""
    cal = np.sort(_finite(calibration_scores, "calibration scores"))
    check_rate(alpha, "alpha")
    k = math.ceil((len(cal) + 1) * (1.0 - alpha) - 1e-9)
    if k > len(cal):
        raise DataError(f"{len(cal)} calibration scores give p-values of at least 1/{len(cal) + 1}, never <= {alpha:g}: "
                        f"calibrate on at least {math.ceil(1 / alpha - 1 - 1e-9)} held-out normal images, or raise the rate")
    return float(cal[k - 1])


def benjamini_hochberg(pvalues: Any, q: float) -> np.ndarray:
    """Which of ``pvalues`` the Benjamini-Hochberg procedure rejects at level ``q``: the k smallest, for
    the largest k with p_(k) <= k q / m. Returns 1 (flagged) / 0 per p-value, in their order."""
    p = _finite(pvalues, "p-values")
    check_rate(q, "fdr")
    m = len(p)
    if m == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(p, kind="stable")
    below = np.nonzero(p[order] <= q * np.arange(1, m + 1) / m)[0]
    flagged = np.zeros(m, dtype=np.int64)
    if len(below):
        flagged[order[: below[-1] + 1]] = 1
    return flagged


def check_rate(value: Any, name: str) -> float:
    """A false-alarm or false-discovery rate: a number in (0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 < value < 1:
        raise ConfigError(f"{name} is a rate in (0, 1), e.g. 0.05; got {value!r}")
    return float(value)
