"""Where images come from: named sources, validation, splits and transforms."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from typing import Literal

from ..errors import ConfigError, DataError
from .imageset import ImageSet, resolve_classes
from .sources import OWN_SOURCE_HINT, SOURCES, Source, get_source, register_source, source_for_path


@dataclass
class DataConfig:
    name: str = "fashion-mnist"  # a source of `vaelab datasets` (mnist, cifar10, folder, npz, ...)
    path: str | None = None  # the file or folder a source reads (folder, npz, csv, mvtec: `vaelab datasets`)
    val_fraction: float = 0.1  # of the training split, held out for validation
    classes: list[int | str] | None = None  # keep only these classes (numbers or names; training and validation)
    drop_classes: list[int | str] | None = None  # leave these classes out (numbers or names; training and validation)
    limit: int | None = None  # at most this many training images (seeded subset)
    test_limit: int | None = None  # at most this many test images (seeded subset)
    size: int | None = None  # make images size x size (a folder of mixed sizes needs it)
    resize_mode: Literal["pad", "resize"] = "pad"  # pad: centre on black; resize: resample
    channels: int | None = None  # 1 (grayscale) or 3 (RGB)
    label_column: str | int | None = None  # csv source: the column of class labels (header name or 0-based index)
    standardize: bool = True  # vectors: centre and scale each column by the training split's mean and std
    center: list[float] | None = None  # vectors: the column means subtracted (filled in from the training split)
    scale: list[float] | None = None  # vectors: the column standard deviations divided by (filled in likewise)

    def __post_init__(self) -> None:
        if self.name not in SOURCES:
            raise ConfigError(f"unknown dataset {self.name!r}; choose one of: {', '.join(SOURCES)}. {OWN_SOURCE_HINT}")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"data.val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.label_column is not None and not isinstance(self.label_column, str):
            self.label_column = str(self.label_column)  # an index given as a number
        if self.channels not in (None, 1, 3):
            raise ConfigError(f"data.channels must be 1 or 3, got {self.channels}")
        for k in ("limit", "test_limit", "size"):
            v = getattr(self, k)
            if v is not None and v <= 0:
                raise ConfigError(f"data.{k} must be positive, got {v}")


def _prepare(s: ImageSet, cfg: DataConfig) -> ImageSet:
    if s.is_vector:
        s = _standardized(s, cfg)
    return s.to_channels(cfg.channels).to_size(cfg.size, cfg.resize_mode)


def _standardized(s: ImageSet, cfg: DataConfig) -> ImageSet:
    """Vectors standardised with the run's recorded statistics (unchanged when there are none)."""
    if cfg.center is None or cfg.scale is None:
        return s
    if len(cfg.center) != s.shape[0] or len(cfg.scale) != s.shape[0]:
        raise DataError(f"{s.name}: {s.shape[0]} columns, but the run standardises {len(cfg.center)}; give the "
                        "columns the model was trained on")
    center, scale = torch.tensor(cfg.center), torch.tensor(cfg.scale)
    return ImageSet((s.images - center) / scale, s.labels, s.name, s.class_names, s.factors, s.files, s.notes)


def fit_standardizer(train: ImageSet, cfg: DataConfig) -> None:
    """Record the training split's column means and standard deviations in ``cfg`` (vectors with
    ``standardize``; a constant column keeps scale 1), so every later split, and every later
    command on the run, is standardised the same way."""
    if not train.is_vector or not cfg.standardize or cfg.center is not None:
        return
    x = train.images.double()
    sd = x.std(0, unbiased=False)
    sd = torch.where(sd > 1e-12, sd, torch.ones_like(sd))
    cfg.center, cfg.scale = x.mean(0).tolist(), sd.tolist()


def load_split(cfg: DataConfig, split: str, apply_class_filter: bool = True) -> ImageSet:
    """One split ('train' or 'test') with the config's transforms (class filter optional)."""
    s = get_source(cfg.name).read(split, cfg)  # the source takes the keys it declares (path, label_column, ...)
    if len(s) == 0:
        raise DataError(f"{cfg.name}: the {split} split is empty")
    if apply_class_filter:
        s = s.select_classes(cfg.classes, cfg.drop_classes)
    return _prepare(s, cfg)


def load_data(cfg: DataConfig, seed: int = 0) -> tuple[ImageSet, ImageSet, ImageSet]:
    """(train, validation, test). The class filter applies to train and validation, not to test,
    so that one-class work sees every class at test time; ``test_limit`` subsamples the test set."""
    train = load_split(cfg, "train").limit(cfg.limit, seed)
    if train.is_vector and cfg.standardize and cfg.center is None:  # the training part's statistics, validation left out
        rest, _ = train.split(cfg.val_fraction, seed)
        fit_standardizer(rest, cfg)
        train = _standardized(train, cfg)
    train, val = train.split(cfg.val_fraction, seed)
    test = load_split(cfg, "test", apply_class_filter=False).limit(cfg.test_limit, seed)
    return train, val, test


def load_run_data(cfg: DataConfig, seed: int, run_dir: str | Path, run_data: str | Path | None = None
                  ) -> tuple[ImageSet, ImageSet, ImageSet]:
    """``load_data`` of a trained run's data config. ``run_data``: where the run's data (its data.path:
    a folder, an .npz or a CSV) is now, when it has moved. A recorded path that is not there gives an
    error that names it, says it comes from the run, and names the option that overrides it."""
    from dataclasses import replace

    from ..errors import DataError

    if run_data is not None:
        if cfg.path is None:
            raise DataError(f"--run-data {run_data}: the run {run_dir} was trained on the {cfg.name} dataset, which has no "
                            "path to override; vaelab finds it itself (vaelab datasets says where)")
        cfg = replace(cfg, path=os.path.abspath(os.path.expanduser(str(run_data))))
    elif cfg.path is not None and not Path(cfg.path).expanduser().exists():
        relative = "" if Path(cfg.path).is_absolute() else (
            ", a path relative to the directory it was trained from (runs record absolute paths since)")
        raise DataError(f"the run {run_dir} was trained on {cfg.name} data at {cfg.path!r} (data.path in its config.yaml"
                        f"{relative}), and nothing is there now; give where that data is with --run-data PATH "
                        "(vaelab detect, evaluate, sample, export; run_data= in the API)")
    return load_data(cfg, seed)


def absolute_data_path(cfg: DataConfig) -> None:
    """Make ``cfg.path`` absolute, as a run records it: a run read from another directory finds its data."""
    if cfg.path is not None:
        cfg.path = os.path.abspath(os.path.expanduser(cfg.path))


__all__ = ["DataConfig", "absolute_data_path", "load_run_data", "ImageSet", "resolve_classes", "Source", "SOURCES", "get_source",
           "load_data", "load_split", "register_source", "source_for_path"]
