"""The model contract every family meets, and the pieces they share."""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import nn
from torch.distributions import Distribution

from ..errors import ConfigError, ModelError
from ..nn import ACTIVATIONS, build_networks
from ..nn.networks import check_latent_channels
from ..objectives import importance_log_weights, kl_to_prior, pixel_likelihood, standard_normal
from ..objectives.discretized import DiscretizedGaussian
from ..objectives.logistic_mixture import from_params, num_params

DISCRETE_LIKELIHOODS = ("dgaussian", "dlogistic")
# the widest layer or code a config may ask for: far beyond any model of these datasets, and small
# enough that a typo (latent_dim=10000000) is refused before gigabytes are allocated
MAX_WIDTH = 1 << 16


@dataclass
class ModelConfig:
    """Options every model shares. ``image_shape`` is filled in from the data when built."""

    # a model whose decoder can take the encoder's skip tensors (the deterministic AEs) sets True
    supports_unet: ClassVar[bool] = False
    # options added with a default other than what runs saved before them were built with: the value
    # a saved config that lacks the key means (RunConfig.load fills it in), so old runs load as trained
    defaults_before: ClassVar[dict[str, Any]] = {}

    name: str = "vae"
    latent_dim: int = 16
    arch: Literal["conv", "resnet", "mlp", "linear", "unet"] = "conv"  # unet: the deterministic AEs only
    res_blocks: int = 1  # residual blocks per resolution stage when arch=resnet
    conv_channels: list[int] | None = None  # None: chosen from the image size
    hidden_dim: int = 256
    # 0: the code is a vector behind a fully connected layer of hidden_dim units. C > 0 (arch=conv or resnet,
    # models with code_maps): the code is a map of C channels at the last conv stage's resolution, its vector
    # that map flattened (latent_dim = C * h * w, filled in from the image size when not given)
    latent_channels: int = 0
    mlp_hidden: list[int] = field(default_factory=lambda: [512, 256])
    activation: str = "relu"
    # p(x|z) per pixel: bernoulli (grey levels as targets), gaussian, or, for 8-bit images, a discretised
    # Gaussian (dgaussian) or a PixelCNN++ mixture of discretised logistics (dlogistic): probability masses
    # over the 256 levels, so the NLL in bits per dimension is an honest code length
    likelihood: Literal["bernoulli", "gaussian", "dgaussian", "dlogistic"] = "bernoulli"
    n_mix: int = 5  # dlogistic: mixture components per pixel
    channel_conditioning: bool = False  # dlogistic on colour: the G and B means depend linearly on R (and G), as in PixelCNN++
    gaussian_std: float = 1.0  # fixed std, or the initial one when learn_std
    learn_std: bool = False  # learn one shared std of the Gaussian likelihood
    image_shape: list[int] | None = None
    networks: str | None = None  # set when trained with your own encoder and decoder (their classes)

    def __post_init__(self) -> None:
        if not 1 <= self.latent_dim <= MAX_WIDTH:
            raise ConfigError(f"model.latent_dim must be in 1..{MAX_WIDTH}, got {self.latent_dim}")
        if not 1 <= self.hidden_dim <= MAX_WIDTH:
            raise ConfigError(f"model.hidden_dim must be in 1..{MAX_WIDTH}, got {self.hidden_dim}")
        for key in ("conv_channels", "mlp_hidden"):
            widths = getattr(self, key)
            if widths is not None and (len(widths) > 64 or not all(1 <= w <= MAX_WIDTH for w in widths)):
                raise ConfigError(f"model.{key} must be a list of at most 64 widths in 1..{MAX_WIDTH}, got {widths}")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"unknown activation {self.activation!r}; choose one of: {', '.join(ACTIVATIONS)}")
        if self.res_blocks < 1:
            raise ConfigError(f"model.res_blocks (residual blocks per resolution, arch=resnet) must be >= 1, got {self.res_blocks}")
        if self.latent_channels < 0:
            raise ConfigError(f"model.latent_channels must be >= 0 (0: a code that is a vector), got {self.latent_channels}")
        check_latent_channels(self.arch, self.latent_channels)
        if self.gaussian_std <= 0:
            raise ConfigError(f"model.gaussian_std must be > 0, got {self.gaussian_std}")
        if self.n_mix < 1:
            raise ConfigError(f"model.n_mix (components of the dlogistic mixture) must be >= 1, got {self.n_mix}")
        if self.arch == "unet" and not self.supports_unet:
            raise ConfigError(f"model.arch=unet is for the deterministic autoencoders (ae, denoising-ae, sparse-ae, "
                              f"contractive-ae), not {self.name}: a U-Net's decoder sees the input through its skips, so "
                              "its likelihood would no longer be p(x | z) alone. Use model.arch=conv, or one of those models")
        if self.image_shape is not None and not (len(self.image_shape) == 1 and self.image_shape[0] >= 1) and (
                len(self.image_shape) != 3 or self.image_shape[0] not in (1, 3)):
            raise ConfigError(f"model.image_shape must be [C, H, W] with C in 1, 3 (images) or [D] (vectors); got {self.image_shape}")

    def fill_from_labels(self, num_classes: int | None) -> None:
        """Complete what only the training labels can tell (``num_classes``: 1 + the largest label,
        None for unlabelled data); a model conditioned on labels overrides this."""

    def fill_from_data(self, n_train: int | None, image_shape: tuple[int, ...]) -> None:
        """Complete what only the training data can tell (the example's shape; some models more).
        On vectors (shape (D,)) the image networks do not apply: an architecture left at its
        default becomes ``mlp`` and a likelihood left at Bernoulli becomes Gaussian (vectors are
        real numbers, standardised by default); an image architecture asked for is refused."""
        self.image_shape = list(image_shape)
        chosen = getattr(self, "_set_keys", set())
        if self.latent_channels and len(image_shape) == 3:
            from ..nn import code_map_shape

            c, h, w = code_map_shape(tuple(image_shape), self.conv_channels, self.latent_channels)
            if "latent_dim" in chosen and self.latent_dim != c * h * w:
                raise ConfigError(f"model.latent_channels={c} on {image_shape[1]}x{image_shape[2]} images makes the code a "
                                  f"{c}x{h}x{w} map, {c * h * w} numbers, but model.latent_dim={self.latent_dim}: set "
                                  f"model.latent_dim={c * h * w}, or leave it out and it is filled in")
            self.latent_dim = c * h * w
        if len(image_shape) == 1:
            if self.arch in ("conv", "resnet", "unet"):
                if "arch" in chosen:
                    raise ConfigError(f"model.arch={self.arch} is for images; these data are vectors of {image_shape[0]} "
                                      "numbers: use model.arch=mlp (the default for vectors) or linear")
                self.arch = "mlp"
            if self.likelihood == "bernoulli" and "likelihood" not in chosen:
                self.likelihood = "gaussian"


