"""Likelihood scores corrected for what a likelihood cannot tell apart: a model trained on one set
can give simpler images of another set a *higher* likelihood than its own (Nalisnick et al. 2019:
a Fashion-MNIST model ranks MNIST digits as more normal). Each score here removes the part of
-log p(x) that comes from an image's low-level statistics. Both need a posterior density and a prior.

| name               | what                                                                                  |
|--------------------|---------------------------------------------------------------------------------------|
| `complexity`       | -log2 p(x) minus the bits of ``x`` under a lossless codec (PNG or WebP, via Pillow): Serrà et al. 2020 |
| `likelihood_ratio` | log p_background(x) - log p(x), the background model of the same architecture trained on inputs with a share ``perturb_rate`` of their pixels replaced by noise: Ren et al. 2019 |

The model's -log p(x) is the ELBO bound (``n_samples`` posterior draws with common noise, as the
``nelbo`` score) or, with ``bound="nll"``, the importance-sampled NLL. With a discretised 8-bit
likelihood (``model.likelihood=dgaussian`` or ``dlogistic``) the model's bits and the codec's are both
code lengths of the same image, the setting the correction was made for."""
from __future__ import annotations

import io
import logging
import math
import tempfile
from typing import Annotated, Literal

import numpy as np
import torch

from ...errors import ConfigError
from ...models import Autoencoder
from .base import Score
from .likelihood import NELBOScore, NLLScore
from .registry import register_score

