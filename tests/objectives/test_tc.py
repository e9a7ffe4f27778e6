"""The minibatch total-correlation estimators (vaelab.objectives.tc) against the exact TC of a data set of
correlated Gaussian codes: the stratified estimate of q(z) is unbiased (tests/models/test_family.py
enumerates it), its TC is not. benchmarks/tc_bias.py measures the bias over more cases."""
from __future__ import annotations

import math

import torch
from torch.distributions import Normal

from vaelab.objectives.tc import tc_decomposition


def test_the_stratified_tc_is_biased_low_and_the_weighted_one_high():
    """N = 10,000 codes mu_n ~ N(0, C) in d = 4 units, correlation 0.5 between every pair, posteriors
    N(mu_n, 0.5^2 I). The exact TC of the aggregate posterior (every density a sum over all N, Monte Carlo
    over z ~ q(z)) is near the closed form of N(0, C + s^2 I), 0.5 (sum_j log S_jj - log det S). Over
    minibatches of 64, the stratified (mss) TC falls below it and the weighted (mws) one, whose q(z) is about
    q(z) / N, lies about (d - 1) ln N above it: each more than four standard errors away."""
    g = torch.Generator().manual_seed(0)
    n, d, rho, s, m, batches = 10_000, 4, 0.5, 0.5, 64, 100
    c = torch.full((d, d), rho, dtype=torch.float64)
    c.fill_diagonal_(1.0)
    mu = torch.randn(n, d, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(c).T
    cov = c + s * s * torch.eye(d, dtype=torch.float64)
    closed_form = 0.5 * float(torch.log(torch.diagonal(cov)).sum() - torch.logdet(cov))

    parts = []
    for _ in range(4):  # 4 x 250 draws of z ~ q(z), each against all N images
        idx = torch.randint(0, n, (250,), generator=g)
        z = mu[idx] + s * torch.randn(250, d, generator=g, dtype=torch.float64)
        per_unit = -0.5 * ((z.unsqueeze(1) - mu) / s) ** 2 - math.log(s * math.sqrt(2 * math.pi))  # [draw, image, unit]
        parts.append(torch.logsumexp(per_unit.sum(2), 1) - (torch.logsumexp(per_unit, 1) - math.log(n)).sum(1) - math.log(n))
    tc = torch.cat(parts)
    exact, exact_se = float(tc.mean()), float(tc.std()) / math.sqrt(len(tc))
    assert abs(exact - closed_form) < 4 * exact_se + 0.05, (exact, closed_form)

    est = {}
    logvar = torch.full((m, d), 2 * math.log(s), dtype=torch.float64)
    for name in ("mss", "mws"):
        means = []
        for _ in range(batches):
            b = torch.randperm(n, generator=g)[:m]
            zb = mu[b] + s * torch.randn(m, d, generator=g, dtype=torch.float64)
            t = tc_decomposition(zb, mu[b], logvar, n, name, log_pz=Normal(0.0, 1.0).log_prob(zb).sum(1))
            means.append(float(t["tc"].mean()))
        v = torch.tensor(means, dtype=torch.float64)
        est[name] = (float(v.mean()), float(v.std()) / math.sqrt(batches))
    (mss, mss_se), (mws, mws_se) = est["mss"], est["mws"]
    assert mss < exact - 4 * math.hypot(mss_se, exact_se), (mss, exact)
    assert mws > exact + 4 * math.hypot(mws_se, exact_se), (mws, exact)
    assert abs((mws - exact) - (d - 1) * math.log(n)) < 0.15 * (d - 1) * math.log(n), (mws - exact, (d - 1) * math.log(n))
