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


def standard_normal(latent_dim: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Independent:
    """N(0, I) over R^latent_dim: the default prior p(z) of every model (``Autoencoder.prior``).
    This is the one place it is built."""
    loc = torch.zeros(latent_dim, device=device, dtype=dtype)
    return Independent(Normal(loc, torch.ones_like(loc), validate_args=False), 1)


def describe_prior(p: Distribution) -> str:
    """A short name of a prior for captions: 'N(0, I)' for the standard normal, else its type."""
    base = p.base_dist if isinstance(p, Independent) else p
    if isinstance(base, Normal) and bool((base.loc == 0).all()) and bool((base.scale == 1).all()):
        return "N(0, I)"
    return f"the model's prior ({type(base).__name__})"


def kl_to_prior(q: Distribution, prior: Distribution, z: torch.Tensor | None = None) -> torch.Tensor:
    """KL(q(z|x) || p(z)) per sample: analytic when torch.distributions knows it for the pair (two
    Gaussians), else the one-sample Monte Carlo estimate log q(z) - log p(z) at ``z`` (a draw from
    q, the one the reconstruction used; drawn here when not given). The choice is made here only."""
    try:
        return kl_divergence(q, prior)
    except NotImplementedError:
        z = q.rsample() if z is None else z
        return q.log_prob(z) - prior.log_prob(z)


def importance_log_weights(x: torch.Tensor, q: Distribution, decode, prior: Distribution, k: int,
                           kl_weight: float | torch.Tensor = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """([k, B] log importance weights, [k, B] log p(x|z)) for z_1..z_k ~ q(z|x), all k samples
    decoded in one batched call of ``decode`` (z -> a distribution over x):
    log w = log p(x|z) + kl_weight * (log p(z) - log q(z|x)). IWAE's bound, the importance-sampled
    NLL and the detector's likelihood scores all use this."""
    z = q.rsample((k,))  # [k, B, d]
    b = x.shape[0]
    px = decode(z.reshape(k * b, *z.shape[2:]))
    log_px_z = px.log_prob(x.unsqueeze(0).expand(k, *x.shape).reshape(k * b, *x.shape[1:])).view(k, b)
    return log_px_z + kl_weight * (prior.log_prob(z) - q.log_prob(z)), log_px_z


def gaussian_kl_closed_form(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """0.5 * sum(mu^2 + var - 1 - logvar): the textbook formula, used by tests as a reference."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)


def pixel_likelihood(kind: str, params: torch.Tensor, std: torch.Tensor | float | None = None,
                     event_dims: int = 3) -> Independent:
    """p(x|z) over one example: (C, H, W) for images (``event_dims`` 3), (D,) for vectors (1).
    Bernoulli: ``params`` are logits (targets may be grey levels in [0, 1], the usual 'continuous
    targets' use). Gaussian: ``params`` is the mean."""
    if kind == "bernoulli":
        return Independent(Bernoulli(logits=params, validate_args=False), event_dims)
    if kind == "gaussian":
        scale = torch.as_tensor(std if std is not None else 1.0, dtype=params.dtype, device=params.device)
        return Independent(Normal(params, scale.expand_as(params), validate_args=False), event_dims)
    raise ValueError(f"unknown likelihood {kind!r}; choose one of {LIKELIHOODS}")


def log_mean_exp(log_w: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """log (1/k) sum_k exp(log_w_k), stable."""
    return torch.logsumexp(log_w, dim) - math.log(log_w.shape[dim])
