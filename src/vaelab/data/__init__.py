"""Where images come from: named sources, validation, splits and transforms."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..errors import ConfigError
from .imageset import ImageSet
from .sources import SOURCES, Source, get_source
from .synthetic import DSPRITES, SHAPES

SOURCES.setdefault(SHAPES.name, SHAPES)
SOURCES.setdefault(DSPRITES.name, DSPRITES)


@dataclass
class DataConfig:
    name: str = "fashion-mnist"  # a source of `vaelab datasets` (mnist, cifar10, folder, npz, ...)
    path: str | None = None  # for the folder and npz sources
    val_fraction: float = 0.1  # of the training split, held out for validation
    classes: list[int] | None = None  # keep only these classes (training and validation)
    drop_classes: list[int] | None = None  # leave these classes out (training and validation)
    limit: int | None = None  # at most this many training images (seeded subset)
    test_limit: int | None = None  # at most this many test images (seeded subset)
    size: int | None = None  # make images size x size (a folder of mixed sizes needs it)
    resize_mode: Literal["pad", "resize"] = "pad"  # pad: centre on black; resize: resample
    channels: int | None = None  # 1 (grayscale) or 3 (RGB)

    def __post_init__(self) -> None:
        if self.name not in SOURCES:
            raise ConfigError(f"unknown dataset {self.name!r}; choose one of: {', '.join(SOURCES)}")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"data.val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.channels not in (None, 1, 3):
            raise ConfigError(f"data.channels must be 1 or 3, got {self.channels}")
        for k in ("limit", "test_limit", "size"):
            v = getattr(self, k)
            if v is not None and v <= 0:
                raise ConfigError(f"data.{k} must be positive, got {v}")


def _prepare(s: ImageSet, cfg: DataConfig) -> ImageSet:
    return s.to_channels(cfg.channels).to_size(cfg.size, cfg.resize_mode)


def load_split(cfg: DataConfig, split: str, apply_class_filter: bool = True) -> ImageSet:
    """One split ('train' or 'test') with the config's transforms (class filter optional)."""
    src = get_source(cfg.name)
    if src.takes_image_options:  # decodes files itself: it brings mixed sizes and modes to the run's
        from .folder import FolderOptions

        s = src.load(split, cfg.path, FolderOptions(cfg.size, cfg.resize_mode, cfg.channels))
    else:
        s = src.load(split, cfg.path)
    if len(s) == 0:
        from ..errors import DataError

        raise DataError(f"{cfg.name}: the {split} split is empty")
    if apply_class_filter:
        s = s.select_classes(cfg.classes, cfg.drop_classes)
    return _prepare(s, cfg)


def load_data(cfg: DataConfig, seed: int = 0) -> tuple[ImageSet, ImageSet, ImageSet]:
    """(train, validation, test). The class filter applies to train and validation, not to test,
    so that one-class work sees every class at test time; ``test_limit`` subsamples the test set."""
    train = load_split(cfg, "train").limit(cfg.limit, seed)
    train, val = train.split(cfg.val_fraction, seed)
    test = load_split(cfg, "test", apply_class_filter=False).limit(cfg.test_limit, seed)
    return train, val, test


__all__ = ["DataConfig", "ImageSet", "Source", "SOURCES", "get_source", "load_data", "load_split"]
