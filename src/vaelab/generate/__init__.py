"""Generation: samplers with fit()/sample(), interpolation and latent traversals."""
from .samplers import SAMPLERS, GMMSampler, PriorSampler, VampSampler, make_sampler, register_sampler
from .flows import FlowSampler, IAFSampler, MAFSampler, TwoStageSampler  # registers maf, iaf, two-stage
from .code_prior import CodePriorSampler  # registers code-prior
from .walks import interpolate, latent_traversal, slerp

__all__ = ["SAMPLERS", "CodePriorSampler", "FlowSampler", "GMMSampler", "IAFSampler", "MAFSampler", "PriorSampler", "TwoStageSampler", "VampSampler",
           "interpolate", "latent_traversal", "make_sampler", "register_sampler", "slerp"]
