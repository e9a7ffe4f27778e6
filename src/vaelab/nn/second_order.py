"""The second-order chain rule through a feed-forward stack, written out layer by layer.

For a stack F of ``Conv2d`` (zero or circular padding), non-overlapping ``AvgPool2d``, ``Linear``,
``Flatten`` and elementwise activation layers, and the all-ones tangent at its input x, ``forward`` computes the output h = F(x) and its directional
derivative t = J_F(x) @ 1 (forward mode, one pass for the whole batch), and keeps what the reverse
pass needs (the layers, each activation's sigma'(u) and sigma''(u) * t_u, the shapes).

``reverse`` is the reverse pass of the pair (h, t) as functions of x: given cotangents p on h and
g on t at the top (k sets of them, [k, B, n], one per latent unit for example), it returns

    d/dx [ <p, F(x)> + <g, J_F(x) @ 1> ]        ([k, B, *x.shape[1:]], one per set)

with p and g held fixed, by the recursion, through an activation u -> sigma(u) with incoming
tangent t_u::

    g_u = sigma'(u) * g
    p_u = sigma'(u) * p + sigma''(u) * t_u * g

and through a linear layer W (conv, pooling, linear) the transpose W^T applied to both g and p (the bias
drops out of both; the tangent's input is the constant 1, so g stops at x). This is what
``torch.func.vjp`` of ``torch.func.jvp`` computes, without the per-set re-tracing: every step is a
plain batched tensor operation that autograd differentiates again (training goes through it).

The sets are processed in chunks of images x sets sized so that no temporary exceeds
``chunk_bytes`` (tensors over about 32 MB are mapped fresh from the operating system on every
allocation, which made the unchunked pass several times slower on a CPU), and the result can be
contracted on the fly with a 1x1 channel mixing over (set, channel) (``mix``), so that the k
per-set tensors at the input are never materialised: for a first layer that is a convolution the
mixing is folded into its transposed kernel, one convolution with k * c input channels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import grad

from ..errors import ModelError

DEFAULT_CHUNK_BYTES = 16 * 2**20


def activation_derivatives(act: nn.Module, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """sigma'(u) and sigma''(u) of an elementwise activation module: in closed form for the
    library's activations (the same branches as torch's own backward), by ``torch.func.grad`` of
    the module otherwise (it must be elementwise)."""
    if isinstance(act, nn.SiLU):
        s = torch.sigmoid(u)
        return s * (1 + u * (1 - s)), s * (1 - s) * (2 + u * (1 - 2 * s))
    if isinstance(act, nn.Tanh):
        t = torch.tanh(u)
        d1 = 1 - t * t
        return d1, -2 * t * d1
    if isinstance(act, nn.Sigmoid):
        s = torch.sigmoid(u)
        d1 = s * (1 - s)
        return d1, d1 * (1 - 2 * s)
    if isinstance(act, nn.GELU) and act.approximate == "none":
        phi = torch.exp(-0.5 * u * u) / math.sqrt(2 * math.pi)
        return 0.5 * (1 + torch.erf(u / math.sqrt(2))) + u * phi, phi * (2 - u * u)
    if isinstance(act, nn.ReLU):
        return (u > 0).to(u.dtype), torch.zeros_like(u)
    if isinstance(act, nn.LeakyReLU):
        return torch.where(u > 0, 1.0, torch.full_like(u, act.negative_slope)), torch.zeros_like(u)
    if isinstance(act, nn.ELU):
        neg = act.alpha * torch.exp(u)
        return torch.where(u > 0, 1.0, neg), torch.where(u > 0, 0.0, neg)
    if isinstance(act, nn.Softplus):
        z = act.beta * u
        s = torch.sigmoid(z)
        # torch: linear above the threshold; its second derivative is zero from the threshold on
        return (torch.where(z > act.threshold, 1.0, s),
                torch.where(z >= act.threshold, 0.0, act.beta * s * (1 - s)))

    def first(v: torch.Tensor) -> torch.Tensor:
        return grad(lambda w: act(w).sum())(v)

    return first(u), grad(lambda v: first(v).sum())(u)


def _conv(layer: nn.Conv2d, t: torch.Tensor) -> torch.Tensor:
    """``layer`` without its bias (a linear map), its padding mode included."""
    if layer.padding_mode == "circular":
        ph, pw = layer.padding
        return F.conv2d(F.pad(t, (pw, pw, ph, ph), mode="circular"), layer.weight, None, layer.stride, 0,
                        layer.dilation, layer.groups)
    return F.conv2d(t, layer.weight, None, layer.stride, layer.padding, layer.dilation, layer.groups)


def _pool_size(layer: nn.AvgPool2d, h: torch.Tensor) -> tuple[int, int]:
    """The window of an average pooling the chain handles: non-overlapping (stride = kernel), no
    padding, tiling the map exactly."""
    k = layer.kernel_size if isinstance(layer.kernel_size, tuple) else (layer.kernel_size,) * 2
    stride = layer.stride if isinstance(layer.stride, tuple) else (layer.stride,) * 2
    pad = layer.padding if isinstance(layer.padding, tuple) else (layer.padding,) * 2
    if tuple(stride) != tuple(k) or any(pad) or h.shape[-2] % k[0] or h.shape[-1] % k[1]:
        raise ModelError(f"the second-order chain handles average pooling with stride = kernel, no padding, on maps the "
                         f"window tiles; got kernel {k}, stride {stride}, padding {pad} on {tuple(h.shape[-2:])}: "
                         "use attention_impl=fast")
    return tuple(k)


def _unpad_circular(y: torch.Tensor, ph: int, pw: int) -> torch.Tensor:
    """The adjoint of circular padding by (ph, pw): each padded border adds onto the side it copies."""
    if ph:
        h = y.shape[-2] - 2 * ph
        top, mid, bottom = y[..., :ph, :], y[..., ph : ph + h, :], y[..., ph + h :, :]
        y = mid + F.pad(top, (0, 0, h - ph, 0)) + F.pad(bottom, (0, 0, 0, h - ph))
    if pw:
        w = y.shape[-1] - 2 * pw
        left, mid, right = y[..., :pw], y[..., pw : pw + w], y[..., pw + w :]
        y = mid + F.pad(left, (w - pw, 0)) + F.pad(right, (0, w - pw))
    return y


def _transposed(layer: nn.Conv2d, y: torch.Tensor, in_hw: tuple[int, int], weight: torch.Tensor | None = None) -> torch.Tensor:
    """The adjoint of ``layer`` (without its bias) applied to y, for an input of spatial size in_hw."""
    circular = layer.padding_mode == "circular"
    padding = (0, 0) if circular else layer.padding
    size = [n + 2 * q for n, q in zip(in_hw, layer.padding)] if circular else list(in_hw)
    extra = []
    for dim in range(2):
        reach = ((y.shape[-2 + dim] - 1) * layer.stride[dim] - 2 * padding[dim]
                 + layer.dilation[dim] * (layer.kernel_size[dim] - 1) + 1)
        extra.append(size[dim] - reach)
    w = (layer.weight if weight is None else weight).contiguous()  # channels_last weights: the reverse pass is NCHW
    groups = layer.groups if weight is None else 1
    out = F.conv_transpose2d(y, w, None, layer.stride, padding, tuple(extra), groups, layer.dilation)
    return _unpad_circular(out, *layer.padding) if circular else out


@dataclass
class Tape:
    """What ``forward`` keeps for ``reverse``: one entry per layer, bottom to top."""

    input_shape: torch.Size
    steps: list[tuple] = field(default_factory=list)
    widest: int = 0  # the most numbers one image has at any layer (sizes the reverse pass's chunks)


def forward(layers: nn.Sequential | list[nn.Module], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, Tape]:
    """h = F(x), t = J_F(x) @ 1 and the tape for ``reverse``."""
    h, t, tape = x, torch.ones_like(x[:1]), Tape(x.shape, widest=x[0].numel())  # the constant tangent: one image suffices
    for layer in layers:
        if isinstance(layer, nn.Conv2d):
            if layer.padding_mode not in ("zeros", "circular") or isinstance(layer.padding, str):
                raise ModelError(f"the second-order chain handles convolutions with zero or circular padding given as "
                                 f"numbers; this one has padding={layer.padding!r}, padding_mode={layer.padding_mode!r}: "
                                 "use attention_impl=fast")
            tape.steps.append(("conv", layer, tuple(h.shape[-2:])))
            t = _conv(layer, t)
            h = layer(h)
        elif isinstance(layer, nn.AvgPool2d):
            k = _pool_size(layer, h)
            tape.steps.append(("pool", k, None))
            t = F.avg_pool2d(t, k)
            h = layer(h)
        elif isinstance(layer, nn.Linear):
            tape.steps.append(("linear", layer, None))
            t = F.linear(t, layer.weight)
            h = layer(h)
        elif isinstance(layer, nn.Flatten):
            if layer.start_dim != 1 or layer.end_dim != -1:
                raise ModelError("the second-order chain flattens every dimension after the batch (nn.Flatten())")
            tape.steps.append(("flatten", None, tuple(h.shape[1:])))
            h = layer(h)
            t = t.flatten(1)
        else:  # an elementwise activation
            d1, d2 = activation_derivatives(layer, h)
            # kept contiguous: in the channels_last layout (the trainer's fast path on the CPU) the
            # per-set products of the reverse pass would otherwise come out in a strided layout
            # that every later reshape copies (measured 12% of an eager step)
            tape.steps.append(("act", d1.contiguous(), (d2 * t).contiguous()))
            h = layer(h)
            t = d1 * t
        tape.widest = max(tape.widest, h[0].numel())
    if not tape.steps:
        raise ModelError("the second-order chain needs at least one layer")
    return h, t.expand_as(h), tape


def _spread(v: torch.Tensor, k: tuple[int, int]) -> torch.Tensor:
    """The adjoint of a mean over non-overlapping k windows: each value spread evenly over its window."""
    return (v / (k[0] * k[1])).repeat_interleave(k[0], -2).repeat_interleave(k[1], -1)


def _slice(step: tuple, b0: int, b1: int) -> tuple:
    kind, a, b = step
    if kind != "act":
        return step
    return kind, a[b0:b1], (b[b0:b1] if b.shape[0] > 1 else b)


def _reverse_chunk(steps: list[tuple], g: torch.Tensor, p: torch.Tensor | None, mix: torch.Tensor | None,
                   input_shape: torch.Size) -> torch.Tensor:
    """One chunk: g, p [k, b, n] (p None: zero) -> [k, b, *input], or with ``mix`` [b, o, *spatial].
    The pass runs image-major, [b, k, ...] (the sets of one image side by side), so that the mixed
    transposed convolution at the end reads its b x (k * C) input channels without a copy."""
    k, b = g.shape[:2]
    g, p = g.transpose(0, 1), (None if p is None else p.transpose(0, 1))
    hwc = False  # whether the last linear step wrote its maps in (H, W, C) order (see the linear step)
    for j in range(len(steps) - 1, -1, -1):
        kind, a, c = steps[j]
        if kind == "act":  # a = sigma'(u), c = sigma''(u) * t_u, per image: broadcast over the sets
            a, c = a[:, None], c[:, None]
            p = c * g if p is None else a * p + c * g
            if j == 1 and steps[0][0] == "conv":  # a first convolution takes only p: g is not needed again
                continue
            g = a * g
        elif kind == "flatten":
            if hwc:  # the maps in (H, W, C) order: a channels-last view of [b, k, C, H, W], no copy
                g = g.unflatten(-1, (*c[1:], c[0])).movedim(-1, 2)
                p = None if p is None else p.unflatten(-1, (*c[1:], c[0])).movedim(-1, 2)
            else:
                g = g.reshape(b, k, *c)
                p = None if p is None else p.reshape(b, k, *c)
        elif kind == "pool":  # the adjoint of a non-overlapping mean: spread evenly over the window
            g, p = _spread(g, a), (None if p is None else _spread(p, a))
        elif kind == "linear":
            w = a.weight
            # under torch.compile a linear layer over flattened conv maps writes them in (H, W, C) order,
            # the channels-last layout in which inductor runs the convolutions below: the elementwise
            # kernels between them then read and write one layout, without transposing (about 10% of a
            # compiled grad2vae step, benchmarks/grad2vae.py part a); eager keeps NCHW, measured faster there
            hwc = j > 0 and steps[j - 1][0] == "flatten" and len(steps[j - 1][2]) == 3 and torch.compiler.is_compiling()
            if hwc:
                w = w.unflatten(1, steps[j - 1][2]).permute(0, 2, 3, 1).flatten(1)
            if p is None:
                g = g @ w
            else:
                g, p = torch.stack([g, p]) @ w
        elif j == 0:  # a first convolution: its tangent input is constant, so only p reaches x
            if p is None:
                break
            if mix is not None:
                return _mixed_transposed(a, p, mix, c)
            return _transposed(a, p.flatten(0, 1), c).unflatten(0, (b, k)).transpose(0, 1)
        elif p is None:
            g = _transposed(a, g.flatten(0, 1), c).unflatten(0, (b, k))
        else:
            g, p = _transposed(a, torch.stack([g, p]).flatten(0, 2), c).unflatten(0, (2, b, k))
    p = g.new_zeros(b, k, *input_shape[1:]) if p is None else p.reshape(b, k, *input_shape[1:])
    if mix is not None:  # the first layer is not a convolution: mix the per-set tensors directly
        return torch.einsum("okc,bkc...->bo...", mix, p)
    return p.transpose(0, 1)


def _mixed_transposed(layer: nn.Conv2d, p: torch.Tensor, mix: torch.Tensor, in_hw: tuple[int, int]) -> torch.Tensor:
    """sum over (set i, channel c) of mix[o, i, c] * (W^T p_i)[c], as one transposed convolution whose
    kernel is W^T followed by the mixing: [b, k, C, h, w] (image-major) -> [b, o, H, W]."""
    if layer.groups != 1:
        raise ModelError("the mixed transposed convolution needs groups=1")
    kernel = torch.einsum("cuxy,oku->kcoxy", layer.weight, mix).flatten(0, 1)  # [k * C, o, kh, kw]
    return _transposed(layer, p.flatten(1, 2), in_hw, kernel)


def reverse(tape: Tape, g: torch.Tensor, p: torch.Tensor | None, mix: torch.Tensor | None = None,
            chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> torch.Tensor:
    """d/dx [<p, F(x)> + <g, J_F(x) @ 1>] for each of the k sets of cotangents g, p [k, B, n] (p None:
    zero), as [k, B, *x.shape[1:]]; with ``mix`` [o, k, C] (C the input's channels), the mixed result
    sum_{i, c} mix[o, i, c] * out[i, :, c] as [B, o, *x.shape[2:]] without the k tensors."""
    k, b = g.shape[:2]
    if mix is not None and (mix.dim() != 3 or mix.shape[1] != k or mix.shape[2] != tape.input_shape[1]):
        raise ModelError(f"mix must be [outputs, {k}, {tape.input_shape[1]}]; got {tuple(mix.shape)}")
    per_item = 2 * tape.widest * g.element_size()  # g and p side by side, for one set and one image
    budget = max(1, chunk_bytes // per_item)  # (set, image) pairs per chunk
    images, units = (b, min(k, budget // b)) if budget >= b else (budget, 1)
    out_rows = []
    for b0 in range(0, b, images):
        b1 = min(b, b0 + images)
        steps = [_slice(s, b0, b1) for s in tape.steps]
        parts = []
        for u0 in range(0, k, units):
            u1 = min(k, u0 + units)
            pc = None if p is None else p[u0:u1, b0:b1]
            parts.append(_reverse_chunk(steps, g[u0:u1, b0:b1], pc, None if mix is None else mix[:, u0:u1],
                                        tape.input_shape))
        out_rows.append(sum(parts) if mix is not None else torch.cat(parts))
    return torch.cat(out_rows, 0 if mix is not None else 1)
