"""The hierarchical VAE with top-down inference (Sønderby et al., "Ladder Variational Autoencoders",
NeurIPS 2016), its posterior a correction of the conditional prior as in NVAE (Vahdat & Kautz, 2020).

L >= 2 levels of Gaussian latents, z_1 nearest the data and z_L at the top. The generative model:

    p(z_L) = N(0, I)
    s_{L-1} = f_{L-1}(z_L),  s_i = f_i([z_{i+1}, s_{i+1}])         the top-down state, i = L-1 .. 1
    p(z_i | z_>i) = N(mu_i(s_i), diag exp(lv_i(s_i)))
    p(x | z) = the likelihood of decoder([z_1, s_1])

Inference shares the top-down state: a deterministic bottom-up pass d_1 = encoder(x), d_{i+1} =
g_i(d_i), then, from the top,

    q(z_L | x) = N(head(d_L))
    q(z_i | z_>i, x) = N(mu_i(s_i) + dmu_i([s_i, d_i]), diag exp(lv_i(s_i) + dlv_i([s_i, d_i])))

The encoder and decoder are the library's networks for ``model.arch`` (conv, resnet, mlp, linear),
the decoder taking [z_1, s_1]; f, g and the heads are linear layers (f and g followed by
``model.activation``), ``model.hidden_dim`` wide.

**The code, in the contract's terms,** is every level in one vector, the top level first:
z = [z_L, ..., z_1], ``latent_dim`` = the levels' units summed. ``encode(x)`` is q(z_1..L | x)
(``HierarchicalPosterior``: ``rsample`` draws top-down, ``log_prob`` sums the levels' conditional
log-densities), ``prior()`` is p(z_1..L) (``HierarchicalPrior``: ancestral sampling, the same sum),
``decode(z)`` is p(x | z). The contract's k-sample importance weights log p(x|z) + log p(z) -
log q(z|x) (``Autoencoder.log_weights``) are then this model's own, and the NLL, the IWAE-style
bound and the nelbo / nll scores need nothing beyond the contract. The posterior's ``mean`` (what
``embed``, ``reconstruct`` and the latent scores take) is the top-down pass through each level's
mean: E[z|x] exactly while f is linear, an approximation otherwise (as vae-iaf's). Sampling is
ancestral from ``prior()``. A traversal sweeps one unit of an image's code with the others fixed;
the first ``level_dims[-1]`` units are the top level's, which reach the image through s_1.

loss = rec + beta * kl_weight * sum_i max(KL_i, free_bits), with KL_i = KL(q(z_i | z_>i, x) ||
p(z_i | z_>i)), analytic at the sampled upper levels (its expectation is level i's share of
KL(q(z|x) || p(z))); ``free_bits`` (nats per level, Kingma et al. 2016) is compared with the batch
mean of each level's KL, so a level whose KL is below it is not pushed further down: a guard against
the collapse of the upper levels. The trainer's KL warm-up (``train.kl_warmup_steps``) scales every
level alike: the trainer passes one weight per step, so a per-level schedule is not offered.
Terms: rec, kl (the sum), kl1 .. klL (bottom to top), nelbo."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.distributions import Distribution, Independent, constraints, kl_divergence

from ..errors import ConfigError
from ..nn import build_networks
from ..nn.networks import make_activation
from ..objectives import diag_gaussian
from .base import Autoencoder, LossOutput, ModelConfig, MAX_WIDTH
from .registry import register_model
from .sampled import NoClosedForms

MAX_LEVELS = 64  # far beyond the hierarchies of the literature (NVAE: 36), and a typo is refused before it is built


@dataclass
class HVAEConfig(ModelConfig):
    name: str = "hvae"
    levels: int = 2  # stochastic levels L (>= 2); latent_dim is the units of each, unless level_dims
    level_dims: list[int] | None = None  # units of z_1 .. z_L, bottom to top (null: latent_dim each)
    beta: float = 1.0  # weight of the KL, summed over the levels
    free_bits: float = 0.0  # nats per level: a level's KL (batch mean) counts as at least this much, against collapse

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 2 <= self.levels <= MAX_LEVELS:
            raise ConfigError(f"model.levels (stochastic levels of the hvae) must be in 2..{MAX_LEVELS}, got {self.levels}; "
                              "for one level train a vae")
        if self.level_dims is not None and (len(self.level_dims) != self.levels
                                            or not all(1 <= int(d) <= MAX_WIDTH for d in self.level_dims)):
            raise ConfigError(f"model.level_dims must list the units of each of the {self.levels} levels (model.levels), "
                              f"bottom to top, each in 1..{MAX_WIDTH}; got {self.level_dims}")
        if not 0 <= self.beta < math.inf:
            raise ConfigError(f"model.beta must be a finite number >= 0, got {self.beta}")
        if not 0 <= self.free_bits < math.inf:
            raise ConfigError(f"model.free_bits (nats per level) must be a finite number >= 0, got {self.free_bits}")

    def dims(self) -> list[int]:
        """The units of z_1 .. z_L, bottom to top."""
        return [int(d) for d in self.level_dims] if self.level_dims is not None else [self.latent_dim] * self.levels


class _Joint(NoClosedForms, Distribution):
    """A distribution over the whole code [z_L, ..., z_1] of an hvae, evaluated level by level."""

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = True

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    def _refuse(self, what: str) -> NotImplementedError:
        return NotImplementedError(f"the hvae's {type(self).__name__} has no closed-form {what}; estimate it from samples")


class HierarchicalPosterior(_Joint):
    """q(z_1..L | x) = q(z_L | x) prod_i q(z_i | z_>i, x), over the code [z_L, ..., z_1], given the
    bottom-up features ``d`` of a batch. ``log_prob`` at the sample ``rsample`` just returned is the
    value computed with it; at any other z it runs the top-down pass at that z."""

    def __init__(self, model: "HVAE", d: list[torch.Tensor]):
        self.model, self.d = model, d
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None
        super().__init__(d[0].shape[:1], torch.Size([model.latent_dim]), validate_args=False)

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        zs, _, qs, _ = self.model.descend(self.d, shape=torch.Size(sample_shape))
        z = self.model.join(zs)
        self._last = (z, sum(q.log_prob(v) for q, v in zip(qs, zs)))
        return z

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._last is not None and value is self._last[0]:
            return self._last[1]
        zs = self.model.split(value)
        _, _, qs, _ = self.model.descend(self.d, given=zs)
        return sum(q.log_prob(v) for q, v in zip(qs, zs))

    @property
    def mean(self) -> torch.Tensor:
        """Each level's mean given the means above it (exactly E[z|x] while the top-down path is linear)."""
        zs, _, _, _ = self.model.descend(self.d, eps=[0.0] * len(self.d))
        return self.model.join(zs)


