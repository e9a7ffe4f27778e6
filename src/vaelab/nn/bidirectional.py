"""Bidirectional layers and networks: one set of weights run forward (x -> z side) and backward
(z side -> x) as in Kosko & Adigun, "Bidirectional Variational Autoencoders" (arXiv 2505.16074).

A bidirectional layer owns ONE weight tensor and one bias per direction:

    BiLinear:  forward(x) = x W^T + b_f            backward(y) = y W + b_b
    BiConv2d:  forward(x) = conv2d(x, W) + b_f     backward(y) = conv_transpose2d(y, W) + b_b

so the backward pass is the adjoint (transpose) of the forward map plus its own bias, and the
gradients of both directions accumulate into the same ``W``. A network built from them encodes
with ``forward`` and decodes with ``backward``, with about half the weights of an encoder-decoder
pair of the same shape.

Activations: the network's hidden nonlinearity is any name of ``vaelab.nn.ACTIVATIONS``
(default 'relu'), applied after a layer in the forward pass and before that layer's transpose in
the backward pass. The paper's "G-NoVa" (generalised non-vanishing) neuron is NOT provided: its
formula could not be established from a source here, and an invented stand-in would be
misleading. The decoder output (the backward pass of the first layer) has no activation: it is
the pixel likelihood's logits (Bernoulli) or mean (Gaussian).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .networks import auto_conv_channels, check_latent_channels, make_activation


class BiLinear(nn.Module):
    """One weight ``W`` (out x in): forward x -> x W^T + b_f, backward y -> y W + b_b."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias_f = nn.Parameter(torch.zeros(out_features))
        self.bias_b = nn.Parameter(torch.zeros(in_features))
        # Glorot: the same scale serves both directions (fan_in and fan_out swap between them)
        nn.init.xavier_uniform_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias_f)

    def backward(self, y: torch.Tensor) -> torch.Tensor:
        return F.linear(y, self.weight.t(), self.bias_b)

    def extra_repr(self) -> str:
        return f"{self.in_features} <-> {self.out_features}"


class BiConv2d(nn.Module):
    """One kernel ``W`` (out, in, k, k): forward is ``conv2d`` with it, backward is
    ``conv_transpose2d`` with the same kernel (out channels -> in channels, the adjoint map),
    each direction with its own bias. ``output_padding`` picks the backward output size when
    the forward stride rounds sizes down."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, output_padding: int = 0):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding, self.output_padding = kernel_size, stride, padding, output_padding
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias_f = nn.Parameter(torch.zeros(out_channels))
        self.bias_b = nn.Parameter(torch.zeros(in_channels))
        nn.init.xavier_uniform_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias_f, self.stride, self.padding)

    def backward(self, y: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose2d(y, self.weight, self.bias_b, self.stride, self.padding, self.output_padding)

    def extra_repr(self) -> str:
        return (f"{self.in_channels} <-> {self.out_channels}, kernel={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}")


class BiResBlock(nn.Module):
    """Residual block at constant resolution whose backward pass mirrors the forward one through
    the same two 3x3 kernels:

        forward(x)  = x + conv2(act(conv1(x)))
        backward(y) = y + conv1^T(act(conv2^T(y)))
    """

    def __init__(self, channels: int, activation: str = "relu"):
        super().__init__()
        self.conv1 = BiConv2d(channels, channels, 3, 1, 1)
        self.conv2 = BiConv2d(channels, channels, 3, 1, 1)
        self.act = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.act(self.conv1(x)))

    def backward(self, y: torch.Tensor) -> torch.Tensor:
        return y + self.conv1.backward(self.act(self.conv2.backward(y)))


class BiMapHead(nn.Module):
    """The mean head of a code that is a map (``model.latent_channels``): one 3x3 BiConv2d from the
    last feature map (c, h, w) to the code's C channels. forward: (B, c*h*w) -> (B, C*h*w);
    backward: (B, C*h*w) -> (B, c*h*w), the same kernel transposed."""

    def __init__(self, feature_shape: tuple[int, int, int], latent_channels: int):
        super().__init__()
        self.feature_shape = tuple(feature_shape)
        self.code_shape = (latent_channels, *self.feature_shape[1:])
        self.conv = BiConv2d(self.feature_shape[0], latent_channels, 3, 1, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.conv(h.view(-1, *self.feature_shape)).flatten(1)

    def backward(self, z: torch.Tensor) -> torch.Tensor:
        return self.conv.backward(z.view(-1, *self.code_shape)).flatten(1)


class _CodeLayers:
    """The layers of a conv network between its last feature map (``feature_shape``) and the code:
    fc + head for a vector code, a BiMapHead alone for a code that is a map (``latent_channels``)."""

    def _init_code(self, latent_dim: int, hidden_dim: int, latent_channels: int) -> None:
        c, h, w = self.feature_shape
        if latent_channels:
            self.fc = None
            self.out_dim = c * h * w
            self.head = BiMapHead(self.feature_shape, latent_channels)
        else:
            self.fc = BiLinear(c * h * w, hidden_dim)
            self.out_dim = hidden_dim
            self.head = BiLinear(hidden_dim, latent_dim)

    def _to_features(self, x: torch.Tensor) -> torch.Tensor:
        """The forward pass from the last feature map to the head's input, (B, out_dim)."""
        return x.flatten(1) if self.fc is None else self.act(self.fc(x.flatten(1)))

    def _from_code(self, z: torch.Tensor) -> torch.Tensor:
        """The backward pass from the code to the last feature map, (B, c, h, w)."""
        y = self.head.backward(z) if self.fc is None else self.fc.backward(self.act(self.head.backward(z)))
        return y.view(-1, *self.feature_shape)


