"""``build_networks``: the encoder and decoder of an architecture name. It sits above both
networks.py and unet.py, so that neither imports the other's builder (no import cycle)."""
from __future__ import annotations

import math

from torch import nn

from ..errors import ConfigError
from .networks import (ConvDecoder, ConvEncoder, LinearDecoder, MLPDecoder, MLPEncoder, ResDecoder, ResEncoder, auto_conv_channels,
                       check_latent_channels)
from .unet import UNetDecoder, UNetEncoder


def build_networks(arch: str, shape: tuple[int, int, int], latent_dim: int, out_channels: int, *,
                   conv_channels: list[int] | None, hidden_dim: int, mlp_hidden: list[int], activation: str,
                   res_blocks: int = 1, latent_channels: int = 0) -> tuple[nn.Module, nn.Module, int]:
    """(encoder, decoder, encoder feature size) for ``arch`` in {'conv', 'resnet', 'mlp', 'linear', 'unet'}.
    'unet': the decoder takes the encoder's skip tensors as well as the code (see vaelab.nn.unet).
    ``latent_channels`` > 0 (conv, resnet): the code is a map of that many channels at the last
    stage's resolution; the encoder then ends at its last feature map (flattened), with no
    fully connected layer, and the decoder starts with a 3x3 conv (the model's heads are MapHeads)."""
    check_latent_channels(arch, latent_channels)
    if arch == "unet":
        chans = conv_channels or auto_conv_channels(shape[1])
        enc = UNetEncoder(shape, chans, hidden_dim, activation)
        return enc, UNetDecoder(shape, chans, latent_dim, hidden_dim, out_channels, activation), enc.out_dim
    if arch == "conv":
        chans = conv_channels or auto_conv_channels(shape[1])
        enc = ConvEncoder(shape, chans, hidden_dim, activation, to_map=latent_channels > 0)
        dec = ConvDecoder(shape, chans, latent_dim, hidden_dim, out_channels, activation, latent_channels)
        return enc, dec, enc.out_dim
    if arch == "resnet":
        chans = conv_channels or auto_conv_channels(shape[1])
        enc = ResEncoder(shape, chans, hidden_dim, activation, res_blocks, to_map=latent_channels > 0)
        dec = ResDecoder(shape, chans, latent_dim, hidden_dim, out_channels, activation, res_blocks, latent_channels)
        return enc, dec, enc.out_dim
    if arch == "linear":  # no hidden layer, no activation: the code head is the whole encoder
        d = math.prod(shape)
        return nn.Flatten(), LinearDecoder(shape, latent_dim, out_channels), d
    if arch == "mlp":
        enc = MLPEncoder(shape, mlp_hidden, activation)
        return enc, MLPDecoder(shape, mlp_hidden, latent_dim, out_channels, activation), enc.out_dim
    raise ConfigError(f"unknown architecture {arch!r}; choose 'conv', 'resnet', 'mlp', 'linear' or 'unet'")