@dataclass
class LossOutput:
    """``loss``: the scalar to back-propagate. ``terms``: per-sample tensors (rec, kl, ...)."""

    loss: torch.Tensor
    terms: dict[str, torch.Tensor]


class Autoencoder(nn.Module):
    """The model contract: encode(x) -> posterior q(z|x), decode(z) -> likelihood p(x|z),
    prior() -> p(z), loss(x) -> LossOutput; all distributions are torch.distributions objects.

    A model declares what it can do in class attributes, read by every job that needs one (a job
    refuses a model that lacks it, naming the capability and the models that have it):
    ``can_sample`` (new samples from ``prior()``), ``has_density`` (q(z|x) and p(z) are densities:
    ELBO, importance-sampled NLL, the ``nelbo``/``nll`` scores), ``takes_labels`` (``loss`` takes
    ``labels=``), ``denoises`` (has ``denoise``), ``explains`` (has attention maps of its own),
    ``custom_networks`` (accepts your own ``encoder=``/``decoder=``), ``conditional`` (``decode`` and
    ``sample`` take a class label), ``adversarial`` (a ``discriminator`` module trained by
    ``discriminator_loss`` with an optimizer of its own: the trainer alternates the two steps),
    ``compile_pays`` (a long run trains faster with ``torch.compile`` of the loss once its compile
    time is paid: ``train.compile=auto`` compiles it; declared only from a measurement),
    ``code_maps`` (its heads and decoder take a code that is a map, ``model.latent_channels`` > 0),
    ``restores`` (restores erased attributes: ``restoration_error``, ``transform_nll``)."""

    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    can_sample: ClassVar[bool] = False
    has_density: ClassVar[bool] = False
    takes_labels: ClassVar[bool] = False
    denoises: ClassVar[bool] = False
    explains: ClassVar[bool] = False
    custom_networks: ClassVar[bool] = False
    conditional: ClassVar[bool] = False
    adversarial: ClassVar[bool] = False
    compile_pays: ClassVar[bool] = False
    code_maps: ClassVar[bool] = False
    restores: ClassVar[bool] = False

    def __init__(self, config: ModelConfig, encoder: nn.Module | None = None, decoder: nn.Module | None = None):
        super().__init__()
        if config.image_shape is None:
            raise ModelError("model config has no image_shape; build models with vaelab.models.build(config, image_shape)")
        self.config = config
        self.image_shape = tuple(config.image_shape)
        self.latent_dim = config.latent_dim
        if config.latent_channels and not self.code_maps:
            raise ConfigError(f"{config.name} takes a code that is a vector only: leave model.latent_channels=0. Models whose "
                              f"code can be a map: {', '.join(_models_with('code_maps'))}")
        if config.latent_channels and (encoder is not None or decoder is not None):
            raise ConfigError("model.latent_channels shapes the built-in conv networks; with your own encoder= and decoder= "
                              "leave it at 0 (your networks decide the code's layout)")
        if encoder is None and decoder is None:
            if config.networks:
                raise ModelError(f"this {config.name} was trained with networks of your own ({config.networks}); pass the "
                                 "same encoder= and decoder= (e.g. vaelab.load(run_dir, encoder=..., decoder=...))")
            self.build_networks(config)
        else:
            self.use_networks(encoder, decoder)
        self.input_checks = True  # the trainer turns the value-range check off: its batches are uint8 / 255
        if config.likelihood == "gaussian" and config.learn_std:
            self.log_std = nn.Parameter(torch.tensor(math.log(config.gaussian_std)))
        else:
            self.register_buffer("log_std", torch.tensor(math.log(config.gaussian_std)), persistent=False)

    @property
    def discrete_likelihood(self) -> bool:
        """True when p(x|z) is a probability mass over the 256 levels of 8-bit pixels (dgaussian,
        dlogistic): then -log p(x) is a code length, and the NLL metric reports bits per dimension."""
        return self.config.likelihood in DISCRETE_LIKELIHOODS

    def likelihood_channels(self) -> int:
        """The decoder's output channels: one parameter per channel (Bernoulli logits, a Gaussian
        mean), two for the discretised Gaussian (location, log-scale), the mixture's for dlogistic."""
        c = self.image_shape[0]
        kind = self.config.likelihood
        if kind in DISCRETE_LIKELIHOODS and self.is_vector:
            raise ConfigError(f"model.likelihood={kind} is for 8-bit images; these data are vectors: use gaussian")
        if kind == "dgaussian":
            return 2 * c
        if kind == "dlogistic":
            if self.config.channel_conditioning and c != 3:
                raise ConfigError("model.channel_conditioning conditions the G and B means on R: it needs colour images")
            return num_params(self.config.n_mix, c, self.config.channel_conditioning)
        return c

    def posterior_width(self) -> int:
        """How many numbers per example the posterior's parameters take (what your own encoder
        outputs): latent_dim for a point mass; a Gaussian posterior overrides it with 2 * latent_dim."""
        return self.latent_dim

    def use_networks(self, encoder: nn.Module | None, decoder: nn.Module | None) -> None:
        """Your own networks. ``encoder``: (B, *example shape) -> (B, posterior_width()), the
        posterior's parameters (a VAE: the mean, then the log-variance, latent_dim each; an AE: the
        code). ``decoder``: (B, latent_dim) -> (B, *example shape), the likelihood's parameters
        (Bernoulli logits or the Gaussian mean). Both are checked on a batch of zeros."""
        name = self.config.name
        if not self.custom_networks:
            raise ModelError(f"{name} builds its own networks and takes no encoder= / decoder= (custom_networks = False). "
                             f"Models that do: {', '.join(_models_with('custom_networks'))}")
        if encoder is None or decoder is None:
            raise ModelError(f"{name}: pass both encoder= and decoder= (one of them is missing)")
        if not isinstance(encoder, nn.Module) or not isinstance(decoder, nn.Module):
            raise ModelError(f"{name}: encoder and decoder must be torch.nn.Module objects, got "
                             f"{type(encoder).__name__} and {type(decoder).__name__}")
        width = self.posterior_width()
        with torch.no_grad():
            try:
                h = encoder(torch.zeros(2, *self.image_shape))
            except Exception as e:
                raise ModelError(f"{name}: your encoder fails on a batch of shape (2, {', '.join(map(str, self.image_shape))}) "
                                 f"({type(e).__name__}: {e})") from e
            if not isinstance(h, torch.Tensor) or tuple(h.shape) != (2, width):
                raise ModelError(f"{name}: your encoder must map (B, {', '.join(map(str, self.image_shape))}) to (B, {width}) "
                                 f"(the posterior's parameters for latent_dim={self.latent_dim}); it gave "
                                 f"{tuple(h.shape) if isinstance(h, torch.Tensor) else type(h).__name__}")
            try:
                out = decoder(torch.zeros(2, self.latent_dim))
            except Exception as e:
                raise ModelError(f"{name}: your decoder fails on a batch of codes of shape (2, {self.latent_dim}) "
                                 f"({type(e).__name__}: {e})") from e
            want = (self.likelihood_channels(), *self.image_shape[1:]) if not self.is_vector else self.image_shape
            if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, *want):
                raise ModelError(f"{name}: your decoder must map (B, {self.latent_dim}) to (B, {', '.join(map(str, want))}) "
                                 f"(the likelihood's parameters); it gave {tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}")
        self.encoder, self.decoder, self.feature_dim = encoder, decoder, width
        self.own_networks = True
        self.config.networks = f"{type(encoder).__module__}.{type(encoder).__qualname__} / {type(decoder).__module__}.{type(decoder).__qualname__}"

    def build_networks(self, config: ModelConfig) -> None:
        """Set ``encoder``, ``decoder`` and ``feature_dim``; a family with other networks overrides this."""
        self.encoder, self.decoder, self.feature_dim = build_networks(
            config.arch, self.image_shape, config.latent_dim, self.likelihood_channels(),
            conv_channels=config.conv_channels, hidden_dim=config.hidden_dim,
            mlp_hidden=config.mlp_hidden, activation=config.activation, res_blocks=config.res_blocks,
            latent_channels=config.latent_channels,
        )

    # -- the contract --------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> Distribution:
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> Distribution:
        return self.likelihood(self.decoder(z))

    def prior(self) -> Distribution:
        """p(z), a distribution over latent vectors (event shape (latent_dim,)): the standard normal
        unless a model overrides it (a learned mixture, a flow, ...). Whatever needs p(z) - the KL,
        IWAE, the NLL, the likelihood scores, the prior sampler, traversal spans - asks this."""
        p = next(iter(self.parameters()), None)
        return standard_normal(self.latent_dim, device=None if p is None else p.device,
                               dtype=None if p is None or not p.is_floating_point() else p.dtype)

    def loss(self, x: torch.Tensor, kl_weight: float | torch.Tensor = 1.0) -> LossOutput:
        raise NotImplementedError

    # -- bounds shared by every model with a density -----------------------------------------------
    def kl(self, q: Distribution, z: torch.Tensor | None = None) -> torch.Tensor:
        """KL(q(z|x) || prior()) per sample, analytic or Monte Carlo at ``z`` (objectives.kl_to_prior)."""
        return kl_to_prior(q, self.prior(), z)

    def log_weights(self, x: torch.Tensor, k: int, q: Distribution | None = None,
                    kl_weight: float | torch.Tensor = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """([k, B] log importance weights log p(x|z) + log p(z) - log q(z|x), [k, B] log p(x|z)) for
        k samples of q(z|x) (encoded here unless given), decoded in one batched call."""
        self.require("has_density", "importance weights")
        q = self.encode(x) if q is None else q
        return importance_log_weights(x, q, self.decode, self.prior(), k, kl_weight)

    # -- adversarial models ------------------------------------------------------------------------
    def discriminator_loss(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> LossOutput:
        """An adversarial model's discriminator objective on the batch ``x`` (its terms are logged
        beside the model's); the trainer steps ``discriminator``'s parameters on it after each step
        of the others on ``loss``."""
        raise NotImplementedError(f"{self.config.name} has no discriminator (adversarial = False)")

    def generator_parameters(self) -> list[nn.Parameter]:
        """The parameters ``loss`` trains: all but the discriminator's."""
        disc = getattr(self, "discriminator", None)
        skip = {id(p) for p in disc.parameters()} if disc is not None else set()
        return [p for p in self.parameters() if id(p) not in skip]

    def require(self, capability: str, what: str) -> None:
        """Refuse ``what`` unless this model declares ``capability`` (see the class docstring)."""
        from .registry import require

        require(self, capability, what)

    # -- shared helpers ----------------------------------------------------------------------
    def likelihood(self, params: torch.Tensor) -> Distribution:
        """p(x|z) from the decoder's output ``params`` ([B, likelihood_channels(), H, W])."""
        kind = self.config.likelihood
        if kind == "dgaussian":
            c = self.image_shape[0]
            return DiscretizedGaussian(params[:, :c], params[:, c:], event_dims=3)
        if kind == "dlogistic":
            return from_params(params, self.config.n_mix, self.image_shape[0], self.config.channel_conditioning)
        std = self.log_std.exp().clamp_min(1e-3) if kind == "gaussian" else None
        return pixel_likelihood(kind, params, std, len(self.image_shape))

    @property
    def is_vector(self) -> bool:
        """True for a model of N x D vectors (tabular data), False for images."""
        return len(self.image_shape) == 1

    def check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 1 + len(self.image_shape) or tuple(x.shape[1:]) != self.image_shape:
            if self.is_vector:
                raise ModelError(f"{self.config.name} expects vectors of shape (N, {self.image_shape[0]}); got {tuple(x.shape)}. "
                                 "Give the same columns the model was trained on")
            raise ModelError(
                f"{self.config.name} expects images of shape (N, {', '.join(map(str, self.image_shape))}); "
                f"got {tuple(x.shape)}. Resize the data (data.size, data.channels) or train a model for this shape."
            )

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every model's ``encode`` and ``loss`` check their input first (check_values), so a
        model written in one file gets the same checks as the built-in ones."""
        super().__init_subclass__(**kwargs)
        for name in ("encode", "loss"):
            fn = cls.__dict__.get(name)
            if fn is not None and not getattr(fn, "_checks_input", False):
                setattr(cls, name, _checking_input(fn))

    def check_values(self, x: Any) -> None:
        """Images reach a model as floats in [0, 1]: a uint8 tensor or 0..255 floats is refused with
        the fix, instead of a raw torch error or a silently huge loss. The value check costs a
        reduction per batch; it is skipped inside function transforms (vmap, jvp), for CUDA batches
        while training (a host sync per step) and while vaelab's trainer feeds uint8 / 255 batches."""
        if not isinstance(x, torch.Tensor):
            return
        if self.is_vector:
            if x.is_floating_point() and self.config.likelihood == "bernoulli" and self.input_checks and x.numel() \
                    and not torch._C._functorch.is_functorch_wrapped_tensor(x):
                lo, hi = (float(v) for v in torch.aminmax(x.detach()))
                if not (math.isfinite(lo) and math.isfinite(hi)):
                    raise ModelError(f"{self.config.name} got vectors with NaN or infinite values; drop or impute them")
                if lo < -1e-6 or hi > 1 + 1e-6:
                    raise ModelError(f"{self.config.name} has a Bernoulli likelihood, which takes values in [0, 1]; got "
                                     f"[{lo:.4g}, {hi:.4g}]. Use model.likelihood=gaussian for real-valued vectors")
            return
        if not x.is_floating_point():
            raise ModelError(f"{self.config.name} takes images as floats in [0, 1], got a {x.dtype} tensor; "
                             "convert uint8 images with x.float() / 255")
        if not self.input_checks or (x.is_cuda and self.training) or x.numel() == 0:
            return
        if torch._C._functorch.is_functorch_wrapped_tensor(x):
            return
        lo, hi = torch.aminmax(x.detach())
        lo, hi = float(lo), float(hi)
        if not (math.isfinite(lo) and math.isfinite(hi)):  # min / max propagate NaN
            raise ModelError(f"{self.config.name} got images with NaN or infinite values; drop or repair those images "
                             "(images are floats in [0, 1])")
        if lo < -1e-6 or hi > 1 + 1e-6:
            # a Bernoulli likelihood needs [0, 1]; a Gaussian one models any real values (a PCA-like linear AE on
            # centred data), so there only what looks like 0..255 pixel values is refused
            looks_8bit = lo >= 0 and hi > 1.5 and bool((x.detach() == x.detach().round()).all())
            if self.config.likelihood not in ("bernoulli", *DISCRETE_LIKELIHOODS) and not looks_8bit:
                return
            fix = "divide 0..255 images by 255" if hi > 1.5 else "clamp or rescale them to [0, 1]"
            raise ModelError(f"{self.config.name} takes images with values in [0, 1], got values in [{lo:.4g}, {hi:.4g}]; {fix}")

    def mean_image(self, px: Distribution) -> torch.Tensor:
        """The likelihood's mean: an image in [0, 1], or for vectors the (standardised) values as they are.
        For the discretised likelihoods, the mean of the continuous distribution clamped to [0, 1]
        (``image_mean``: closed form, within half a grey level of the discretised mean)."""
        if hasattr(px, "image_mean"):
            return px.image_mean
        return px.mean if self.is_vector else px.mean.clamp(0, 1)

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Posterior means: the representation used by probes and detectors."""
        return self.encode(x).mean

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder network's output before the latent heads, one flat vector per image (what
        the few-label transfer trains its head on when the encoder is frozen)."""
        return self.encoder(x).flatten(1)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.mean_image(self.decode(self.encode(x).mean))

    @torch.no_grad()
    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` codes drawn from ``prior()``; the same ``generator`` state gives the same codes."""
        self.require("can_sample", "sampling from the prior")
        p = self.prior()
        if generator is None:
            return p.sample((n,))
        dev = next(self.parameters()).device
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
            return p.sample((n,))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` new examples: the likelihood's mean at codes drawn from ``prior()``."""
        return self.mean_image(self.decode(self.sample_prior(n, generator)))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def _checking_input(fn: Any) -> Any:
    @functools.wraps(fn)
    def checked(self: Autoencoder, x: Any, *args: Any, **kwargs: Any) -> Any:
        self.check_values(x)
        return fn(self, x, *args, **kwargs)

    checked._checks_input = True  # type: ignore[attr-defined]
    return checked


def _models_with(capability: str) -> list[str]:
    from .registry import models_with

    return models_with(capability)


class Split(nn.Module):
    """Columns [start, stop) of a (B, F) tensor: a posterior head over your own encoder's output."""

    def __init__(self, start: int, stop: int):
        super().__init__()
        self.start, self.stop = start, stop

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h[:, self.start : self.stop]
