"""A learned prior over a VQ-VAE's grid of code indices, so that a discrete model generates
(sampler ``code-prior``): a small decoder-only transformer over the grid read in raster order,
p(k_1..k_n) = prod_t p(k_t | k_<t), fitted by maximum likelihood to the frozen encoder's codes of
the training images (van den Oord et al. 2017 fit a PixelCNN there; a causal transformer has no
blind spot and the grids here are short: 7 x 7 for 28 x 28 images).

``fit`` keeps 10% of the training grids (seeded) aside and records the prior's negative
log-likelihood in bits per grid position on them (``heldout_bits_per_dim_``) and on the grids it
was fitted on (``train_bits_per_dim_``); ``bits_per_dim(model, images)`` measures other images
(the test split). ``sample`` draws grids position by position and decodes their codebook vectors
with the model."""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data import ImageSet
from ..errors import ConfigError, ModelError
from ..models import Autoencoder
from ..progress import Progress
from .samplers import PriorSampler, register_sampler


class CodeTransformer(nn.Module):
    """Causal transformer over ``length`` positions of ``num_codes`` symbols: token and position
    embeddings, ``layers`` pre-norm encoder layers with a causal mask, logits of the next symbol.
    Input position t holds symbol t-1 (position 0 a start symbol), so output t predicts symbol t."""

    def __init__(self, num_codes: int, length: int, width: int = 128, layers: int = 2, heads: int = 4, dropout: float = 0.0):
        super().__init__()
        self.num_codes, self.length = num_codes, length
        self.token = nn.Embedding(num_codes + 1, width)  # the last index: the start symbol
        self.position = nn.Parameter(torch.zeros(length, width))
        nn.init.normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout, batch_first=True, norm_first=True)
        self.body = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, num_codes))
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(length), persistent=False)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """[B, T] symbols (T <= length) -> [B, T, num_codes] logits of symbols 0..T-1."""
        b, t = codes.shape
        start = torch.full((b, 1), self.num_codes, dtype=torch.long, device=codes.device)
        inp = torch.cat([start, codes[:, :-1]], 1)
        h = self.token(inp) + self.position[:t]
        return self.out(self.body(h, mask=self.mask[:t, :t], is_causal=True))

    def nll(self, codes: torch.Tensor) -> torch.Tensor:
        """-log p(codes) in nats per sequence, [B]."""
        logits = self(codes)
        return F.cross_entropy(logits.transpose(1, 2), codes, reduction="none").sum(1)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        dev = self.position.device
        codes = torch.zeros(n, 0, dtype=torch.long, device=dev)
        for t in range(self.length):
            probe = torch.cat([codes, torch.zeros(n, 1, dtype=torch.long, device=dev)], 1)
            p = self(probe)[:, t].softmax(-1).float().cpu()
            nxt = torch.multinomial(p, 1, generator=generator).to(dev)
            codes = torch.cat([codes, nxt], 1)
        return codes


