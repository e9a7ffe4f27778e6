"""Encoders map an image to a feature vector; decoders map a latent vector to an image-shaped
tensor of distribution parameters. Heads (mean, log-variance, code) belong to the models."""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from ..errors import ConfigError

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "elu": nn.ELU,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
    "sigmoid": nn.Sigmoid,
}


def make_activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ConfigError(f"unknown activation {name!r}; choose one of: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def auto_conv_channels(height: int, base: int = 32, max_channels: int = 256) -> list[int]:
    """One stride-2 stage per halving while the map stays >= 4 pixels: 28->7 (2 stages),
    32->4 (3), 64->4 (4), 8->4 (1). Channels double per stage from ``base``."""
    chans, h = [], height
    while h % 2 == 0 and h // 2 >= 4:
        chans.append(min(base * 2 ** len(chans), max_channels))
        h //= 2
    if not chans:
        raise ConfigError(f"images of height {height} are too small or odd-sized for the conv networks; use arch=mlp or data.size")
    return chans


def code_map_shape(shape: tuple[int, int, int], conv_channels: list[int] | None, latent_channels: int) -> tuple[int, int, int]:
    """The (C, h, w) of a code that is a map (``model.latent_channels`` = C > 0): C channels at the
    resolution of the last down-sampling stage of ``conv_channels`` (chosen from the image size
    when None); the code's vector is that map flattened, C * h * w numbers."""
    chans = conv_channels or auto_conv_channels(shape[1])
    h, w = shape[1], shape[2]
    for _ in chans:
        if h % 2 or w % 2:
            raise ConfigError(f"cannot halve a {h}x{w} feature map; use fewer conv channels or data.size")
        h, w = h // 2, w // 2
    return latent_channels, h, w


def check_latent_channels(arch: str, latent_channels: int) -> None:
    """Refuses a code that is a map (``latent_channels`` > 0) on an architecture without conv stages."""
    if latent_channels and arch not in ("conv", "resnet"):
        raise ConfigError(f"model.latent_channels={latent_channels} (a code that is a map) needs model.arch=conv or resnet, "
                          f"not {arch}; or leave model.latent_channels=0 for a code that is a vector")


class MapHead(nn.Module):
    """A head on a feature map for a code that is a map: (B, c*h*w) -> view (c, h, w) -> 3x3 conv
    to ``out`` channels -> (B, out*h*w). Each code unit sees its neighbourhood, not the whole image,
    so the head has 9 * c * out weights where a fully connected one would have (c*h*w) * (out*h*w)."""

    def __init__(self, feature_shape: tuple[int, int, int], out: int):
        super().__init__()
        self.feature_shape = tuple(feature_shape)
        self.conv = nn.Conv2d(feature_shape[0], out, 3, 1, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.conv(h.view(-1, *self.feature_shape)).flatten(1)


class ResBlock(nn.Module):
    """x + conv2(act(conv1(x))), two 3x3 convolutions at constant resolution."""

    def __init__(self, channels: int, activation: str = "relu"):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.act = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.act(self.conv1(x)))


class ConvEncoder(nn.Module):
    """Per entry of ``channels``: conv k4 s2 p1 (halves the map) -> act [-> ``blocks`` ResBlocks];
    then flatten -> linear -> act. With ``to_map``, no linear layer: the output is the last
    feature map flattened (c*h*w numbers), for heads that keep its layout (MapHead)."""

    def __init__(self, shape: tuple[int, int, int], channels: list[int], hidden_dim: int, activation: str = "relu",
                 blocks: int = 0, to_map: bool = False):
        super().__init__()
        c, h, w = shape
        layers: list[nn.Module] = []
        for out in channels:
            if h % 2 or w % 2:
                raise ConfigError(f"cannot halve a {h}x{w} feature map; use fewer conv channels or data.size")
            layers += [nn.Conv2d(c, out, 4, 2, 1), make_activation(activation), *(ResBlock(out, activation) for _ in range(blocks))]
            c, h, w = out, h // 2, w // 2
        self.features = nn.Sequential(*layers)
        self.feature_shape = (c, h, w)
        if to_map:
            self.fc = nn.Flatten()
            self.out_dim = c * h * w
        else:
            self.fc = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, hidden_dim), make_activation(activation))
            self.out_dim = hidden_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def _map_input(latent_channels: int, start: tuple[int, int, int]) -> nn.Module:
    """A decoder's first layer for a code that is a map: (B, C*h*w) -> view (C, h, w) -> 3x3 conv to
    the deepest stage's channels, flattened again for the decoder's ``view``."""
    c, h, w = start
    return nn.Sequential(nn.Unflatten(1, (latent_channels, h, w)), nn.Conv2d(latent_channels, c, 3, 1, 1), nn.Flatten())