class HierarchicalPrior(_Joint):
    """p(z_1..L) = p(z_L) prod_i p(z_i | z_>i) over the code [z_L, ..., z_1]; sampled ancestrally."""

    def __init__(self, model: "HVAE"):
        self.model = model
        super().__init__(torch.Size(), torch.Size([model.latent_dim]), validate_args=False)

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        zs, _, _, _ = self.model.descend(None, shape=torch.Size(sample_shape))
        return self.model.join(zs)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        zs = self.model.split(value)
        _, ps, _, _ = self.model.descend(None, given=zs)
        return sum(p.log_prob(v) for p, v in zip(ps, zs))

    @property
    def mean(self) -> torch.Tensor:
        raise self._refuse("mean")


@register_model("hvae", "hierarchical VAE: levels of Gaussian latents with top-down inference (LVAE / NVAE)")
class HVAE(Autoencoder):
    """loss = rec + beta * kl_weight * sum over levels of max(KL_i, free_bits); see the module docstring."""

    config_class = HVAEConfig
    can_sample = True
    has_density = True
    hierarchical = True  # has levels of latents and ``bound_above`` (the llr score)

    def __init__(self, config: HVAEConfig, encoder: nn.Module | None = None, decoder: nn.Module | None = None):
        super().__init__(config, encoder, decoder)
        self.latent_dim = sum(self.dims)

    def build_networks(self, config: HVAEConfig) -> None:
        self.dims = dims = config.dims()
        h, n = config.hidden_dim, len(dims)
        self.encoder, self.decoder, self.feature_dim = build_networks(
            config.arch, self.image_shape, dims[0] + h, self.likelihood_channels(),
            conv_channels=config.conv_channels, hidden_dim=h, mlp_hidden=config.mlp_hidden,
            activation=config.activation, res_blocks=config.res_blocks)
        self.act = make_activation(config.activation)
        width = [self.feature_dim] + [h] * (n - 1)  # of the bottom-up features d_1 .. d_L
        self.up = nn.ModuleList(nn.Linear(width[i], h) for i in range(n - 1))  # g_i: d_i -> d_{i+1}
        self.top = nn.Linear(width[-1], 2 * dims[-1])  # q(z_L | x)
        # f_i: [z_{i+1}, s_{i+1}] -> s_i (no s_L above the top level)
        self.down = nn.ModuleList(nn.Linear(dims[i + 1] + (h if i + 1 < n - 1 else 0), h) for i in range(n - 1))
        self.prior_head = nn.ModuleList(nn.Linear(h, 2 * dims[i]) for i in range(n - 1))  # p(z_i | z_>i)
        self.post_head = nn.ModuleList(nn.Linear(h + width[i], 2 * dims[i]) for i in range(n - 1))  # q's correction

    # -- the hierarchy ------------------------------------------------------------------------
    def bottom_up(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The deterministic features d_1 .. d_L of ``x``."""
        d = [self.encoder(x).flatten(1)]
        for g in self.up:
            d.append(self.act(g(d[-1])))
        return d

    def split(self, z: torch.Tensor) -> list[torch.Tensor]:
        """The code [..., latent_dim] (top level first) as its levels [z_1, ..., z_L]."""
        return list(reversed(z.split(list(reversed(self.dims)), -1)))

    def join(self, zs: list[torch.Tensor]) -> torch.Tensor:
        """Levels [z_1, ..., z_L] as one code, the top level first."""
        return torch.cat(list(reversed(zs)), -1)

    def descend(self, d: list[torch.Tensor] | None, given: list[torch.Tensor] | None = None,
                shape: torch.Size = torch.Size(), eps: list | None = None, prior_below: int = 0
                ) -> tuple[list[torch.Tensor], list[Independent], list[Independent | None], torch.Tensor]:
        """The top-down pass: (z_1..L, p(z_i | z_>i), q(z_i | z_>i, x), the decoder's input [z_1, s_1]),
        each list bottom to top. ``d``: the bottom-up features (None: the prior alone, no q). The
        levels are ``given``, or drawn: ``shape`` draws at the top (before the batch of ``d``), from q,
        or from the conditional prior p for the lowest ``prior_below`` levels (and for all without
        ``d``); ``eps`` (per level, bottom to top) is the standard-normal noise of the draws."""
        n = len(self.dims)
        zs: list = [None] * n
        ps: list = [None] * n
        qs: list = [None] * n
        s = None
        for i in reversed(range(n)):
            if i == n - 1:
                q = diag_gaussian(*self._params(self.top(d[-1]))) if d is not None else None
                p0 = next(self.top.parameters())
                ref = q.base_dist.loc if q is not None else p0.new_zeros(self.dims[-1])
                p = diag_gaussian(torch.zeros_like(ref), torch.zeros_like(ref))
                draw = shape
            else:
                s = self.act(self.down[i](zs[i + 1] if s is None else torch.cat([zs[i + 1], s], -1)))
                mu, lv = self._params(self.prior_head[i](s))
                p, q = diag_gaussian(mu, lv), None
                if d is not None:
                    di = d[i].expand(*s.shape[:-1], d[i].shape[-1])
                    dmu, dlv = self.post_head[i](torch.cat([s, di], -1)).chunk(2, -1)
                    q = diag_gaussian(mu + dmu, (lv + dlv).clamp(-30.0, 20.0))
                draw = torch.Size()
            ps[i], qs[i] = p, q
            if given is not None:
                zs[i] = given[i]
            else:
                src = q if q is not None and i >= prior_below else p
                base = src.base_dist
                zs[i] = src.rsample(draw) if eps is None else base.loc + base.scale * eps[i]
        return zs, ps, qs, torch.cat([zs[0], s], -1)

    @staticmethod
    def _params(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, lv = out.chunk(2, -1)
        return mu, lv.clamp(-30.0, 20.0)

    def _likelihood_at(self, dec_in: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x | z) [..., B] for decoder inputs [..., B, width] (leading sample dims flattened)."""
        lead = dec_in.shape[:-1]
        px = self.likelihood(self.decoder(dec_in.reshape(-1, dec_in.shape[-1])))
        xs = x.expand(*lead[:-1], *x.shape).reshape(-1, *x.shape[1:])
        return px.log_prob(xs).view(lead)

    def bound_above(self, x: torch.Tensor, k: int = 0, n_samples: int = 1, eps: list[torch.Tensor] | None = None) -> torch.Tensor:
        """[n_samples, B] draws of the bound L^{>k} of Havtorn et al. (2021): the levels above the
        lowest ``k`` from q(z_>k | x), the lowest k from the conditional prior p(z_<=k | z_>k):
        log p(x | z) - sum_{i > k} KL(q(z_i | z_>i, x) || p(z_i | z_>i)). Their mean over draws
        estimates L^{>k}; k = 0 is the ELBO. ``eps`` (per level, bottom to top, broadcastable to
        [n_samples, B, units]): the standard-normal noise, so two bounds can share it."""
        if not 0 <= k <= len(self.dims):
            raise ConfigError(f"k (levels drawn from the conditional prior) must be in 0..{len(self.dims)}, got {k}")
        self.check_values(x)
        zs, ps, qs, dec_in = self.descend(self.bottom_up(x), shape=torch.Size([n_samples]), eps=eps, prior_below=k)
        if dec_in.dim() == 2:  # eps of a single draw without a sample dim
            dec_in = dec_in.unsqueeze(0)
        kl = sum((kl_divergence(qs[i], ps[i]) for i in range(k, len(self.dims))), torch.zeros(()))
        return self._likelihood_at(dec_in, x) - kl

    # -- the contract -------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> HierarchicalPosterior:
        return HierarchicalPosterior(self, self.bottom_up(x))

    def decode(self, z: torch.Tensor) -> Distribution:
        _, _, _, dec_in = self.descend(None, given=self.split(z))
        return self.likelihood(self.decoder(dec_in))

    def prior(self) -> HierarchicalPrior:
        return HierarchicalPrior(self)

    def kl(self, q: Distribution, z: torch.Tensor | None = None) -> torch.Tensor:
        """KL(q(z|x) || p(z)) per sample: the levels' analytic conditional KLs summed at the upper
        levels of ``z`` (drawn here when not given), an unbiased estimate with less variance than
        log q - log p."""
        if not isinstance(q, HierarchicalPosterior):
            return super().kl(q, z)
        zs = self.split(q.rsample() if z is None else z)
        _, ps, qs, _ = self.descend(q.d, given=zs)
        return sum(kl_divergence(a, b) for a, b in zip(qs, ps))

    def loss(self, x: torch.Tensor, kl_weight: float | torch.Tensor = 1.0) -> LossOutput:
        zs, ps, qs, dec_in = self.descend(self.bottom_up(x))
        rec = -self.likelihood(self.decoder(dec_in)).log_prob(x)
        kls = [kl_divergence(q, p) for q, p in zip(qs, ps)]
        kl = sum(kls)
        reg = sum(k.mean().clamp_min(self.config.free_bits) for k in kls)
        terms = {"rec": rec, "kl": kl, "nelbo": rec + kl, **{f"kl{i + 1}": k for i, k in enumerate(kls)}}
        return LossOutput(rec.mean() + (self.config.beta * kl_weight) * reg, terms)