# --------------------------------------------------------------------------------------------
# Networks. Each has ``forward(x) -> features`` (N, out_dim), a mean head ``head``
# (BiLinear out_dim -> latent_dim) and ``backward(z) -> image-shaped params`` (N, C, H, W) that
# starts with head^T and runs every layer's transpose in reverse order. The rule for
# activations: a layer followed by ``act`` in the forward pass is preceded by ``act`` in the
# backward pass; so the output (the transpose of the first layer) has none.
# --------------------------------------------------------------------------------------------
def _halve(h: int, w: int, n: int) -> None:
    for _ in range(n):
        if h % 2 or w % 2:
            raise ConfigError(f"cannot halve a {h}x{w} feature map; use fewer conv channels (model.conv_channels) or data.size")
        h, w = h // 2, w // 2


class BiMLP(nn.Module):
    """Flatten -> [BiLinear -> act] per width of ``hidden``; backward mirrors it to (C, H, W)."""

    def __init__(self, shape: tuple[int, int, int], hidden: list[int], latent_dim: int, activation: str = "relu"):
        super().__init__()
        self.shape = tuple(shape)
        dims = [math.prod(shape), *hidden]
        self.layers = nn.ModuleList(BiLinear(a, b) for a, b in zip(dims, dims[1:]))
        self.out_dim = dims[-1]
        self.head = BiLinear(self.out_dim, latent_dim)
        self.act = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1)
        for layer in self.layers:
            h = self.act(layer(h))
        return h

    def backward(self, z: torch.Tensor) -> torch.Tensor:
        y = self.head.backward(z)
        for layer in reversed(self.layers):
            y = layer.backward(self.act(y))
        return y.view(-1, *self.shape)


class BiConvNet(_CodeLayers, nn.Module):
    """[BiConv2d k4 s2 p1 -> act] per entry of ``channels`` -> flatten -> BiLinear -> act.
    Backward: head^T, act, fc^T, act, then the transposed convolutions; the last of them uses
    the first kernel, whose in-channels are the image channels. With ``latent_channels`` > 0 the
    code is a map: no BiLinear, the head is a BiMapHead on the last feature map."""

    def __init__(self, shape: tuple[int, int, int], channels: list[int], hidden_dim: int, latent_dim: int,
                 activation: str = "relu", latent_channels: int = 0):
        super().__init__()
        c, h, w = shape
        _halve(h, w, len(channels))
        convs = []
        for out in channels:
            convs.append(BiConv2d(c, out, 4, 2, 1))
            c, h, w = out, h // 2, w // 2
        self.convs = nn.ModuleList(convs)
        self.feature_shape = (c, h, w)
        self._init_code(latent_dim, hidden_dim, latent_channels)
        self.act = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = self.act(conv(x))
        return self._to_features(x)

    @property
    def first(self) -> BiConv2d:
        """The first layer, whose transpose ends the backward pass with the image's channels."""
        return self.convs[0]

    def backward_to_first(self, z: torch.Tensor) -> torch.Tensor:
        """The backward pass up to the first layer's transpose: ``backward(z) = first.backward(this)``."""
        y = self._from_code(z)
        for conv in list(self.convs)[:0:-1]:
            y = conv.backward(self.act(y))
        return self.act(y)

    def backward(self, z: torch.Tensor) -> torch.Tensor:
        return self.first.backward(self.backward_to_first(z))


