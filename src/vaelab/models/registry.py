"""The model registry: a name maps to a class and its config defaults.

A model registers itself where it is defined, with ``@register_model("name")`` on its class; the
package imports each of its own modules once (``discover``), so a new model is one new file. A
model outside the package registers the same way and becomes known to every command through
``vaelab ... --import MODULE`` (a module name or a ``.py`` file), ``import_models``, or the
``vaelab.models`` entry-point group of an installed package."""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import pkgutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

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


def discover() -> None:
    """Import every module of vaelab.models once: each registers the models it defines."""
    pkg = importlib.import_module(__package__)
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        importlib.import_module(f"{__package__}.{info.name}")


_entry_points_loaded = False


def load_entry_points() -> None:
    """Import the modules that installed packages name in the ``vaelab.models`` entry-point group."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as e:  # a broken third-party package must not break vaelab
            log.warning("could not load the model entry point %s (%s): %s", ep.name, ep.value, e)


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


def import_recorded(name: str, modules: list[str], run_dir: Path | None) -> None:
    """Make the model ``name`` of a run known from the modules its config names (``imports:``).

    A run directory names code but never brings it: a .py path or a module that lies inside the
    run directory is refused, a dotted name is looked up on the existing import path only (not the
    current directory), and each import is announced. Then ``name`` must be registered."""
    run_dir = run_dir.resolve() if run_dir is not None else None

    def inside(p: str | None) -> bool:
        return run_dir is not None and p is not None and Path(p).resolve().is_relative_to(run_dir)

    for spec in modules:
        if spec.endswith(".py"):
            if inside(spec):
                raise ConfigError(f"this run's model {name!r} is said to live in {spec}, inside the run directory: vaelab "
                                  "does not run code that a run directory brings. Pass --import with your own copy of the module")
        else:
            found = importlib.util.find_spec(spec.split(".")[0]) if spec.split(".")[0] not in sys.modules else None
            if found is not None and inside(found.origin):
                raise ConfigError(f"this run's model {name!r} is said to live in module {spec}, found inside the run "
                                  "directory: vaelab does not run code that a run directory brings. Install the module or "
                                  "pass --import")
        log.info("importing %s, which this run names as the module of its model %r", spec, name)
        before = list(sys.path)
        try:
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


def get_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        load_entry_points()
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}. A model of your own: "
                          "register it with @vaelab.register_model and pass --import MODULE")
    return MODELS[name]


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