log = logging.getLogger("vaelab")
LN2 = math.log(2.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """Float images in [0, 1] [B, C, H, W] as the 8-bit arrays [B, H, W, C] they were (exact for x = k / 255)."""
    return (x.detach().cpu().double() * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def code_length_bits(images: np.ndarray, codec: str = "png", level: int = 9) -> np.ndarray:
    """The size in bits of each 8-bit image [B, H, W, C] (C = 1 or 3) encoded losslessly by Pillow:
    ``png`` at zlib ``level`` (0-9) or lossless ``webp`` at effort ``level`` (0-6 as Pillow's method)."""
    from PIL import Image

    out = np.empty(len(images), dtype=np.float64)
    for i, a in enumerate(images):
        im = Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)
        buf = io.BytesIO()
        if codec == "png":
            im.save(buf, format="PNG", compress_level=level)
        else:
            im.save(buf, format="WEBP", lossless=True, quality=100, method=min(level, 6))
        out[i] = 8 * buf.tell()
    return out


def _bound(bound: str, n_samples: int, nll_k: int) -> Score:
    return NELBOScore(n_samples) if bound == "nelbo" else NLLScore(nll_k)


def _synced(inner: Score, seed: int) -> Score:
    """``inner`` drawing its common noise from ``seed`` (the outer score's fit seed, which a saved
    detector keeps while the inner score is built afresh)."""
    if isinstance(inner, NELBOScore) and inner.seed_ != seed:
        inner.seed_, inner.noise_ = seed, None
    return inner


@register_score("complexity", "NLL in bits minus a lossless codec's bits of the image (Serra et al. 2020)")
class ComplexityScore(Score):
    """S(x) = -log2 p(x) - L(x), L the image's size in bits under a lossless codec: an image that is
    merely simple (few bits under PNG too) no longer looks normal. Not exported: the codec is Pillow's,
    outside torch."""

    needs_density = True
    image_only = True
    why_not_exportable = "the code length comes from Pillow's codec, outside torch"

    def __init__(self, codec: Annotated[Literal["png", "webp"], "the lossless codec of the complexity score"] = "png",
                 codec_level: Annotated[int, "the codec's effort: PNG's zlib level 0-9, WebP's method 0-6"] = 9,
                 bound: Annotated[Literal["nelbo", "nll"], "the model's -log p(x): the ELBO bound or the importance-sampled NLL"] = "nelbo",
                 n_samples: Annotated[int, "posterior samples of the nelbo score"] = 1,
                 nll_k: Annotated[int, "importance samples of the nll score"] = 100):
        if codec == "png" and not 0 <= codec_level <= 9 or codec == "webp" and not 0 <= codec_level <= 6:
            raise ConfigError(f"codec_level is 0-9 for png and 0-6 for webp; got {codec_level} for {codec}")
        self.codec, self.codec_level, self.bound = codec, codec_level, bound
        self.n_samples, self.nll_k = n_samples, nll_k
        self._nll = _bound(bound, n_samples, nll_k)
        self.seed_ = 0

    def fit(self, model: Autoencoder, images: torch.Tensor, batch_size: int = 500, seed: int = 0) -> "ComplexityScore":
        super().fit(model, images, batch_size, seed)
        self._nll.fit(model, images, batch_size, seed)
        self.seed_ = seed
        return self

    def batch(self, model: Autoencoder, x: torch.Tensor) -> torch.Tensor:
        nll_bits = _synced(self._nll, self.seed_).batch(model, x).double() / LN2  # in double: the codec's bits are exact
        bits = torch.from_numpy(code_length_bits(to_uint8(x), self.codec, self.codec_level))
        return nll_bits - bits.to(nll_bits)


def perturb(images: torch.Tensor, rate: float, generator: torch.Generator) -> torch.Tensor:
    """8-bit images with each sub-pixel replaced, with probability ``rate``, by a uniform level (Ren et al. 2019)."""
    hit = torch.rand(images.shape, generator=generator) < rate
    noise = torch.randint(0, 256, images.shape, generator=generator, dtype=torch.uint8)
    return torch.where(hit, noise, images)


def train_background(model: Autoencoder, images: torch.Tensor, rate: float, epochs: int, seed: int,
                     batch_size: int = 128) -> Autoencoder:
    """A model of ``model``'s class and config trained by vaelab's trainer on ``images`` perturbed at ``rate``."""
    from ...data import ImageSet
    from ...train import RunConfig, fit
    from ...train.config import TrainConfig

    g = torch.Generator().manual_seed(seed)
    noisy = perturb(images.to(torch.uint8).cpu(), rate, g)
    n_val = max(1, len(noisy) // 20)
    sets = (ImageSet(noisy[n_val:], name="perturbed"), ImageSet(noisy[:n_val], name="perturbed"),
            ImageSet(noisy[:n_val], name="perturbed"))
    cfg = RunConfig(model=type(model.config)(**{k: v for k, v in vars(model.config).items() if not k.startswith("_")}),
                    train=TrainConfig(epochs=epochs, batch_size=batch_size), seed=seed)  # its epochs show as a run's do (--quiet silences them)
    log.info("training the likelihood ratio's background model: %d epochs on %d perturbed images (rate %g)",
             epochs, len(noisy) - n_val, rate)
    with tempfile.TemporaryDirectory(prefix="vaelab-background-") as tmp:
        background, _ = fit(cfg, tmp + "/run", data=sets)
    return background.eval()


@register_score("likelihood_ratio", "log-likelihood ratio against a background model trained on perturbed images (Ren et al. 2019)")
class LikelihoodRatioScore(Score):
    """S(x) = log p_background(x) - log p(x) (each from its ELBO with common noise, or its NLL): the
    background model learns the low-level statistics, so the ratio keeps what the model learnt of the
    normal images' semantics. ``fit`` trains the background model (same class and config) on the
    training images perturbed at ``perturb_rate`` for ``background_epochs``; ``use_background`` sets
    one trained elsewhere. Its weights are part of the fitted state a saved detector keeps."""

    needs_density = True
    image_only = True
    why_not_exportable = "it runs a second model, the background model, which the exporter does not bundle"

    def __init__(self, perturb_rate: Annotated[float, "share of sub-pixels replaced by noise for the background model"] = 0.2,
                 background_epochs: Annotated[int, "training epochs of the background model"] = 5,
                 bound: Annotated[Literal["nelbo", "nll"], "each model's -log p(x): the ELBO bound or the importance-sampled NLL"] = "nelbo",
                 n_samples: Annotated[int, "posterior samples of the nelbo score"] = 1,
                 nll_k: Annotated[int, "importance samples of the nll score"] = 100):
        if not 0 < perturb_rate < 1:
            raise ConfigError(f"perturb_rate is a share of sub-pixels in (0, 1), got {perturb_rate}")
        if background_epochs < 1:
            raise ConfigError(f"background_epochs must be >= 1, got {background_epochs}")
        self.perturb_rate, self.background_epochs, self.bound = perturb_rate, background_epochs, bound
        self.n_samples, self.nll_k = n_samples, nll_k
        self._nll, self._bg_nll = _bound(bound, n_samples, nll_k), _bound(bound, n_samples, nll_k)
        self._background: Autoencoder | None = None
        self.seed_ = 0
        self.background_state_: torch.Tensor | None = None  # the background model's weights, flattened (saved with a detector)

    def use_background(self, background: Autoencoder) -> "LikelihoodRatioScore":
        """Score against ``background`` (a model of the same class and config) instead of training one."""
        self._background = background.eval()
        self.background_state_ = torch.cat([t.detach().reshape(-1).double().cpu()
                                            for t in background.state_dict().values() if t.is_floating_point()])
        return self

    def _background_of(self, model: Autoencoder) -> Autoencoder:
        """The background model, rebuilt from ``background_state_`` when it was loaded from a saved detector."""
        if self._background is None:
            if self.background_state_ is None:
                raise ConfigError("the likelihood_ratio score has no background model: fit it first")
            import copy

            bg = copy.deepcopy(model)
            state, i = bg.state_dict(), 0
            for k, t in state.items():
                if t.is_floating_point():
                    state[k] = self.background_state_[i : i + t.numel()].view_as(t).to(t)
                    i += t.numel()
            if i != self.background_state_.numel():
                raise ConfigError("the likelihood_ratio score's background weights do not fit this model's architecture")
            bg.load_state_dict(state)
            self._background = bg.eval()
        return self._background

    def fit(self, model: Autoencoder, images: torch.Tensor, batch_size: int = 500, seed: int = 0) -> "LikelihoodRatioScore":
        super().fit(model, images, batch_size, seed)
        if self._background is None and self.background_state_ is None:
            self.use_background(train_background(model, images, self.perturb_rate, self.background_epochs, seed))
        bg = self._background_of(model)
        self._nll.fit(model, images, batch_size, seed)
        self._bg_nll.fit(bg, images, batch_size, seed)
        self.seed_ = seed
        return self

    def batch(self, model: Autoencoder, x: torch.Tensor) -> torch.Tensor:
        bg = self._background_of(model)
        return _synced(self._nll, self.seed_).batch(model, x) - _synced(self._bg_nll, self.seed_).batch(bg, x)
