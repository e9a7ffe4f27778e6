"""Greedy layer-wise pretraining of a stacked autoencoder, then supervised fine-tuning.

The network is a stack of fully connected layers on the flattened image and a linear
classification head:

    h_0 = x (pixels in [0, 1], flattened),   h_l = act(W_l h_{l-1} + b_l),   logits = V h_L + c

1. **Pretraining** (unlabelled images). Layer l is the encoder of a shallow autoencoder whose
   linear decoder D_l reconstructs its INPUT, the codes h_{l-1} of the layers below:
   rec_l = sum_d (D_l(h_l) - h_{l-1})_d^2 per image, averaged over the batch. Layers are trained one
   at a time, bottom up; while layer l trains, layers 1..l-1 are frozen (their codes are computed
   once, without gradients, and only W_l, b_l and D_l are in the optimiser).
2. **Fine-tuning step 1** (the labelled images): only the head is trained (cross-entropy), the
   pretrained stack fixed.
3. **Fine-tuning step 2**: the whole stack and the head are trained together (the decoders D_l,
   which only served the pretraining, are left out).

The baseline ("from scratch") is the same network from the SAME initial weights, trained on the same
labelled images end to end for as many epochs as the two fine-tuning steps together.

Everything runs on in-memory tensors, batched by index; randomness comes from ``seed`` only (the
initial weights, every shuffle), so the same seed gives the same result on the same machine.
The labelled images are ``vaelab.train.batches.labelled_indices(len(train), n_labels, seed)``: the
subset the semi-supervised VAE is shown (``model.n_labels``) for the same seed.
"""
from __future__ import annotations

import copy
import csv
import dataclasses
import io
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..data.imageset import to_unit_float
from .._version import __version__
from ..config import check_version, deep_merge, dump_yaml, from_dict, load_yaml, to_dict
from ..data import DataConfig, ImageSet
from ..errors import CheckpointError, ConfigError, DataError, TrainingError
from ..fileio import atomic_path, atomic_write_json, atomic_write_text
from ..nn import ACTIVATIONS, make_activation
from ..train.batches import labelled_indices


@dataclass
class PretrainConfig:
    layers: list[int] = field(default_factory=lambda: [512, 256, 64])  # units of each stacked layer, bottom up
    activation: str = "relu"  # "sigmoid": the classic stacked autoencoders (slower to fine-tune)
    epochs_per_layer: int = 5  # pretraining epochs over the unlabelled training images, per layer
    finetune_epochs: int = 50  # epochs over the labelled images, for EACH fine-tuning step
    n_labels: int | None = 1000  # labelled training images (seeded subset); None: every training label
    batch_size: int = 128
    lr: float = 1e-3  # pretraining (Adam)
    head_lr: float = 1e-2  # fine-tuning step 1, the head alone (Adam)
    finetune_lr: float = 1e-3  # fine-tuning step 2 and the baseline (Adam)
    weight_decay: float = 0.0  # fine-tuning and baseline
    baseline: bool = True  # also train the same network from scratch on the same labels
    device: Literal["auto", "cpu", "cuda"] = "auto"
    eval_batch_size: int = 1000
    image_shape: list[int] | None = None  # filled in from the data
    n_classes: int | None = None  # filled in from the data

    def __post_init__(self) -> None:
        if not self.layers or any(u < 1 for u in self.layers):
            raise ConfigError(f"pretrain.layers must be a non-empty list of positive layer widths (e.g. [512, 256, 64]), got {self.layers}")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"unknown activation {self.activation!r}; choose one of: {', '.join(ACTIVATIONS)}")
        for k in ("epochs_per_layer", "finetune_epochs"):
            if getattr(self, k) < 0:
                raise ConfigError(f"pretrain.{k} must be >= 0, got {getattr(self, k)}")
        for k in ("batch_size", "eval_batch_size"):
            if getattr(self, k) < 1:
                raise ConfigError(f"pretrain.{k} must be >= 1, got {getattr(self, k)}")
        if self.n_labels is not None and self.n_labels < 1:
            raise ConfigError(f"pretrain.n_labels must be >= 1 (or null for every label), got {self.n_labels}")
        for k in ("lr", "head_lr", "finetune_lr"):
            if getattr(self, k) <= 0:
                raise ConfigError(f"pretrain.{k} must be > 0, got {getattr(self, k)}")
        if self.weight_decay < 0:
            raise ConfigError(f"pretrain.weight_decay must be >= 0, got {self.weight_decay}")
        if self.image_shape is not None and (len(self.image_shape) != 3 or self.image_shape[0] not in (1, 3)):
            raise ConfigError(f"pretrain.image_shape must be [C, H, W] with C in 1, 3; got {self.image_shape}")
        if self.n_classes is not None and self.n_classes < 2:
            raise ConfigError(f"pretrain.n_classes must be >= 2, got {self.n_classes}")


