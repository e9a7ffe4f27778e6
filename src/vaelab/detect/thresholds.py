"""Thresholds and calibrated outputs from anomaly scores: pure numpy / scikit-learn, no model code.

Every function takes plain score arrays (higher = more anomalous, as ``decision_scores_``) and
returns numbers, so the detector, the CLI and a user's own scores share one implementation.
Thresholds follow PyOD's prediction rule: a sample is flagged when ``score > threshold``.

Rules (``choose_threshold(rule, ...)``, names in ``THRESHOLD_RULES``):

- ``contamination``: the (1 - c) quantile of the training scores (PyOD's ``threshold_``).
- ``conformal``: the split-conformal quantile of held-out normal scores at a false-alarm rate
  (``contamination`` carries it): flagged exactly when the conformal p-value is at most it.
- ``f1``: the F1-best cut of a labelled validation set (scikit-learn's precision-recall curve).
- ``mad``: median + k * 1.4826 * MAD of the training scores (robust z-score, as PyThresh's MAD).
- ``iqr``: Q3 + k * IQR of the training scores (Tukey's fence, as PyThresh's IQR).
- ``gmm``: where the posterior of the higher-mean component of a 2-component 1-D Gaussian mixture
  fitted to the training scores crosses 0.5.

Fallbacks: ``f1`` with a validation set of one class only, and ``gmm`` when its components do not
separate, warn (``ThresholdFallbackWarning``) and return the contamination rule on the training
scores; ``info["fallback"]`` then says so.

``predict_proba`` (linear / unify) and ``predict_confidence`` (ExCeeD) give PyOD's calibrated
outputs from the training scores and the test scores.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from scipy.special import erf, ndtri
from scipy.stats import binom

from ..errors import ConfigError, DataError

# 1 / Phi^-1(3/4) = 1.4826...: makes the MAD a consistent estimator of a normal distribution's std
MAD_SCALE = float(1.0 / ndtri(0.75))


class ThresholdFallbackWarning(UserWarning):
    """A threshold rule could not be applied to the scores given and a fallback rule was used."""


# -- input checks ---------------------------------------------------------------------------------
def _scores(x: Any, name: str) -> np.ndarray:
    """Returns ``x`` as a finite, non-empty 1-D float64 array, or raise DataError."""
    try:
        s = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise DataError(f"{name} must be an array of numbers (one anomaly score per sample): {e}") from None
    if s.ndim == 2 and s.shape[1] == 1:
        s = s[:, 0]
    if s.ndim != 1 or len(s) == 0:
        raise DataError(f"{name} must be a non-empty 1-D array of scores (one per sample), got shape {s.shape}")
    if not np.isfinite(s).all():
        raise DataError(f"{name} contain NaN or infinite values; drop or fix those samples before thresholding")
    return s


def _labels(y: Any, n: int, name: str = "val_labels") -> np.ndarray:
    """Returns ``y`` as an int64 0/1 array of length ``n`` (1 = anomaly), or raise DataError."""
    a = np.asarray(y)
    if a.ndim != 1 or len(a) != n:
        raise DataError(f"{name} must hold one label per validation score ({n}), got shape {a.shape}")
    if a.dtype != bool and not np.isin(a, (0, 1)).all():
        found = sorted(set(np.unique(a).tolist()))[:6]
        raise DataError(f"{name} must be 1 (anomaly) or 0 (normal); found values {found}. "
                        "Map your labels, e.g. val_labels = (classes != normal_class)")
    return a.astype(np.int64)


def _check_contamination(contamination: Any) -> float:
    if isinstance(contamination, bool) or not isinstance(contamination, (int, float, np.floating, np.integer)):
        raise ConfigError(f"contamination must be a number in (0, 0.5] (the share of training samples flagged, "
                          f"e.g. 0.1), got {contamination!r}")
    c = float(contamination)
    if not 0 < c <= 0.5:
        raise ConfigError(f"contamination must be in (0, 0.5] (the share of training samples flagged, e.g. 0.1), "
                          f"got {contamination}")
    return c


def _check_k(k: Any, name: str) -> float:
    if isinstance(k, bool) or not isinstance(k, (int, float, np.floating, np.integer)) or not math.isfinite(k) \
            or k < 0:
        raise ConfigError(f"{name} must be a finite number >= 0 (how many spreads above the centre), got {k!r}")
    return float(k)


# -- the rules ------------------------------------------------------------------------------------
def threshold_contamination(train_scores: Any, contamination: float, held_out: bool = False) -> float:
    """Returns the (1 - contamination) quantile of the scores.

    On the fitted data's own scores (``held_out=False``) it is PyOD's ``threshold_``
    (``np.percentile(scores, 100 * (1 - contamination))``, linear interpolation): about a share
    ``contamination`` of those samples lies above it. On the scores of ``n`` held-out normal samples
    (``held_out=True``) it is the split-conformal quantile, the k-th smallest score with
    k = ceil((n + 1)(1 - contamination)): a new normal sample exchangeable with them lies above it with
    probability (n + 1 - k) / (n + 1), at most ``contamination`` and within 1 / (n + 1) of it (the
    largest score when n is too small for that, under (1 - contamination) / contamination)."""
    s = _scores(train_scores, "train_scores")
    c = _check_contamination(contamination)
    if not held_out:
        return float(np.percentile(s, 100.0 * (1.0 - c)))
    n = len(s)
    k = min(n, math.ceil((n + 1) * (1.0 - c) - 1e-9))
    return float(np.sort(s)[k - 1])


def _fallback_info(reason: str) -> dict[str, Any]:
    return {"precision": math.nan, "recall": math.nan, "f1": math.nan, "fallback": "contamination", "reason": reason}


def threshold_f1(val_scores: Any, val_labels: Any, *, train_scores: Any = None,
                 contamination: float = 0.1) -> tuple[float, dict[str, Any]]:
    """Returns the threshold that maximises F1 on a labelled validation set, and
    ``info = {"precision", "recall", "f1", "fallback"}`` at that threshold.

    The candidates are the points of scikit-learn's ``precision_recall_curve`` (anomalies, label 1,
    are the positive class). That curve flags ``score >= t``; the returned threshold is the
    midpoint between the best ``t`` and the next lower validation score, so that PyOD's rule
    ``score > threshold`` flags the same validation samples (just below ``t`` when ``t`` is the
    lowest score). Ties in F1 go to the lower threshold (the higher recall).

    Fallback: F1 is undefined when the validation labels hold no anomaly, or only anomalies. The
    function then warns (``ThresholdFallbackWarning``, naming the fix) and returns the contamination
    rule on ``train_scores`` (on ``val_scores`` when no training scores are given and the validation
    set is all normal); ``info["fallback"] == "contamination"`` and precision, recall and F1 are NaN.
    A validation set of anomalies only, without training scores, raises DataError: no quantile of
    anomalies is a sensible threshold.
    """
    from sklearn.metrics import precision_recall_curve

    s = _scores(val_scores, "val_scores")
    y = _labels(val_labels, len(s))
    n_anomalies = int(y.sum())
    if n_anomalies in (0, len(y)):
        _check_contamination(contamination)  # before warning about a fallback that cannot run
        problem = ("hold no anomaly" if n_anomalies == 0 else "hold only anomalies")
        if train_scores is None and n_anomalies == len(y):
            raise DataError(f"val_labels {problem}: F1 is undefined and no training scores were given to fall back "
                            "on; add normal (label 0) samples to the validation set, or pass train_scores")
        reason = (f"val_labels {problem} ({len(y)} samples): F1 is undefined, so the threshold falls back to the "
                  f"contamination rule ({contamination}) on the "
                  f"{'training' if train_scores is not None else 'validation'} scores; add both normal (0) and "
                  "anomalous (1) samples to the validation set to tune the threshold on F1, or choose "
                  "rule='contamination'")
        warnings.warn(reason, ThresholdFallbackWarning, stacklevel=2)
        base = train_scores if train_scores is not None else s
        return threshold_contamination(base, contamination), _fallback_info(reason)

    precision, recall, cuts = precision_recall_curve(y, s)
    # the curve's last point (precision 1, recall 0) has no threshold
    p, r = precision[:-1], recall[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(p + r > 0, 2 * p * r / (p + r), 0.0)
    best = int(np.argmax(f1))
    t = float(cuts[best])
    lower = s[s < t]
    if len(lower):
        below = float(lower.max())
        thr = 0.5 * (below + t)
        if not below <= thr < t:  # adjacent floats: the midpoint rounds onto t
            thr = below
    else:
        thr = float(np.nextafter(t, -np.inf))
    return float(thr), {"precision": float(p[best]), "recall": float(r[best]), "f1": float(f1[best]),
                        "fallback": None}


def threshold_mad(scores: Any, k: float = 3.0) -> float:
    """Returns ``median + k * 1.4826 * MAD`` of the scores, where MAD is the median absolute
    deviation from the median and 1.4826 (``MAD_SCALE`` = 1 / Phi^-1(3/4)) makes it estimate a
    normal distribution's standard deviation: a robust k-sigma rule. When more than half of the
    scores are equal the MAD is 0 and the threshold is the median (it warns)."""
    s = _scores(scores, "scores")
    k = _check_k(k, "k")
    med = float(np.median(s))
    mad = float(np.median(np.abs(s - med)))
    if mad == 0:
        warnings.warn("more than half of the scores are equal, so their MAD is 0 and the MAD threshold is the median; "
                      "check the scores (a constant score cannot rank samples) or choose rule='iqr' or "
                      "'contamination'", ThresholdFallbackWarning, stacklevel=2)
    return med + k * MAD_SCALE * mad


def threshold_iqr(scores: Any, k: float = 1.5) -> float:
    """Returns Tukey's upper fence ``Q3 + k * (Q3 - Q1)`` of the scores (quartiles by
    ``np.percentile``, linear interpolation)."""
    s = _scores(scores, "scores")
    k = _check_k(k, "k")
    q1, q3 = np.percentile(s, [25.0, 75.0])
    return float(q3 + k * (q3 - q1))


def _gmm_log_odds(x: np.ndarray | float, w: np.ndarray, mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """log(w_hi N(x; mu_hi, sd_hi)) - log(w_lo N(x; mu_lo, sd_lo)) for components (lo, hi)."""
    x = np.asarray(x, dtype=np.float64)
    logp = np.log(w) - np.log(sd) - 0.5 * ((x[..., None] - mu) / sd) ** 2
    return logp[..., 1] - logp[..., 0]


def threshold_gmm(scores: Any, seed: int = 0, *, contamination: float = 0.1, min_separation: float = 2.0,
                  return_info: bool = False) -> float | tuple[float, dict[str, Any]]:
    """Returns the score at which the posterior of the higher-mean component of a 2-component 1-D
    Gaussian mixture (scikit-learn's ``GaussianMixture``, ``random_state=seed``) fitted to the
    scores crosses 0.5, between the two means (found by Brent's root finding on the log-odds).

    The components separate when Ashman's D = sqrt(2) |mu_hi - mu_lo| / sqrt(sd_hi^2 + sd_lo^2)
    reaches ``min_separation`` (2 is the usual bimodality bound) and the posterior does cross 0.5
    between the means. Otherwise (unimodal scores, a constant score, fewer than 4 samples) it
    warns (``ThresholdFallbackWarning``) and returns the contamination rule,
    ``threshold_contamination(scores, contamination)``. Ashman's D cannot tell a flat
    (uniform-like) distribution from two modes: two components split it in the middle.

    With ``return_info`` it returns ``(threshold, info)``: the fitted ``weights``, ``means`` and
    ``stds`` (low component first), ``separation`` (Ashman's D) and ``fallback`` (None or
    'contamination').
    """
    from scipy.optimize import brentq
    from sklearn.mixture import GaussianMixture

    s = _scores(scores, "scores")
    if not np.isfinite(min_separation) or min_separation < 0:
        raise ConfigError(f"min_separation (Ashman's D) must be a finite number >= 0, e.g. 2, got {min_separation!r}")
    info: dict[str, Any] = {"weights": None, "means": None, "stds": None, "separation": math.nan, "fallback": None}

    def fallback(problem: str):
        thr = threshold_contamination(s, contamination)
        msg = (f"the 2-component Gaussian mixture does not separate the scores ({problem}), so the threshold falls "
               f"back to the contamination rule ({contamination}); choose rule='contamination', 'mad' or 'iqr' for "
               "unimodal scores, or lower min_separation to accept overlapping components")
        warnings.warn(msg, ThresholdFallbackWarning, stacklevel=3)
        info.update(fallback="contamination", reason=msg)
        return (thr, info) if return_info else thr

    if len(s) < 4 or np.ptp(s) == 0:
        return fallback(f"{len(s)} scores with {len(np.unique(s))} distinct values")
    gmm = GaussianMixture(n_components=2, covariance_type="full", random_state=seed).fit(s[:, None])
    order = np.argsort(gmm.means_[:, 0])
    w = gmm.weights_[order]
    mu = gmm.means_[order, 0]
    sd = np.sqrt(gmm.covariances_[order, 0, 0])
    d = float(math.sqrt(2.0) * (mu[1] - mu[0]) / math.sqrt(sd[0] ** 2 + sd[1] ** 2))
    info.update(weights=w.tolist(), means=mu.tolist(), stds=sd.tolist(), separation=d)
    if d < min_separation:
        return fallback(f"Ashman's D = {d:.3g} < {min_separation}")
    lo, hi = _gmm_log_odds(mu[0], w, mu, sd), _gmm_log_odds(mu[1], w, mu, sd)
    if not (lo < 0 < hi):
        return fallback("the higher-mean component's posterior does not cross 0.5 between the means")
    thr = float(brentq(lambda x: float(_gmm_log_odds(x, w, mu, sd)), mu[0], mu[1], xtol=1e-12 * (1 + abs(mu[1]))))
    return (thr, info) if return_info else thr


# -- choosing a rule by name ----------------------------------------------------------------------
@dataclass(frozen=True)
class _RuleInputs:
    train_scores: Any
    val_scores: Any
    val_labels: Any
    contamination: float
    seed: int
    mad_k: float
    iqr_k: float
    held_out: bool = False


def _rule_contamination(a: _RuleInputs) -> tuple[float, dict[str, Any]]:
    return threshold_contamination(a.train_scores, a.contamination, a.held_out), {"fallback": None}


def _rule_conformal(a: _RuleInputs) -> tuple[float, dict[str, Any]]:
    if not a.held_out:
        raise ConfigError("rule 'conformal' needs scores of held-out normal data, which nothing was fitted on: calibrate "
                          "the detector on a held-out part (calibration > 0, the default) or a calibration_set")
    from .conformal import conformal_threshold

    return conformal_threshold(a.train_scores, a.contamination), {"fallback": None, "fpr": a.contamination}


def _rule_f1(a: _RuleInputs) -> tuple[float, dict[str, Any]]:
    if a.val_scores is None or a.val_labels is None:
        raise ConfigError("rule 'f1' needs a labelled validation set: pass val_scores and val_labels "
                          f"(1 = anomaly, 0 = normal), or choose an unsupervised rule: {', '.join(UNSUPERVISED_RULES)}")
    return threshold_f1(a.val_scores, a.val_labels, train_scores=a.train_scores, contamination=a.contamination)


def _rule_mad(a: _RuleInputs) -> tuple[float, dict[str, Any]]:
    return threshold_mad(a.train_scores, a.mad_k), {"fallback": None}


def _rule_iqr(a: _RuleInputs) -> tuple[float, dict[str, Any]]:
    return threshold_iqr(a.train_scores, a.iqr_k), {"fallback": None}


def _rule_gmm(a: _RuleInputs) -> tuple[float, dict[str, Any]]:
    return threshold_gmm(a.train_scores, a.seed, contamination=a.contamination, return_info=True)


RULES: dict[str, Callable[[_RuleInputs], tuple[float, dict[str, Any]]]] = {
    "contamination": _rule_contamination,
    "conformal": _rule_conformal,
    "f1": _rule_f1,
    "mad": _rule_mad,
    "iqr": _rule_iqr,
    "gmm": _rule_gmm,
}
THRESHOLD_RULES = tuple(RULES)
UNSUPERVISED_RULES = tuple(r for r in RULES if r != "f1")


def choose_threshold(rule: str, train_scores: Any, val_scores: Any = None, val_labels: Any = None,
                     contamination: float = 0.1, *, seed: int = 0, mad_k: float = 3.0,
                     iqr_k: float = 1.5, held_out: bool = False) -> tuple[float, dict[str, Any]]:
    """Returns ``(threshold, info)`` from the rule named ``rule`` (one of ``THRESHOLD_RULES``).

    The unsupervised rules ('contamination', 'mad', 'iqr', 'gmm') read ``train_scores`` only;
    'f1' reads ``val_scores`` / ``val_labels`` (1 = anomaly) and falls back to the contamination
    rule on ``train_scores`` when those labels hold one class only. ``info`` always has
    ``rule`` and ``fallback`` (None, or the name of the rule used instead), plus the rule's own
    entries (precision / recall / F1 for 'f1', the mixture for 'gmm').
    ``held_out``: ``train_scores`` are scores of held-out normal data (the detector's calibration part),
    and 'contamination' takes their split-conformal quantile (see ``threshold_contamination``).
    Raises ConfigError for an unknown rule, and for 'f1' without validation scores and labels.
    """
    try:
        apply = RULES[rule]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown threshold rule {rule!r}; choose one of: {', '.join(THRESHOLD_RULES)}") from None
    thr, info = apply(_RuleInputs(train_scores, val_scores, val_labels, contamination, seed, mad_k, iqr_k, held_out))
    return float(thr), {"rule": rule, **info}


# -- calibrated outputs ---------------------------------------------------------------------------
def _proba_linear(train: np.ndarray, test: np.ndarray) -> np.ndarray:
    lo, hi = float(train.min()), float(train.max())
    if hi == lo:  # a constant training score: the limit of min-max scaling is a step at that score
        return (test > hi).astype(np.float64)
    return np.clip((test - lo) / (hi - lo), 0.0, 1.0)


def _proba_unify(train: np.ndarray, test: np.ndarray) -> np.ndarray:
    mu, sigma = float(train.mean()), float(train.std())
    if sigma == 0:  # the limit of erf((s - mu) / (sigma sqrt 2)) as sigma -> 0
        return (test > mu).astype(np.float64)
    return np.clip(erf((test - mu) / (sigma * math.sqrt(2.0))), 0.0, 1.0)


PROBA_METHODS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "linear": _proba_linear,
    "unify": _proba_unify,
}


def predict_proba(train_scores: Any, test_scores: Any, method: str = "linear") -> np.ndarray:
    """Returns an (N, 2) array of (normal, outlier) probabilities of the test scores, PyOD's
    ``predict_proba``; each row sums to 1.

    - ``linear``: min-max scaling by the training scores, ``(s - min) / (max - min)`` clipped to
      [0, 1].
    - ``unify``: ``erf((s - mean) / (std * sqrt(2)))`` clipped at 0, with the mean and the
      (population, ddof=0) standard deviation of the training scores: Kriegel et al. (2011),
      "Interpreting and unifying outlier scores", Gaussian scaling, as PyOD implements it.

    Constant training scores (max = min, std = 0) give the limit of each formula: probability 1
    above that score, 0 at or below it.
    """
    try:
        convert = PROBA_METHODS[method]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown probability method {method!r}; choose one of: {', '.join(PROBA_METHODS)}") \
            from None
    train = _scores(train_scores, "train_scores")
    test = _scores(test_scores, "test_scores")
    p = convert(train, test)
    return np.stack([1.0 - p, p], axis=1)


def predict_confidence(train_scores: Any, test_scores: Any, contamination: float = 0.1,
                       threshold: float | None = None) -> np.ndarray:
    """Returns the confidence in [0, 1] of each test sample's prediction (flagged when
    ``score > threshold``), PyOD's ``predict_confidence``: ExCeeD, Perini et al. (2020),
    "Quantifying the confidence of anomaly detectors in their example-wise predictions".

    With ``n`` training scores of which ``m`` are <= the test score, the outlier probability is
    the Bayesian estimate ``p = (1 + m) / (2 + n)``. The sample is an outlier when, among ``n``
    draws from the population, more than ``n - floor(n * contamination)`` fall below it, which
    happens with probability ``P(Binomial(n, p) > n - floor(n * contamination))``: the confidence
    of an outlier prediction, and one minus it the confidence of a normal prediction.
    ``threshold`` defaults to the contamination rule (PyOD's ``threshold_``); pass the detector's
    ``threshold_`` when it was set otherwise. ``floor(n * c)`` ignores float round-off below 1e-9
    (``100 * 0.29`` counts as 29, not 28).
    """
    train = _scores(train_scores, "train_scores")
    test = _scores(test_scores, "test_scores")
    c = _check_contamination(contamination)
    if threshold is None:
        threshold = threshold_contamination(train, c)
    elif not math.isfinite(float(threshold)):
        raise ConfigError(f"threshold must be a finite number, got {threshold}")
    n = len(train)
    m = np.searchsorted(np.sort(train), test, side="right")  # training scores <= each test score
    p = (1.0 + m) / (2.0 + n)
    k = n - math.floor(n * c + 1e-9)
    outlier_conf = binom.sf(k, n, p)  # P(X > k) = 1 - cdf(k), without the cancellation near 1
    flagged = test > float(threshold)
    return np.where(flagged, outlier_conf, 1.0 - outlier_conf)


__all__ = ["MAD_SCALE", "PROBA_METHODS", "RULES", "THRESHOLD_RULES", "UNSUPERVISED_RULES", "ThresholdFallbackWarning",
           "choose_threshold", "predict_confidence", "predict_proba", "threshold_contamination", "threshold_f1",
           "threshold_gmm", "threshold_iqr", "threshold_mad"]
