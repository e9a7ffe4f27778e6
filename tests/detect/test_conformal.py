"""Split-conformal p-values, their threshold and Benjamini-Hochberg: closed forms, scipy's BH, and the
guarantees checked by simulation on normal scores (four standard errors)."""
import numpy as np
import pytest
from scipy.stats import false_discovery_control, norm

from vaelab.detect.conformal import benjamini_hochberg, conformal_pvalues, conformal_threshold
from vaelab.errors import ConfigError, DataError


def test_pvalues_count_the_calibration_scores_at_least_as_anomalous():
    rng = np.random.default_rng(0)
    cal, s = rng.normal(size=37), np.r_[rng.normal(size=50), 10.0, -10.0]
    cal[:3] = s[:3]  # ties count as at least as anomalous
    want = [(1 + (cal >= v).sum()) / 38 for v in s]
    np.testing.assert_allclose(conformal_pvalues(cal, s), want, rtol=0, atol=0)
    assert conformal_pvalues(cal, [10.0])[0] == 1 / 38 and conformal_pvalues(cal, [-10.0])[0] == 1.0


@pytest.mark.parametrize("n,alpha", [(99, 0.01), (199, 0.05), (40, 0.1)])
def test_pvalues_of_normal_data_are_super_uniform_and_the_threshold_agrees(n, alpha):
    """P(p <= alpha) = floor(alpha (n + 1)) / (n + 1) <= alpha exactly for continuous exchangeable scores,
    checked over 4,000 calibration draws with the Gaussian tail of each draw's threshold."""
    rng = np.random.default_rng(n)
    tails = []
    for _ in range(4000):
        cal = rng.normal(size=n)
        thr = conformal_threshold(cal, alpha)
        x = rng.normal(size=20)
        np.testing.assert_array_equal(conformal_pvalues(cal, x) <= alpha, x > thr)  # the rule flags exactly p <= alpha
        tails.append(norm.sf(thr))
    tails = np.asarray(tails)
    want = np.floor(alpha * (n + 1) + 1e-9) / (n + 1)
    assert alpha - 1 / (n + 1) < want <= alpha
    assert abs(tails.mean() - want) < 4 * tails.std() / np.sqrt(len(tails)), (tails.mean(), want)


def test_bh_rejects_what_scipys_adjusted_pvalues_put_at_or_below_q():
    rng = np.random.default_rng(1)
    for _ in range(50):
        p = np.r_[rng.uniform(size=80), rng.uniform(0, 0.01, size=rng.integers(0, 20))]
        rng.shuffle(p)
        for q in (0.01, 0.1, 0.3):
            np.testing.assert_array_equal(benjamini_hochberg(p, q), (false_discovery_control(p) <= q).astype(int))


def test_bh_on_conformal_pvalues_keeps_the_false_discovery_rate_below_q():
    """Normal scores N(0, 1), anomalies N(3, 1), a fifth of each batch: the mean false-discovery proportion
    over 1,000 batches (each with its own calibration set) is at most q."""
    rng = np.random.default_rng(2)
    q, fdp = 0.1, []
    for _ in range(1000):
        cal = rng.normal(size=200)
        y = rng.uniform(size=100) < 0.2
        s = rng.normal(size=100) + 3 * y
        flagged = benjamini_hochberg(conformal_pvalues(cal, s), q).astype(bool)
        fdp.append((flagged & ~y).sum() / max(flagged.sum(), 1))
    fdp = np.asarray(fdp)
    assert fdp.mean() <= q + 4 * fdp.std() / np.sqrt(len(fdp)), fdp.mean()
    assert fdp.mean() > 0.02  # it does discover: not a procedure that flags nothing


def test_bad_rates_and_too_few_calibration_scores_are_refused():
    for bad in (0, 1, -0.1, float("nan"), True, "0.1"):
        with pytest.raises(ConfigError, match="rate in"):
            benjamini_hochberg([0.1, 0.2], bad)
    with pytest.raises(DataError, match="at least 19 held-out"):
        conformal_threshold(np.arange(10.0), 0.05)
    with pytest.raises(DataError, match="finite"):
        conformal_pvalues([0.0, np.nan], [1.0])


def test_the_detector_gives_pvalues_flags_at_a_false_alarm_rate_and_controls_the_fdr_of_a_batch():
    import torch

    from vaelab.detect import AutoencoderDetector
    from vaelab.errors import ModelError

    from .test_detect import TINY, squares

    g = torch.Generator().manual_seed(0)
    normal, held, noise = squares(400, g), squares(100, g), torch.rand(30, 1, 16, 16, generator=g)
    det = AutoencoderDetector(score="mse", epochs=2, overrides=TINY, threshold_rule="conformal", fpr=0.1).fit(normal)
    batch = torch.cat([held, noise])
    p = det.predict_pvalues(batch)
    np.testing.assert_array_equal(p, conformal_pvalues(det.calibration_scores_, det.decision_function(batch, clip=False)))
    assert p.min() >= 1 / (det.n_calibration_ + 1) and p.max() <= 1
    np.testing.assert_array_equal(det.predict(batch), (p <= 0.1).astype(int))  # the rule: exactly p <= fpr
    assert det.threshold_info_ == {"rule": "conformal", "fallback": None, "fpr": 0.1}
    np.testing.assert_array_equal(det.predict(batch, fdr=0.2), benjamini_hochberg(p, 0.2))
    # a model fitted on its calibration data has no p-values, and the conformal rule needs them
    mse = AutoencoderDetector(det.model_, "mse", calibration=0).fit(normal)
    with pytest.raises(ModelError, match="held-out"):
        mse.predict_pvalues(held)
    with pytest.raises(ConfigError, match="held-out"):
        AutoencoderDetector(det.model_, "mse", calibration=0, threshold_rule="conformal", fpr=0.1).fit(normal)
    with pytest.raises(ConfigError, match="give fpr"):
        AutoencoderDetector(det.model_, "mse", threshold_rule="conformal").fit(normal)
