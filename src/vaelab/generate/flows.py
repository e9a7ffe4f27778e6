"""Samplers that fit a density to the training codes E[z|x] after training (ex-post density
estimation): normalising flows from zuko (``maf``, ``iaf``) and a second VAE on the codes
(``two-stage``, Dai & Wipf 2019). Each is fitted by maximum likelihood with Adam for a fixed number
of steps under its seed, on the model's device, and has ``log_prob_codes``.

The codes are standardised per unit (the training codes' mean and standard deviation) before the
density is fitted; ``log_prob_codes`` is the log-density in the model's own code space (the
standardisation's log-Jacobian included), so it compares with the gmm's and the prior's."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..data import ImageSet
from ..errors import ConfigError, ModelError
from ..models import Autoencoder, embed_images
from ..objectives import log_mean_exp
from ..progress import Progress
from .samplers import PriorSampler, register_sampler


def _device(model: Autoencoder) -> torch.device:
    return next(model.parameters()).device


def _rng(device: torch.device):
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])


class _FittedSampler(PriorSampler):
    """The shared part: options, the standardised training codes, the Adam loop and the kept state
    (the standardisation, the fitting curve and the network ``make_net`` builds, held in ``net_attr``)."""

    needs_train = True
    net_attr = ""  # the attribute that holds the fitted network

    def __init__(self, steps: int = 2000, lr: float = 1e-3, batch_size: int = 256, seed: int = 0, max_fit_images: int = 20_000):
        super().__init__(seed)
        for what, v in (("steps", steps), ("batch_size", batch_size), ("max_fit_images", max_fit_images)):
            if v < 1:
                raise ConfigError(f"{type(self).__name__}: {what} must be >= 1, got {v}")
        if lr <= 0:
            raise ConfigError(f"{type(self).__name__}: lr must be > 0, got {lr}")
        self.steps, self.lr, self.batch_size, self.max_fit_images = steps, lr, batch_size, max_fit_images
        self.loc_: torch.Tensor | None = None
        self.scale_: torch.Tensor | None = None
        self.losses_: torch.Tensor | None = None  # the minibatch loss of every step (a fitting curve)

    def _codes(self, model: Autoencoder, train: ImageSet | None) -> torch.Tensor:
        if train is None:
            raise ConfigError(f"the {type(self).__name__} is fitted on the training images' codes: pass the training set")
        self.model_ = model
        z = embed_images(model, train.limit(self.max_fit_images, self.seed)).float().to(_device(model))
        if len(z) < 2:
            raise ConfigError(f"{type(self).__name__} needs at least 2 training images to fit a density, got {len(z)}")
        self.loc_, self.scale_ = z.mean(0), z.std(0).clamp_min(1e-6)
        return (z - self.loc_) / self.scale_

    def _fit(self, module: nn.Module, u: torch.Tensor, nll) -> None:
        """Adam on the mean of ``nll(batch)`` over ``steps`` minibatches drawn with the seed."""
        g = torch.Generator().manual_seed(self.seed)
        opt = torch.optim.Adam(module.parameters(), lr=self.lr)
        losses = torch.zeros(self.steps, device=u.device)
        bs = min(self.batch_size, len(u))
        module.train()
        with torch.enable_grad(), Progress(f"fitting the {self.name} sampler", self.steps, "steps") as progress:
            for step in range(self.steps):
                idx = torch.randint(0, len(u), (bs,), generator=g).to(u.device)
                loss = nll(u[idx]).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses[step] = loss.detach()
                progress.update()
        module.eval()
        self.losses_ = losses.cpu()

    def make_net(self, model: Autoencoder, d: int) -> nn.Module:
        """The untrained density network over ``d`` standardised code units."""
        raise NotImplementedError

    def _fit_net(self, model: Autoencoder, train: ImageSet | None, nll) -> None:
        """Standardise the training codes, build the network under the seed and fit ``nll(net, batch)``."""
        u = self._codes(model, train)
        with _rng(u.device):
            torch.manual_seed(self.seed)
            net = self.make_net(model, u.shape[1]).to(u.device)
            setattr(self, self.net_attr, net)
            self._fit(net, u, lambda b: nll(net, b))

    def fitted_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        net = getattr(self, self.net_attr)
        tensors = {"loc": self.loc_, "scale": self.scale_, "losses": self.losses_}
        return {**tensors, **{f"net.{k}": v for k, v in net.state_dict().items()}}, {}

    def load_fitted(self, model: Autoencoder, tensors: dict[str, torch.Tensor], values: dict[str, Any]) -> "_FittedSampler":
        dev = _device(model)
        self.model_ = model
        self.loc_, self.scale_, self.losses_ = tensors["loc"].to(dev), tensors["scale"].to(dev), tensors["losses"]
        with torch.random.fork_rng(devices=[]):  # the initialisation it replaces draws from no one's generator
            net = self.make_net(model, self.loc_.shape[0]).to(dev)
        net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})  # strict: any other shape is refused
        setattr(self, self.net_attr, net.eval())
        return self

    def _to_codes(self, u: torch.Tensor) -> torch.Tensor:
        return u * self.scale_ + self.loc_

    def _log_jacobian(self) -> torch.Tensor:
        return self.scale_.log().sum()


class FlowSampler(_FittedSampler):
    """A zuko masked autoregressive flow over the standardised codes: ``transforms`` affine
    autoregressive transforms, each a masked MLP of ``hidden`` widths, unit order flipped between
    them, a standard normal base."""

    inverse = False  # True: the IAF (the same transforms run the other way)
    net_attr = "flow_"

    def __init__(self, transforms: int = 3, hidden: tuple[int, ...] | list[int] = (64, 64), steps: int = 2000, lr: float = 1e-3,
                 batch_size: int = 256, seed: int = 0, max_fit_images: int = 20_000):
        super().__init__(steps, lr, batch_size, seed, max_fit_images)
        if transforms < 1:
            raise ConfigError(f"{type(self).__name__}: transforms must be >= 1, got {transforms}")
        self.transforms, self.hidden = transforms, tuple(hidden)
        self.flow_ = None

    def make_net(self, model: Autoencoder, d: int) -> nn.Module:
        from .._zuko import zuko

        maf = zuko.flows.MAF(d, transforms=self.transforms, hidden_features=self.hidden)
        # an IAF: zuko's pattern, the MAF's transform inverted over the same base (zuko discussion #72)
        return zuko.flows.Flow(maf.transform.inv, maf.base) if self.inverse else maf

    def fit(self, model: Autoencoder, train: ImageSet | None = None) -> "FlowSampler":
        self._fit_net(model, train, lambda flow, b: -flow().log_prob(b))
        return self

    def _check_fitted(self) -> None:
        if self.flow_ is None:
            raise ModelError("call fit(model, train) first")

    @torch.no_grad()
    def sample_latents(self, n: int) -> torch.Tensor:
        self._check_fitted()
        with _rng(self.loc_.device):
            torch.manual_seed(self.seed)
            return self._to_codes(self.flow_().sample((n,))).cpu()

    @torch.no_grad()
    def log_prob_codes(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z): the flow's log-density of the standardised codes minus sum log scale."""
        self._check_fitted()
        u = (z.to(self.loc_) - self.loc_) / self.scale_
        return (self.flow_().log_prob(u) - self._log_jacobian()).double().cpu()


