"""Gradient attention for any convolutional VAE of the family (Liu et al., "Towards Visually
Explaining Variational Autoencoders", CVPR 2020): Grad-CAM with the latent code as the target.

For a conv layer with feature maps A_k (k = 1..K, after the layer's activation when one follows
it) and a scalar target y computed from the posterior:

    alpha_k = mean over positions of dy / dA_k        (global-average-pooled gradients)
    M       = ReLU(sum_k alpha_k A_k)                  (one map per image, the layer's resolution)

then M is upsampled bilinearly to the image size and min-max scaled per image to [0, 1].

* ``gradcam``: y = mu_i, the posterior mean of unit i. As in the paper, with ``unit=None`` there is
  one map per unit and the attention is their mean (all units in one vectorised backward pass,
  ``is_grads_batched``); ``unit=i`` gives that unit's map.
* ``gradcam_anomaly``: y = D(x), the distance of the image's posterior from the normal class's
  posterior statistics (``normal_statistics`` of the training images):
  D = 0.5 * sum_i ((mu_i(x) - m_i) / s_i)^2 [+ 0.5 * sum_i ((var_i(x) - v_i) / t_i)^2 with
  ``use_var``], m / v the training mean of mu / of the posterior variance, s / t their training
  std with ``standardize`` (else 1). The gradient of D points where the image moves its code
  away from the normal class, so the map highlights the anomalous region. An image whose
  posterior equals the normal statistics gets an all-zero map.

The layer: by default the last conv layer that ``encode`` runs; or its dotted module name
(``model.named_modules()``), or an index into ``conv_layers(model)`` (0: the first conv layer).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data.imageset import to_unit_float
from ..errors import ModelError
from ..plotting import normalize_maps


def _is_conv(m: nn.Module) -> bool:
    w = getattr(m, "weight", None)
    return isinstance(w, torch.Tensor) and w.ndim == 4


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _encode_trace(model: nn.Module) -> list[tuple[str, nn.Module, Any, Any]]:
    """(name, module, first input, output) of every leaf module call of one ``encode`` pass."""
    names = {m: n for n, m in model.named_modules()}
    trace: list[tuple[str, nn.Module, Any, Any]] = []
    leaves = [m for m in model.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(lambda mod, inp, out: trace.append((names[mod], mod, inp[0] if inp else None, out)))
             for m in leaves]
    try:
        with torch.no_grad():
            model.encode(torch.zeros(1, *model.image_shape, device=_device(model)))
    finally:
        for h in hooks:
            h.remove()
    return trace


def conv_layers(model: nn.Module) -> list[str]:
    """The names of the conv layers ``encode`` runs, in the order it runs them."""
    seen: list[str] = []
    for name, mod, _, out in _encode_trace(model):
        if _is_conv(mod) and isinstance(out, torch.Tensor) and out.ndim == 4 and name not in seen:
            seen.append(name)
    return seen


def resolve_layer(model: nn.Module, layer: str | int | None = None) -> str:
    """The name of the conv layer to explain: ``None`` = the last one of the encoder."""
    convs = conv_layers(model)
    name = getattr(getattr(model, "config", None), "name", type(model).__name__)
    if not convs:
        arch = getattr(getattr(model, "config", None), "arch", "?")
        raise ModelError(f"gradient attention needs convolutional layers in the encoder; this {name} (arch={arch}) has "
                         "none. Explain a model trained with model.arch=conv")
    if layer is None:
        return convs[-1]
    if isinstance(layer, int) or (isinstance(layer, str) and layer.lstrip("-").isdigit()):
        i = int(layer)
        if not -len(convs) <= i < len(convs):
            raise ModelError(f"conv layer index {i} is out of range: the {name} encoder has {len(convs)} conv layers "
                             f"({', '.join(convs)})")
        return convs[i]
    if layer not in convs:
        raise ModelError(f"{layer!r} is not a conv layer of the {name} encoder; choose one of: {', '.join(convs)}")
    return layer


class _Capture:
    """Holds the feature maps of the chosen conv layer during one ``encode`` pass: the conv's
    output, or the output of the parameter-free module (the activation) that takes it next."""

    def __init__(self, model: nn.Module, layer: str):
        modules = dict(model.named_modules())
        self.conv = modules[layer]
        self.conv_out: torch.Tensor | None = None
        self.features: torch.Tensor | None = None
        trace = _encode_trace(model)
        self.act: nn.Module | None = None
        for i, (n, _, _, out) in enumerate(trace):
            if n == layer and i + 1 < len(trace):
                _, nxt, inp, _ = trace[i + 1]
                if inp is out and not any(True for _ in nxt.parameters()):
                    self.act = nxt
                break
        self.hooks = [self.conv.register_forward_hook(self._on_conv)]
        if self.act is not None:
            self.hooks.append(self.act.register_forward_hook(self._on_act))

    def _on_conv(self, mod: nn.Module, inp: Any, out: torch.Tensor) -> None:
        if self.conv_out is None:
            self.conv_out = self.features = out

    def _on_act(self, mod: nn.Module, inp: Any, out: torch.Tensor) -> None:
        if self.conv_out is not None and inp and inp[0] is self.conv_out:
            self.features = out

    def __enter__(self) -> "_Capture":
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self.hooks:
            h.remove()


def _encode_with_features(model: nn.Module, x: torch.Tensor, layer: str | int | None):
    name = resolve_layer(model, layer)
    x = x.to(_device(model)).float().detach().requires_grad_(True)  # a graph even with frozen weights
    with _Capture(model, name) as cap:
        q = model.encode(x)
    return q, cap.features


def _cam(features: torch.Tensor, grads: torch.Tensor, image_hw: tuple[int, int], normalize: bool) -> torch.Tensor:
    """ReLU(sum_k alpha_k A_k), alpha = GAP(grads); upsampled to the image, [..., B, 1, H, W]."""
    alpha = grads.mean((-2, -1), keepdim=True)
    cam = F.relu((alpha * features).sum(-3))  # [..., B, h, w]
    lead = cam.shape[:-2]
    up = F.interpolate(cam.reshape(-1, 1, *cam.shape[-2:]), size=image_hw, mode="bilinear", align_corners=False)
    return up.reshape(*lead, 1, *image_hw)


def gradcam(model: nn.Module, x: torch.Tensor, layer: str | int | None = None, unit: int | None = None,
            normalize: bool = True) -> torch.Tensor:
    """[B, 1, H, W] gradient attention of the posterior mean (see the module docstring); in [0, 1]
    with ``normalize``, else the raw upsampled ReLU maps (the mean over units with ``unit=None``)."""
    was = model.training
    model.eval()
    try:
        with torch.enable_grad():
            q, feats = _encode_with_features(model, x, layer)
            mu = q.mean
            d = mu.shape[-1]
            if unit is not None:
                if not -d <= unit < d:
                    raise ModelError(f"latent unit {unit} does not exist; the model has {d} units (0..{d - 1})")
                (g,) = torch.autograd.grad(mu[:, unit].sum(), feats)
                cam = _cam(feats.detach(), g, x.shape[-2:], False)
            else:
                eye = torch.eye(d, dtype=mu.dtype, device=mu.device)
                cot = eye[:, None, :].expand(d, mu.shape[0], d)  # unit i's cotangent for every image
                (g,) = torch.autograd.grad(mu, feats, cot, is_grads_batched=True)  # [d, B, K, h, w]
                cam = _cam(feats.detach(), g, x.shape[-2:], False).mean(0)
    finally:
        model.train(was)
    cam = cam.detach()
    return normalize_maps(cam) if normalize else cam


@dataclass
class NormalStatistics:
    """The normal class's posterior statistics, per latent unit: mean and std over the training
    images of the posterior mean (mu_mean, mu_std) and of the posterior variance (var_mean, var_std)."""

    mu_mean: torch.Tensor
    mu_std: torch.Tensor
    var_mean: torch.Tensor | None
    var_std: torch.Tensor | None
    n: int


def _variance(q: Any) -> torch.Tensor | None:
    try:
        return q.variance
    except (NotImplementedError, AttributeError):
        return None


@torch.no_grad()
def normal_statistics(model: nn.Module, images: Any, batch_size: int = 500) -> NormalStatistics:
    """Posterior statistics of ``images`` (an ImageSet, or a float [N, C, H, W] tensor in [0, 1]),
    the normal class for ``gradcam_anomaly``."""
    from ..data import ImageSet

    x_all = images.images if isinstance(images, ImageSet) else images
    if len(x_all) < 1:
        raise ModelError("the normal statistics need at least one image of the normal class")
    was = model.training
    model.eval()
    mus, vars_ = [], []
    try:
        for i in range(0, len(x_all), batch_size):
            x = x_all[i : i + batch_size].to(_device(model))
            x = to_unit_float(x)
            q = model.encode(x)
            mus.append(q.mean.double().cpu())
            v = _variance(q)
            if v is not None:
                vars_.append(v.double().cpu())
    finally:
        model.train(was)
    mu = torch.cat(mus)
    var = torch.cat(vars_) if vars_ else None
    return NormalStatistics(mu.mean(0), mu.std(0, unbiased=False), None if var is None else var.mean(0),
                            None if var is None else var.std(0, unbiased=False), len(mu))


def anomaly_distance(q: Any, stats: NormalStatistics, use_var: bool = False, standardize: bool = False) -> torch.Tensor:
    """D per image: 0.5 * sum ((mu - m) / s)^2 [+ the same for the posterior variance]."""
    dev, dt = q.mean.device, q.mean.dtype

    def term(v: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        s = std.to(dev, dt).clamp_min(1e-6) if standardize else 1.0
        return 0.5 * ((v - mean.to(dev, dt)) / s).pow(2).sum(-1)

    d = term(q.mean, stats.mu_mean, stats.mu_std)
    if use_var:
        v = _variance(q)
        if v is None or stats.var_mean is None:
            raise ModelError("use_var needs a posterior with a variance (a VAE); this model's code is deterministic")
        d = d + term(v, stats.var_mean, stats.var_std)
    return d


def gradcam_anomaly(model: nn.Module, x: torch.Tensor, stats: NormalStatistics, layer: str | int | None = None,
                    use_var: bool = False, standardize: bool = False, normalize: bool = True) -> torch.Tensor:
    """[B, 1, H, W] anomaly attention: the gradient attention of D(x), the distance of each image's
    posterior from the normal class's ``stats`` (see the module docstring)."""
    was = model.training
    model.eval()
    try:
        with torch.enable_grad():
            q, feats = _encode_with_features(model, x, layer)
            dist = anomaly_distance(q, stats, use_var, standardize)
            (g,) = torch.autograd.grad(dist.sum(), feats)  # images are independent: each gets its own gradient
            cam = _cam(feats.detach(), g, x.shape[-2:], False)
    finally:
        model.train(was)
    cam = cam.detach()
    return normalize_maps(cam) if normalize else cam