@register_sampler("code-prior")
class CodePriorSampler(PriorSampler):
    """A causal transformer fitted to a VQ-VAE's code grids (module docstring); ``steps`` Adam steps
    of ``batch_size`` grids at ``lr``, under ``seed``."""

    needs_train = True
    DEFAULT_STEPS = 2000  # Adam steps when none are given

    def __init__(self, steps: int | None = None, lr: float = 1e-3, batch_size: int = 128, width: int = 128, layers: int = 2,
                 heads: int = 4, seed: int = 0, max_fit_images: int = 60_000, heldout: float = 0.1):
        super().__init__(seed)
        steps = self.DEFAULT_STEPS if steps is None else steps
        if steps < 1 or batch_size < 1 or lr <= 0:
            raise ConfigError(f"code-prior: steps and batch_size must be >= 1 and lr > 0; got {steps}, {batch_size}, {lr}")
        if not 0 < heldout < 1:
            raise ConfigError(f"code-prior: heldout (the share of grids kept aside) must be in (0, 1), got {heldout}")
        self.steps, self.lr, self.batch_size = steps, lr, batch_size
        self.width, self.layers, self.heads = width, layers, heads
        self.max_fit_images, self.heldout = max_fit_images, heldout
        self.prior_: CodeTransformer | None = None

    @staticmethod
    def _check_model(model: Autoencoder) -> None:
        if not hasattr(model, "code_indices"):
            raise ModelError(f"the code-prior sampler models a grid of discrete codes (vq-vae); {model.config.name} has "
                             "continuous codes: use the gmm, maf, iaf or two-stage sampler")

    def fit(self, model: Autoencoder, train: ImageSet | None = None) -> "CodePriorSampler":
        self._check_model(model)
        if train is None:
            raise ConfigError("the code-prior sampler is fitted on training images: pass the training set")
        self.model_ = model
        dev = next(model.parameters()).device
        codes = model.code_indices(train.limit(self.max_fit_images, self.seed)).to(dev)  # [N, h*w]
        g = torch.Generator().manual_seed(self.seed)
        perm = torch.randperm(len(codes), generator=g)
        n_held = max(1, int(round(self.heldout * len(codes))))
        held, fit = codes[perm[:n_held]], codes[perm[n_held:]]
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            torch.manual_seed(self.seed)
            self.prior_ = CodeTransformer(model.config.num_codes, codes.shape[1], self.width, self.layers, self.heads).to(dev)
            opt = torch.optim.Adam(self.prior_.parameters(), lr=self.lr)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, self.steps)
            self.prior_.train()
            with torch.enable_grad(), Progress(f"fitting the {self.name} sampler", self.steps, "steps") as progress:
                for _ in range(self.steps):
                    idx = torch.randint(0, len(fit), (min(self.batch_size, len(fit)),), generator=g)
                    loss = self.prior_.nll(fit[idx.to(dev)]).mean()
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    progress.update()
            self.prior_.eval()
        self.train_bits_per_dim_ = self._bits(fit)
        self.heldout_bits_per_dim_ = self._bits(held)
        return self

    def fitted_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        values = {"train_bits_per_dim": self.train_bits_per_dim_, "heldout_bits_per_dim": self.heldout_bits_per_dim_}
        return dict(self.prior_.state_dict()), values

    def load_fitted(self, model: Autoencoder, tensors: dict[str, torch.Tensor], values: dict[str, Any]) -> "CodePriorSampler":
        self._check_model(model)
        dev = next(model.parameters()).device
        with torch.random.fork_rng(devices=[]):  # the initialisation it replaces draws from no one's generator
            prior = CodeTransformer(model.config.num_codes, tensors["position"].shape[0], self.width, self.layers, self.heads)
        prior.load_state_dict(tensors)  # strict: another shape or a missing tensor is refused
        self.model_, self.prior_ = model, prior.to(dev).eval()
        self.train_bits_per_dim_ = float(values["train_bits_per_dim"])
        self.heldout_bits_per_dim_ = float(values["heldout_bits_per_dim"])
        return self

    @torch.no_grad()
    def _bits(self, codes: torch.Tensor, batch_size: int = 1000) -> float:
        total = sum(float(self.prior_.nll(codes[i : i + batch_size]).double().sum()) for i in range(0, len(codes), batch_size))
        return total / (len(codes) * codes.shape[1] * math.log(2))

    def bits_per_dim(self, images: ImageSet) -> float:
        """The prior's negative log-likelihood of ``images``' code grids, bits per grid position."""
        self._check_fitted()
        return self._bits(self.model_.code_indices(images).to(self.prior_.position.device))

    def _check_fitted(self) -> None:
        if self.prior_ is None:
            raise ModelError("call fit(model, train) first")

    def sample_latents(self, n: int) -> torch.Tensor:
        self._check_fitted()
        idx = self.prior_.sample(n, torch.Generator().manual_seed(self.seed))
        return self.model_.codes_to_latent(idx).cpu()

    @torch.no_grad()
    def log_prob_codes(self, z: torch.Tensor) -> torch.Tensor:
        """log p of the code grids whose codebook vectors ``z`` holds (the contract's flattened latent)."""
        self._check_fitted()
        idx = self.model_.latent_to_codes(z.to(self.prior_.position.device))
        return -self.prior_.nll(idx).double().cpu()
