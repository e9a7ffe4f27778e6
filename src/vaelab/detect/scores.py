"""Anomaly scores of an autoencoder: higher = more anomalous.

A score is a small object in the estimator style: ``fit(model, images)`` learns what it needs from
the normal training images (latent statistics, the scale of its members), then ``batch(model, x)``
scores one batch of float images in [0, 1] -> a [B] tensor. Every score is vectorised over the
batch (and over Monte Carlo / importance samples); ``score_images`` runs one over a whole set in
batches under a seed, so the same images give the same scores.

| name          | what                                                              | needs  |
|---------------|-------------------------------------------------------------------|--------|
| `mse`         | mean squared error of decode(E[z|x]) against x                    | any    |
| `bce`         | binary cross-entropy of decode(E[z|x]) against x (nats per image) | any    |
| `patch_mse`   | the largest mean squared error over any `patch_size` square window | any    |
| `nelbo`       | -ELBO = E_q[-log p(x|z)] + KL(q(z|x) || p(z)), `n_samples` MC     | prior  |
| `nll`         | -log p(x), importance-sampled with `nll_k` samples                | prior  |
| `mahalanobis` | distance of E[z|x] to the training codes' mean (Ledoit-Wolf cov.) | any    |
| `latent_gmm`  | -log density of E[z|x] under a Gaussian mixture of training codes | any    |
| `ssim`        | 1 - SSIM of decode(E[z|x]) against x (structure, not pixel error)  | any    |
| `latent_knn`  | mean distance of the standardised E[z|x] to its k nearest training codes | any |
| `feature_knn` | the same on the encoder's features (before the latent heads), PCA-whitened | any |
| `feature_gmm` | -log density of the whitened encoder features under a Gaussian mixture | any |
| `class_entropy` | log of the entropy (nats) of the model's class probabilities      | a classifier |
|               | p(y | E[z|x]), log(H + 1e-6)                                      |        |
| `class_energy` | the free energy -logsumexp of the classifier's logits on E[z|x]   | a classifier |
| `combo`       | mean of the members' z-scores (or ranks); default DEFAULT_COMBO =  | members|
|               | ssim + latent_gmm + feature_knn + patch_mse, and class_energy x 2 |        |
|               | + class_entropy on a model with a classifier (ssvae):              |        |
|               | DEFAULT_CLASSIFIER_COMBO                                          |        |

Scores fitted on the training images (the kNN ones) score those images leave-one-out in
``training_scores`` (an image is not its own neighbour), so the statistics a detector or a combo
takes from the training set describe images it has not seen.
"""
from __future__ import annotations

import logging
import time

from typing import Callable, ClassVar, Iterator, Sequence

import torch
import torch.nn.functional as F

from ..data.imageset import to_unit_float
from ..errors import ConfigError, ModelError
from ..evaluate.likelihood import log_likelihood
from ..models import Autoencoder, embed_images


log = logging.getLogger("vaelab")

def model_device(model: Autoencoder) -> torch.device:
    return next(model.parameters()).device


def iter_batches(images: torch.Tensor, batch_size: int, device: torch.device) -> Iterator[torch.Tensor]:
    """Float batches in [0, 1] on ``device`` from uint8 (or float) images, by indexing."""
    for i in range(0, len(images), batch_size):
        x = images[i : i + batch_size].to(device)
        yield to_unit_float(x)