@dataclass
class PretrainRunConfig:
    """What ``vaelab pretrain`` writes to config.yaml: data + pretrain + seed."""

    data: DataConfig = field(default_factory=DataConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    seed: int = 0
    vaelab_version: str = __version__

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PretrainRunConfig":
        if not isinstance(d, dict):
            raise ConfigError(f"a pretraining config is a mapping with data, pretrain and seed; got {type(d).__name__}")
        unknown = sorted(str(k) for k in set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(f"unknown top-level key(s) {unknown}; valid: data, pretrain, seed, vaelab_version")
        seed = d.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
            raise ConfigError(f"seed must be an integer in [0, 2**32), got {seed!r}")
        return cls(data=from_dict(DataConfig, d.get("data"), "data."),
                   pretrain=from_dict(PretrainConfig, d.get("pretrain"), "pretrain."),
                   seed=seed, vaelab_version=str(d.get("vaelab_version", __version__)))

    @classmethod
    def build(cls, overrides: dict[str, Any] | None = None) -> "PretrainRunConfig":
        return cls.from_dict(deep_merge({}, overrides or {}))

    def to_dict(self) -> dict[str, Any]:
        return {"vaelab_version": self.vaelab_version, "seed": self.seed, "data": to_dict(self.data),
                "pretrain": to_dict(self.pretrain)}

    def save(self, path: Path) -> None:
        atomic_write_text(path, dump_yaml(self.to_dict()))

    @classmethod
    def load(cls, path: Path) -> "PretrainRunConfig":
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path} not found: this is not a vaelab pretraining directory")
        from ..config import MAX_YAML_BYTES
        from ..runfiles import read_text

        d = load_yaml(read_text(path, MAX_YAML_BYTES), str(path))  # no symlink followed, the size bounded
        if "pretrain" not in d:
            raise CheckpointError(f"{path} is not the config of a `vaelab pretrain` run (no 'pretrain' section); "
                                  "load a training run with vaelab.load instead")
        if "vaelab_version" in d:
            check_version(str(d["vaelab_version"]), str(path))
        return cls.from_dict(d)


# -- the network -----------------------------------------------------------------------------
class StackedClassifier(nn.Module):
    """Fully connected layers on the flattened image (``layers``), their pretraining decoders
    (``decoders[l]`` maps layer l's code back to layer l's input) and a linear ``head``."""

    def __init__(self, image_shape: tuple[int, int, int], widths: list[int], n_classes: int, activation: str = "sigmoid"):
        super().__init__()
        self.image_shape, self.widths, self.n_classes = tuple(image_shape), list(widths), n_classes
        dims = [math.prod(image_shape), *widths]
        self.layers = nn.ModuleList(nn.Linear(dims[i], dims[i + 1]) for i in range(len(widths)))
        self.decoders = nn.ModuleList(nn.Linear(dims[i + 1], dims[i]) for i in range(len(widths)))
        self.head = nn.Linear(dims[-1], n_classes)
        self.act = make_activation(activation)

    def codes(self, x: torch.Tensor, depth: int | None = None) -> torch.Tensor:
        """h_depth (default: the top layer's code) of images ``x`` (N, C, H, W) in [0, 1]; depth 0: the pixels."""
        h = x.flatten(1)
        for layer in self.layers[: len(self.layers) if depth is None else depth]:
            h = self.act(layer(h))
        return h

    def layer_reconstruction(self, layer: int, h_in: torch.Tensor) -> torch.Tensor:
        """Squared error per row of layer ``layer``'s shallow AE on its input codes h_in."""
        return (self.decoders[layer](self.act(self.layers[layer](h_in))) - h_in).pow(2).sum(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.codes(x))

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x).argmax(1)

    def classifier_parameters(self) -> list[nn.Parameter]:
        """The stack and the head: what fine-tuning step 2 and the baseline train (not the decoders)."""
        return [*self.layers.parameters(), *self.head.parameters()]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.classifier_parameters())


