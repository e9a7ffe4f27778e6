"""Pure functions of tensors: likelihoods, KL, bounds. Sum over data dimensions, mean over batch
is applied by the models; everything here returns per-sample values."""
from __future__ import annotations

import math

import torch
from torch.distributions import Bernoulli, Distribution, Independent, Normal, constraints, kl_divergence

LIKELIHOODS = ("bernoulli", "gaussian")


class PointMass(Distribution):
    """A Dirac delta at ``loc`` over vectors (event dim 1): the 'posterior' of a deterministic AE."""

    arg_constraints = {"loc": constraints.real}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, loc: torch.Tensor, validate_args: bool | None = False):
        self.loc = loc
        super().__init__(loc.shape[:-1], loc.shape[-1:], validate_args=validate_args)

    @property
    def mean(self) -> torch.Tensor:
        return self.loc

    @property
    def variance(self) -> torch.Tensor:
        return torch.zeros_like(self.loc)

    @property
    def stddev(self) -> torch.Tensor:
        return torch.zeros_like(self.loc)

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        return self.loc.expand(torch.Size(sample_shape) + self.loc.shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        eq = (value == self.loc).all(-1)
        return torch.where(eq, torch.zeros_like(eq, dtype=self.loc.dtype), torch.full_like(eq, -math.inf, dtype=self.loc.dtype))

    def entropy(self) -> torch.Tensor:
        return torch.full(self.loc.shape[:-1], -math.inf, dtype=self.loc.dtype, device=self.loc.device)


def diag_gaussian(mu: torch.Tensor, logvar: torch.Tensor) -> Independent:
    """q(z|x) = N(mu, diag(exp(logvar))) as one distribution over vectors."""
    return Independent(Normal(mu, torch.exp(0.5 * logvar)), 1)


def standard_normal(like: torch.Tensor) -> Independent:
    return Independent(Normal(torch.zeros_like(like), torch.ones_like(like)), 1)


def kl_to_standard_normal(q: Distribution) -> torch.Tensor:
    """KL(q || N(0, I)), analytic through torch.distributions' dispatch; per sample."""
    return kl_divergence(q, standard_normal(q.mean))


def gaussian_kl_closed_form(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """0.5 * sum(mu^2 + var - 1 - logvar): the textbook formula, used by tests as a reference."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)


def pixel_likelihood(kind: str, params: torch.Tensor, std: torch.Tensor | float | None = None) -> Independent:
    """p(x|z) over (C, H, W). Bernoulli: ``params`` are logits (targets may be grey levels in
    [0, 1], the usual 'continuous targets' use). Gaussian: ``params`` is the mean."""
    if kind == "bernoulli":
        return Independent(Bernoulli(logits=params, validate_args=False), 3)
    if kind == "gaussian":
        scale = torch.as_tensor(std if std is not None else 1.0, dtype=params.dtype, device=params.device)
        return Independent(Normal(params, scale.expand_as(params), validate_args=False), 3)
    raise ValueError(f"unknown likelihood {kind!r}; choose one of {LIKELIHOODS}")


def log_mean_exp(log_w: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """log (1/k) sum_k exp(log_w_k), stable."""
    return torch.logsumexp(log_w, dim) - math.log(log_w.shape[dim])
