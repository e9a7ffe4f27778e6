"""The run configuration: data + model + training, one YAML file in the run directory."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .._version import __version__
from ..config import check_version, deep_merge, dump_yaml, from_dict, load_yaml, to_dict
from ..data import DataConfig
from ..errors import CheckpointError, ConfigError
from ..fileio import atomic_write_text
from ..models import MODELS, ModelConfig, make_config
from ..models.registry import import_recorded, load_entry_points, model_imports
from .trackers import LOGGERS


PRECISIONS = ("32", "bf16-mixed", "16-mixed")

# what a resumed run may change: how long it trains and how it runs, never what it computes
RESUMABLE_KEYS = ("epochs", "progress_bar", "accelerator", "devices", "num_nodes", "strategy", "eval_batch_size",
                  "checkpoint_every_n_steps", "loggers", "mlflow_tracking_uri", "mlflow_experiment", "wandb_project",
                  "wandb_mode", "figures")


def _figures_default() -> bool:
    """train.figures' default: true, or $VAELAB_FIGURES (1 or 0) where it is set (a sweep's or a CI job's runs)."""
    v = os.environ.get("VAELAB_FIGURES", "1").strip()
    if v not in ("0", "1"):
        raise ConfigError(f"VAELAB_FIGURES must be 1 (draw the run report's figures) or 0 (leave them out), got {v!r}")
    return v == "1"


