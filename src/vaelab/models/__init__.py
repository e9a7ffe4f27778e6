"""The model registry: a name maps to a class and its config defaults."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..config import from_dict
from ..errors import ConfigError
from .ae import AE, AEConfig
from .base import Autoencoder, LossOutput, ModelConfig
from .vae import VAE, VAEConfig


@dataclass
class ModelSpec:
    cls: type[Autoencoder]
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)


MODELS: dict[str, ModelSpec] = {}


def register(name: str, cls: type[Autoencoder], description: str, **defaults: Any) -> None:
    MODELS[name] = ModelSpec(cls, description, defaults)


register("ae", AE, "undercomplete autoencoder (deterministic code)")
register("vae", VAE, "variational autoencoder, Bernoulli or Gaussian likelihood")


def get_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    return MODELS[name]


def make_config(name: str, overrides: dict[str, Any] | None = None) -> ModelConfig:
    """The typed config of model ``name``: registry defaults, then ``overrides``."""
    spec = get_spec(name)
    data = {**spec.defaults, **(overrides or {}), "name": name}
    return from_dict(spec.cls.config_class, data, prefix="model.")


def build(config: ModelConfig, image_shape: tuple[int, int, int] | None = None) -> Autoencoder:
    if image_shape is not None:
        config.image_shape = list(image_shape)
    return get_spec(config.name).cls(config)


__all__ = ["AE", "AEConfig", "Autoencoder", "LossOutput", "MODELS", "ModelConfig", "VAE", "VAEConfig", "build", "get_spec", "make_config", "register"]
