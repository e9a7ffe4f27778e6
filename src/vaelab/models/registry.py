"""The model registry: a name maps to a class and its config defaults.

A model registers itself where it is defined, with ``@register_model("name")`` on its class; the
package imports each of its own modules once (``discover``), so a new model is one new file. A
model outside the package registers the same way and becomes known to every command through
``vaelab ... --import MODULE`` (a module name or a ``.py`` file), ``import_models``, or the
``vaelab.models`` entry-point group of an installed package."""
from __future__ import annotations

import contextlib
import contextvars
import hashlib
import importlib
import importlib.util
import logging
import os
import pkgutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

from ..errors import ConfigError, ModelError

log = logging.getLogger("vaelab")

ENTRY_POINT_GROUP = "vaelab.models"


@dataclass
class ModelSpec:
    cls: type
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)
    module: str = ""  # where the class was defined: recorded in a run so that loading it can find it again


MODELS: dict[str, ModelSpec] = {}
T = TypeVar("T", bound=type)

# what each declared capability means, for the error of a job that needs one
CAPABILITIES = {
    "can_sample": "draws new samples from its prior p(z)",
    "has_density": "has a posterior density q(z|x) and a prior p(z) (the ELBO, importance-sampled NLL)",
    "takes_labels": "uses labels in its loss (semi-supervised)",
    "denoises": "is trained to remove a corruption (denoise)",
    "explains": "computes attention maps of its own (explain --method grad2)",
    "custom_networks": "accepts your own encoder and decoder networks",
    "conditional": "generates a chosen class (decode and sample take a label: sample --class K)",
    "adversarial": "trains a discriminator with an optimizer of its own (discriminator_loss)",
    "restores": "restores erased attributes of its input (colour, orientation): the restoration scores",
}


def register_model(name: str, description: str | None = None, **defaults: Any) -> Callable[[T], T]:
    """Class decorator: make ``cls`` the model ``name`` (``vaelab train NAME``), with config
    ``defaults`` (the same class may be registered under several names with other defaults).
    ``description`` defaults to the first line of the class docstring."""

    def decorate(cls: T) -> T:
        from .base import Autoencoder

        if not (isinstance(cls, type) and issubclass(cls, Autoencoder)):
            raise ModelError(f"register_model({name!r}) decorates a subclass of vaelab.models.Autoencoder, got {cls!r}")
        doc = (cls.__doc__ or "").strip().splitlines()
        MODELS[name] = ModelSpec(cls, description or (doc[0] if doc else name), dict(defaults), cls.__module__)
        return cls

    return decorate


def discover(package: str = __package__) -> None:
    """Import every module of ``package`` (vaelab.models by default) once: each registers what it defines."""
    pkg = importlib.import_module(package)
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        importlib.import_module(f"{package}.{info.name}")


_entry_points_loaded = False