@torch.no_grad()
def latent_means(model: Autoencoder, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """E[z|x] of every image, float64 on the CPU."""
    model.eval()
    return embed_images(model, images, batch_size).double()


class Score:
    """Base class: ``fit`` (optional state from the training images), ``batch`` (the score)."""

    name: ClassVar[str] = ""
    needs_density: ClassVar[bool] = False
    image_only: ClassVar[bool] = False  # defined on images only (windows, structure, pixel values in [0, 1])

    def spec(self) -> str:
        """What the score computes, e.g. 'patch_mse(patch_size=15)': its name and constructor
        parameters (the public attributes set before ``fit``). A cached result is reused only
        under the same spec, so changing a default (a combo's members, a window) rescores."""
        params = {k: v for k, v in vars(self).items() if k != "name" and not k.startswith("_") and not k.endswith("_")
                  and isinstance(v, (int, float, str, bool, type(None)))}
        return f"{self.name}(" + ", ".join(f"{k}={v!r}" for k, v in sorted(params.items())) + ")"

    def check(self, model: Autoencoder) -> None:
        if self.image_only and getattr(model, "is_vector", False):
            raise ModelError(f"the {self.name!r} score is defined for images; this model's data are vectors. Use one of: "
                             f"{', '.join(vector_scores())}")
        if self.needs_density and not model.has_density:
            raise ModelError(
                f"the {self.name!r} score needs a model with a posterior density and a prior (has_density: a VAE, IWAE, "
                f"BVAE...); {model.config.name} has none. Use one of: {', '.join(density_free_scores())}"
            )

    def fit(self, model: Autoencoder, images: torch.Tensor, batch_size: int = 500, seed: int = 0) -> "Score":
        self.check(model)
        return self

    def batch(self, model: Autoencoder, x: torch.Tensor) -> torch.Tensor:  # overridden
        raise NotImplementedError

    def training_scores(self, model: Autoencoder, images: torch.Tensor, batch_size: int = 500, seed: int = 0) -> torch.Tensor:
        """The scores of the (fitted-on) training images: by default ``score_images``; overridden
        where a training image would otherwise be scored against itself."""
        return score_images(model, self, images, batch_size, seed)


@torch.no_grad()
def score_images(model: Autoencoder, score: Score, images: torch.Tensor, batch_size: int = 500, seed: int = 0) -> torch.Tensor:
    """``score`` of every image as a float64 CPU tensor [N]; sampling scores are seeded."""
    model.eval()
    dev = model_device(model)
    out = []
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed)
        for x in iter_batches(images, batch_size, dev):
            model.check_input(x)
            out.append(score.batch(model, x).double().cpu())
    s = torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)
    if not torch.isfinite(s).all():
        bad = int((~torch.isfinite(s)).sum())
        raise ModelError(f"the {score.name!r} score is not finite for {bad} of {len(s)} images; the model diverged or "
                         "the images are far outside what it was trained on. Retrain, or use score='mse'")
    return s


# -- reconstruction ------------------------------------------------------------------------------
class MSEScore(Score):
    """Mean squared error per pixel of the reconstruction decode(E[z|x]) (the likelihood's mean)."""

    name = "mse"

    def batch(self, model: Autoencoder, x: torch.Tensor) -> torch.Tensor:
        return (model.reconstruct(x) - x).pow(2).flatten(1).mean(1)


# patch_mse's window: of 3, 5, ..., 15 pixels, the best single score on the one-class runs of both
# datasets (benchmarks/detect_scores.py), on 28 x 28 images; scale it with larger images.
DEFAULT_PATCH_SIZE = 15


class PatchMSEScore(Score):
    """The largest mean squared error of decode(E[z|x]) over any ``patch_size`` x ``patch_size``
    window (stride 1, channels averaged; a window larger than the image is clipped to it, which
    gives ``mse``). A small defect (the closed loop that makes a 4 a 9) is a few pixels of large
    error that the mean over the whole image dilutes among the small errors a blurry
    reconstruction makes everywhere; the window's maximum keeps it."""

    name = "patch_mse"
    image_only = True

    def __init__(self, patch_size: int = DEFAULT_PATCH_SIZE):
        if not isinstance(patch_size, int) or isinstance(patch_size, bool) or patch_size < 1:
            raise ConfigError(f"patch_size must be a whole number of pixels >= 1, got {patch_size!r}")
        self.patch_size = patch_size

    def batch(self, model: Autoencoder, x: torch.Tensor) -> torch.Tensor:
        err = (model.reconstruct(x) - x).pow(2).mean(1, keepdim=True)  # [B, 1, H, W]
        k = (min(self.patch_size, err.shape[-2]), min(self.patch_size, err.shape[-1]))
        return F.avg_pool2d(err, k, stride=1).flatten(1).amax(1)


class BCEScore(Score):
    """Binary cross-entropy of the reconstruction decode(E[z|x]) against x, summed over pixels."""

    name = "bce"
    image_only = True

    def batch(self, model: Autoencoder, x: torch.Tensor) -> torch.Tensor:
        p = model.decode(model.encode(x).mean).mean.clamp(1e-6, 1 - 1e-6)
        return F.binary_cross_entropy(p, x, reduction="none").flatten(1).sum(1)