@register_sampler("maf")
class MAFSampler(FlowSampler):
    """A masked autoregressive flow (Papamakarios et al. 2017) fitted to the training codes: the
    log-density is one pass per transform (fast fitting), sampling one pass per latent unit."""


@register_sampler("iaf")
class IAFSampler(FlowSampler):
    """An inverse autoregressive flow (Kingma et al. 2016) fitted to the training codes: the MAF's
    transforms run the other way, so sampling is one pass per transform and the log-density (which
    the fit maximises) one pass per latent unit and transform: slower to fit than ``maf``."""

    inverse = True


@register_sampler("two-stage")
class TwoStageSampler(_FittedSampler):
    """Two-stage VAE (Dai & Wipf, "Diagnosing and enhancing VAE models", ICLR 2019): a second VAE
    (vaelab's VAE on vectors: an MLP of ``hidden`` widths, ``latent_dim`` units - the model's by
    default - a Gaussian likelihood with a learned variance, the paper's gamma) trained on the
    standardised training codes. Sampling draws u ~ N(0, I), decodes it to a code with the second
    VAE (its mean) and decodes that with the model. ``log_prob_codes`` is the second VAE's
    importance-sampled log-likelihood of the codes with ``nll_k`` samples (an estimate, a lower
    bound in expectation)."""

    def __init__(self, latent_dim: int | None = None, hidden: tuple[int, ...] | list[int] = (256, 256), steps: int = 2000,
                 lr: float = 1e-3, batch_size: int = 256, seed: int = 0, max_fit_images: int = 20_000, nll_k: int = 200):
        super().__init__(steps, lr, batch_size, seed, max_fit_images)
        if latent_dim is not None and latent_dim < 1:
            raise ConfigError(f"TwoStageSampler: latent_dim must be >= 1 (or None: the model's), got {latent_dim}")
        if nll_k < 1:
            raise ConfigError(f"TwoStageSampler: nll_k must be >= 1, got {nll_k}")
        self.latent_dim, self.hidden, self.nll_k = latent_dim, tuple(hidden), nll_k
        self.second_ = None

    net_attr = "second_"

    def make_net(self, model: Autoencoder, d: int) -> nn.Module:
        from ..models import build, make_config

        cfg = make_config("vae", {"arch": "mlp", "mlp_hidden": list(self.hidden), "latent_dim": self.latent_dim or model.latent_dim,
                                  "likelihood": "gaussian", "learn_std": True})
        return build(cfg, (d,))

    def fit(self, model: Autoencoder, train: ImageSet | None = None) -> "TwoStageSampler":
        self._fit_net(model, train, lambda second, b: second.loss(b).terms["nelbo"])
        return self

    def _check_fitted(self) -> None:
        if self.second_ is None:
            raise ModelError("call fit(model, train) first")

    @torch.no_grad()
    def sample_latents(self, n: int) -> torch.Tensor:
        self._check_fitted()
        v = self.second_.sample_prior(n, torch.Generator().manual_seed(self.seed))
        return self._to_codes(self.second_.decode(v).mean).cpu()

    @torch.no_grad()
    def log_prob_codes(self, z: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        self._check_fitted()
        u = (z.to(self.loc_) - self.loc_) / self.scale_
        out = []
        with _rng(u.device):
            torch.manual_seed(self.seed)
            for i in range(0, len(u), batch_size):
                lw = self.second_.log_weights(u[i : i + batch_size], self.nll_k)[0]
                out.append(log_mean_exp(lw.double(), 0))
        lp = torch.cat(out) if out else torch.zeros(0, dtype=torch.float64, device=u.device)
        return (lp - self._log_jacobian().double()).cpu()


__all__ = ["FlowSampler", "IAFSampler", "MAFSampler", "TwoStageSampler"]
