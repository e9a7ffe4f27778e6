"""Building blocks sized from the image shape: MLP and convolutional encoders and decoders."""
from .networks import ACTIVATIONS, ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder, auto_conv_channels, build_networks, make_activation

__all__ = ["ACTIVATIONS", "ConvDecoder", "ConvEncoder", "MLPDecoder", "MLPEncoder", "auto_conv_channels", "build_networks", "make_activation"]