class SSIMScore(Score):
    """1 - SSIM of decode(E[z|x]) against x, per image (Gaussian window 11, sigma 1.5, over the
    valid region: the reconstruction metric's ``ssim_per_image``, which agrees with scikit-image):
    sensitive to wrong structure (edges, texture) where the squared error is dominated by bright areas."""

    name = "ssim"
    image_only = True

    def batch(self, model: Autoencoder, x: torch.Tensor) -> torch.Tensor:
        from ..evaluate.image_quality import ssim_per_image

        return 1.0 - ssim_per_image(model.reconstruct(x).float(), x.float())


# -- likelihood bounds -------------------------------------------------------------------------
def gaussian_parts(q) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(loc, scale) [B, d] of a diagonal-Gaussian posterior (Normal or Independent(Normal)), else None
    (a flow posterior, a mixture): the reparameterisation z = loc + scale * eps needs them."""
    from torch.distributions import Independent, Normal

    base = q.base_dist if isinstance(q, Independent) else q
    return (base.loc, base.scale) if isinstance(base, Normal) else None


def nelbo_at_noise(model: Autoencoder, x: torch.Tensor, eps: torch.Tensor, q=None,
                   log_prob: Callable | None = None) -> torch.Tensor:
    """-ELBO per image [B] with z_k = loc + scale * eps_k for the given noise eps [k, d] shared by
    every image, all k decoded in one batched call; the KL is the model's (analytic when it has one,
    else Monte Carlo at the first z). Needs a diagonal-Gaussian posterior q (encoded here unless given).
    ``log_prob(px, x)``: log p(x|z) per example (default ``px.log_prob(x)``; the exporter passes a form
    that ONNX computes stably)."""
    q = model.encode(x) if q is None else q
    parts = gaussian_parts(q)
    if parts is None:  # pragma: no cover - callers check
        raise ModelError(f"{model.config.name}'s posterior is not a diagonal Gaussian: nelbo_at_noise needs one")
    loc, scale = parts
    k, b = eps.shape[0], x.shape[0]
    z = loc.unsqueeze(0) + scale.unsqueeze(0) * eps.to(loc).unsqueeze(1)  # [k, B, d]
    px = model.decode(z.reshape(k * b, *z.shape[2:]))
    xk = x.unsqueeze(0).expand(k, *x.shape).reshape(k * b, *x.shape[1:])
    log_px_z = (px.log_prob(xk) if log_prob is None else log_prob(px, xk)).view(k, b)
    return -log_px_z.mean(0) + model.kl(q, z[0])


class NELBOScore(Score):
    """-ELBO in nats: reconstruction term averaged over ``n_samples`` posterior samples (decoded in
    one batched pass) plus the KL to the model's prior (analytic when it has a closed form, else Monte Carlo).

    Common random numbers: for a diagonal-Gaussian posterior the standard-normal noise eps [n_samples, d]
    is drawn once from the fit's seed and every image's samples are loc + scale * eps. An image then
    gets the same score in any batch, order or call (and the score exports: vaelab.detect.export), and
    two images' scores differ by their posteriors, not by their draws. Other posteriors (flows) are
    sampled afresh under the scoring seed."""

    name = "nelbo"
    needs_density = True

    def __init__(self, n_samples: int = 1):
        if n_samples < 1:
            raise ConfigError(f"n_samples (posterior samples for the nelbo score) must be >= 1, got {n_samples}")
        self.n_samples = n_samples
        self.common_noise = True  # part of spec(): a result cached before it existed is not reused
        self.seed_ = 0
        self.noise_: torch.Tensor | None = None

    def fit(self, model: Autoencoder, images: torch.Tensor, batch_size: int = 500, seed: int = 0) -> "NELBOScore":
        super().fit(model, images, batch_size, seed)
        self.seed_, self.noise_ = seed, None
        return self

    def noise(self, d: int) -> torch.Tensor:
        """The shared noise [n_samples, d], drawn from the fit's seed (float32, CPU)."""
        if self.noise_ is None or tuple(self.noise_.shape) != (self.n_samples, d):
            self.noise_ = torch.randn(self.n_samples, d, generator=torch.Generator().manual_seed(self.seed_))
        return self.noise_

    def batch(self, model: Autoencoder, x: torch.Tensor) -> torch.Tensor:
        q = model.encode(x)
        parts = gaussian_parts(q)
        if parts is None:
            _, log_px_z = model.log_weights(x, self.n_samples, q)
            return -log_px_z.mean(0) + model.kl(q)
        return nelbo_at_noise(model, x, self.noise(parts[0].shape[-1]), q)


