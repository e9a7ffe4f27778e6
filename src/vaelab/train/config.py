"""The run configuration: data + model + training, one YAML file in the run directory."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .. import __version__
from ..config import deep_merge, dump_yaml, from_dict, load_yaml, to_dict
from ..data import DataConfig
from ..errors import CheckpointError, ConfigError
from ..fileio import atomic_write_text
from ..models import ModelConfig, make_config


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: Literal["adam", "adamw"] = "adam"
    weight_decay: float = 0.0
    schedule: Literal["constant", "step", "onecycle"] = "constant"
    step_milestones: list[int] = field(default_factory=lambda: [50])  # epochs after which lr *= step_gamma
    step_gamma: float = 0.01
    kl_warmup_steps: int = 0  # KL weight rises linearly from 0 to 1 over this many steps
    grad_clip: float | None = None
    nan_policy: Literal["stop", "skip"] = "stop"
    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"
    progress_bar: bool = True
    eval_batch_size: int = 1000

    def __post_init__(self) -> None:
        for k in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, k) < 1:
                raise ConfigError(f"train.{k} must be >= 1, got {getattr(self, k)}")
        if self.lr <= 0:
            raise ConfigError(f"train.lr must be > 0, got {self.lr}")
        if self.kl_warmup_steps < 0:
            raise ConfigError(f"train.kl_warmup_steps must be >= 0, got {self.kl_warmup_steps}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ConfigError(f"train.grad_clip must be > 0, got {self.grad_clip}")


@dataclass
class RunConfig:
    model: ModelConfig
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0
    vaelab_version: str = __version__

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        d = dict(d)
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(f"unknown top-level key(s) {unknown}; valid: data, model, train, seed, vaelab_version")
        model = d.get("model") or {}
        if not isinstance(model, dict) or "name" not in model:
            raise ConfigError("the config needs model.name (e.g. vae)")
        seed = d.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"seed must be an integer, got {seed!r}")
        return cls(
            model=make_config(model["name"], {k: v for k, v in model.items() if k != "name"}),
            data=from_dict(DataConfig, d.get("data"), "data."),
            train=from_dict(TrainConfig, d.get("train"), "train."),
            seed=seed,
            vaelab_version=str(d.get("vaelab_version", __version__)),
        )

    @classmethod
    def build(cls, model: str, overrides: dict[str, Any] | None = None) -> "RunConfig":
        """Defaults for ``model``, then nested ``overrides`` (as from --set)."""
        return cls.from_dict(deep_merge({"model": {"name": model}}, overrides or {}))

    def to_dict(self) -> dict[str, Any]:
        return {"vaelab_version": self.vaelab_version, "seed": self.seed, "model": to_dict(self.model),
                "data": to_dict(self.data), "train": to_dict(self.train)}

    def save(self, path: Path) -> None:
        atomic_write_text(path, dump_yaml(self.to_dict()))

    @classmethod
    def load(cls, path: Path) -> "RunConfig":
        if not path.is_file():
            raise CheckpointError(f"{path} not found: this is not a vaelab run directory")
        return cls.from_dict(load_yaml(path.read_text(), str(path)))
