"""Density scores: how unusual an image's representation is among the training images'. Any model
backs them; each is fitted on the training images' latent means E[z|x] or encoder features.

| name          | what                                                                       |
|---------------|----------------------------------------------------------------------------|
| `mahalanobis` | distance of E[z|x] to the training codes' mean (Ledoit-Wolf covariance)    |
| `latent_gmm`  | -log density of E[z|x] under a Gaussian mixture of the training codes      |
| `latent_knn`  | mean distance of the standardised E[z|x] to its k nearest training codes   |
| `feature_knn` | the same on the encoder's features (before the latent heads), PCA-whitened |
| `feature_gmm` | -log density of the whitened encoder features under a Gaussian mixture     |

The kNN scores score their own training images leave-one-out (``training_scores``)."""
from __future__ import annotations

import math
from typing import Annotated

import torch
import torch.nn as nn

from ...errors import ConfigError, ModelError
from ...models import Autoencoder, embed_images
from .base import ExportContext, Score, latent_means
from .registry import register_score

# the options' defaults, shared by the latent and the feature forms of a score
DEFAULT_KNN_K = 5
DEFAULT_GMM_COMPONENTS = 5
DEFAULT_FEATURE_DIMS = 64
KNN_K = Annotated[int, "neighbours of the kNN scores"]
GMM_COMPONENTS = Annotated[int, "components of the Gaussian mixture of the gmm scores"]
FEATURE_DIMS = Annotated[int, "principal components kept of the encoder's features (feature scores)"]


@register_score("mahalanobis", "Mahalanobis distance of E[z|x] to the training codes")
class MahalanobisScore(Score):
    """Mahalanobis distance of E[z|x] to the mean of the training codes, with their Ledoit-Wolf
    shrunk covariance (a VAE's inactive units make the empirical covariance near-singular)."""

    def fit(self, model: Autoencoder, images: torch.Tensor, batch_size: int = 500, seed: int = 0) -> "MahalanobisScore":
        from sklearn.covariance import LedoitWolf

        super().fit(model, images, batch_size, seed)
        z = latent_means(model, images, batch_size).numpy()
        if len(z) < 2:
            raise ModelError("the mahalanobis score needs at least 2 training images to estimate a covariance")
        lw = LedoitWolf().fit(z)
        self.location_ = torch.from_numpy(lw.location_)
        self.precision_ = torch.from_numpy(lw.precision_)
        return self

    def batch(self, model: Autoencoder, x: torch.Tensor) -> torch.Tensor:
        d = model.encode(x).mean.double() - self.location_.to(x.device)
        return torch.einsum("bi,ij,bj->b", d, self.precision_.to(x.device), d).clamp_min(0).sqrt()

    def export_head(self, model: nn.Module) -> nn.Module:
        return MahalanobisHead(self)


class MahalanobisHead(nn.Module):
    def __init__(self, s: MahalanobisScore):
        super().__init__()
        self.register_buffer("location", s.location_.double().clone())
        self.register_buffer("precision", s.precision_.double().clone())

    def forward(self, ctx: ExportContext) -> torch.Tensor:
        d = ctx.get("latent").double() - self.location
        return ((d @ self.precision) * d).sum(1).clamp_min(0).sqrt()