class NLLScore(Score):
    """-log p(x) by importance sampling with ``nll_k`` samples (vaelab.evaluate.likelihood)."""

    name = "nll"
    needs_density = True

    def __init__(self, nll_k: int = 100):
        if nll_k < 1:
            raise ConfigError(f"nll_k (importance samples for the nll score) must be >= 1, got {nll_k}")
        self.nll_k = nll_k

    def batch(self, model: Autoencoder, x: torch.Tensor) -> torch.Tensor:
        return -log_likelihood(model, x, self.nll_k)


# -- latent density ------------------------------------------------------------------------------
class MahalanobisScore(Score):
    """Mahalanobis distance of E[z|x] to the mean of the training codes, with their Ledoit-Wolf
    shrunk covariance (a VAE's inactive units make the empirical covariance near-singular)."""

    name = "mahalanobis"

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


# -- representation density: k nearest neighbours, feature mixtures -------------------------------
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
    """A density score on a per-image vector (the latent means or the encoder's features), whitened
    with statistics of the training images. ``source``: 'latent' or 'feature'; the score is named
    SOURCE_KIND (latent_knn, feature_gmm, ...)."""

    def __init__(self, source: str, kind: str, dims: int | None = None):
        if source not in ("latent", "feature"):
            raise ConfigError(f"a representation score reads 'latent' or 'feature' vectors, got {source!r}")
        self.source, self.name = source, f"{source}_{kind}"  # type: ignore[misc]
        if dims is not None and dims < 1:
            raise ConfigError(f"{self.name}: the whitened dimension must be >= 1, got {dims}")
        self.dims = dims

    def vectors(self, model: Autoencoder, x: torch.Tensor) -> torch.Tensor:
        v = model.encode(x).mean if self.source == "latent" else model.features(x)
        return self.whitener_.transform(v.double().cpu())

    def fit(self, model: Autoencoder, images: torch.Tensor, batch_size: int = 500, seed: int = 0) -> "_RepresentationScore":
        super().fit(model, images, batch_size, seed)
        v = (latent_means if self.source == "latent" else encoder_outputs)(model, images, batch_size)
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

    def __init__(self, source: str = "latent", k: int = 5, dims: int | None = None):
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


class GMMScore(_RepresentationScore):
    """-log density under a full-covariance Gaussian mixture (scikit-learn) fitted to the training
    images' whitened representation: the latent means standardised per unit (``latent_gmm``), or the
    encoder's features projected on their top ``dims`` principal components and whitened (``feature_gmm``)."""

    def __init__(self, source: str = "latent", gmm_components: int = 5, dims: int | None = None, reg_covar: float = 1e-4):
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


# -- a classifier's uncertainty --------------------------------------------------------------------
def class_log_probs(model: Autoencoder, x: torch.Tensor) -> torch.Tensor:
    """log p(y | E[z|x]) of a model with a classifier on its code (``logits``: the ssvae), [B, K]."""
    return F.log_softmax(model.logits(model.encode(x).mean), 1)


ENTROPY_FLOOR = 1e-6  # nats: the floor under the entropy before its log


def log_entropy(log_probs: torch.Tensor) -> torch.Tensor:
    """log(H + ENTROPY_FLOOR) of each row of class log-probabilities [B, K] (also the exported head's)."""
    return torch.log((-(log_probs.exp() * log_probs).sum(1)).clamp_min(0.0) + ENTROPY_FLOOR)


class ClassEntropyScore(Score):
    """log(H + 1e-6), H the entropy in nats of the model's class probabilities p(y | E[z|x]): an image
    of none of the classes the labelled images showed tends to sit between them (Hendrycks and
    Gimpel's softmax baseline; an entropy uses every class's probability, not only the largest). The
    log puts the confident bulk of normal images near H = 0 on a scale where a z-score against the
    training scores is not dominated by a few uncertain ones; a ranking is the same as H's."""

    name = "class_entropy"

    def check(self, model: Autoencoder) -> None:
        super().check(model)
        if not has_classifier(model):
            others = [n for n in density_free_scores() if n not in CLASSIFIER_SCORES]
            raise ModelError(f"the {self.name!r} score needs a model with a classifier on its code (ssvae, trained with "
                             f"some labelled images); {model.config.name} has none. Use one of: {', '.join(others)}")

    def batch(self, model: Autoencoder, x: torch.Tensor) -> torch.Tensor:
        return log_entropy(class_log_probs(model, x))


