"""Grad2VAE: a convolutional VAE that explains itself with second-order attention, computed
online (on every training batch) and fed back into the decoder.

The network (C x H x W images, H and W even; ``conv_channels = [c1, c2]``)::

    encoder  x --conv3x3 s1--> L_e1 [c1,H,W] --conv3x3 s1--> [c1,H,W] --avgpool 2x2, conv3x3 s1--> [c2,H/2,W/2]
             --flatten, linear--> hidden --> mu, logvar heads          (an activation after every layer)
             (downsample=stride: one conv4x4 s2 for the halving instead, the layer of runs saved before
             the option; padding=circular: the encoder's convolutions wrap around the image)
    decoder  z --linear--> hidden --linear--> [c2,H/2,W/2] --deconv4x4 s2--> [c1,H,W]
             --conv3x3 s1--> P [c1,H,W] (the penultimate layer) --conv3x3 s1--> logits [C,H,W]

The first two encoder layers keep the spatial size, so L_e1 (the output of the first encoder
layer, after its activation) has the shape of the decoder's penultimate feature map P.

**The attention.** For every latent unit i, on the reparameterised sample
z = mu(L_e1) + exp(logvar(L_e1) / 2) * eps (eps drawn once and held fixed), the attention tensor
is the gradient of the gradient of z_i with respect to L_e1. The gradient g_i = dz_i/dL_e1 is a
tensor the size of L_e1; its gradient is the Hessian H_i = d^2 z_i / dL_e1^2, a matrix of
|L_e1|^2 entries, which is contracted with the all-ones tensor:

    att_i = H_i @ 1 = d/dL_e1 [ sum over (channel, pixel) of dz_i/dL_e1 ]

(exactly what ``autograd.grad(g_i, L_e1, grad_outputs=ones_like(g_i))`` returns: a Hessian-vector
product with the ones vector), a tensor the size of L_e1 per unit. Images never interact inside
the encoder, so the Hessian of sum over the batch of z_i is block-diagonal over images and one HVP
of the batch sum gives every image its own att_i.

How it is computed (``attention_impl``). Since att_i = d/dL_e1 <dz_i/dL_e1, 1>, the attention is
the reverse pass of the pair (the trunk's output h, its directional derivative t along the all-ones
tangent) with the cotangents that z_i = mu_i + exp(logvar_i / 2) * eps_i puts on them:
dz_i/dt = W_mu,i + beta_i W_logvar,i on t and alpha_i W_logvar,i on h (beta = exp(logvar / 2) *
eps / 2, alpha = beta * (W_logvar t) / 2). ``chain`` (the default) writes that pass out layer by
layer (vaelab.nn.second_order: sigma' and sigma'' in closed form, every unit's reverse pass one
batched tensor operation, chunks sized to stay in cache), shares the trunk's forward pass with the
loss, and, for the conv aggregation with a 1x1 kernel, folds the aggregation into the first
layer's transposed kernel, so that the d per-unit tensors are never built; with ``aggregation =
sum`` or ``mean`` the units' cotangents are summed first: one reverse pass for all units. ``fast``
is the same pass by torch.func (a forward-mode pass along the ones tangent, then a vmapped reverse
pass per unit: reverse over forward). ``reference`` is the first implementation, kept to test
against: vmap over units of the forward-over-reverse HVP ``jvp(grad(<z, u>), L_e1, ones)``, one
gradient and one forward-mode pass per unit; ``second_order_attention_loop`` is the Python loop
over units with two ``torch.autograd.grad`` calls each. Every path stays in the autograd graph, so
the attention, the layers it goes through and L_e1 itself are trained by the loss.

``attention_source = mu`` differentiates the posterior mean instead of the sample.

**Piecewise-linear activations.** With ReLU (or leaky ReLU) every path from L_e1 to mu and logvar
is piecewise linear, so their second derivatives are zero almost everywhere: the only curvature
left is that of the sampling path, exp(logvar / 2) * eps (so with ``attention_source = mu`` the
attention is identically zero, and at eps = 0 too). Use a smooth activation (the default ``silu``
has non-zero curvature at every pre-activation; ``elu`` only on its negative side; ``softplus``,
``gelu``, ``tanh`` also work) for an attention that reflects the whole encoder.

**Aggregation and fusion.** The d tensors att_i [d, B, c1, H, W] become one tensor A [B, c1, H, W]
by ``sum``, ``mean``, or (default) ``conv``: a learned ``aggregation_kernel`` x
``aggregation_kernel`` convolution of the d * c1 stacked channels to c1 channels. A is added to the
decoder's penultimate feature map as a residual path: logits_att = last(P + A), the *attention
reconstruction* x_att = the likelihood's mean of those logits.

**The loss** (per image; mean over the batch, sums over pixels as everywhere in vaelab)::

    rec + beta * kl_weight * kl + attention_weight * ||x - x_att||^2

rec = -log p(x | z) uses the plain decoder (logits = last(P), no attention), so ``decode(z)`` is
the generative p(x | z) of the contract: sampling, likelihoods and the detectors' scores see a
proper VAE, and the attention reaches them through the shared weights that its term trains.
Terms: rec, kl, nelbo (= rec + kl) and att (= ||x - x_att||^2). With ``attention_weight = 0`` the
attention is not computed in the loss, which is then the ELBO of this architecture.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn
import torch.nn.functional as F
from torch.func import grad, jvp, vjp, vmap

from ..errors import ConfigError, ModelError
from ..nn import make_activation, second_order
from ..objectives import diag_gaussian
from .base import LossOutput
from .registry import register_model
from .vae import VAE, VAEConfig
from ..plotting import normalize_maps

DEFAULT_CHANNELS = [8, 16]


@dataclass
class Grad2VAEConfig(VAEConfig):
    name: str = "grad2vae"
    activation: str = "silu"  # smooth: a piecewise-linear one leaves only the sampling path's curvature
    # [c1, c2]: L_e1's channels, then the stride-2 stage's; None: [8, 16]. With hidden_dim 256 that is
    # 1.62 M parameters at 28x28, the size of the default conv vae (1.69 M)
    conv_channels: list[int] | None = None
    # the encoder's convolutions pad with zeros or circularly (the image wraps around: no border in
    # the attention's tangent); the encoder halves the map by a 4x4 stride-2 convolution (stride) or by
    # 2x2 average pooling then a 3x3 convolution at half resolution (pool)
    # pool: the stride-2 layer's uneven taps printed a checkerboard over every attention map, which
    # pooling first removes, at a cheaper step and no lower ROC-AUC (benchmarks/grad2vae.py part d)
    padding: Literal["zeros", "circular"] = "zeros"
    downsample: Literal["stride", "pool"] = "pool"
    defaults_before: ClassVar[dict] = {"downsample": "stride"}  # runs saved before the option had the stride-2 layer
    aggregation: Literal["conv", "sum", "mean"] = "conv"
    aggregation_kernel: int = 1  # the learned aggregation's kernel size: 1 or 3
    attention_weight: float = 1.0  # weight of ||x - x_att||^2; 0: the attention is not computed in the loss
    attention_source: Literal["z", "mu"] = "z"  # differentiate the reparameterised sample, or the mean
    # images per attention pass of the fast and reference paths (bounds the memory of big evaluation
    # batches; the chain path sizes its chunks by bytes)
    attention_chunk: int = 256
    # chain: the second-order chain rule written out layer by layer (vaelab.nn.second_order); fast: torch.func's
    # reverse over forward; reference: torch.func's forward-over-reverse product per unit; auto: chain (the
    # fastest training step of the three: benchmarks/grad2vae.py part a). Same numbers (tested)
    attention_impl: Literal["auto", "chain", "fast", "reference"] = "auto"

    def fill_from_data(self, n_train: int | None, image_shape: tuple[int, ...]) -> None:
        if len(image_shape) == 1:
            raise ConfigError(f"grad2vae is convolutional (its attention lives on the first conv layer's feature map); "
                              f"these data are vectors of {image_shape[0]} numbers: use vae, iwae or ae")
        super().fill_from_data(n_train, image_shape)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.likelihood in ("dgaussian", "dlogistic"):
            raise ConfigError(f"grad2vae fuses its attention into a decoder with one output per channel; model.likelihood="
                              f"{self.likelihood} is not available for it: use bernoulli or gaussian")
        if self.arch != "conv":
            raise ConfigError(f"grad2vae is convolutional by construction (its attention lives on the first conv "
                              f"layer's feature map); model.arch={self.arch} is not available. Remove model.arch")
        if self.conv_channels is not None and (len(self.conv_channels) != 2 or min(self.conv_channels) < 1):
            raise ConfigError(f"grad2vae's model.conv_channels is [c1, c2] (the full-resolution layers' channels, then "
                              f"the stride-2 stage's), e.g. [8, 16]; got {self.conv_channels}")
        if self.padding not in ("zeros", "circular"):
            raise ConfigError(f"model.padding must be zeros or circular, got {self.padding!r}")
        if self.downsample not in ("stride", "pool"):
            raise ConfigError(f"model.downsample must be stride (a 4x4 stride-2 convolution) or pool (2x2 average pooling, "
                              f"then a 3x3 convolution), got {self.downsample!r}")
        if self.aggregation not in ("conv", "sum", "mean"):
            raise ConfigError(f"model.aggregation must be conv, sum or mean; got {self.aggregation!r}")
        if self.aggregation_kernel not in (1, 3):
            raise ConfigError(f"model.aggregation_kernel must be 1 or 3, got {self.aggregation_kernel}")
        if self.attention_weight < 0:
            raise ConfigError(f"model.attention_weight must be >= 0, got {self.attention_weight}")
        if self.attention_source not in ("z", "mu"):
            raise ConfigError(f"model.attention_source must be z or mu, got {self.attention_source!r}")
        if self.attention_chunk < 1:
            raise ConfigError(f"model.attention_chunk must be >= 1, got {self.attention_chunk}")
        if self.attention_impl not in ("auto", "chain", "fast", "reference"):
            raise ConfigError(f"model.attention_impl must be auto, chain, fast or reference, got {self.attention_impl!r}")


class Grad2Decoder(nn.Module):
    """The encoder's mirror. ``forward(z)`` gives the plain logits; ``features(z)`` the
    penultimate map P and ``head(P + A)`` the logits with the attention A fused in."""

    def __init__(self, shape: tuple[int, int, int], c1: int, c2: int, latent_dim: int, hidden_dim: int, activation: str):
        super().__init__()
        c, h, w = shape
        self.start = (c2, h // 2, w // 2)
        self.fc = nn.Sequential(nn.Linear(latent_dim, hidden_dim), make_activation(activation),
                                nn.Linear(hidden_dim, c2 * (h // 2) * (w // 2)), make_activation(activation))
        self.up = nn.Sequential(nn.ConvTranspose2d(c2, c1, 4, 2, 1), make_activation(activation))
        self.penultimate = nn.Sequential(nn.Conv2d(c1, c1, 3, 1, 1), make_activation(activation))
        self.last = nn.Conv2d(c1, c, 3, 1, 1)

    def features(self, z: torch.Tensor) -> torch.Tensor:
        return self.penultimate(self.up(self.fc(z).view(-1, *self.start)))

    def head(self, p: torch.Tensor) -> torch.Tensor:
        return self.last(p)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(z))


@register_model("grad2vae", "conv VAE with online second-order attention (d^2 z_i / dL_e1^2 @ 1) fused into its decoder")
class Grad2VAE(VAE):
    """The VAE above; ``attention_maps(x)`` gives per-image maps for figures and the callback."""

    code_maps = False  # its networks are its own

    config_class = Grad2VAEConfig
    explains = True
    custom_networks = False  # its networks are the paper's
    # the attention's many small elementwise products fuse under torch.compile: a compiled step takes about
    # 0.6x the eager one (benchmarks/grad2vae.py part a), so train.compile=auto compiles a long run
    compile_pays = True

    def build_networks(self, config: Grad2VAEConfig) -> None:
        c, h, w = self.image_shape
        if h % 2 or w % 2 or h < 2 or w < 2:
            raise ConfigError(f"grad2vae halves the image once; {h}x{w} images cannot be halved. Use data.size to "
                              "make them an even size")
        c1, c2 = config.conv_channels or DEFAULT_CHANNELS
        act = config.activation
        pad = config.padding
        stem = nn.Sequential(nn.Conv2d(c, c1, 3, 1, 1, padding_mode=pad), make_activation(act))  # -> L_e1
        halve = ([nn.Conv2d(c1, c2, 4, 2, 1, padding_mode=pad)] if config.downsample == "stride"
                 else [nn.AvgPool2d(2), nn.Conv2d(c1, c2, 3, 1, 1, padding_mode=pad)])
        trunk = nn.Sequential(nn.Conv2d(c1, c1, 3, 1, 1, padding_mode=pad), make_activation(act), *halve,
                              make_activation(act), nn.Flatten(),
                              nn.Linear(c2 * (h // 2) * (w // 2), config.hidden_dim), make_activation(act))
        self.encoder = nn.Sequential(stem, trunk)
        self.decoder = Grad2Decoder(self.image_shape, c1, c2, config.latent_dim, config.hidden_dim, act)
        self.feature_dim = config.hidden_dim
        self.le1_shape = (c1, h, w)
        k = config.aggregation_kernel
        self.aggregator = (nn.Conv2d(config.latent_dim * c1, c1, k, 1, k // 2) if config.aggregation == "conv" else None)

    # -- the pieces ------------------------------------------------------------------------------
    def first_layer(self, x: torch.Tensor) -> torch.Tensor:
        """L_e1: the first encoder layer's output (after its activation), [B, c1, H, W]."""
        return self.encoder[0](x)

    def posterior_from_first_layer(self, le1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder[1](le1)
        return self.mu(h), self.logvar(h).clamp(-30.0, 20.0)

    def _code(self, le1: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """What the attention differentiates: z = mu + sigma * eps (or mu), as a function of L_e1."""
        mu, logvar = self.posterior_from_first_layer(le1)
        return mu if self.config.attention_source == "mu" else mu + torch.exp(0.5 * logvar) * eps

    # -- the second-order attention ----------------------------------------------------------------
    def second_order_attention(self, le1: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """[d, B, c1, H, W]: att_i = (d^2 z_i / dL_e1^2) @ 1 for every unit i, in the autograd graph of
        ``le1`` and the parameters; ``attention_impl`` picks the computation (the same numbers).
        Big batches go in chunks (of ``attention_chunk`` images on the fast and reference paths)."""
        impl = self._impl()
        if impl == "chain":
            return self._chain(le1, eps, "units")[2]
        if impl == "reference":
            return self.second_order_attention_reference(le1, eps)
        return self._chunked(self._attention_units, le1, eps, dim=1)

    def _impl(self) -> str:
        """The attention path in use: ``attention_impl``, with auto resolved (chain)."""
        impl = self.config.attention_impl
        return "chain" if impl == "auto" else impl

    def _chain(self, le1: torch.Tensor, eps: torch.Tensor, what: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """mu, logvar and the attention by the layer-by-layer chain rule (vaelab.nn.second_order), from
        one forward pass of the trunk: what = "units" [d, B, c1, H, W], or "aggregated" [B, c1, H, W]
        (the sum / mean of the units as one reverse pass; the 1x1 conv aggregation folded into the
        first layer's transposed kernel)."""
        h, t, tape = second_order.forward(self.encoder[1], le1)
        mu, raw = self.mu(h), self.logvar(h)
        logvar = raw.clamp(-30.0, 20.0)
        w_mu, w_lv = self.mu.weight, self.logvar.weight
        b, d = le1.shape[0], self.latent_dim
        if self.config.attention_source == "mu":  # z_i = mu_i: dz_i/dt = W_mu,i, nothing on h
            g, p = w_mu[:, None, :].expand(d, b, -1), None
        else:  # z_i = mu_i + exp(logvar_i / 2) eps_i, with the tangent of logvar masked where it is clamped
            inside = ((raw >= -30.0) & (raw <= 20.0)).to(h.dtype)
            beta = 0.5 * torch.exp(0.5 * logvar) * eps * inside  # dz_i / d(W_logvar t)_i
            alpha = 0.5 * beta * F.linear(t, w_lv)  # dz_i / dlogvar_i
            g = w_mu[:, None, :] + beta.T[:, :, None] * w_lv[:, None, :]
            p = alpha.T[:, :, None] * w_lv[:, None, :]
        agg = self.config.aggregation
        if what == "units":
            return mu, logvar, second_order.reverse(tape, g, p)
        if agg in ("sum", "mean"):
            scale = 1.0 if agg == "sum" else 1.0 / d
            g = g.sum(0, keepdim=True) * scale
            p = None if p is None else p.sum(0, keepdim=True) * scale
            return mu, logvar, second_order.reverse(tape, g, p)[0]
        if self.aggregator.kernel_size == (1, 1):
            mix = self.aggregator.weight[:, :, 0, 0].unflatten(1, (d, -1))  # [c1, d, c1], units major
            return mu, logvar, second_order.reverse(tape, g, p, mix=mix) + self.aggregator.bias[None, :, None, None]
        return mu, logvar, self.aggregate(second_order.reverse(tape, g, p))

    def _chunked(self, fn, le1: torch.Tensor, eps: torch.Tensor, dim: int) -> torch.Tensor:
        """``fn`` over chunks of ``attention_chunk`` images, concatenated along the image dimension ``dim``."""
        n = self.config.attention_chunk
        if le1.shape[0] <= n:
            return fn(le1, eps)
        return torch.cat([fn(le1[i : i + n], eps[i : i + n]) for i in range(0, le1.shape[0], n)], dim)

    def _directional(self, le1: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """[B, d]: the derivative of every unit z_i along the all-ones tangent of L_e1, sum over
        (channel, pixel) of dz_i/dL_e1: one forward-mode pass for all units and images."""
        return jvp(lambda a: self._code(a, eps), (le1,), (torch.ones_like(le1),))[1]

    def _attention_units(self, le1: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Reverse over forward: att_i = d/dL_e1 of the directional derivative of z_i (summed over
        the batch, whose images do not interact), one reverse pass per unit, vmapped."""
        _, pullback = vjp(lambda a: self._directional(a, eps), le1)
        b, d = le1.shape[0], self.latent_dim
        units = torch.eye(d, dtype=le1.dtype, device=le1.device).unsqueeze(1).expand(d, b, d)
        return vmap(pullback)(units)[0]

    def _attention_sum(self, le1: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """[B, c1, H, W]: sum_i att_i, the gradient of the sum of every unit's directional derivative:
        one reverse pass for all units."""
        return grad(lambda a: self._directional(a, eps).sum())(le1)

    def aggregated_attention(self, le1: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """[B, c1, H, W]: the aggregated attention the decoder receives. With ``sum`` / ``mean`` on the
        chain and fast paths the units' sum is one reverse pass; ``conv`` needs every unit's tensor
        (the chain path folds a 1x1 aggregation into its last step instead of building them)."""
        impl, agg = self._impl(), self.config.aggregation
        if impl == "chain":
            return self._chain(le1, eps, "aggregated")[2]
        if agg in ("sum", "mean") and impl == "fast":
            total = self._chunked(self._attention_sum, le1, eps, dim=0)
            return total if agg == "sum" else total / self.latent_dim
        return self.aggregate(self.second_order_attention(le1, eps))

    def second_order_attention_reference(self, le1: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """The reference the fast path is tested against: vmap over the one-hot unit selectors of
        the forward-over-reverse Hessian-vector product jvp(grad(<z, u>), L_e1, ones), one per unit."""
        n = self.config.attention_chunk
        if le1.shape[0] > n:
            return torch.cat([self.second_order_attention_reference(le1[i : i + n], eps[i : i + n])
                              for i in range(0, le1.shape[0], n)], 1)
        ones = torch.ones_like(le1)
        units = torch.eye(self.latent_dim, dtype=le1.dtype, device=le1.device)

        def hvp(u: torch.Tensor) -> torch.Tensor:
            unit = lambda a: (self._code(a, eps) * u).sum()  # noqa: E731  sum over the batch of z_i
            return jvp(grad(unit), (le1,), (ones,))[1]

        return vmap(hvp)(units)

    def second_order_attention_loop(self, le1: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """The reference: a Python loop over units, two ``torch.autograd.grad`` calls each (first
        gradient with create_graph, then the gradient of its sum). Same result as the vmap version."""
        with torch.enable_grad():
            a = le1 if le1.requires_grad else le1.detach().requires_grad_(True)
            z = self._code(a, eps)
            out = []
            for i in range(self.latent_dim):
                (g,) = torch.autograd.grad(z[:, i].sum(), a, create_graph=True)
                (h,) = torch.autograd.grad(g, a, grad_outputs=torch.ones_like(g), create_graph=True, allow_unused=True)
                out.append(torch.zeros_like(a) if h is None else h)
        return torch.stack(out)

    def aggregate(self, att: torch.Tensor) -> torch.Tensor:
        """[d, B, c1, H, W] -> [B, c1, H, W] by sum, mean or the learned convolution."""
        if self.config.aggregation == "sum":
            return att.sum(0)
        if self.config.aggregation == "mean":
            return att.mean(0)
        d, b, c, h, w = att.shape
        return self.aggregator(att.transpose(0, 1).reshape(b, d * c, h, w))

    def attention_logits(self, z: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        """The decoder with the aggregated attention added to its penultimate map (residual path)."""
        return self.decoder.head(self.decoder.features(z) + attention)

    # -- the contract ------------------------------------------------------------------------------
    def loss(self, x: torch.Tensor, kl_weight: float | torch.Tensor = 1.0) -> LossOutput:
        c = self.config
        le1 = self.first_layer(x)
        # the noise first (the same draw as randn_like(mu)), so that the chain path's one trunk pass
        # gives the posterior and the attention
        eps = torch.randn(le1.shape[0], self.latent_dim, dtype=le1.dtype, device=le1.device)
        att = None
        if c.attention_weight > 0 and self._impl() == "chain":
            mu, logvar, att = self._chain(le1, eps, "aggregated")
        else:
            mu, logvar = self.posterior_from_first_layer(le1)
        q = diag_gaussian(mu, logvar)
        z = mu + torch.exp(0.5 * logvar) * eps
        p = self.decoder.features(z)  # the penultimate map, shared by the plain and the attention path
        rec = -self.likelihood(self.decoder.head(p)).log_prob(x)
        kl = self.kl(q, z)
        total = rec + (c.beta * kl_weight) * kl
        terms = {"rec": rec, "kl": kl, "nelbo": rec + kl}
        if c.attention_weight > 0:
            if att is None:
                att = self.aggregated_attention(le1, eps)
            x_att = self.likelihood(self.decoder.head(p + att)).mean
            terms["att"] = (x - x_att).pow(2).flatten(1).sum(1)
            total = total + c.attention_weight * terms["att"]
        return LossOutput(total.mean(), terms)

    # -- explanations --------------------------------------------------------------------------
    def _noise(self, shape: torch.Size, device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        return torch.randn(shape, generator=g).to(device)

    @torch.no_grad()
    def attention_outputs(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """For figures: 'units' [d, B, c1, H, W] (att_i), 'attention' [B, c1, H, W] (aggregated),
        'maps' [B, 1, H, W] in [0, 1] (see ``attention_maps``), 'reconstruction' (decode(mu)) and
        'attention_reconstruction' (x_att at the sample). The sample's noise comes from
        ``generator`` (default: seed 0), so the same images give the same maps."""
        self.check_input(x)
        le1 = self.first_layer(x)
        mu, logvar = self.posterior_from_first_layer(le1)
        eps = self._noise(mu.shape, mu.device, generator)
        units = self.second_order_attention(le1, eps)  # torch.func differentiates under no_grad
        att = self.aggregate(units)
        z = mu + torch.exp(0.5 * logvar) * eps
        return {"units": units, "attention": att, "maps": normalize_maps(att.abs().mean(1, keepdim=True)),
                "reconstruction": self.mean_image(self.decode(mu)),
                "attention_reconstruction": self.mean_image(self.likelihood(self.attention_logits(z, att)))}

    def attention_maps(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """[B, 1, H, W] in [0, 1]: the mean absolute value over channels of the aggregated attention
        (what the decoder receives), min-max scaled per image (a constant map gives zeros)."""
        return self.attention_outputs(x, generator)["maps"]

    def attention_reconstruct(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """x_att: the reconstruction with the attention fused into the decoder, as an image in [0, 1]."""
        return self.attention_outputs(x, generator)["attention_reconstruction"]




def check_grad2vae(model: object, what: str = "this") -> None:
    """Refuse a model that has no attention of its own (``explains`` is False)."""
    if not getattr(model, "explains", False):
        name = getattr(getattr(model, "config", None), "name", type(model).__name__)
        raise ModelError(f"{what} needs the second-order attention of a grad2vae model; this is a {name}. Use the "
                         "gradient attention (method gradcam) for any conv VAE, or train grad2vae")
