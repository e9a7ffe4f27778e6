"""Explanations per feature of vector data: the closed forms they rest on, and the corrupted column found."""
import numpy as np
import pytest
import torch

from vaelab.detect import AutoencoderDetector
from vaelab.detect.features import gradient_times_input, top_features
from vaelab.errors import ConfigError, DataError


def test_gradient_times_input_is_exact_on_a_quadratic():
    a = torch.tensor([0.5, -1.0, 2.0, 0.0], dtype=torch.float64)
    x = torch.randn(7, 4, generator=torch.Generator().manual_seed(0))
    got = gradient_times_input(lambda b: (a * b.double() ** 2).sum(1).numpy(), x, step=1e-3)
    np.testing.assert_allclose(got, (2 * a * x.double() ** 2).numpy(), rtol=1e-4, atol=1e-6)


@pytest.fixture(scope="module")
def benign():
    from sklearn.datasets import load_breast_cancer

    b = load_breast_cancer()
    x = b.data[b.target == 1]
    perm = np.random.default_rng(0).permutation(len(x))
    return x[perm[:250]], x[perm[250:]]


def corrupted(train, test, seed=0):
    """Each test row with one column moved 6 training standard deviations away from its mean."""
    rng = np.random.default_rng(seed)
    mu, sd = train.mean(0), train.std(0)
    cols = rng.integers(0, train.shape[1], len(test))
    bad = test.copy()
    bad[np.arange(len(bad)), cols] = mu[cols] + 6 * sd[cols] * rng.choice([-1, 1], len(bad))
    return torch.tensor(bad, dtype=torch.float32), cols


def test_the_top_feature_is_the_corrupted_column(benign):
    train, test = benign
    det = AutoencoderDetector(epochs=20, seed=0).fit(torch.tensor(train, dtype=torch.float32))
    bad, cols = corrupted(train, test)
    rec, grad = det.explain(bad, "reconstruction"), det.explain(bad, "gradient")
    assert rec.shape == grad.shape == (len(test), 30)
    assert (rec.argmax(1) == cols).mean() >= 0.9 and (grad.argmax(1) == cols).mean() >= 0.9
    np.testing.assert_array_equal(det.explain(bad), grad)  # the default combo is not a sum over features: gradient
    # the reconstruction terms are what the mse score averages
    mse = AutoencoderDetector(det.model_, "mse").fit(torch.tensor(train, dtype=torch.float32))
    np.testing.assert_allclose(mse.explain(bad).mean(1), mse.raw_scores(bad), rtol=1e-5)
    assert top_features(rec[:2], 2, [f"c{j}" for j in range(30)])[0].startswith(f"c{rec[0].argmax()} (")
    with pytest.raises(ConfigError, match="unknown explanation method"):
        det.explain(bad, "shap")
    with pytest.raises(DataError, match="for vectors"):
        det.explain(torch.rand(2, 1, 8, 8))
