"""The likelihood-ratio score of a hierarchical VAE (Havtorn, Frellsen, Hauberg & Maaløe,
"Hierarchical VAEs Know What They Don't Know", ICML 2021, arXiv:2102.08248).

| name  | what                                                                              |
|-------|-----------------------------------------------------------------------------------|
| `llr` | LLR^{>k} = L - L^{>k}: the ELBO minus the bound with the lowest k levels from the prior |

The paper's L^{>k} is the bound in which the k lowest latent levels (those nearest the data, which
carry low-level features that generalise across data sets) are drawn from the conditional prior,
and only the levels above them are inferred from x:

    L^{>k}(x) = E_{q(z_>k | x) p(z_<=k | z_>k)} [ log p(x | z) p(z_>k) / q(z_>k | x) ]

and L = L^{>0} is the ELBO. An image whose high-level latents explain it, as the training images'
do, loses little when its low-level latents are replaced by the prior's guesses; an image that is
likely only through its low-level statistics (the OOD images a plain likelihood ranks as normal)
loses much. The score is LLR^{>k}(x) = L(x) - L^{>k}(x), as in the paper: higher = more anomalous.

Both bounds are estimated here with ``n_samples`` draws each, the per-level KLs analytic given
the upper levels (``HVAE.bound_above``); the two share their standard-normal noise, so that the
levels above k are the same draws in both, and that noise is drawn once from the fit's seed and
shared by every image, as the nelbo score's is: an image gets the same score in any batch. The
authors' released script (hvae-oodd, ``scripts/ood-llr.py``) takes the conditional prior's mode
for the lowest k levels; here they are drawn, as the definition above says."""
from __future__ import annotations

from typing import Annotated

import torch

from ...errors import ConfigError, ModelError
from ...models import Autoencoder
from .base import Score
from .registry import register_score


@register_score("llr", "L - L^{>k}: the ELBO minus the bound with the lowest k levels from the prior (Havtorn et al. 2021; hvae)")
class LLRScore(Score):
    """LLR^{>k} = L - L^{>k} of a hierarchical VAE (hvae); see the module docstring."""

    needs_density = True
    why_not_exportable = "the exporter does not bundle the hierarchical model's top-down pass yet"

    def __init__(self, k: Annotated[int, "llr: the lowest k latent levels are drawn from the conditional prior in L^{>k}"] = 1,
                 n_samples: Annotated[int, "llr: draws of each bound per image"] = 1):
        if k < 1:
            raise ConfigError(f"k (latent levels drawn from the prior in the llr score) must be >= 1, got {k}")
        if n_samples < 1:
            raise ConfigError(f"n_samples (draws of each bound in the llr score) must be >= 1, got {n_samples}")
        self.k, self.n_samples = k, n_samples
        self.seed_ = 0

    @classmethod
    def describe_needs(cls) -> str:
        return "a hierarchical VAE (hvae)"

    def check(self, model: Autoencoder) -> None:
        if not getattr(model, "hierarchical", False):
            raise ModelError(f"the 'llr' score compares bounds over the levels of a hierarchical VAE; {model.config.name} "
                             "has one level of latents. Train one with: vaelab train hvae --data ...")
        super().check(model)
        levels = len(model.dims)
        if self.k >= levels:
            raise ModelError(f"the 'llr' score's k={self.k} must be below the model's {levels} levels (at least the top "
                             f"level is inferred from the image); use k in 1..{levels - 1}")

    def fit(self, model: Autoencoder, images: torch.Tensor, batch_size: int = 500, seed: int = 0) -> "LLRScore":
        super().fit(model, images, batch_size, seed)
        self.seed_ = seed
        return self

    def noise(self, model: Autoencoder) -> list[torch.Tensor]:
        """The shared noise, per level bottom to top [n_samples, 1, units], drawn from the fit's seed."""
        g = torch.Generator().manual_seed(self.seed_)
        p = next(model.parameters())
        return [torch.randn(self.n_samples, 1, d, generator=g).to(p) for d in model.dims]

    def batch(self, model: Autoencoder, x: torch.Tensor) -> torch.Tensor:
        eps = self.noise(model)
        elbo = model.bound_above(x, 0, self.n_samples, eps).mean(0)
        return elbo - model.bound_above(x, self.k, self.n_samples, eps).mean(0)