def build_network(cfg: PretrainConfig, seed: int) -> StackedClassifier:
    """The initial network of ``seed`` (torch's global generator is left as it was)."""
    if cfg.image_shape is None or cfg.n_classes is None:
        raise ConfigError("pretrain.image_shape and pretrain.n_classes are unset; they are filled in from the data "
                          "(use pretrain_and_finetune, or set them)")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return StackedClassifier(tuple(cfg.image_shape), cfg.layers, cfg.n_classes, cfg.activation)


# -- the three steps -------------------------------------------------------------------------
def _device(cfg: PretrainConfig) -> torch.device:
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("pretrain.device=cuda but no CUDA device is available; use pretrain.device=auto or cpu")
    return torch.device("cuda" if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()) else "cpu")


def _as_float(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    return to_unit_float(images.to(device))


@torch.no_grad()
def layer_inputs(model: StackedClassifier, images: torch.Tensor, layer: int, batch_size: int = 1000) -> torch.Tensor:
    """The codes h_{layer} (the input of layer index ``layer``, 0-based) of every image, computed
    in batches without gradients; ``images`` uint8 (N, C, H, W) or floats in [0, 1]."""
    dev = next(model.parameters()).device
    return torch.cat([model.codes(_as_float(images[i : i + batch_size], dev), depth=layer)
                      for i in range(0, len(images), batch_size)])


def _batches(n: int, batch_size: int, generator: torch.Generator, device: torch.device):
    perm = torch.randperm(n, generator=generator).to(device)
    for i in range(0, n, batch_size):
        yield perm[i : i + batch_size]


def greedy_pretrain(model: StackedClassifier, images: torch.Tensor, cfg: PretrainConfig, seed: int = 0,
                    log: list[dict[str, Any]] | None = None,
                    callback: Callable[[int, StackedClassifier], None] | None = None) -> list[float]:
    """Train layer 1, then 2, ... each as a shallow AE on the codes of the frozen layers below.

    Returns the final reconstruction loss of every layer: sum over the layer's input dimensions of
    the squared error, averaged over all training images, evaluated after that layer's last epoch
    on the codes its (frozen) predecessors give. Appends one row per layer and epoch to ``log``
    (phase 'pretrain', the epoch's mean loss) and calls ``callback(layer_index, model)`` after each
    layer."""
    dev = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed + 1)
    final: list[float] = []
    for layer in range(len(model.layers)):
        h_in = layer_inputs(model, images, layer, cfg.eval_batch_size)  # frozen layers below: no gradients
        params = [*model.layers[layer].parameters(), *model.decoders[layer].parameters()]
        opt = torch.optim.Adam(params, lr=cfg.lr)
        n = len(h_in)
        for epoch in range(cfg.epochs_per_layer):
            total = torch.zeros((), device=dev)
            for idx in _batches(n, cfg.batch_size, g, dev):
                rec = model.layer_reconstruction(layer, h_in[idx])
                loss = rec.mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += rec.detach().sum()
            if log is not None:
                log.append({"phase": "pretrain", "layer": layer + 1, "epoch": epoch + 1, "loss": float(total) / n})
        with torch.no_grad():
            rec_final = sum(float(model.layer_reconstruction(layer, h_in[i : i + cfg.eval_batch_size]).double().sum())
                            for i in range(0, n, cfg.eval_batch_size)) / n
        final.append(rec_final)
        if callback is not None:
            callback(layer, model)
    return final


