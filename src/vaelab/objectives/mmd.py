"""Maximum mean discrepancy between two samples, the unbiased U-statistic (Gretton et al. 2012):

    MMD^2_u = 1/(n(n-1)) sum_{i != j} k(x_i, x_j) + 1/(m(m-1)) sum_{i != j} k(y_i, y_j)
              - 2/(n m) sum_{i, j} k(x_i, y_j)

Its expectation is exactly MMD^2(P, Q), 0 when the samples come from one distribution (so a
single estimate can be negative). Kernels, with d the dimension and ``sigma2`` the variance of
the reference distribution (1 for the standard normal prior):

- ``imq``: the inverse multiquadratic k(x, y) = sum_s C_s / (C_s + ||x - y||^2), C_s = 2 d sigma2 s
  over the scales s in IMQ_SCALES, as in the code of Tolstikhin et al. (WAE, 2018);
- ``rbf``: the Gaussian k(x, y) = exp(-||x - y||^2 / (2 d sigma2)), the kernel family InfoVAE uses; this
  bandwidth and the unbiased estimate are vaelab's choices (the InfoVAE authors' code uses another bandwidth
  and the biased estimate), so its values are not comparable with theirs.

Used by the WAE-MMD and InfoVAE models; a pure function of tensors like everything here."""
from __future__ import annotations

from typing import Callable

import torch

IMQ_SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


def squared_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """[i, j] = ||x_i - y_j||^2 for (n, d) and (m, d) tensors, through one matrix product (no
    square root, so the gradient at a zero distance is finite)."""
    return (x.pow(2).sum(1, keepdim=True) + y.pow(2).sum(1).unsqueeze(0) - 2.0 * x @ y.T).clamp_min(0.0)


def imq_kernel(sq: torch.Tensor, dim: int, sigma2: float = 1.0) -> torch.Tensor:
    out = torch.zeros_like(sq)
    for s in IMQ_SCALES:
        c = 2.0 * dim * sigma2 * s
        out = out + c / (c + sq)
    return out


def rbf_kernel(sq: torch.Tensor, dim: int, sigma2: float = 1.0) -> torch.Tensor:
    return torch.exp(-sq / (2.0 * dim * sigma2))


# a kernel maps squared distances, the dimension and sigma2 to kernel values
KERNELS: dict[str, Callable[[torch.Tensor, int, float], torch.Tensor]] = {"imq": imq_kernel, "rbf": rbf_kernel}


def mmd(x: torch.Tensor, y: torch.Tensor, kernel: str = "imq", sigma2: float = 1.0) -> torch.Tensor:
    """The unbiased estimate of MMD^2 between the samples ``x`` (n, d) and ``y`` (m, d), a scalar;
    the diagonal terms k(x_i, x_i) and k(y_i, y_i) are left out. n, m >= 2."""
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; choose one of: {', '.join(KERNELS)}")
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"mmd takes two (n, d) samples of one dimension, got {tuple(x.shape)} and {tuple(y.shape)}")
    n, m = x.shape[0], y.shape[0]
    if n < 2 or m < 2:
        raise ValueError(f"the unbiased MMD needs at least 2 points in each sample, got {n} and {m}")
    k, d = KERNELS[kernel], x.shape[1]
    kxx = k(squared_distances(x, x), d, sigma2)
    kyy = k(squared_distances(y, y), d, sigma2)
    kxy = k(squared_distances(x, y), d, sigma2)
    within_x = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    within_y = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return within_x + within_y - 2.0 * kxy.mean()
