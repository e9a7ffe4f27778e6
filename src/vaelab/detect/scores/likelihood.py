"""Likelihood scores: bounds on -log p(x) under the model. They need a posterior density and a prior
(``has_density``: the VAE family).

| name    | what                                                                  |
|---------|-----------------------------------------------------------------------|
| `nelbo` | -ELBO = E_q[-log p(x|z)] + KL(q(z|x) || p(z)), `n_samples` MC draws   |
| `nll`   | -log p(x), importance-sampled with `nll_k` samples                    |
"""
from __future__ import annotations

from typing import Annotated, Callable

import torch
import torch.nn as nn
from torch.distributions import Independent, Normal

from ...errors import ConfigError, ModelError
from ...evaluate.likelihood import log_likelihood
from ...models import Autoencoder
from .base import ExportContext, Score
from .registry import export_refusal, register_score


def gaussian_parts(q) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(loc, scale) [B, d] of a diagonal-Gaussian posterior (Normal or Independent(Normal)), else None
    (a flow posterior, a mixture): the reparameterisation z = loc + scale * eps needs them."""
    base = q.base_dist if isinstance(q, Independent) else q
    return (base.loc, base.scale) if isinstance(base, Normal) else None


def nelbo_at_noise(model: Autoencoder, x: torch.Tensor, eps: torch.Tensor, q=None,
                   log_prob: Callable | None = None) -> torch.Tensor:
    """-ELBO per image [B] with z_k = loc + scale * eps_k for the given noise eps [k, d] shared by
    every image, all k decoded in one batched call; the KL is the model's (analytic when it has one,
    else Monte Carlo at the first z). Needs a diagonal-Gaussian posterior q (encoded here unless given).
    ``log_prob(px, x)``: log p(x|z) per example (default ``px.log_prob(x)``; the exporter passes a form
    that ONNX computes stably)."""
    q = model.encode(x) if q is None else q
    parts = gaussian_parts(q)
    if parts is None:  # pragma: no cover - callers check
        raise ModelError(f"{model.config.name}'s posterior is not a diagonal Gaussian: nelbo_at_noise needs one")
    loc, scale = parts
    k, b = eps.shape[0], x.shape[0]
    z = loc.unsqueeze(0) + scale.unsqueeze(0) * eps.to(loc).unsqueeze(1)  # [k, B, d]
    px = model.decode(z.reshape(k * b, *z.shape[2:]))
    xk = x.unsqueeze(0).expand(k, *x.shape).reshape(k * b, *x.shape[1:])
    log_px_z = (px.log_prob(xk) if log_prob is None else log_prob(px, xk)).view(k, b)
    return -log_px_z.mean(0) + model.kl(q, z[0])


@register_score("nelbo", "negative ELBO (needs a VAE-type model)")
class NELBOScore(Score):
    """-ELBO in nats: reconstruction term averaged over ``n_samples`` posterior samples (decoded in
    one batched pass) plus the KL to the model's prior (analytic when it has a closed form, else Monte Carlo).

    Common random numbers: for a diagonal-Gaussian posterior the standard-normal noise eps [n_samples, d]
    is drawn once from the fit's seed and every image's samples are loc + scale * eps. An image then
    gets the same score in any batch, order or call (and the score exports: vaelab.detect.export), and
    two images' scores differ by their posteriors, not by their draws. Other posteriors (flows) are
    sampled afresh under the scoring seed."""

    needs_density = True

    def __init__(self, n_samples: Annotated[int, "posterior samples of the nelbo score"] = 1):
        if n_samples < 1:
            raise ConfigError(f"n_samples (posterior samples for the nelbo score) must be >= 1, got {n_samples}")
        self.n_samples = n_samples
        self.common_noise = True  # part of spec(): a result cached before it existed is not reused
        self.seed_ = 0
        self.noise_: torch.Tensor | None = None

    def fit(self, model: Autoencoder, images: torch.Tensor, batch_size: int = 500, seed: int = 0) -> "NELBOScore":
        super().fit(model, images, batch_size, seed)
        self.seed_, self.noise_ = seed, None
        return self

    def noise(self, d: int) -> torch.Tensor:
        """The shared noise [n_samples, d], drawn from the fit's seed (float32, CPU)."""
        if self.noise_ is None or tuple(self.noise_.shape) != (self.n_samples, d):
            self.noise_ = torch.randn(self.n_samples, d, generator=torch.Generator().manual_seed(self.seed_))
        return self.noise_

    def batch(self, model: Autoencoder, x: torch.Tensor) -> torch.Tensor:
        q = model.encode(x)
        parts = gaussian_parts(q)
        if parts is None:
            _, log_px_z = model.log_weights(x, self.n_samples, q)
            return -log_px_z.mean(0) + model.kl(q)
        return nelbo_at_noise(model, x, self.noise(parts[0].shape[-1]), q)

    def export_head(self, model: nn.Module) -> nn.Module:
        return NELBOHead(self, model)


def bernoulli_log_prob(px, x: torch.Tensor) -> torch.Tensor:
    """log p(x | logits l) summed per example, x * l - softplus(l) with softplus(l) = max(l, 0) +
    log(1 + exp(-|l|)): torch's Bernoulli log_prob exports to ONNX as log(sigmoid(l)), which is -inf
    (and the sum NaN) where a logit saturates."""
    logits = px.base_dist.logits
    softplus = logits.clamp_min(0) + torch.log(1 + torch.exp(-logits.abs()))
    return (x * logits - softplus).flatten(1).sum(1)


class NELBOHead(nn.Module):
    """-ELBO at the score's common noise (``nelbo_at_noise``), the noise a buffer."""

    def __init__(self, s: NELBOScore, model: nn.Module):
        super().__init__()
        if model.config.likelihood in ("dgaussian", "dlogistic"):
            raise export_refusal("'nelbo'", f"the {model.config.likelihood} likelihood's log-probability has no exported "
                                            "form yet; train with likelihood=bernoulli or gaussian, or export a "
                                            "reconstruction score")
        c, h, w = model.image_shape
        with torch.no_grad():
            q = model.encode(torch.full((1, c, h, w), 0.5))
        parts = gaussian_parts(q)
        if parts is None:
            raise export_refusal("'nelbo'", f"{model.config.name}'s posterior is not a diagonal Gaussian, so the score "
                                            "samples it afresh for every image")
        self.register_buffer("eps", s.noise(parts[0].shape[-1]).float().clone())
        self.bernoulli = model.config.likelihood == "bernoulli"

    def forward(self, ctx: ExportContext) -> torch.Tensor:
        return nelbo_at_noise(ctx.model, ctx.x, self.eps, log_prob=bernoulli_log_prob if self.bernoulli else None)


@register_score("nll", "importance-sampled -log p(x) (needs a VAE-type model)")
class NLLScore(Score):
    """-log p(x) by importance sampling with ``nll_k`` samples (vaelab.evaluate.likelihood)."""

    needs_density = True
    why_not_exportable = ("it draws fresh importance samples for every image, so the same image would not get the same "
                      "score; export 'nelbo', whose noise is drawn once")

    def __init__(self, nll_k: Annotated[int, "importance samples per image of the nll score"] = 100):
        if nll_k < 1:
            raise ConfigError(f"nll_k (importance samples for the nll score) must be >= 1, got {nll_k}")
        self.nll_k = nll_k

    def batch(self, model: Autoencoder, x: torch.Tensor) -> torch.Tensor:
        return -log_likelihood(model, x, self.nll_k)