class ClassEnergyScore(ClassEntropyScore):
    """The free energy of the classifier on the code, -logsumexp_y f_y(E[z|x]) with f the logits (Liu et
    al., NeurIPS 2020): low where some class's logit is large. Unlike the softmax's entropy it keeps the
    logits' scale, so an image the classifier gives no class a large logit for scores high even when
    its probabilities are peaked."""

    name = "class_energy"

    def batch(self, model: Autoencoder, x: torch.Tensor) -> torch.Tensor:
        return class_energy(model, x)


def free_energy(logits: torch.Tensor) -> torch.Tensor:
    """-logsumexp over classes of logits [B, K], [B] (shared with the exported head)."""
    return -torch.logsumexp(logits, 1)


def class_energy(model: Autoencoder, x: torch.Tensor) -> torch.Tensor:
    """The free energy of the classifier's logits on E[z|x], [B]."""
    return free_energy(model.logits(model.encode(x).mean))


CLASSIFIER_SCORES = ("class_entropy", "class_energy")  # the scores that need a classifier on the code


def has_classifier(model: Autoencoder) -> bool:
    """Whether ``model`` classifies its code (the CLASSIFIER_SCORES apply)."""
    return callable(getattr(model, "logits", None)) and callable(getattr(model, "predict_proba", None))


# -- combinations ---------------------------------------------------------------------------------
class ComboScore(Score):
    """The mean over member scores of each one's standardised value: ``method='zscore'``
    (s - mean) / std of its training scores, or ``method='rank'``: its rank among the training
    scores as a fraction in [0, 1] (scale-free, but every value beyond the training range ties at 1)."""

    name = "combo"

    def __init__(self, members: Sequence[Score], method: str = "zscore"):
        if method not in ("zscore", "rank"):
            raise ConfigError(f"combo_method must be 'zscore' or 'rank', got {method!r}")
        if not members:
            raise ConfigError("the combo score needs at least one member score, e.g. combo=('mse', 'latent_gmm')")
        self.members, self.method = list(members), method

    @property
    def needs_density(self) -> bool:  # type: ignore[override]
        return any(m.needs_density for m in self.members)

    def spec(self) -> str:
        return f"combo({self.method}: " + " + ".join(m.spec() for m in self.members) + ")"

    def check(self, model: Autoencoder) -> None:
        for m in self.members:
            m.check(model)

    def fit(self, model: Autoencoder, images: torch.Tensor, batch_size: int = 500, seed: int = 0) -> "ComboScore":
        self.check(model)
        cols = []
        for i, m in enumerate(self.members, 1):
            t0 = time.perf_counter()
            m.fit(model, images, batch_size, seed)
            cols.append(m.training_scores(model, images, batch_size, seed))
            log.info("score %d of %d (%s) fitted on %d images in %.1f s", i, len(self.members), m.spec(), len(images),
                     time.perf_counter() - t0)
        train = torch.stack(cols, 1)  # [N, M]
        self.fit_images_, self.train_scores_ = images, train
        self.mean_, self.std_ = train.mean(0), train.std(0, unbiased=False).clamp_min(1e-12)
        self.sorted_ = train.sort(0).values.T.contiguous()  # [M, N]
        return self

    def training_scores(self, model: Autoencoder, images: torch.Tensor, batch_size: int = 500, seed: int = 0) -> torch.Tensor:
        if images is getattr(self, "fit_images_", None):  # the images fit() just scored
            return self._combine(self.train_scores_)
        return self._combine(torch.stack([m.training_scores(model, images, batch_size, seed) for m in self.members], 1))

    def batch(self, model: Autoencoder, x: torch.Tensor) -> torch.Tensor:
        return self._combine(torch.stack([m.batch(model, x).double().cpu() for m in self.members], 1))

    def _combine(self, s: torch.Tensor) -> torch.Tensor:  # [B, M] member scores -> [B]
        if self.method == "zscore":
            return ((s - self.mean_) / self.std_).mean(1)
        ref = self.sorted_  # mid-rank of each value among the training scores of its member
        lo = torch.searchsorted(ref, s.T.contiguous(), right=False)
        hi = torch.searchsorted(ref, s.T.contiguous(), right=True)
        return ((lo + hi).double() / (2.0 * ref.shape[1])).mean(0)


