"""Building blocks sized from the image shape: MLP and convolutional encoders and decoders."""
from .bidirectional import BI_ARCHS, BiConv2d, BiConvNet, BiMapHead, BiLinear, BiMLP, BiResBlock, BiResNet, build_bidirectional
from .build import build_networks
from .networks import (ACTIVATIONS, ConvDecoder, ConvEncoder, MapHead, MLPDecoder, MLPEncoder, ViewClassifier, auto_conv_channels,
                       code_map_shape, make_activation)
from .unet import UNetDecoder, UNetEncoder

__all__ = ["ACTIVATIONS", "BI_ARCHS", "BiConv2d", "BiConvNet", "BiLinear", "BiMapHead", "BiMLP", "BiResBlock", "BiResNet", "ConvDecoder",
           "ConvEncoder", "MapHead", "MLPDecoder", "MLPEncoder", "auto_conv_channels", "build_bidirectional", "build_networks", "code_map_shape",
           "make_activation", "UNetDecoder", "UNetEncoder", "ViewClassifier"]