def load_entry_points() -> None:
    """Import the modules that installed packages name in the ``vaelab.models`` entry-point group, once."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    import_entry_points(ENTRY_POINT_GROUP)


def import_entry_points(group: str) -> None:
    """Import the modules that installed packages name in the entry-point ``group`` (``vaelab.models``;
    the score registry's ``vaelab.scores``); one that fails to import is logged and passed over."""
    from importlib.metadata import entry_points

    for ep in entry_points(group=group):
        try:
            ep.load()
        except Exception as e:  # a broken third-party package must not break vaelab
            log.warning("could not load the %s entry point %s (%s): %s", group, ep.name, ep.value, e)


# module name -> what was passed to import it (a dotted name, or the absolute path of a .py file)
IMPORTED: dict[str, str] = {}


def import_models(modules: Iterable[str], search_cwd: bool = True) -> list[str]:
    """Import each module (a dotted name, or a path to a .py file) so that the models it registers
    are known; with ``search_cwd`` the current directory is searched as ``python -m`` does. Returns
    the module names."""
    names = []
    for spec in modules:
        spec = str(spec)
        if spec.endswith(".py"):
            path = Path(spec).expanduser().resolve()
            if not path.is_file():
                raise ConfigError(f"--import {spec}: no such file")
            # a name of its own, so that a user's model.py or mlflow.py replaces no module already imported
            name = f"vaelab_user_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
            if name not in sys.modules:
                s = importlib.util.spec_from_file_location(name, path)
                mod = importlib.util.module_from_spec(s)
                sys.modules[name] = mod
                try:
                    s.loader.exec_module(mod)
                except Exception as e:
                    del sys.modules[name]
                    raise ConfigError(f"--import {spec}: importing it failed ({type(e).__name__}: {e})") from e
            IMPORTED[name] = str(path)
            names.append(name)
            continue
        if search_cwd and "" not in sys.path and str(Path.cwd()) not in sys.path:
            sys.path.insert(0, str(Path.cwd()))
        try:
            importlib.import_module(spec)
        except ModuleNotFoundError as e:
            raise ConfigError(f"--import {spec}: module not found ({e}); give a module on PYTHONPATH or a path to a .py file") from None
        except Exception as e:
            raise ConfigError(f"--import {spec}: importing it failed ({type(e).__name__}: {e})") from e
        IMPORTED[spec] = spec
        names.append(spec)
    return names


# Whether the user trusts the modules a run directory names (``imports:``): off unless the user
# says so (``vaelab.load(..., trust_imports=True)``, ``with trust_imports():``, ``--trust-imports``).
_TRUSTED: contextvars.ContextVar[bool] = contextvars.ContextVar("vaelab_trust_imports", default=False)


@contextlib.contextmanager
def trust_imports(on: bool = True) -> Iterator[None]:
    """Within this block, loading a run imports the modules its config names (``imports:``),
    still refusing any that resolves inside the run directory or beside it."""
    token = _TRUSTED.set(bool(on))
    try:
        yield
    finally:
        _TRUSTED.reset(token)


def _within(p: Path, roots: list[Path]) -> bool:
    return any(p == r or p.is_relative_to(r) for r in roots)


def _search_path() -> list[str]:
    """sys.path without the current directory ('' or its path): where a recorded module is looked
    up, so that a run directory next to which the user happens to stand cannot supply it."""
    cwd = os.path.realpath(os.getcwd())
    return [e for e in sys.path if isinstance(e, str) and e not in ("", ".") and os.path.realpath(e) != cwd]


def _find_spec(fullname: str, path: list[str] | None) -> Any:
    """The spec the import system would use for ``fullname``, found without running any module:
    the finders of sys.meta_path are asked directly, so a parent package's ``__init__`` is not
    executed (``importlib.util.find_spec`` would import it)."""
    mod = sys.modules.get(fullname)
    if mod is not None:
        return getattr(mod, "__spec__", None)
    for finder in sys.meta_path:
        find = getattr(finder, "find_spec", None)
        if find is None:
            continue
        try:
            spec = find(fullname, path)
        except (ImportError, ValueError, OSError):
            continue
        if spec is not None:
            return spec
    return None


def _module_locations(dotted: str, search: list[str]) -> list[str] | None:
    """Every file and folder the import of ``dotted`` would read (each package on the way: its
    ``__init__`` file or a namespace package's folders, then the module itself), or None when the
    import system finds no such module."""
    parts = dotted.split(".")
    if not all(p.isidentifier() for p in parts):
        return None
    found: list[str] = []
    path: list[str] | None = search
    for i in range(len(parts)):
        name = ".".join(parts[: i + 1])
        before = list(sys.path)
        sys.path[:] = search  # a finder that reads sys.path (PathFinder for a top-level name) sees no cwd
        try:
            spec = _find_spec(name, path if i else None)
        finally:
            sys.path[:] = before
        if spec is None:
            return None
        if spec.origin and spec.origin not in ("built-in", "frozen", "namespace"):
            found.append(spec.origin)
        locations = list(spec.submodule_search_locations or [])
        found += locations
        path = locations
    return found


def _refusal(name: str, spec: str, where: str) -> ConfigError:
    return ConfigError(f"this run's model {name!r} is said to live in {spec}, which resolves to {where}, inside the run "
                       "directory or beside it in the same folder: vaelab does not run code that a run directory "
                       "brings. Pass --import with your own copy of the module")


def check_recorded(name: str, spec: str, run_dir: Path | None) -> None:
    """Refuse a module that a run names (``imports:``) if it resolves, through the import system
    with symlinks followed, inside the run directory or anywhere under the folder that holds it (a
    file shipped beside the run in the same archive); a relative .py path is resolved against the
    run directory (vaelab itself records absolute paths, so it was not written by vaelab)."""
    roots: list[Path] = []
    if run_dir is not None:
        run_abs = Path(os.path.abspath(run_dir))
        roots = list(dict.fromkeys([run_abs.parent, run_abs.resolve().parent]))
    if spec.endswith(".py"):
        p = Path(spec).expanduser()
        if not p.is_absolute():
            if run_dir is None:
                raise ConfigError(f"this run's model {name!r} is said to live in {spec}, a relative path: vaelab records "
                                  "absolute ones. Pass --import with the module that defines it")
            where = Path(os.path.abspath(Path(run_dir) / p))
            raise _refusal(name, spec, str(where.resolve()))
        candidates = [Path(os.path.abspath(p)), p.resolve()]
    else:
        # where it would be found with the current directory searched too (python -c, a notebook,
        # PYTHONPATH=.) is checked as well, so that the message says what the run tried
        everywhere = [os.getcwd() if e in ("", ".") else e for e in sys.path if isinstance(e, str)]
        with_cwd = _module_locations(spec, everywhere) or []
        locations = _module_locations(spec, _search_path())
        candidates = [q for loc in [*with_cwd, *(locations or [])]
                      for q in (Path(os.path.abspath(loc)), Path(loc).resolve())]
        for c in candidates:
            if _within(c, roots):
                raise _refusal(name, spec, str(c))
        if locations is None:
            raise ConfigError(f"this run's model {name!r} is said to live in module {spec}, which is not installed "
                              "(the current directory is not searched); install it or pass --import")
    for c in candidates:
        if _within(c, roots):
            raise _refusal(name, spec, str(c))


def import_recorded(name: str, modules: list[str], run_dir: Path | None) -> None:
    """Make the model ``name`` of a run known from the modules its config names (``imports:``).

    A run directory names code but never brings it. Nothing is imported unless the user trusts the
    run's imports (``trust_imports``); even then each module is resolved first (``check_recorded``)
    and refused if it lies inside the run directory or beside it, a dotted name is looked up
    without the current directory, and each import is announced. Then ``name`` must be registered."""
    for spec in modules:
        check_recorded(name, spec, run_dir)
    if not _TRUSTED.get():
        raise ConfigError(f"not imported, as vaelab imports no code because a run directory names it (a run from "
                          f"someone else could name anything). Pass --import {' --import '.join(modules)} if it is "
                          "yours, or --trust-imports (Python: vaelab.load(RUN, trust_imports=True)) if you trust this run")
    for spec in modules:
        log.info("importing %s, which this run names as the module of its model %r", spec, name)
        before = list(sys.path)
        try:
            sys.path[:] = _search_path()
            import_models([spec], search_cwd=False)
        finally:
            sys.path[:] = before
    if name not in MODELS:
        raise ConfigError(f"{', '.join(modules)} was imported but registers no model {name!r}; pass --import with the "
                          "module that defines it")


def model_imports(name: str) -> list[str]:
    """What a run of model ``name`` records so that loading it finds the model again: nothing for
    vaelab's own models, else the module that defined it (as it was imported: a dotted name, or
    the path of a .py file)."""
    spec = MODELS.get(name)
    if spec is None or spec.module.split(".")[0] == "vaelab":
        return []
    mod = sys.modules.get(spec.module)
    if spec.module in IMPORTED:
        return [IMPORTED[spec.module]]
    if spec.module == "__main__" and getattr(mod, "__file__", None):
        return [str(Path(mod.__file__).resolve())]
    return [spec.module]


def look_up(table: dict[str, Any], name: str, what: str, decorator: str, load: Callable[[], None]) -> Any:
    """``table[name]`` of a registry, the entry points imported first (``load``) when it is not there, or a
    ConfigError naming every ``what`` and how to add one of one's own (``@vaelab.DECORATOR``)."""
    if name not in table:
        load()
    if name not in table:
        raise ConfigError(f"unknown {what} {name!r}; choose one of: {', '.join(table)}. A {what.split()[-1]} of your own: "
                          f"register it with @vaelab.{decorator} and pass --import MODULE")
    return table[name]


def get_spec(name: str) -> ModelSpec:
    return look_up(MODELS, name, "model", "register_model", load_entry_points)


def models_with(capability: str) -> list[str]:
    return [n for n, s in MODELS.items() if getattr(s.cls, capability, False)]


def require(model: Any, capability: str, what: str) -> None:
    """Refuse ``what`` for a model that does not declare ``capability``, naming the models that do."""
    if capability not in CAPABILITIES:
        raise ValueError(f"unknown capability {capability!r}")
    if not getattr(model, capability, False):
        name = getattr(getattr(model, "config", None), "name", type(model).__name__)
        raise ModelError(f"{what} needs a model that {CAPABILITIES[capability]}; {name} does not "
                         f"({capability} = False). Models that do: {', '.join(models_with(capability))}")