# Chosen by benchmarks/detect_scores.py on the trained one-class models (README, "Which score"): the
# best mean one-class ROC-AUC over Fashion-MNIST and MNIST of every combination of up to four scores
# that meets both targets. Structural error, a local pixel error and two densities (latent codes,
# encoder features) fail on different normal classes.
DEFAULT_COMBO = ("ssim", "latent_gmm", "feature_knn", "patch_mse")
# a model that classifies its code (ssvae trained with the OOD study's labelled images) adds its classifier's
# free energy, counted twice, and its class entropy, once (the z-score mean then weighs them as three of seven
# members): on study-shaped tasks an image of none of the known classes sits between them, and the energy
# catches the simple anomalies (the digit 1) that the reconstruction members rate normal. Chosen on the
# choosing draws of benchmarks/detect_tasks.py (--weigh: eight weightings of the two in the two-seed
# ensemble, by a rule written before) over the entropy alone counted twice, the earlier default
DEFAULT_CLASSIFIER_COMBO = (*DEFAULT_COMBO, "class_energy", "class_energy", "class_entropy")

SCORES: dict[str, tuple[Callable[..., Score], str]] = {
    "mse": (lambda **o: MSEScore(), "mean squared reconstruction error of decode(E[z|x])"),
    "bce": (lambda **o: BCEScore(), "binary cross-entropy of decode(E[z|x]) against x"),
    "patch_mse": (lambda patch_size=DEFAULT_PATCH_SIZE, **o: PatchMSEScore(patch_size),
                  "largest mean squared error over any patch_size x patch_size window of the reconstruction"),
    "nelbo": (lambda n_samples=1, **o: NELBOScore(n_samples), "negative ELBO (needs a VAE-type model)"),
    "nll": (lambda nll_k=100, **o: NLLScore(nll_k), "importance-sampled -log p(x) (needs a VAE-type model)"),
    "mahalanobis": (lambda **o: MahalanobisScore(), "Mahalanobis distance of E[z|x] to the training codes"),
    "latent_gmm": (lambda gmm_components=5, **o: GMMScore("latent", gmm_components),
                   "-log density of E[z|x] under a Gaussian mixture of the training codes"),
    "ssim": (lambda **o: SSIMScore(), "1 - SSIM of decode(E[z|x]) against x"),
    "latent_knn": (lambda knn_k=5, **o: KNNScore("latent", knn_k),
                   "mean distance of the standardised E[z|x] to its k nearest training codes"),
    "feature_knn": (lambda knn_k=5, feature_dims=64, **o: KNNScore("feature", knn_k, feature_dims),
                    "mean distance of the whitened encoder features to their k nearest training images'"),
    "feature_gmm": (lambda gmm_components=5, feature_dims=64, **o: GMMScore("feature", gmm_components, feature_dims),
                    "-log density of the whitened encoder features under a Gaussian mixture"),
    "class_entropy": (lambda **o: ClassEntropyScore(), "log of the entropy of the model's class probabilities "
                      "p(y | E[z|x]) (needs a classifier: ssvae)"),
    "class_energy": (lambda **o: ClassEnergyScore(), "free energy -logsumexp of the classifier's logits on E[z|x] "
                     "(needs a classifier: ssvae)"),
}


# on vectors (tabular data) the default combo keeps its members that are not image-only
VECTOR_COMBO = tuple(c for c in DEFAULT_COMBO if not SCORES[c][0]().image_only)


def vector_scores() -> list[str]:
    """The scores defined on vectors as well as images."""
    return [n for n, (make, _) in SCORES.items() if not make().image_only]


def density_free_scores() -> list[str]:
    """The scores any model can back (no prior or posterior density needed)."""
    return [n for n, (make, _) in SCORES.items() if not make().needs_density]


def make_score(name: str, combo: Sequence[str] = DEFAULT_COMBO, combo_method: str = "zscore", **options) -> Score:
    """The score called ``name`` (one of SCORES or 'combo'); ``options``: n_samples, nll_k, gmm_components,
    knn_k, feature_dims, patch_size."""
    if name == "combo":
        if isinstance(combo, str):
            combo = [c.strip() for c in combo.split(",") if c.strip()]
        bad = [c for c in combo if c not in SCORES]
        if bad:
            raise ConfigError(f"unknown combo member(s) {bad}; combine any of: {', '.join(SCORES)}")
        return ComboScore([SCORES[c][0](**options) for c in combo], combo_method)
    if name not in SCORES:
        raise ConfigError(f"unknown anomaly score {name!r}; choose one of: {', '.join(SCORE_NAMES)}")
    return SCORES[name][0](**options)


SCORE_NAMES = (*SCORES, "combo")