class ConvDecoder(nn.Module):
    """Linear -> act -> linear -> act (or, for a code that is a map, a 3x3 conv), then per stage from
    the deepest a transposed conv k4 s2 p1 (doubles the map) -> act; the last gives ``out_channels``."""

    def __init__(self, shape: tuple[int, int, int], channels: list[int], latent_dim: int, hidden_dim: int,
                 out_channels: int, activation: str = "relu", latent_channels: int = 0):
        super().__init__()
        c, h, w = shape
        sh, sw = h // 2 ** len(channels), w // 2 ** len(channels)
        self.start = (channels[-1], sh, sw)
        if latent_channels:
            self.fc = nn.Sequential(_map_input(latent_channels, self.start), make_activation(activation))
        else:
            self.fc = nn.Sequential(
                nn.Linear(latent_dim, hidden_dim), make_activation(activation),
                nn.Linear(hidden_dim, channels[-1] * sh * sw), make_activation(activation),
            )
        layers: list[nn.Module] = []
        rev = list(reversed(channels))
        for i, cin in enumerate(rev):
            last = i == len(rev) - 1
            cout = out_channels if last else rev[i + 1]
            layers.append(nn.ConvTranspose2d(cin, cout, 4, 2, 1))
            if not last:
                layers.append(make_activation(activation))
        self.deconv = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.deconv(self.fc(z).view(-1, *self.start))


class ResEncoder(ConvEncoder):
    """ConvEncoder with ``blocks`` (>= 1) ResBlocks after each down-sampling conv: the unidirectional
    twin of vaelab.nn.BiResNet's forward pass."""

    def __init__(self, shape: tuple[int, int, int], channels: list[int], hidden_dim: int, activation: str = "relu",
                 blocks: int = 1, to_map: bool = False):
        if blocks < 1:
            raise ConfigError(f"model.res_blocks must be >= 1, got {blocks}")
        super().__init__(shape, channels, hidden_dim, activation, blocks, to_map)


class ResDecoder(nn.Module):
    """The mirror of ResEncoder with its own weights (BiResNet's backward pass, unshared):
    linear -> act -> linear (for a code that is a map, one 3x3 conv), then per stage from the
    deepest: ``blocks`` ResBlocks -> act -> transposed conv k4 s2 p1 (doubles the map); the last
    gives ``out_channels``."""

    def __init__(self, shape: tuple[int, int, int], channels: list[int], latent_dim: int, hidden_dim: int,
                 out_channels: int, activation: str = "relu", blocks: int = 1, latent_channels: int = 0):
        super().__init__()
        c, h, w = shape
        sh, sw = h // 2 ** len(channels), w // 2 ** len(channels)
        self.start = (channels[-1], sh, sw)
        if latent_channels:
            self.fc = _map_input(latent_channels, self.start)
        else:
            self.fc = nn.Sequential(nn.Linear(latent_dim, hidden_dim), make_activation(activation),
                                    nn.Linear(hidden_dim, channels[-1] * sh * sw))
        layers: list[nn.Module] = []
        rev = list(reversed(channels))
        for i, cin in enumerate(rev):
            cout = out_channels if i == len(rev) - 1 else rev[i + 1]
            layers += [*(ResBlock(cin, activation) for _ in range(blocks)), make_activation(activation),
                       nn.ConvTranspose2d(cin, cout, 4, 2, 1)]
        self.deconv = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.deconv(self.fc(z).view(-1, *self.start))


class MLPEncoder(nn.Module):
    def __init__(self, shape: tuple[int, int, int], hidden: list[int], activation: str = "relu"):
        super().__init__()
        d = math.prod(shape)
        layers: list[nn.Module] = [nn.Flatten()]
        for hdim in hidden:
            layers += [nn.Linear(d, hdim), make_activation(activation)]
            d = hdim
        self.net = nn.Sequential(*layers)
        self.out_dim = d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MLPDecoder(nn.Module):
    def __init__(self, shape: tuple[int, int, int], hidden: list[int], latent_dim: int, out_channels: int, activation: str = "relu"):
        super().__init__()
        self.out_shape = (out_channels, *shape[1:])  # (D,) for vectors
        d = latent_dim
        layers: list[nn.Module] = []
        for hdim in reversed(hidden):
            layers += [nn.Linear(d, hdim), make_activation(activation)]
            d = hdim
        layers.append(nn.Linear(d, math.prod(self.out_shape)))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, *self.out_shape)


class LinearDecoder(nn.Module):
    """x = W z + b: a single affine map back to image shape."""

    def __init__(self, shape: tuple[int, int, int], latent_dim: int, out_channels: int):
        super().__init__()
        self.out_shape = (out_channels, *shape[1:])  # (D,) for vectors
        self.linear = nn.Linear(latent_dim, math.prod(self.out_shape))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.linear(z).view(-1, *self.out_shape)


class ViewClassifier(nn.Module):
    """A VGG-style image classifier for a transformation-prediction head (RotNet, Gidaris et al. 2018):
    per stage two 3x3 conv -> BatchNorm -> ReLU, then a 2x2 max-pool; the channels double each stage
    from ``width``; then one more conv block, global average pooling and a linear layer to ``out``
    logits. Up to three stages, fewer for small images (each halves the map)."""

    def __init__(self, shape: tuple[int, int, int], out: int, width: int = 32):
        super().__init__()
        if width < 1:
            raise ConfigError(f"model.head_width must be >= 1, got {width}")
        c, h, w = shape
        stages = max(1, min(3, int(math.log2(max(1, min(h, w)))) - 1))

        def block(i: int, o: int) -> list[nn.Module]:
            return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU()]

        layers: list[nn.Module] = []
        for s in range(stages):
            o = width * 2**s
            layers += [*block(c, o), *block(o, o), nn.MaxPool2d(2)]
            c = o
        self.features = nn.Sequential(*layers, *block(c, c), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(c, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))
