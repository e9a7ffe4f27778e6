"""Generation: samplers with fit()/sample(), fitted samplers kept in the run directory, interpolation
and latent traversals."""
from .samplers import SAMPLERS, GMMSampler, PriorSampler, VampSampler, make_sampler, register_sampler
from .flows import FlowSampler, IAFSampler, MAFSampler, TwoStageSampler  # registers maf, iaf, two-stage
from .code_prior import CodePriorSampler  # registers code-prior
from .cache import fit_sampler, kept_in, sampler_key
from .walks import interpolate, latent_traversal, slerp

__all__ = ["SAMPLERS", "CodePriorSampler", "FlowSampler", "GMMSampler", "IAFSampler", "MAFSampler", "PriorSampler", "TwoStageSampler", "VampSampler",
           "fit_sampler", "interpolate", "kept_in", "latent_traversal", "make_sampler", "register_sampler", "sampler_key", "slerp"]