class BiResNet(_CodeLayers, nn.Module):
    """Per entry of ``channels``: BiConv2d k4 s2 p1 (halves the map) -> act -> ``blocks``
    BiResBlocks; then flatten -> BiLinear -> act. Backward mirrors it: head^T, act, fc^T, the
    blocks' backward passes in reverse, act, the transposed down-sampling conv, and so on down to
    the first kernel, which gives the C image channels. With ``latent_channels`` > 0 the code is a
    map: no BiLinear, the head is a BiMapHead on the last stage's output."""

    def __init__(self, shape: tuple[int, int, int], channels: list[int], hidden_dim: int, latent_dim: int,
                 activation: str = "relu", blocks: int = 1, latent_channels: int = 0):
        super().__init__()
        if blocks < 1:
            raise ConfigError(f"model.res_blocks must be >= 1, got {blocks}")
        c, h, w = shape
        _halve(h, w, len(channels))
        downs, stages = [], []
        for out in channels:
            downs.append(BiConv2d(c, out, 4, 2, 1))
            stages.append(nn.ModuleList(BiResBlock(out, activation) for _ in range(blocks)))
            c, h, w = out, h // 2, w // 2
        self.downs = nn.ModuleList(downs)
        self.stages = nn.ModuleList(stages)
        self.feature_shape = (c, h, w)
        self._init_code(latent_dim, hidden_dim, latent_channels)
        self.act = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for down, blocks in zip(self.downs, self.stages):
            x = self.act(down(x))
            for block in blocks:
                x = block(x)
        return self._to_features(x)

    @property
    def first(self) -> BiConv2d:
        """The first down-sampling layer, whose transpose ends the backward pass with the image's channels."""
        return self.downs[0]

    def backward_to_first(self, z: torch.Tensor) -> torch.Tensor:
        """The backward pass up to the first layer's transpose: ``backward(z) = first.backward(this)``."""
        y = self._from_code(z)
        for i, (down, blocks) in enumerate(zip(reversed(self.downs), reversed(self.stages))):
            for block in reversed(blocks):
                y = block.backward(y)
            if i < len(self.downs) - 1:
                y = down.backward(self.act(y))
        return self.act(y)

    def backward(self, z: torch.Tensor) -> torch.Tensor:
        return self.first.backward(self.backward_to_first(z))


BI_ARCHS = ("conv", "mlp", "resnet")


def build_bidirectional(arch: str, shape: tuple[int, int, int], latent_dim: int, *, conv_channels: list[int] | None,
                        hidden_dim: int, mlp_hidden: list[int], activation: str, res_blocks: int = 1,
                        latent_channels: int = 0) -> nn.Module:
    """The bidirectional network of ``arch`` in {'conv', 'mlp', 'resnet'} for images of ``shape``
    (``latent_channels`` > 0, conv and resnet: a code that is a map, see BiMapHead)."""
    check_latent_channels(arch, latent_channels)
    if arch == "conv":
        return BiConvNet(shape, conv_channels or auto_conv_channels(shape[1]), hidden_dim, latent_dim, activation,
                         latent_channels)
    if arch == "resnet":
        return BiResNet(shape, conv_channels or auto_conv_channels(shape[1]), hidden_dim, latent_dim, activation, res_blocks,
                        latent_channels)
    if arch == "mlp":
        return BiMLP(shape, mlp_hidden, latent_dim, activation)
    raise ConfigError(f"no bidirectional network for arch {arch!r}; choose one of: {', '.join(BI_ARCHS)}")
