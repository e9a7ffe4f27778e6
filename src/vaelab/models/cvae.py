"""The conditional VAE (Sohn, Lee & Yan, "Learning structured output representation using deep
conditional generative models", NeurIPS 2015): q(z | x, y) and p(x | z, y) for a class label y.

The label is an embedding e(y) (``label_dim`` numbers, learned). The encoder's features are
concatenated with e(y) before the posterior's mean and log-variance heads; the decoder sees the code
modulated by the label, z * (1 + g(y)) + b(y) (FiLM, Perez et al. 2018), with g and b one linear
map of e(y), initialised at zero so training starts from the unconditional VAE. The prior is N(0, I).

A label slot of its own, index ``num_classes``, is the null label "no class". In training, a
share ``label_dropout`` of the images is shown with the null label (as classifier-free guidance
does, Ho & Salimans 2022), so the same network is also an unconditional VAE: ``encode(x)`` and
``decode(z)`` without a label use the null label, and that is the model every label-free job
measures (``vaelab evaluate``'s NLL, the detector, the report's reconstructions). ``sample(n,
label=K)`` and ``vaelab sample --class K`` condition on class K."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.distributions import Distribution, Independent

from ..errors import ConfigError, ModelError
from ..objectives import diag_gaussian
from .base import LossOutput
from .registry import register_model
from .vae import VAE, VAEConfig


@dataclass
class CVAEConfig(VAEConfig):
    name: str = "cvae"
    num_classes: int | None = None  # classes of the labels; filled in from the training labels when trained
    label_dim: int = 16  # size of the learned label embedding
    label_dropout: float = 0.1  # share of training images shown with the null label (the unconditional model)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_classes is not None and self.num_classes < 2:
            raise ConfigError(f"model.num_classes must be >= 2, got {self.num_classes}")
        if self.label_dim < 1:
            raise ConfigError(f"model.label_dim (label embedding size) must be >= 1, got {self.label_dim}")
        if not 0 <= self.label_dropout < 1:
            raise ConfigError(f"model.label_dropout must be in [0, 1) (0: always conditioned), got {self.label_dropout}")

    def fill_from_labels(self, num_classes: int | None) -> None:
        if self.num_classes is None:
            self.num_classes = num_classes


@register_model("cvae", "conditional VAE: encoder and decoder conditioned on the class label (sample --class K)")
class CVAE(VAE):
    """loss = rec + beta * kl_weight * KL(q(z|x,y) || N(0, I)) with -log p(x|z,y), the label
    replaced by the null label for a ``label_dropout`` share of the images (module docstring)."""

    code_maps = False  # its heads and decoder also take the label

    config_class = CVAEConfig
    takes_labels = True
    conditional = True
    custom_networks = False

    def __init__(self, config: CVAEConfig, encoder: nn.Module | None = None, decoder: nn.Module | None = None):
        if config.num_classes is None:
            raise ModelError("cvae needs the number of classes: train it on labelled data (vaelab train fills in "
                             "model.num_classes) or set model.num_classes=K")
        if config.capacity_max is not None:
            raise ConfigError("model.capacity_max anneals vae / beta-vae; cvae has no capacity annealing: leave it null")
        super().__init__(config, encoder, decoder)
        self.num_classes = config.num_classes
        self.label_embedding = nn.Embedding(config.num_classes + 1, config.label_dim)  # the last row: the null label
        self.film = nn.Linear(config.label_dim, 2 * config.latent_dim)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def build_heads(self, config: CVAEConfig) -> None:
        self.mu = nn.Linear(self.feature_dim + config.label_dim, config.latent_dim)
        self.logvar = nn.Linear(self.feature_dim + config.label_dim, config.latent_dim)

    # -- labels --------------------------------------------------------------------------------
    def label_index(self, labels: torch.Tensor | int | None, n: int, device: torch.device) -> torch.Tensor:
        """[n] label indices: the null label where ``labels`` is None or -1 (unknown); a class
        outside 0..num_classes-1 is refused."""
        null = self.num_classes
        if labels is None:
            return torch.full((n,), null, dtype=torch.long, device=device)
        y = torch.as_tensor(labels, device=device).long()
        if y.ndim == 0 and not -1 <= int(y) < null:
            raise ModelError(f"class {int(y)} is outside 0..{null - 1} (this cvae has model.num_classes={null})")
        y = y.expand(n) if y.ndim == 0 else y
        if y.shape != (n,):
            raise ModelError(f"labels must have one entry per example ({n}), got shape {tuple(y.shape)}")
        if y.device.type == "cpu" and bool(((y < -1) | (y >= null)).any()):
            raise ModelError(f"a label is outside 0..{null - 1} (this cvae has model.num_classes={null}; -1 = unknown)")
        return torch.where(y < 0, torch.full_like(y, null), y)

    def _posterior(self, x: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        he = torch.cat([self.encoder(x).flatten(1), self.label_embedding(idx)], 1)
        return self.mu(he), self.logvar(he).clamp(-30.0, 20.0)

    def _decode(self, z: torch.Tensor, idx: torch.Tensor) -> Distribution:
        g, b = self.film(self.label_embedding(idx)).chunk(2, -1)
        return self.likelihood(self.decoder(z * (1 + g) + b))

    def posterior_params(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self._posterior(x, self.label_index(labels, x.shape[0], x.device))

    def encode(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> Independent:
        """q(z | x, y); without labels, q(z | x, null label)."""
        return diag_gaussian(*self.posterior_params(x, labels))

    def decode(self, z: torch.Tensor, labels: torch.Tensor | int | None = None) -> Distribution:
        """p(x | z, y); without labels, p(x | z, null label)."""
        return self._decode(z, self.label_index(labels, z.shape[0], z.device))

    def loss(self, x: torch.Tensor, kl_weight: float | torch.Tensor = 1.0, labels: torch.Tensor | None = None) -> LossOutput:
        null = self.num_classes
        y = self.label_index(None if labels is None else labels.to(x.device), x.shape[0], x.device)
        if self.training and self.config.label_dropout > 0:
            drop = torch.rand(x.shape[0], device=x.device) < self.config.label_dropout
            y = torch.where(drop, torch.full_like(y, null), y)
        q = diag_gaussian(*self._posterior(x, y))
        z = q.rsample()
        rec = -self._decode(z, y).log_prob(x)
        kl = self.kl(q, z)
        terms = {"rec": rec, "kl": kl, "nelbo": rec + kl, "conditioned": (y < null).to(rec.dtype)}
        return LossOutput((rec + (self.config.beta * kl_weight) * kl).mean(), terms)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, label: int | None = None) -> torch.Tensor:
        """``n`` new examples of class ``label`` (None: the unconditional model's)."""
        z = self.sample_prior(n, generator)
        return self.mean_image(self.decode(z, label))
