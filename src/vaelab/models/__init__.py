"""The model registry: a name maps to a class and its config defaults."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..config import from_dict
from ..errors import ConfigError
from .ae import AE, AEConfig, ContractiveAE, DenoisingAE, SparseAE
from .base import Autoencoder, LossOutput, ModelConfig, embed_images
from .vae import IWAE, VAE, BetaTCVAE, VAEConfig
from .bvae import BIWAE, BVAE, BetaTCBVAE, BVAEConfig


@dataclass
class ModelSpec:
    cls: type[Autoencoder]
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)


MODELS: dict[str, ModelSpec] = {}


def register(name: str, cls: type[Autoencoder], description: str, **defaults: Any) -> None:
    MODELS[name] = ModelSpec(cls, description, defaults)


register("ae", AE, "undercomplete autoencoder (deterministic code)")
register("linear-ae", AE, "linear encoder and decoder; with squared error it spans the PCA subspace", arch="linear")
register("sparse-ae", SparseAE, "AE + sparsity on the code: KL to a target rate, or L1")
register("denoising-ae", DenoisingAE, "AE trained on Gaussian- or masking-corrupted inputs, scored on clean ones")
register("contractive-ae", ContractiveAE, "AE + squared Frobenius norm of the encoder Jacobian")
register("vae", VAE, "variational autoencoder, Bernoulli or Gaussian likelihood")
register("beta-vae", VAE, "VAE with the KL weighted by beta (default 4)", beta=4.0)
register("beta-tcvae", BetaTCVAE, "ELBO split into index-code MI, total correlation, dimension-wise KL, each weighted")
register("iwae", IWAE, "importance-weighted autoencoder, k samples vectorised")
register("bvae", BVAE, "bidirectional VAE: one network encodes forward and decodes backward through the same weights (BELBO)")
register("beta-bvae", BVAE, "bidirectional VAE with the KL weighted by beta (default 4)", beta=4.0)
register("beta-tcbvae", BetaTCBVAE, "bidirectional beta-TCVAE: MI, TC and dimension-wise KL on the shared network")
register("biwae", BIWAE, "bidirectional importance-weighted autoencoder, k samples vectorised")

from .ssvae import SSVAE, SSVAEConfig  # noqa: E402

register("ssvae", SSVAE, "semi-supervised VAE: ELBO on every image + xi * label NLL of a classifier on z (model.n_labels)")

from .grad2vae import Grad2VAE  # noqa: E402

register("grad2vae", Grad2VAE, "conv VAE with online second-order attention (d^2 z_i / dL_e1^2 @ 1) fused into its decoder")


def get_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    return MODELS[name]


def make_config(name: str, overrides: dict[str, Any] | None = None) -> ModelConfig:
    """The typed config of model ``name``: registry defaults, then ``overrides``."""
    spec = get_spec(name)
    data = {**spec.defaults, **(overrides or {}), "name": name}
    return from_dict(spec.cls.config_class, data, prefix="model.")


def build(config: ModelConfig, image_shape: tuple[int, int, int] | None = None, n_train: int | None = None) -> Autoencoder:
    """Build the model of ``config``; ``image_shape`` and ``n_train`` come from the training data."""
    if image_shape is not None:
        config.fill_from_data(n_train, image_shape)
    return get_spec(config.name).cls(config)


__all__ = ["BIWAE", "BVAE", "BVAEConfig", "BetaTCBVAE", "embed_images", "AE", "AEConfig", "BetaTCVAE", "ContractiveAE", "DenoisingAE", "IWAE", "SparseAE", "Autoencoder", "LossOutput", "MODELS", "ModelConfig", "VAE", "VAEConfig", "build", "get_spec", "make_config", "register", "SSVAE", "SSVAEConfig"]