@dataclass
class TrainConfig:
    epochs: int = 10  # passes over the training split
    batch_size: int = 128  # training images per optimisation step
    lr: float = 1e-3  # learning rate (the peak one for schedule=onecycle)
    optimizer: Literal["adam", "adamw"] = "adam"  # adam or adamw (decoupled weight decay)
    weight_decay: float = 0.0  # L2 penalty (adam) or decoupled decay (adamw)
    # learning-rate schedule: constant; step (lr *= step_gamma after each of step_milestones); onecycle;
    # paper (Grad2VAE's: lr / 100 after half of the epochs, i.e. 1e-3 then 1e-5 at the default lr)
    schedule: Literal["constant", "step", "onecycle", "paper"] = "constant"
    step_milestones: list[int] = field(default_factory=lambda: [50])  # epochs after which lr *= step_gamma
    step_gamma: float = 0.01  # lr factor at each step_milestones epoch (schedule=step)
    kl_warmup_steps: int = 0  # KL weight rises linearly from 0 to 1 over this many steps
    grad_clip: float | None = None  # clip the gradient norm to this; null: no clipping
    # fine-tuning: start from the weights of an earlier run of the same model and network (its
    # directory or a .safetensors file) instead of a fresh initialisation; the optimizer and the
    # schedule start afresh, e.g. on other data
    init_from: str | None = None  # start from an earlier run's weights (its directory or a .safetensors file); null: fresh
    nan_policy: Literal["stop", "skip"] = "stop"  # a non-finite loss stops training (keeping the last checkpoint) or skips the step
    # besides the one after every epoch, write the resumable checkpoint every this many optimisation
    # steps (atomically), so a killed run loses at most this many steps; None: only after epochs
    checkpoint_every_n_steps: int | None = 200
    accelerator: str = "auto"  # Lightning's accelerator: auto, cpu, gpu
    devices: int | str = 1  # devices per node (Lightning)
    num_nodes: int = 1  # machines (Lightning DDP)
    strategy: str = "auto"  # Lightning's strategy: auto, ddp, ...
    progress_bar: bool = True  # show the progress bar while training
    eval_batch_size: int = 1000  # images per batch when evaluating and scoring
    # draw the run report's figures (curves, reconstructions, samples, traversals, the latent map): about a
    # second or two a run; false: the report keeps the metrics, the notes and the command (sweeps of many
    # runs; `vaelab evaluate RUN --figures` draws them later). Default true, or $VAELAB_FIGURES (1 or 0)
    figures: bool = field(default_factory=_figures_default)  # draw the report's figures (default: $VAELAB_FIGURES or true)
    # speed switches (see README, "Speed"). fast: the fused Adam/AdamW step and, on the CPU, the
    # channels_last layout for conv networks and an allocator that keeps freed memory; all measured
    # faster and all deterministic; false gives the plain fp32 eager reference path.
    # precision: Lightning's "32", "bf16-mixed" (autocast; CPU and GPU) or "16-mixed" (GPU only).
    # compile: torch.compile the model's loss (true / false); auto compiles it for a model that declares
    # compile_pays (grad2vae) on the CPU when the run is long enough to pay for the compile
    # (COMPILE_AUTO_MIN_STEPS; benchmarks/grad2vae.py part a measures both sides).
    fast: bool = True  # fused Adam step, channels_last and a caching allocator on the CPU (deterministic); false: the plain reference path
    precision: str | int = "32"  # "32", "bf16-mixed" (CPU and GPU) or "16-mixed" (GPU only)
    compile: bool | Literal["auto"] = "auto"  # torch.compile the model's loss: true, false, or auto (where it pays)
    # where the logs go (docs/trackers.md): every loss term every step, the validation terms, and for the
    # trackers also the config and the final metrics. csv: logs/metrics.csv (the report's loss curves),
    # tensorboard: logs/tensorboard, mlflow, wandb (pip install "vaelab[mlflow]" / "vaelab[wandb]")
    loggers: list[str] = field(default_factory=lambda: ["csv", "tensorboard"])  # any of csv, tensorboard, mlflow, wandb (csv,mlflow or a list)
    mlflow_tracking_uri: str | None = None  # MLflow store or server; null: $MLFLOW_TRACKING_URI, else sqlite in the run's logs/mlflow.db
    mlflow_experiment: str = "vaelab"  # the MLflow experiment the run is filed under
    wandb_project: str = "vaelab"  # the W&B project
    wandb_mode: Literal["offline", "online"] = "offline"  # offline: no network, files under logs/wandb ($WANDB_DIR), `wandb sync` uploads them

    def __post_init__(self) -> None:
        for k in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, k) < 1:
                raise ConfigError(f"train.{k} must be >= 1, got {getattr(self, k)}")
        if self.lr <= 0:
            raise ConfigError(f"train.lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ConfigError(f"train.weight_decay must be >= 0, got {self.weight_decay}")
        if self.step_gamma <= 0:
            raise ConfigError(f"train.step_gamma must be > 0, got {self.step_gamma}")
        if any(m < 0 for m in self.step_milestones):
            raise ConfigError(f"train.step_milestones must be epochs >= 0, got {self.step_milestones}")
        if self.num_nodes < 1:
            raise ConfigError(f"train.num_nodes must be >= 1, got {self.num_nodes}")
        if self.kl_warmup_steps < 0:
            raise ConfigError(f"train.kl_warmup_steps must be >= 0, got {self.kl_warmup_steps}")
        if self.init_from is not None and not str(self.init_from).strip():
            raise ConfigError("train.init_from must be a run directory or a .safetensors file (or null for a fresh start)")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ConfigError(f"train.grad_clip must be > 0, got {self.grad_clip}")
        if isinstance(self.loggers, str):  # TrainConfig(loggers="csv,mlflow")
            self.loggers = [x.strip() for x in self.loggers.split(",") if x.strip()]
        unknown = [x for x in self.loggers if x not in LOGGERS]
        if unknown:
            raise ConfigError(f"train.loggers: unknown logger(s) {', '.join(map(repr, unknown))}; valid: {', '.join(LOGGERS)} "
                              "(e.g. --set train.loggers=csv,tensorboard,mlflow)")
        self.loggers = list(dict.fromkeys(self.loggers))  # each once, in the order given
        for k in ("mlflow_experiment", "wandb_project"):
            if not getattr(self, k).strip():
                raise ConfigError(f"train.{k} must be a name, got {getattr(self, k)!r}")
        if self.mlflow_tracking_uri is not None and not self.mlflow_tracking_uri.strip():
            raise ConfigError("train.mlflow_tracking_uri must be a URI (sqlite:///PATH/mlflow.db, http://HOST:PORT) or null")
        if self.compile not in (True, False, "auto"):
            raise ConfigError(f"train.compile must be true, false or auto (compile where it pays), got {self.compile!r}")
        self.precision = str(self.precision)
        if self.precision not in PRECISIONS:
            raise ConfigError(f"train.precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.checkpoint_every_n_steps is not None and self.checkpoint_every_n_steps < 1:
            raise ConfigError(
                f"train.checkpoint_every_n_steps must be >= 1 (or null for checkpoints after epochs only), "
                f"got {self.checkpoint_every_n_steps}"
            )


@dataclass
class RunConfig:
    model: ModelConfig
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0
    vaelab_version: str = __version__

    @classmethod
    def from_dict(cls, d: dict[str, Any], run_dir: Path | None = None, saved: bool = False) -> "RunConfig":
        """The config of mapping ``d``; ``saved``: ``d`` was written by a run (possibly by an older
        vaelab), so model options it lacks take the model's ``defaults_before`` where it has them."""
        if not isinstance(d, dict):
            raise ConfigError(f"a run config is a mapping with data, model, train and seed; got {type(d).__name__}")
        d = dict(d)
        imports = d.pop("imports", None) or []
        unknown = sorted(str(k) for k in set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(f"unknown top-level key(s) {unknown}; valid: data, model, train, seed, vaelab_version, imports")
        model = d.get("model") or {}
        if not isinstance(model, dict) or "name" not in model:
            raise ConfigError("the config needs model.name (e.g. vae)")
        if not isinstance(model["name"], str):
            raise ConfigError(f"model.name must be a model name such as vae, got {model['name']!r}")
        seed = d.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
            raise ConfigError(f"seed must be an integer in [0, 2**32), got {seed!r}")
        if model["name"] not in MODELS and imports:
            # a model of the user's own (trained with --import): the run names the module that defines it
            if not isinstance(imports, list) or not all(isinstance(m, str) for m in imports):
                raise ConfigError(f"imports must be a list of module names or .py paths, got {imports!r}")
            load_entry_points()
            if model["name"] not in MODELS:
                try:
                    import_recorded(model["name"], imports, run_dir)
                except ConfigError as e:
                    raise ConfigError(f"model {model['name']!r} of this run is defined in {', '.join(imports)}: {e}") from None
        version = d.get("vaelab_version", __version__)
        if not isinstance(version, str):
            raise ConfigError(f"vaelab_version must be text such as {__version__!r}, got {version!r}")
        options = {k: v for k, v in model.items() if k != "name"}
        if saved and model["name"] in MODELS:
            before = getattr(MODELS[model["name"]].cls.config_class, "defaults_before", {})
            options = {**{k: v for k, v in before.items() if k not in options}, **options}
        return cls(
            model=make_config(model["name"], options),
            data=from_dict(DataConfig, d.get("data"), "data."),
            train=from_dict(TrainConfig, d.get("train"), "train."),
            seed=seed,
            vaelab_version=version,
        )

    @classmethod
    def build(cls, model: str, overrides: dict[str, Any] | None = None) -> "RunConfig":
        """Defaults for ``model``, then nested ``overrides`` (as from --set)."""
        return cls.from_dict(deep_merge({"model": {"name": model}}, overrides or {}))

    def to_dict(self) -> dict[str, Any]:
        d = {"vaelab_version": self.vaelab_version, "seed": self.seed, "model": to_dict(self.model),
             "data": to_dict(self.data), "train": to_dict(self.train)}
        imports = model_imports(self.model.name)
        if imports:  # a model of the user's own: where loading the run finds it again
            d["imports"] = imports
        return d

    def resumed_with(self, overrides: dict[str, Any]) -> "RunConfig":
        """This config with the nested ``overrides`` a resumed run may take (train.RESUMABLE_KEYS);
        any other key is refused, naming the ones that may change."""
        bad = [f"{k}.{kk}" if isinstance(v, dict) else k for k, v in overrides.items()
               for kk in (v if isinstance(v, dict) else [None]) if not (k == "train" and kk in RESUMABLE_KEYS)]
        if bad:
            raise ConfigError(f"--resume continues a run as configured; only --epochs and how it runs "
                              f"({', '.join('train.' + k for k in RESUMABLE_KEYS)}) may change; got {bad}")
        return RunConfig.from_dict(deep_merge(self.to_dict(), overrides))

    def save(self, path: Path) -> None:
        atomic_write_text(path, dump_yaml(self.to_dict()))

    @classmethod
    def load(cls, path: Path) -> "RunConfig":
        """The config of a run directory. Refuses one written by another major version of vaelab
        (warns for another minor version), and any YAML that is not plain data."""
        from ..config import MAX_YAML_BYTES
        from ..runfiles import read_text

        path = Path(path)
        if not path.is_file() and not path.is_symlink():
            raise CheckpointError(f"{path} not found: this is not a vaelab run directory")
        try:
            text = read_text(path, MAX_YAML_BYTES)  # no symlink followed, the size bounded before reading
        except OSError as e:
            raise CheckpointError(f"{path}: cannot be read as a text file ({e}); restore it from the run's report.html") from None
        d = load_yaml(text, str(path))
        if "vaelab_version" in d:
            check_version(str(d["vaelab_version"]), str(path))
        return cls.from_dict(d, run_dir=path.parent, saved=True)