def finetune(model: StackedClassifier, images: torch.Tensor, labels: torch.Tensor, cfg: PretrainConfig,
             which: Literal["head", "all"], epochs: int, seed: int = 0, log: list[dict[str, Any]] | None = None,
             phase: str | None = None) -> float:
    """Cross-entropy training on labelled images: ``which='head'`` trains the head only (the stack's
    codes are computed once, without gradients; learning rate ``head_lr``), ``'all'`` the stack and
    the head (``finetune_lr``). Returns the
    final epoch's mean training loss; logs one row per epoch (loss and training accuracy)."""
    if which not in ("head", "all"):
        raise ConfigError(f"finetune: which must be 'head' or 'all', got {which!r}")
    if len(images) != len(labels):
        raise DataError(f"{len(images)} labelled images but {len(labels)} labels")
    dev = next(model.parameters()).device
    y = labels.to(dev)
    if which == "head":
        inputs = layer_inputs(model, images, len(model.layers), cfg.eval_batch_size)
        params, net = list(model.head.parameters()), model.head
    else:
        inputs = _as_float(images, dev)
        params, net = model.classifier_parameters(), model
    opt = torch.optim.Adam(params, lr=cfg.head_lr if which == "head" else cfg.finetune_lr, weight_decay=cfg.weight_decay)
    g = torch.Generator().manual_seed(seed + (2 if which == "head" else 3))
    n, last = len(inputs), float("nan")
    for epoch in range(epochs):
        total = torch.zeros((), device=dev)
        hits = torch.zeros((), device=dev, dtype=torch.long)
        for idx in _batches(n, cfg.batch_size, g, dev):
            logits = net(inputs[idx])
            loss = F.cross_entropy(logits, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * len(idx)
            hits += (logits.detach().argmax(1) == y[idx]).sum()
        last = float(total) / n
        if log is not None:
            log.append({"phase": phase or f"finetune_{which}", "layer": "", "epoch": epoch + 1, "loss": last,
                        "train_acc": float(hits) / n})
    return last


@torch.no_grad()
def accuracy(model: StackedClassifier, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    dev = next(model.parameters()).device
    hits = torch.zeros((), dtype=torch.long, device=dev)
    for i in range(0, len(images), batch_size):
        hits += (model.predict(_as_float(images[i : i + batch_size], dev)) == labels[i : i + batch_size].to(dev)).sum()
    return float(hits) / max(len(images), 1)


# -- the whole procedure ---------------------------------------------------------------------
@dataclass
class PretrainResult:
    metrics: dict[str, Any]
    log: list[dict[str, Any]]  # one row per epoch of every phase
    model: StackedClassifier  # after fine-tuning step 2
    pretrained_state: dict[str, torch.Tensor]  # after greedy pretraining, before fine-tuning
    baseline: StackedClassifier | None


def fill_from_data(cfg: PretrainConfig, train: ImageSet, test: ImageSet | None = None) -> None:
    if train.labels is None:
        raise DataError(f"{train.name}: fine-tuning needs labelled training images, and this set has none")
    cfg.image_shape = list(train.shape)
    if cfg.n_classes is None:
        top = int(train.labels.max()) if test is None or test.labels is None else int(max(train.labels.max(), test.labels.max()))
        cfg.n_classes = max(top + 1, 2)


def pretrain_and_finetune(train: ImageSet, test: ImageSet, cfg: PretrainConfig, seed: int = 0,
                          callback: Callable[[str, int, StackedClassifier], None] | None = None) -> PretrainResult:
    """Greedy layer-wise pretraining on every training image, fine-tuning step 1 (head) and step 2
    (everything) on ``cfg.n_labels`` of their labels, test accuracy after each step; with
    ``cfg.baseline`` the same network trained from scratch on the same labels.

    ``callback(phase, index, model)`` is called after each pretrained layer ('pretrain', layer
    index), after fine-tuning step 1 ('finetune_head', 0) and step 2 ('finetune_all', 0)."""
    if len(train) == 0 or len(test) == 0:
        raise DataError("pretraining needs training and test images; select more data")
    if test.labels is None:
        raise DataError(f"{test.name}: test accuracy needs labelled test images")
    fill_from_data(cfg, train, test)
    if tuple(test.shape) != tuple(cfg.image_shape):
        raise DataError(f"training images are {tuple(cfg.image_shape)} but test images {test.shape}; make them equal "
                        "with data.size and data.channels")
    dev = _device(cfg)
    t0 = time.perf_counter()
    model = build_network(cfg, seed).to(dev)
    initial = copy.deepcopy(model.state_dict())
    log: list[dict[str, Any]] = []
    layer_cb = (lambda i, m: callback("pretrain", i, m)) if callback else None
    layer_rec = greedy_pretrain(model, train.images, cfg, seed, log, layer_cb)
    pretrained = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    known = train.labelled()  # images with the unknown label (-1) pretrain but are not fine-tuned on
    labelled = known.subset(labelled_indices(len(known), cfg.n_labels, seed))
    metrics: dict[str, Any] = {f"rec_layer{i + 1}": v for i, v in enumerate(layer_rec)}
    finetune(model, labelled.images, labelled.labels, cfg, "head", cfg.finetune_epochs, seed, log)
    metrics["acc_finetune_head"] = accuracy(model, test.images, test.labels, cfg.eval_batch_size)
    if callback:
        callback("finetune_head", 0, model)
    finetune(model, labelled.images, labelled.labels, cfg, "all", cfg.finetune_epochs, seed, log)
    metrics["acc_finetune_all"] = accuracy(model, test.images, test.labels, cfg.eval_batch_size)
    if callback:
        callback("finetune_all", 0, model)
    baseline = None
    if cfg.baseline:
        baseline = build_network(cfg, seed).to(dev)
        baseline.load_state_dict(initial)
        finetune(baseline, labelled.images, labelled.labels, cfg, "all", 2 * cfg.finetune_epochs, seed, log, phase="scratch")
        metrics["acc_scratch"] = accuracy(baseline, test.images, test.labels, cfg.eval_batch_size)
    metrics.update({"n_labels": len(labelled), "n_train": len(train), "n_test": len(test),
                    "parameters": model.num_parameters(), "seconds": time.perf_counter() - t0})
    return PretrainResult(metrics, log, model, pretrained, baseline)


# -- the run directory -----------------------------------------------------------------------
LOG_FIELDS = ["phase", "layer", "epoch", "loss", "train_acc"]


def _save_state(state: dict[str, torch.Tensor], cfg: PretrainConfig, path: Path, what: str) -> None:
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    meta = {"vaelab_version": __version__, "model": "stacked-classifier", "weights": what, "config": json.dumps(to_dict(cfg))}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def write_run(run_dir: str | Path, cfg: PretrainRunConfig, result: PretrainResult) -> Path:
    """config.yaml, model.safetensors (after fine-tuning step 2), pretrained.safetensors (after
    greedy pretraining), scratch.safetensors (the baseline), pretrain_log.csv, metrics.json."""
    run_dir = Path(run_dir)
    cfg.save(run_dir / "config.yaml")
    _save_state(result.model.state_dict(), cfg.pretrain, run_dir / "model.safetensors", "finetuned")
    _save_state(result.pretrained_state, cfg.pretrain, run_dir / "pretrained.safetensors", "pretrained")
    if result.baseline is not None:
        _save_state(result.baseline.state_dict(), cfg.pretrain, run_dir / "scratch.safetensors", "scratch")
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=LOG_FIELDS)
    w.writeheader()
    w.writerows({k: r.get(k, "") for k in LOG_FIELDS} for r in result.log)
    atomic_write_text(run_dir / "pretrain_log.csv", buf.getvalue())
    atomic_write_json(run_dir / "metrics.json", result.metrics)
    return run_dir


def run_pretraining(cfg: PretrainRunConfig, run_dir: str | Path,
                    data: tuple[ImageSet, ImageSet, ImageSet] | None = None) -> tuple[Path, PretrainResult]:
    """Load the data of ``cfg``, pretrain and fine-tune, write the run directory."""
    from ..data import load_data

    run_dir = Path(run_dir)
    if (run_dir / "config.yaml").exists():
        raise TrainingError(f"{run_dir} already holds a run; choose another --out")
    train, _, test = data if data is not None else load_data(cfg.data, cfg.seed)
    result = pretrain_and_finetune(train, test, cfg.pretrain, cfg.seed)
    return write_run(run_dir, cfg, result), result


def load_stacked(run_dir: str | Path, weights: Literal["model", "pretrained", "scratch"] = "model") -> StackedClassifier:
    """The network of a ``vaelab pretrain`` directory in eval mode: fine-tuned ('model'), right
    after greedy pretraining ('pretrained') or the from-scratch baseline ('scratch')."""
    from safetensors.torch import load_file

    from ..models.persist import describe_mismatch

    run_dir = Path(run_dir)
    cfg = PretrainRunConfig.load(run_dir / "config.yaml")
    path = run_dir / f"{weights}.safetensors"
    if not path.is_file():
        raise CheckpointError(f"{path} not found" + ("; the run was made with pretrain.baseline=false" if weights == "scratch" else ""))
    model = build_network(cfg.pretrain, cfg.seed)
    state = load_file(str(path))
    problem = describe_mismatch(model.state_dict(), state)
    if problem:
        raise CheckpointError(f"{path} does not fit the network of {run_dir / 'config.yaml'} ({problem})")
    model.load_state_dict(state)
    return model.eval()
