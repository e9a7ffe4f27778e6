"""Named data sources, a registry like vaelab.models: each module of this package registers the
sources it defines with ``register_source`` (importing the package imports every module: no central
list), so a new source is one new file here, or one file of your own passed with ``--import``.
See base.py for what a source declares (needs_path, config_keys, class_names, labelled, shape)."""
from __future__ import annotations

import importlib
import pkgutil

from .base import (OWN_SOURCE_HINT, SOURCES, SPLITS, FunctionSource, Source, get_source, register_source,  # noqa: F401
                   source_for_path)


def discover() -> None:
    """Import every module of this package once: each registers the sources it defines."""
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        importlib.import_module(f"{__name__}.{info.name}")


discover()

# the names vaelab.data.sources has always had
from ..folder import IMAGE_SUFFIXES, FolderCache, FolderOptions, read_folder  # noqa: E402,F401
from .celeba import CELEBA64, CelebASource  # noqa: E402,F401
from .cifar10 import CIFAR10, CIFAR_CLASSES, Cifar10Source  # noqa: E402,F401
from .csvfile import CSV, CSV_MAX_CELLS, CSV_MAX_COLUMNS, CsvSource  # noqa: E402,F401
from .digits import DIGITS, DigitsSource  # noqa: E402,F401
from .folder import FOLDER, FolderSource  # noqa: E402,F401
from .idx import FASHION_CLASSES, FASHION_MNIST, MNIST, IdxSource  # noqa: E402,F401
from .mvtec import MVTEC, MvtecSource  # noqa: E402,F401
from .npz import NPZ, NpzSource  # noqa: E402,F401

__all__ = ["FunctionSource", "SOURCES", "SPLITS", "Source", "get_source", "register_source", "source_for_path"]
