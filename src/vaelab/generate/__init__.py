"""Generation: samplers with fit()/sample(), interpolation and latent traversals."""
from .samplers import SAMPLERS, GMMSampler, PriorSampler, make_sampler
from .walks import interpolate, latent_traversal, slerp

__all__ = ["SAMPLERS", "GMMSampler", "PriorSampler", "interpolate", "latent_traversal", "make_sampler", "slerp"]
