"""A U-Net (Ronneberger et al. 2015) split into the encoder / decoder pair the models expect.

The encoder works at every scale from the full image down to the bottleneck:

    stage s = 0 .. S-1, at resolution H / 2^s:   conv3x3 + act   -> skip s  (channels[s] maps)
                                                  conv4x4 stride 2 + act  (halves the map)
    bottleneck, at H / 2^S:                       flatten -> linear -> act  (the feature vector)

and the decoder climbs back, concatenating the skip of each scale:

    linear -> act -> linear -> act -> reshape to (channels[-1], H / 2^S, W / 2^S)
    stage s = S-1 .. 0:   convT4x4 stride 2 + act (doubles the map, channels[s] maps)
                          concat skip s  ->  conv3x3 + act
    conv1x1 -> the likelihood's parameters at full resolution

so there is one skip per resolution above the bottleneck (28x28 images: 28 and 14, bottleneck
7; 32x32: 32, 16, 8, bottleneck 4; 64x64: 64, 32, 16, 8, bottleneck 4). The bottleneck itself has
no skip: what reaches the decoder at that scale goes through the model's code.

``UNetEncoder.forward(x)`` returns the feature vector only, so the encoder fits wherever an
encoder does; ``UNetEncoder.features_and_skips(x)`` also returns the skip tensors, finest first.
``UNetDecoder.forward(z, skips)`` uses them; with ``skips=None`` every skip is ZERO, which is what
a model's ``decode(z)`` does when it has no image to take skips from (sampling, interpolation,
latent traversals): the output is then what the bottleneck path alone carries, not a
reconstruction, and a network trained with its skips usually decodes blurry or grey images
that way.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError, ModelError
from .networks import make_activation


def _check_halvable(shape: tuple[int, int, int], channels: list[int]) -> None:
    _, h, w = shape
    for _ in channels:
        if h % 2 or w % 2:
            raise ConfigError(f"the U-Net cannot halve a {h}x{w} feature map; use fewer model.conv_channels or data.size")
        h, w = h // 2, w // 2


class UNetEncoder(nn.Module):
    def __init__(self, shape: tuple[int, int, int], channels: list[int], hidden_dim: int, activation: str = "relu"):
        super().__init__()
        if not channels:
            raise ConfigError("the U-Net needs at least one resolution stage: set model.conv_channels to a non-empty list")
        _check_halvable(shape, channels)
        c, h, w = shape
        self.blocks = nn.ModuleList()
        self.downs = nn.ModuleList()
        self.skip_shapes: list[tuple[int, int, int]] = []
        for out in channels:
            self.blocks.append(nn.Sequential(nn.Conv2d(c, out, 3, 1, 1), make_activation(activation)))
            self.skip_shapes.append((out, h, w))
            self.downs.append(nn.Sequential(nn.Conv2d(out, out, 4, 2, 1), make_activation(activation)))
            c, h, w = out, h // 2, w // 2
        self.feature_shape = (c, h, w)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, hidden_dim), make_activation(activation))
        self.out_dim = hidden_dim

    def features_and_skips(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(feature vector, [skip at H, skip at H/2, ...]): the skips finest first."""
        skips = []
        for block, down in zip(self.blocks, self.downs):
            x = block(x)
            skips.append(x)
            x = down(x)
        return self.fc(x), skips

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features_and_skips(x)[0]


class UNetDecoder(nn.Module):
    def __init__(self, shape: tuple[int, int, int], channels: list[int], latent_dim: int, hidden_dim: int,
                 out_channels: int, activation: str = "relu"):
        super().__init__()
        _check_halvable(shape, channels)
        _, h, w = shape
        n = len(channels)
        self.start = (channels[-1], h // 2**n, w // 2**n)
        self.skip_shapes = [(ch, h // 2**s, w // 2**s) for s, ch in enumerate(channels)]
        self.fc = nn.Sequential(
            nn.Linear(latent_dim, hidden_dim), make_activation(activation),
            nn.Linear(hidden_dim, channels[-1] * self.start[1] * self.start[2]), make_activation(activation),
        )
        self.ups = nn.ModuleList()
        self.merges = nn.ModuleList()
        cin = channels[-1]
        for s in reversed(range(n)):  # coarsest first; ups[i] / merges[i] work at scale n-1-i
            self.ups.append(nn.Sequential(nn.ConvTranspose2d(cin, channels[s], 4, 2, 1), make_activation(activation)))
            self.merges.append(nn.Sequential(nn.Conv2d(2 * channels[s], channels[s], 3, 1, 1), make_activation(activation)))
            cin = channels[s]
        self.out = nn.Conv2d(channels[0], out_channels, 1)

    def forward(self, z: torch.Tensor, skips: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Parameters of the pixel likelihood. ``skips``: the encoder's, finest first; None zeros
        them all (see the module docstring)."""
        if skips is not None and len(skips) != len(self.skip_shapes):
            raise ModelError(f"the U-Net decoder takes {len(self.skip_shapes)} skip tensors (one per scale), got {len(skips)}")
        y = self.fc(z).view(-1, *self.start)
        n = len(self.skip_shapes)
        for i, (up, merge) in enumerate(zip(self.ups, self.merges)):
            s = n - 1 - i
            y = up(y)
            skip = torch.zeros_like(y) if skips is None else skips[s]
            if skip.shape != y.shape:
                raise ModelError(f"skip {s} has shape {tuple(skip.shape)}, but the decoder is at {tuple(y.shape)} at that "
                                 "scale; pass the skips of UNetEncoder.features_and_skips for the same images")
            y = merge(torch.cat([y, skip], 1))
        return self.out(y)