# -- representation density: k nearest neighbours, mixtures ---------------------------------------
@torch.no_grad()
def encoder_outputs(model: Autoencoder, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """``model.features`` (the encoder's output before the latent heads) of every image, float64 on the CPU."""
    return embed_images(model, images, batch_size, "features").double()


class Whitener:
    """Centre, project on the top ``dims`` principal components of the training vectors, and scale
    each to unit variance (whitening). ``dims=None`` keeps every coordinate and only standardises
    it (no rotation): what the latent scores use, a code being low-dimensional already."""

    def __init__(self, dims: int | None = None):
        self.dims = dims

    def fit(self, v: torch.Tensor) -> "Whitener":
        self.mean_ = v.mean(0)
        c = v - self.mean_
        if self.dims is None or self.dims >= v.shape[1]:
            self.components_ = None
            self.scale_ = c.std(0).clamp_min(1e-6)
        else:
            _, sv, vt = torch.linalg.svd(c, full_matrices=False)
            k = max(1, min(self.dims, len(v) - 1))
            self.components_ = vt[:k].T.contiguous()  # [D, k]
            self.scale_ = (sv[:k] / max(len(v) - 1, 1) ** 0.5).clamp_min(1e-6)
        return self

    def transform(self, v: torch.Tensor) -> torch.Tensor:
        c = v - self.mean_
        if self.components_ is not None:
            c = c @ self.components_
        return c / self.scale_


class WhitenerModule(nn.Module):
    """A fitted ``Whitener`` as buffers, in float64 (an export head's first step)."""

    def __init__(self, w: Whitener):
        super().__init__()
        self.register_buffer("mean", w.mean_.double().clone())
        self.register_buffer("scale", w.scale_.double().clone())
        self.rotate = w.components_ is not None
        self.register_buffer("components", (w.components_ if self.rotate else torch.zeros(0)).double().clone())

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        c = v.double() - self.mean
        if self.rotate:
            c = c @ self.components
        return c / self.scale


def _knn_mean_distance(ref: torch.Tensor, query: torch.Tensor, k: int, skip_self: bool = False,
                       chunk: int = 2048) -> torch.Tensor:
    """Mean Euclidean distance of each query row to its k nearest rows of ``ref`` (with
    ``skip_self`` the query is ``ref`` and each row's nearest, itself, is left out)."""
    out = []
    kk = min(k + int(skip_self), len(ref))
    for i in range(0, len(query), chunk):
        d = torch.cdist(query[i : i + chunk], ref).topk(kk, dim=1, largest=False).values
        out.append((d[:, 1:] if skip_self else d).mean(1))
    return torch.cat(out) if out else torch.zeros(0, dtype=ref.dtype)


class _RepresentationScore(Score):
    """A density score on a per-image vector (the latent means, the encoder's features or a rotation head
    network's), whitened with statistics of the training images. ``source``: 'latent', 'feature' or 'head';
    the score is named SOURCE_KIND (latent_knn, feature_gmm, head_knn, ...)."""

    EMBED = {"latent": "mean", "feature": "features", "head": "head_features"}  # embed_images' name of each source

    def __init__(self, source: str, kind: str, dims: int | None = None):
        if source not in self.EMBED:
            raise ConfigError(f"a representation score reads {', '.join(map(repr, self.EMBED))} vectors, got {source!r}")
        self.source, self.name = source, f"{source}_{kind}"  # type: ignore[misc]
        if dims is not None and dims < 1:
            raise ConfigError(f"{self.name}: the whitened dimension must be >= 1, got {dims}")
        self.dims = dims

    def vectors(self, model: Autoencoder, x: torch.Tensor) -> torch.Tensor:
        v = model.encode(x).mean if self.source == "latent" else getattr(model, self.EMBED[self.source])(x)
        return self.whitener_.transform(v.double().cpu())

    def fit(self, model: Autoencoder, images: torch.Tensor, batch_size: int = 500, seed: int = 0) -> "_RepresentationScore":
        super().fit(model, images, batch_size, seed)
        model.eval()
        v = embed_images(model, images, batch_size, self.EMBED[self.source]).double()
        if len(v) < 2:
            raise ModelError(f"the {self.name} score needs at least 2 training images")
        self.whitener_ = Whitener(self.dims).fit(v)
        self.train_, self.fit_images_ = self.whitener_.transform(v), images
        return self


class KNNScore(_RepresentationScore):
    """Mean distance to the ``k`` nearest training images in a whitened representation: the latent
    means, standardised per unit (``latent_knn``), or the encoder's features projected on their top
    ``dims`` principal components and whitened (``feature_knn``; the nearest-neighbour detector of
    Bergman et al. 2020, on the autoencoder's own encoder). Training images are scored leave-one-out."""

    def __init__(self, source: str = "latent", k: int = DEFAULT_KNN_K, dims: int | None = None):
        if k < 1:
            raise ConfigError(f"knn_k (neighbours of the {source}_knn score) must be >= 1, got {k}")
        super().__init__(source, "knn", dims)
        self.k = k

    def batch(self, model: Autoencoder, x: torch.Tensor) -> torch.Tensor:
        return _knn_mean_distance(self.train_, self.vectors(model, x), self.k)

    def training_scores(self, model: Autoencoder, images: torch.Tensor, batch_size: int = 500, seed: int = 0) -> torch.Tensor:
        if images is not getattr(self, "fit_images_", None):  # other images: no image of theirs is a neighbour
            return super().training_scores(model, images, batch_size, seed)
        return _knn_mean_distance(self.train_, self.train_, self.k, skip_self=True)

    def export_head(self, model: nn.Module) -> nn.Module:
        return KNNHead(self)


@register_score("latent_knn", "mean distance of the standardised E[z|x] to its k nearest training codes")
class LatentKNNScore(KNNScore):
    """``KNNScore`` on the latent means, standardised per unit."""

    def __init__(self, knn_k: KNN_K = DEFAULT_KNN_K):
        super().__init__("latent", knn_k)


@register_score("feature_knn", "mean distance of the whitened encoder features to their k nearest training images'")
class FeatureKNNScore(KNNScore):
    """``KNNScore`` on the encoder's features, projected on their top ``feature_dims`` principal components."""

    def __init__(self, knn_k: KNN_K = DEFAULT_KNN_K, feature_dims: FEATURE_DIMS = DEFAULT_FEATURE_DIMS):
        super().__init__("feature", knn_k, feature_dims)


class KNNHead(nn.Module):
    """Mean Euclidean distance to the k nearest rows of the whitened training bank (as torch.cdist)."""

    def __init__(self, s: KNNScore):
        super().__init__()
        self.source = s.source
        self.whiten = WhitenerModule(s.whitener_)
        self.register_buffer("bank", s.train_.double().clone())  # [N, D]
        self.register_buffer("bank_sq", s.train_.double().pow(2).sum(1))  # [N]
        self.k = min(s.k, len(s.train_))

    def forward(self, ctx: ExportContext) -> torch.Tensor:
        q = self.whiten(ctx.get(self.source))
        d2 = q.pow(2).sum(1, keepdim=True) + self.bank_sq - 2 * (q @ self.bank.T)
        d = d2.clamp_min(0).sqrt()
        return torch.topk(d, self.k, dim=1, largest=False).values.mean(1)


class GMMScore(_RepresentationScore):
    """-log density under a full-covariance Gaussian mixture (scikit-learn) fitted to the training
    images' whitened representation: the latent means standardised per unit (``latent_gmm``), or the
    encoder's features projected on their top ``dims`` principal components and whitened (``feature_gmm``)."""

    def __init__(self, source: str = "latent", gmm_components: int = DEFAULT_GMM_COMPONENTS, dims: int | None = None,
                 reg_covar: float = 1e-4):
        if gmm_components < 1:
            raise ConfigError(f"gmm_components must be >= 1, got {gmm_components}")
        super().__init__(source, "gmm", dims)
        self.gmm_components, self.reg_covar = gmm_components, reg_covar

    def fit(self, model: Autoencoder, images: torch.Tensor, batch_size: int = 500, seed: int = 0) -> "GMMScore":
        from sklearn.mixture import GaussianMixture

        super().fit(model, images, batch_size, seed)
        self.gmm_ = GaussianMixture(min(self.gmm_components, len(self.train_)), covariance_type="full",
                                    reg_covar=self.reg_covar, random_state=seed, n_init=1).fit(self.train_.numpy())
        return self

    def batch(self, model: Autoencoder, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(-self.gmm_.score_samples(self.vectors(model, x).numpy()))

    def export_head(self, model: nn.Module) -> nn.Module:
        return GMMHead(self)


@register_score("latent_gmm", "-log density of E[z|x] under a Gaussian mixture of the training codes")
class LatentGMMScore(GMMScore):
    """``GMMScore`` on the latent means, standardised per unit."""

    def __init__(self, gmm_components: GMM_COMPONENTS = DEFAULT_GMM_COMPONENTS):
        super().__init__("latent", gmm_components)


@register_score("feature_gmm", "-log density of the whitened encoder features under a Gaussian mixture")
class FeatureGMMScore(GMMScore):
    """``GMMScore`` on the encoder's features, projected on their top ``feature_dims`` principal components."""

    def __init__(self, gmm_components: GMM_COMPONENTS = DEFAULT_GMM_COMPONENTS,
                 feature_dims: FEATURE_DIMS = DEFAULT_FEATURE_DIMS):
        super().__init__("feature", gmm_components, feature_dims)


class GMMHead(nn.Module):
    """-log p(v) under scikit-learn's full-covariance GaussianMixture, as its score_samples computes it."""

    def __init__(self, s: GMMScore):
        super().__init__()
        g = s.gmm_
        if g.covariance_type != "full":  # pragma: no cover - vaelab fits full covariances
            raise ModelError(f"exporting a GaussianMixture needs covariance_type='full', got {g.covariance_type!r}")
        self.source = s.source
        self.whiten = WhitenerModule(s.whitener_)
        self.register_buffer("log_weights", torch.from_numpy(g.weights_).double().log())
        self.register_buffer("means", torch.from_numpy(g.means_).double())  # [K, D]
        chol = torch.from_numpy(g.precisions_cholesky_).double()  # [K, D, D]
        self.register_buffer("prec_chol", chol)
        self.register_buffer("log_det", torch.diagonal(chol, dim1=1, dim2=2).log().sum(1))  # [K]
        self.register_buffer("mu_chol", torch.einsum("kd,kde->ke", self.means, chol))  # [K, D]
        self.n_features = g.means_.shape[1]

    def forward(self, ctx: ExportContext) -> torch.Tensor:
        v = self.whiten(ctx.get(self.source))  # [B, D]
        y = torch.einsum("bd,kde->bke", v, self.prec_chol) - self.mu_chol  # [B, K, D]
        log_prob = y.pow(2).sum(2)
        a = -0.5 * (self.n_features * math.log(2 * math.pi) + log_prob) + self.log_det + self.log_weights  # [B, K]
        m = a.amax(1, keepdim=True)
        return -(m.squeeze(1) + (a - m).exp().sum(1).log())
