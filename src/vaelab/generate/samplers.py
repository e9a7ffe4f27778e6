"""Samplers draw latent codes and decode them to images in [0, 1]. fit(model, train) then sample(n).

A sampler registers itself with ``@register_sampler("name")`` (``vaelab sample --sampler NAME``,
``make_sampler``; a user's own through ``--import``, see docs/guide/adding-a-sampler.md). Its
options are its ``__init__`` arguments, kept under their own names (``get_params``); one with a
density over the codes has ``log_prob_codes(z)``, the log-density of codes [N, d] (held-out codes:
how well it models the aggregate posterior), float64 on the CPU. One that returns its learned state
from ``fitted_state`` (tensors and JSON values) and takes it back in ``load_fitted`` is kept in the
run directory and reused by the next call (vaelab.generate.cache)."""
from __future__ import annotations

import inspect
import math
from typing import Any, Callable, ClassVar, TypeVar

import numpy as np
import torch

from ..data import ImageSet
from ..errors import ConfigError, ModelError
from ..models import Autoencoder, embed_images

SAMPLERS: dict[str, type] = {}
S = TypeVar("S", bound=type)


def register_sampler(name: str) -> Callable[[S], S]:
    """Class decorator: make ``cls`` (a subclass of PriorSampler) the sampler ``name`` of SAMPLERS."""

    def decorate(cls: S) -> S:
        if not (isinstance(cls, type) and issubclass(cls, PriorSampler)):
            raise ModelError(f"register_sampler({name!r}) decorates a subclass of vaelab.generate.PriorSampler, got {cls!r}")
        SAMPLERS[name] = cls
        if "name" not in vars(cls):
            cls.name = name
        return cls

    return decorate


class PriorSampler:
    """z ~ p(z), the model's ``prior()``. A sampler with ``needs_train`` is fitted on the training
    set's codes (``fit(model, train)``); the others ignore ``train``."""

    needs_train: ClassVar[bool] = False
    name: ClassVar[str] = "prior"

    def __init__(self, seed: int = 0):
        self.seed = seed
        self.model_: Autoencoder | None = None

    def get_params(self) -> dict[str, Any]:
        """The options this sampler was made with: its ``__init__`` arguments, read back from the
        attributes of the same names (scikit-learn's convention); tuples as lists."""
        names = [p.name for p in inspect.signature(type(self).__init__).parameters.values()
                 if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in ((k, getattr(self, k)) for k in names)}

    def fitted_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        """What ``fit`` learned, as tensors and JSON values, for ``load_fitted`` to take back; None (the
        default) for a sampler that learns nothing or does not say: it is fitted on every call."""
        return None

    def load_fitted(self, model: Autoencoder, tensors: dict[str, torch.Tensor], values: dict[str, Any]) -> "PriorSampler":
        """The sampler as ``fit(model, train)`` left it, from what ``fitted_state`` returned then."""
        raise NotImplementedError(f"the {self.name} sampler keeps no fitted state")

    def fit(self, model: Autoencoder, train: ImageSet | None = None) -> "PriorSampler":
        model.require("can_sample", "the prior sampler (use the gmm sampler, which fits a density to any model's codes)")
        self.model_ = model
        return self

    def sample_latents(self, n: int) -> torch.Tensor:
        return self.model_.sample_prior(n, torch.Generator().manual_seed(self.seed)).cpu()

    @torch.no_grad()
    def log_prob_codes(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) under the model's ``prior()``, per code."""
        self._check_fitted()
        return self.model_.prior().log_prob(z.to(next(self.model_.parameters()).device)).double().cpu()

    def _check_fitted(self) -> None:
        if self.model_ is None:
            raise ModelError(f"call fit(model{', train' if self.needs_train else ''}) first")

    @torch.no_grad()
    def sample(self, n: int, batch_size: int = 1000, label: int | None = None) -> torch.Tensor:
        """``n`` new examples decoded from ``sample_latents(n)``; ``label``: the class a conditional
        model (cvae) decodes them as (None: its unconditional model)."""
        if self.model_ is None:
            raise ModelError("call fit(model) before sample(n)")
        m = self.model_
        if label is not None:
            m.require("conditional", "drawing a chosen class (--class)")
        z = self.sample_latents(n).to(next(m.parameters()).device)
        dec = (lambda c: m.decode(c)) if label is None else (lambda c: m.decode(c, label))
        return torch.cat([m.mean_image(dec(z[i : i + batch_size])) for i in range(0, n, batch_size)])


register_sampler("prior")(PriorSampler)


