"""The models. Each module of this package registers the models it defines with
``@register_model``; importing the package imports every module (no central list), so a new
model is one new file here, or one file of your own passed with ``--import``."""
from __future__ import annotations

from typing import Any

from ..config import from_dict
from ..errors import ModelError
from .base import Autoencoder, LossOutput, ModelConfig
from .embed import embed_images
from .registry import (CAPABILITIES, MODELS, ModelSpec, discover, get_spec, import_models, load_entry_points,
                       models_with, register_model, require, trust_imports)

discover()

from .ae import AE, AEConfig, ContractiveAE, DenoisingAE, SparseAE  # noqa: E402
from .bvae import BIWAE, BVAE, BetaTCBVAE, BVAEConfig  # noqa: E402
from .grad2vae import Grad2VAE  # noqa: E402
from .ssvae import SSVAE, SSVAEConfig  # noqa: E402
from .vae import IWAE, VAE, BetaTCVAE, VAEConfig  # noqa: E402


def make_config(name: str, overrides: dict[str, Any] | None = None) -> ModelConfig:
    """The typed config of model ``name``: registry defaults, then ``overrides``."""
    spec = get_spec(name)
    data = {**spec.defaults, **(overrides or {}), "name": name}
    cfg = from_dict(spec.cls.config_class, data, prefix="model.")
    cfg._set_keys = set(spec.defaults) | set(overrides or {})  # chosen, not defaulted (fill_from_data reads it)
    return cfg


def build(config: ModelConfig, image_shape: tuple[int, ...] | None = None, n_train: int | None = None,
          encoder: Any = None, decoder: Any = None, num_classes: int | None = None) -> Autoencoder:
    """Build the model of ``config``; ``image_shape`` (one example's shape), ``n_train`` and
    ``num_classes`` (of the labels, None when unlabelled) come from the training data.
    ``encoder`` / ``decoder``: your own networks (see Autoencoder)."""
    if image_shape is not None:
        config.fill_from_data(n_train, tuple(image_shape))
    config.fill_from_labels(num_classes)
    cls = get_spec(config.name).cls
    if encoder is None and decoder is None:
        _check_size(cls, config)
        return _construct(lambda: cls(config), config)
    return _construct(lambda: cls(config, encoder=encoder, decoder=decoder), config)


# the most parameters a model may have (4 GiB of float32 weights): a config beyond it is a typo
MAX_PARAMETERS = 1 << 30


def _construct(make: Any, config: ModelConfig) -> Autoencoder:
    """``make()``, with the errors torch raises for networks that cannot be laid out on the image
    (a stage that shrinks it to nothing, a zero width) as one ModelError naming the options."""
    from ..errors import VaelabError

    try:
        return make()
    except VaelabError:
        raise
    except (RuntimeError, ValueError, ZeroDivisionError, IndexError, OverflowError) as e:
        raise ModelError(f"the {config.name} model cannot be built with these options (latent_dim={config.latent_dim}, "
                         f"arch={config.arch}, conv_channels={config.conv_channels}, mlp_hidden={config.mlp_hidden}, "
                         f"image_shape={config.image_shape}): {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}. "
                         "Choose smaller or fewer stages, or the defaults") from None


def _check_size(cls: type, config: ModelConfig) -> None:
    """Count the parameters on torch's meta device (nothing allocated) and refuse a model of more
    than MAX_PARAMETERS before its weights are allocated."""
    import copy

    import torch

    try:
        with torch.device("meta"):
            n = sum(p.numel() for p in cls(copy.deepcopy(config)).parameters())
    except Exception:  # noqa: BLE001 - a model that cannot be laid out on meta is built (and checked) for real
        return
    if n > MAX_PARAMETERS:
        raise ModelError(f"these options make a {config.name} model of {n:,} parameters, more than {MAX_PARAMETERS:,}; "
                         "choose smaller latent_dim, hidden_dim, conv_channels or mlp_hidden")


__all__ = ["AE", "AEConfig", "Autoencoder", "BIWAE", "BVAE", "BVAEConfig", "BetaTCBVAE", "BetaTCVAE", "CAPABILITIES",
           "ContractiveAE", "DenoisingAE", "Grad2VAE", "IWAE", "LossOutput", "MODELS", "ModelConfig", "ModelSpec", "SSVAE",
           "SSVAEConfig", "SparseAE", "VAE", "VAEConfig", "build", "discover", "embed_images", "get_spec", "import_models",
           "load_entry_points", "make_config", "models_with", "register_model", "require", "trust_imports"]
