"""The VampPrior VAE (Tomczak & Welling, "VAE with a VampPrior", AISTATS 2018).

The prior is the variational mixture of posteriors of K learned pseudo-inputs u_1..u_K:

    p(z) = (1/K) sum_k q(z | u_k)

with q the model's own encoder. The pseudo-inputs are parameters of the model, shaped like one
example and initialised from uniform noise; on images they pass through a hard clip to [0, 1]
(the paper's hardtanh), so that each is an image the encoder can take. The KL to a mixture has
no closed form: ``kl`` (the contract's) takes the one-sample Monte Carlo estimate
log q(z|x) - log p(z) at the reconstruction's z, and sampling draws from ``prior()``."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.distributions import Categorical, MixtureSameFamily

from ..errors import ConfigError
from ..objectives import diag_gaussian
from .registry import register_model
from .vae import VAE, VAEConfig


@dataclass
class VampConfig(VAEConfig):
    name: str = "vamp"
    n_pseudo: int = 50  # K, learned pseudo-inputs whose posteriors make the mixture prior (equal weights)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_pseudo < 1:
            raise ConfigError(f"model.n_pseudo (pseudo-inputs of the VampPrior) must be >= 1, got {self.n_pseudo}")


@register_model("vamp", "VAE with the VampPrior: a mixture of the posteriors of K learned pseudo-inputs")
class VampVAE(VAE):
    """loss = rec + beta * KL(q(z|x) || (1/K) sum_k q(z|u_k)), the KL Monte Carlo (Tomczak &
    Welling 2018). The VAE's loss, with a learned prior."""

    config_class = VampConfig

    def __init__(self, config: VampConfig, encoder: nn.Module | None = None, decoder: nn.Module | None = None):
        super().__init__(config, encoder, decoder)
        self.pseudo_inputs = nn.Parameter(torch.rand(config.n_pseudo, *self.image_shape))

    def pseudo_images(self) -> torch.Tensor:
        """The K pseudo-inputs as the encoder sees them: clipped to [0, 1] on images, unchanged on vectors."""
        return self.pseudo_inputs if self.is_vector else self.pseudo_inputs.clamp(0.0, 1.0)

    def prior(self) -> MixtureSameFamily:
        # posterior_params, not encode: the pseudo-inputs are parameters, not user input to check
        components = diag_gaussian(*self.posterior_params(self.pseudo_images()))  # batch (K,), event (d,)
        logits = torch.zeros(self.config.n_pseudo, device=self.pseudo_inputs.device, dtype=self.pseudo_inputs.dtype)
        return MixtureSameFamily(Categorical(logits=logits), components)
