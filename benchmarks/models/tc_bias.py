"""Bias of the minibatch total-correlation estimators (mss, mws) against the exact TC of correlated Gaussians.

Bias of the minibatch total-correlation estimators (vaelab.objectives.tc, 'mss' and 'mws') against the
exact total correlation, on correlated Gaussians.

A data set of N codes mu_n ~ N(0, C) (d units of unit variance, correlation rho between every pair), each image
with the posterior q(z | x_n) = N(mu_n, s^2 I). Its aggregate posterior q(z) = (1/N) sum_n q(z | x_n) tends to
N(0, S), S = C + s^2 I, as N grows, whose total correlation has the closed form 0.5 (sum_j log S_jj - log det S).
The exact TC of the finite data set, E_{z ~ q(z)}[log q(z) - sum_j log q(z_j)], is a Monte Carlo mean over
--exact-samples draws with log q(z) and every log q(z_j) summed over all N images (no minibatch). Each estimator's
TC is the mean over --batches minibatches of M images (drawn without replacement) of tc_decomposition's per-image
'tc' with dataset_size = N, as beta-TCVAE computes it in training. Standard errors: of the Monte Carlo mean (exact)
and of the mean over minibatches (estimators).

    python -m benchmarks tc_bias [--n 10000 --batch 128 --batches 400 --exact-samples 20000]

writes benchmarks/results/tc_bias.json.
"""
from __future__ import annotations

import argparse
import math

import torch
from torch.distributions import Normal

from benchmarks._harness import Bench, print_table
from vaelab.objectives.tc import tc_decomposition

CASES = [  # (d, rho, s): the posterior scale s from wide (codes overlap) to narrow (each image its own bump)
    (2, 0.5, 1.0), (2, 0.5, 0.5), (2, 0.5, 0.25),
    (2, 0.9, 1.0), (2, 0.9, 0.5), (2, 0.9, 0.25),
    (4, 0.5, 1.0), (4, 0.5, 0.5), (4, 0.5, 0.25),
]
SMOKE = ["--n", "500", "--batches", "4", "--exact-samples", "500", "--cases", "2"]


def gaussian_tc(cov: torch.Tensor) -> float:
    """Total correlation of N(0, cov): 0.5 (sum_j log cov_jj - log det cov)."""
    return 0.5 * float(torch.log(torch.diagonal(cov)).sum() - torch.logdet(cov))


def make_codes(n: int, d: int, rho: float, generator: torch.Generator) -> torch.Tensor:
    """N codes from N(0, C), C with unit variances and correlation rho between every pair of units."""
    c = torch.full((d, d), rho, dtype=torch.float64)
    c.fill_diagonal_(1.0)
    return torch.randn(n, d, generator=generator, dtype=torch.float64) @ torch.linalg.cholesky(c).T


def exact_tc(mu: torch.Tensor, s: float, samples: int, generator: torch.Generator, chunk: int = 500) -> tuple[float, float]:
    """Monte Carlo mean and standard error of log q(z) - sum_j log q(z_j) for z ~ q(z), every density a sum over
    all N images."""
    n, d = mu.shape
    vals = []
    for start in range(0, samples, chunk):
        k = min(chunk, samples - start)
        idx = torch.randint(0, n, (k,), generator=generator)
        z = mu[idx] + s * torch.randn(k, d, generator=generator, dtype=torch.float64)
        per_unit = Normal(mu.unsqueeze(0), s).log_prob(z.unsqueeze(1))  # [k, n, d]
        log_qz = torch.logsumexp(per_unit.sum(2), 1) - math.log(n)
        log_marg = (torch.logsumexp(per_unit, 1) - math.log(n)).sum(1)
        vals.append(log_qz - log_marg)
    v = torch.cat(vals)
    return float(v.mean()), float(v.std() / math.sqrt(len(v)))


def estimated_tc(mu: torch.Tensor, s: float, batch: int, batches: int, estimator: str,
                 generator: torch.Generator) -> tuple[float, float]:
    """Mean and standard error over minibatches of the mean per-image TC of tc_decomposition."""
    n, d = mu.shape
    logvar = torch.full((batch, d), 2 * math.log(s), dtype=torch.float64)
    means = []
    for _ in range(batches):
        idx = torch.randperm(n, generator=generator)[:batch]
        m = mu[idx]
        z = m + s * torch.randn(batch, d, generator=generator, dtype=torch.float64)
        log_pz = Normal(0.0, 1.0).log_prob(z).sum(1)
        means.append(float(tc_decomposition(z, m, logvar, n, estimator, log_pz=log_pz)["tc"].mean()))
    t = torch.tensor(means, dtype=torch.float64)
    return float(t.mean()), float(t.std() / math.sqrt(batches))


def measure(d: int, rho: float, s: float, n: int, batch: int, batches: int, exact_samples: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    mu = make_codes(n, d, rho, g)
    c = torch.full((d, d), rho, dtype=torch.float64)
    c.fill_diagonal_(1.0)
    row = {"d": d, "rho": rho, "s": s, "closed_form_tc": gaussian_tc(c + s * s * torch.eye(d, dtype=torch.float64))}
    row["exact_tc"], row["exact_se"] = exact_tc(mu, s, exact_samples, g)
    for est in ("mss", "mws"):
        t, se = estimated_tc(mu, s, batch, batches, est, g)
        row[f"{est}_tc"], row[f"{est}_se"] = t, se
        row[f"{est}_bias"] = t - row["exact_tc"]
        row[f"{est}_relative_bias"] = (t - row["exact_tc"]) / row["exact_tc"]
    # mws's q(z) is about q(z) / N (weights 1 / (N M)), which puts its TC about (d - 1) ln N above: what is left
    row["mws_offset"] = (d - 1) * math.log(n)
    row["mws_bias_less_offset"] = row["mws_bias"] - row["mws_offset"]
    return row


def arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--n", type=int, default=10_000, help="data set size N (the estimators' dataset_size)")
    ap.add_argument("--batch", type=int, default=128, help="minibatch size M")
    ap.add_argument("--batches", type=int, default=400)
    ap.add_argument("--exact-samples", type=int, default=20_000)
    ap.add_argument("--cases", type=int, default=len(CASES), help="the first N of the (d, rho, s) cases")


def main(b: Bench) -> None:
    a = b.args
    torch.set_num_threads(1)
    rows = [measure(d, rho, s, a.n, a.batch, a.batches, a.exact_samples) for d, rho, s in CASES[: a.cases]]
    print_table(rows, ["d", "rho", "s", "closed_form_tc", "exact_tc", "exact_se", "mss_tc", "mss_se", "mss_relative_bias",
                       "mws_tc", "mws_se", "mws_bias_less_offset"])
    b.write(rows, n=a.n, batch=a.batch, batches=a.batches, exact_samples=a.exact_samples, threads=1)

