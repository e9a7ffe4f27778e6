"""The unbiased MMD estimator against a double loop written from its definition, ~0 on two samples
of one distribution and clearly positive on two distributions, and unbiased: its mean over many
draws of identical distributions is 0 within the Monte Carlo error, where the biased V-statistic's
is not."""
import math

import pytest
import torch
from torch.func import vmap

from vaelab.objectives.mmd import IMQ_SCALES, KERNELS, mmd, squared_distances

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: a second thread only waits


def kernel_by_hand(a: torch.Tensor, b: torch.Tensor, kernel: str, dim: int, sigma2: float = 1.0) -> float:
    sq = float(((a - b) ** 2).sum())
    if kernel == "imq":
        return sum((2 * dim * sigma2 * s) / (2 * dim * sigma2 * s + sq) for s in IMQ_SCALES)
    return math.exp(-sq / (2 * dim * sigma2))


def mmd_double_loop(x: torch.Tensor, y: torch.Tensor, kernel: str, sigma2: float = 1.0) -> float:
    n, m, d = len(x), len(y), x.shape[1]
    kxx = sum(kernel_by_hand(x[i], x[j], kernel, d, sigma2) for i in range(n) for j in range(n) if i != j)
    kyy = sum(kernel_by_hand(y[i], y[j], kernel, d, sigma2) for i in range(m) for j in range(m) if i != j)
    kxy = sum(kernel_by_hand(x[i], y[j], kernel, d, sigma2) for i in range(n) for j in range(m))
    return kxx / (n * (n - 1)) + kyy / (m * (m - 1)) - 2 * kxy / (n * m)


@pytest.mark.parametrize("kernel", ["imq", "rbf"])
@pytest.mark.parametrize("sigma2", [1.0, 0.3])
def test_mmd_equals_the_double_loop(kernel, sigma2):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(9, 3, generator=g, dtype=torch.float64)
    y = 0.7 * torch.randn(6, 3, generator=g, dtype=torch.float64) + 0.4  # n != m, another distribution
    got = float(mmd(x, y, kernel, sigma2))
    assert got == pytest.approx(mmd_double_loop(x, y, kernel, sigma2), rel=1e-10, abs=1e-12)


# n = m = 500 points in 2-d, fixed seed; the null values' spread is ~0.006 (imq) and ~0.0013 (rbf),
# a mean shift of 0.5 per coordinate gives ~0.26 and ~0.06
NULL_TOL = {"imq": 0.03, "rbf": 0.006}


@pytest.mark.parametrize("kernel", ["imq", "rbf"])
def test_mmd_is_near_zero_for_one_distribution_and_clearly_not_for_two(kernel):
    g = torch.Generator().manual_seed(0)
    x, y = (torch.randn(500, 2, generator=g, dtype=torch.float64) for _ in range(2))
    shifted = torch.randn(500, 2, generator=g, dtype=torch.float64) + 0.5
    same, other = float(mmd(x, y, kernel)), float(mmd(x, shifted, kernel))
    assert abs(same) < NULL_TOL[kernel], same
    assert other > 5 * NULL_TOL[kernel], other


@pytest.mark.parametrize("kernel", ["imq", "rbf"])
def test_mmd_is_unbiased(kernel):
    """4,000 pairs of samples of 8 points from N(0, I): the mean of the U-statistic is within 4
    standard errors of 0; the V-statistic (diagonal terms kept) is biased upwards by well over that."""
    g = torch.Generator().manual_seed(2)
    r, n = 4000, 8
    x = torch.randn(r, n, 2, generator=g, dtype=torch.float64)
    y = torch.randn(r, n, 2, generator=g, dtype=torch.float64)
    u = vmap(lambda a, b: mmd(a, b, kernel))(x, y)
    se = float(u.std()) / math.sqrt(r)
    assert abs(float(u.mean())) < 4 * se, (float(u.mean()), se)

    def v_stat(a, b):  # the biased estimate: every mean over all pairs, the diagonal included
        k = KERNELS[kernel]
        return (k(squared_distances(a, a), 2, 1.0).mean() + k(squared_distances(b, b), 2, 1.0).mean()
                - 2 * k(squared_distances(a, b), 2, 1.0).mean())

    v = vmap(v_stat)(x, y)
    assert float(v.mean()) > 10 * se, (float(v.mean()), se)


def test_gradient_is_finite_when_codes_collapse():
    """Identical codes (a collapsed encoder) give zero distances: no square root, finite gradients."""
    x = torch.zeros(6, 4, requires_grad=True)
    y = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    for kernel in ("imq", "rbf"):
        (g,) = torch.autograd.grad(mmd(x, y, kernel), x)
        assert torch.isfinite(g).all()


def test_mmd_refuses_what_it_cannot_estimate():
    with pytest.raises(ValueError, match="at least 2"):
        mmd(torch.zeros(1, 2), torch.zeros(5, 2))
    with pytest.raises(ValueError, match="unknown kernel"):
        mmd(torch.zeros(3, 2), torch.zeros(3, 2), "cauchy")
    with pytest.raises(ValueError, match="one dimension"):
        mmd(torch.zeros(3, 2), torch.zeros(3, 4))
