"""Minibatch estimators of the beta-TCVAE decomposition (Chen et al., 2018):

    KL(q(z|x) || p(z)) = [log q(z|x) - log q(z)]          index-code mutual information
                        + [log q(z) - sum_j log q(z_j)]    total correlation
                        + [sum_j log q(z_j) - log p(z)]     dimension-wise KL

evaluated at z ~ q(z|x_i). The aggregate posterior q(z) = (1/N) sum_n q(z|x_n) (N: dataset size)
is estimated from the minibatch of M images:
  - 'mws' (minibatch weighted sampling) computes 1/(N M) sum_j q(z_i | x_j), the weights of Chen et
    al.'s code. That is about q(z_i) / N, not q(z_i) ((1/M) sum_j q(z_i | x_j) is the minibatch's
    estimate of q(z_i)), so log q(z) and each log q(z_ij) come out about ln N low: mi about ln N
    high, tc about (d - 1) ln N high and dwkl about d ln N low (d latent units), as in the reference.
  - 'mss' (minibatch stratified sampling): q(z_i) ~ 1/N q(z_i|x_i) + (N-1)/(N (M-1)) sum_{j!=i} q(z_i|x_j),
    an unbiased estimate of q(z_i) when the other M-1 images are drawn without replacement.
The same weights give the marginals q(z_ij). The three terms sum exactly to log q(z|x) - log p(z).

Unbiased for q(z) is not unbiased for the total correlation: the logarithm of an unbiased estimate is
biased low (Jensen), and on the cases measured the joint's bias outweighs the marginals' together,
so the stratified TC comes out low, the more so the narrower the posteriors against the spread of
the codes and the more units there are. On correlated Gaussian codes with a known TC
(benchmarks/tc_bias.py, table in docs/results.md) it is within 6% of the exact TC with posterior
scale 1 and two units, 74% low with scale 0.25, and below zero with scale 0.25 and four units; the
weighted TC, its (d - 1) ln N offset taken away, is biased high by amounts of the same order. Compare TCs between models of one latent size and
posterior scale, not as absolute nats.
"""
from __future__ import annotations

import math

import torch
from torch.distributions import Normal


def pairwise_log_q(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """[i, j, d] = log N(z_i[d]; mu_j[d], exp(logvar_j[d]))."""
    return Normal(mu.unsqueeze(0), torch.exp(0.5 * logvar).unsqueeze(0)).log_prob(z.unsqueeze(1))


def log_weights(batch_size: int, dataset_size: int, estimator: str, device=None, dtype=None) -> torch.Tensor:
    """[i, j] = log weight of q(z_i | x_j) in the estimate of q(z_i)."""
    m, n = batch_size, dataset_size
    if estimator == "mws":
        return torch.full((m, m), -math.log(n * m), device=device, dtype=dtype)
    if estimator == "mss":
        if m < 2:
            raise ValueError("the stratified estimator needs a minibatch of at least 2 images")
        w = torch.full((m, m), math.log(n - 1) - math.log(n * (m - 1)), device=device, dtype=dtype)
        w.fill_diagonal_(-math.log(n))
        return w
    raise ValueError(f"unknown estimator {estimator!r}; choose 'mws' or 'mss'")


def tc_decomposition(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, dataset_size: int,
                     estimator: str = "mss", *, log_pz: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image mi, tc, dwkl (and log_qz etc.) for samples ``z`` ~ q(z | x) of one minibatch;
    ``log_pz`` is log p(z) of each sample under the model's prior (``prior().log_prob(z)``): the
    three terms then sum to log q(z|x) - log p(z) whatever the prior, and are the decomposition
    of Chen et al. when the prior factorises."""
    mat = pairwise_log_q(z, mu, logvar)  # [i, j, d]
    log_qz_x = mat.diagonal(dim1=0, dim2=1).sum(0)  # log q(z_i | x_i): diagonal is [d, i]
    lw = log_weights(z.shape[0], dataset_size, estimator, z.device, z.dtype)
    log_qz = torch.logsumexp(lw + mat.sum(2), dim=1)
    log_qz_marginals = torch.logsumexp(lw.unsqueeze(2) + mat, dim=1).sum(1)
    return {
        "mi": log_qz_x - log_qz,
        "tc": log_qz - log_qz_marginals,
        "dwkl": log_qz_marginals - log_pz,
        "log_qz": log_qz,
        "log_qz_marginals": log_qz_marginals,
    }
