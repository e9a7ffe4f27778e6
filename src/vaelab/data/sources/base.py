"""The data-source registry: a name maps to a ``Source``, which finds its files (under $VAELAB_DATA,
the user cache, Debian's datasets, or downloaded, sha256-checked and atomic), reads a split into an
``ImageSet``, and declares what it needs and gives, so that no caller checks its name:

- ``needs_path``: it reads the file or folder ``data.path`` names (folder, npz, csv, mvtec);
- ``config_keys``: the other ``data.*`` keys its ``load`` takes as keywords (csv: ``label_column``);
- ``class_names``, ``labelled``: its classes, and whether its images carry labels (None: the files say);
- ``shape``: one example's shape (C, H, W) when it is fixed (None: the files say);
- ``claims(path)`` and ``scored_whole(path)``: whether it reads a path a user gives (``vaelab detect
  --data FILE``), and whether that path is scored whole (it has no test split of its own).

A source registers itself with ``register_source``: a Source instance, or as a decorator on a
Source subclass or on a plain function ``load(split, path) -> ImageSet``. A source of the user's own
is one file passed with ``--import`` (see docs/guide/adding-a-data-source.md)."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, TypeVar

from ...errors import ConfigError, DataError
from ..download import RemoteFile, cache_dir, data_roots, download
from ..imageset import ImageSet

SPLITS = ("train", "test")


@dataclass
class Source:
    """A named dataset: where to look, how to fetch, how to parse, and what it declares."""

    name: str
    description: str = ""
    dirnames: tuple[str, ...] = ()
    how_to_get: str = ""
    needs_path: bool = False
    remote: tuple[RemoteFile, ...] = ()
    class_names: list[str] = field(default_factory=list)
    shape: tuple[int, ...] | None = None  # one example's shape (C, H, W) when fixed; None: the files say
    labelled: bool | None = None  # every split has labels (True), none has (False), the files say (None)
    module: str = ""  # where it was registered: vaelab's own, or the module a user passed with --import
    config_keys: ClassVar[tuple[str, ...]] = ()  # data.* keys load() takes as keywords, beside the path

    def __post_init__(self) -> None:
        if self.labelled is None and self.class_names:
            self.labelled = True
        if self.shape is not None:
            self.shape = tuple(self.shape)

    def candidates(self) -> list[Path]:
        return [root / d for root in data_roots() for d in self.dirnames]

    def locate(self) -> Path | None:
        for c in self.candidates():
            if self._complete(c):
                return c
        return None

    def _complete(self, d: Path) -> bool:  # overridden by a source with files of its own
        return d.is_dir()

    def fetch(self) -> Path:
        found = self.locate()
        if found is not None:
            return found
        if not self.remote:
            raise self._missing()
        dest = cache_dir() / self.dirnames[0]
        for r in self.remote:
            if not (dest / r.filename).exists():
                download(r, dest)
        return dest

    def _missing(self) -> DataError:
        where = "\n  ".join(str(c) for c in self.candidates())
        return DataError(f"dataset {self.name!r} not found. Looked in:\n  {where}\nTo get it: {self.how_to_get}")

    def load(self, split: str, path: str | None = None, **options: Any) -> ImageSet:  # overridden
        raise NotImplementedError

    def read(self, split: str, cfg: Any) -> ImageSet:
        """The split ``cfg`` (a DataConfig) asks for: its path and the data.* keys of ``config_keys``."""
        return self.load(split, cfg.path, **{k: getattr(cfg, k) for k in self.config_keys})

    def claims(self, path: Path) -> int:
        """How specifically this source reads ``path``, a file or folder a user names: 0 not at all;
        the source claiming it most specifically reads it."""
        return 0

    def scored_whole(self, path: Path) -> bool:
        """Whether ``path`` has no test split of its own, so that `vaelab detect` scores all of it."""
        return False

    def _path(self, path: str | None, what: str) -> Path:
        """``path`` (data.path) as a Path, refused when missing: ``what`` says what it should be."""
        if not path:
            raise DataError(f"the {self.name} source needs a path: --set data.path=/path/to/{what}")
        return Path(path).expanduser()


@dataclass
class FunctionSource(Source):
    """A source made of a plain function ``load(split, path) -> ImageSet`` (``register_source`` on a function)."""

    function: Callable[..., Any] | None = None

    def locate(self) -> Path | None:
        mod = sys.modules.get(self.module)
        return Path(mod.__file__) if getattr(mod, "__file__", None) else None

    def load(self, split: str, path: str | None = None, **options: Any) -> ImageSet:
        """The function's ImageSet, named after the source and given its declared class names when it
        has none; refused when it is no ImageSet or has another shape than the declared one."""
        out = self.function(split, path, **options)
        where = f"the data source {self.name!r} ({self.module})"
        if not isinstance(out, ImageSet):
            raise DataError(f"{where} returned {type(out).__name__} for split {split!r}; a source returns a "
                            "vaelab.data.ImageSet")
        if self.shape is not None and tuple(out.shape) != self.shape:
            raise DataError(f"{where} declares examples of shape {self.shape}, but its {split} split has {tuple(out.shape)}")
        if out.name == "images":
            out.name = self.name
        if not out.class_names and self.class_names:
            out.class_names = list(self.class_names)
        return out


SOURCES: dict[str, Source] = {}
T = TypeVar("T")


def register_source(name: str | Source, description: str | None = None, **declared: Any) -> Any:
    """Make a data source known by name to every command (``--data NAME``, ``data.name``).

    ``register_source(source)`` registers a Source instance and returns it. ``@register_source(NAME,
    description, **declared)`` decorates a Source subclass (built with the name and ``declared``:
    needs_path, class_names, labelled, shape, dirnames, how_to_get, remote) or a function
    ``load(split, path) -> ImageSet`` (split is 'train', 'test', or 'all' for a source that
    ``scored_whole``; path is data.path, None when unset). ``description`` defaults to the first
    line of the docstring. A later registration of a name replaces the earlier one."""
    if isinstance(name, Source):
        name.module = name.module or _caller_module()
        SOURCES[name.name] = name
        return name

    def decorate(obj: T) -> T:
        doc = (getattr(obj, "__doc__", None) or "").strip().splitlines()
        text = description or (doc[0] if doc else name)
        if isinstance(obj, type) and issubclass(obj, Source):
            src = obj(name, text, **declared)
        elif callable(obj) and not isinstance(obj, type):
            src = FunctionSource(name, text, **declared, function=obj)
        else:
            raise ConfigError(f"register_source({name!r}) decorates a vaelab.data.Source subclass or a function "
                              f"load(split, path) -> ImageSet; got {obj!r}")
        src.module = getattr(obj, "__module__", "") or ""
        SOURCES[name] = src
        return obj

    return decorate


def _caller_module() -> str:
    return str(sys._getframe(2).f_globals.get("__name__", ""))


def get_source(name: str) -> Source:
    if name not in SOURCES:
        raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(SOURCES)}. {OWN_SOURCE_HINT}")
    return SOURCES[name]


OWN_SOURCE_HINT = "A source of your own: register it with @vaelab.register_source and pass --import MODULE"


def source_for_path(path: str | Path) -> Source | None:
    """The source that reads the file or folder ``path`` (the one claiming it most specifically,
    the first registered of equals), or None when none does."""
    p = Path(path).expanduser()
    best = max(SOURCES.values(), key=lambda s: s.claims(p), default=None)
    return best if best is not None and best.claims(p) > 0 else None