@register_sampler("vamp")
class VampSampler(PriorSampler):
    """z ~ the VampPrior (1/K) sum_k q(z|u_k) of a ``vamp`` model: a pseudo-input k uniformly, then
    its posterior. That is the vamp model's ``prior()``, so the draws are those of the prior sampler
    under the same seed; any other model is refused (it has no pseudo-inputs)."""

    def fit(self, model: Autoencoder, train: ImageSet | None = None) -> "VampSampler":
        from ..models.vamp import VampVAE

        if not isinstance(model, VampVAE):
            raise ModelError(f"the vamp sampler draws from the VampPrior of a vamp model (vaelab train vamp); {model.config.name} "
                             "has no pseudo-inputs. Use --sampler prior for its own prior, or one fitted to its codes: "
                             + ", ".join(n for n, c in SAMPLERS.items() if c.needs_train))
        return super().fit(model, train)


@register_sampler("gmm")
class GMMSampler(PriorSampler):
    """A Gaussian mixture (scikit-learn, full covariances) fitted to the posterior means of the
    training images; works for deterministic autoencoders too (ex-post density estimation)."""

    needs_train = True

    def __init__(self, n_components: int = 10, seed: int = 0, max_fit_images: int = 20_000):
        super().__init__(seed)
        self.n_components, self.max_fit_images = n_components, max_fit_images
        self.gmm_ = None

    def fit(self, model: Autoencoder, train: ImageSet | None = None) -> "GMMSampler":
        from sklearn.mixture import GaussianMixture

        if train is None:
            raise ConfigError("the gmm sampler is fitted on training images: pass the training set")
        self.model_ = model
        z = embed_images(model, train.limit(self.max_fit_images, self.seed)).double().numpy()
        self.gmm_ = GaussianMixture(self.n_components, covariance_type="full", random_state=self.seed, reg_covar=1e-5).fit(z)
        return self

    GMM_STATE = ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_")

    def fitted_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return {a: torch.from_numpy(getattr(self.gmm_, a)) for a in self.GMM_STATE}, {}

    def load_fitted(self, model: Autoencoder, tensors: dict[str, torch.Tensor], values: dict[str, Any]) -> "GMMSampler":
        """The kept mixture, without scikit-learn: sampling and log-densities need only its arrays, so a
        command that reuses a kept gmm does not pay scikit-learn's import."""
        k, d = self.n_components, tensors["means_"].shape[-1]
        shapes = {"weights_": (k,), "means_": (k, d), "covariances_": (k, d, d), "precisions_cholesky_": (k, d, d),
                  "precisions_": (k, d, d)}
        if set(tensors) != set(shapes) or any(tuple(tensors[a].shape) != s for a, s in shapes.items()):
            raise ModelError(f"a kept gmm sampler holds {sorted(tensors)} of other shapes than {self.n_components} components")
        self.model_, self.gmm_ = model, _Mixture(**{a: tensors[a].double().numpy() for a in self.GMM_STATE})
        return self

    def sample_latents(self, n: int) -> torch.Tensor:
        """``n`` draws, the same as scikit-learn's ``GaussianMixture.sample`` with ``random_state=seed``
        (a multinomial count per component, then each component's draws in turn)."""
        if self.gmm_ is None:
            raise ModelError("call fit(model, train) first")
        rng = np.random.RandomState(self.seed)
        counts = rng.multinomial(n, self.gmm_.weights_)
        z = np.vstack([rng.multivariate_normal(m, c, int(k)) for m, c, k in zip(self.gmm_.means_, self.gmm_.covariances_, counts)])
        return torch.from_numpy(z).float()

    def log_prob_codes(self, z: torch.Tensor) -> torch.Tensor:
        """The mixture's log-density of each code (what scikit-learn's ``score_samples`` gives), in float64:
        log sum_k w_k N(z; mu_k, Sigma_k) with Sigma_k^-1 = P_k P_k^T (``precisions_cholesky_``)."""
        if self.gmm_ is None:
            raise ModelError("call fit(model, train) first")
        x = z.detach().double().cpu()
        chol = torch.from_numpy(np.ascontiguousarray(self.gmm_.precisions_cholesky_))
        mu = torch.from_numpy(np.ascontiguousarray(self.gmm_.means_))
        y = torch.einsum("nd,kde->nke", x, chol) - torch.einsum("kd,kde->ke", mu, chol)  # [N, K, D]
        logdet = torch.diagonal(chol, dim1=-2, dim2=-1).log().sum(-1)  # log |P_k| = 1/2 log |Sigma_k^-1|
        logn = -0.5 * (x.shape[1] * math.log(2 * math.pi) + y.pow(2).sum(-1)) + logdet
        return torch.logsumexp(logn + torch.from_numpy(np.asarray(self.gmm_.weights_)).log(), dim=1)


class _Mixture:
    """A kept mixture's arrays under scikit-learn's attribute names."""

    def __init__(self, **arrays: np.ndarray):
        self.__dict__.update(arrays)


def make_sampler(name: str, **kw) -> PriorSampler:
    if name not in SAMPLERS:
        raise ConfigError(f"unknown sampler {name!r}; choose one of: {', '.join(SAMPLERS)}")
    return SAMPLERS[name](**kw)
