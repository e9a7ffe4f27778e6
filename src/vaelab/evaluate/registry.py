"""The metric registry: a name maps to a function ``metric(model, data, **options) -> dict`` and the
options it declares.

A metric registers itself where it is defined, with ``@register_metric("name", option=meaning, ...)``
on its function; the package imports each of its own modules once, so a new metric is one new file,
or one file of the user's own passed with ``--import``. Each option is declared once: its default
(and type) is the function's keyword parameter, its meaning the decorator's keyword. The command
line (``vaelab evaluate --OPTION``, ``vaelab metrics -v``) reads both from here.

Every metric may also take the options every metric is given: ``batch_size``, ``seed`` and ``train``
(the training split: probes, transfer, samplers and the FID feature network use it). A function
receives the options it names (all of them when it takes ``**kwargs``)."""
from __future__ import annotations

import inspect
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, TypeVar

from ..errors import ConfigError

COMMON_OPTIONS = ("batch_size", "seed", "train")
OWN_METRIC_HINT = "A metric of your own: register it with @vaelab.register_metric and pass --import MODULE"
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class MetricOption:
    name: str
    default: Any
    meaning: str
    parse: Callable[[str], Any] = str  # the command line's text to the value
    choices: tuple[Any, ...] | None = None

    @property
    def shown(self) -> str:
        """The default as the command line writes it: null, true / false, a comma list."""
        if self.default is None or isinstance(self.default, bool):
            return {None: "null", True: "true", False: "false"}[self.default]
        return ",".join(map(str, self.default)) if isinstance(self.default, (tuple, list)) else str(self.default)


@dataclass
class MetricSpec:
    """A registered metric; calling it runs its function with the options it takes."""

    name: str
    function: Callable[..., dict[str, Any]]
    description: str
    options: dict[str, MetricOption] = field(default_factory=dict)
    default: bool = False  # computed when no metric is named (the end of training, plain `vaelab evaluate`)
    images_only: bool = False  # skipped, with a note, on vectors
    module: str = ""

    def __call__(self, model: Any, data: Any, **options: Any) -> dict[str, Any]:
        params = inspect.signature(self.function).parameters
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            options = {k: v for k, v in options.items() if k in params}
        return self.function(model, data, **options)


METRICS: dict[str, MetricSpec] = {}


def register_metric(name: str, description: str | None = None, *, default: bool = False, images_only: bool = False,
                    **options: str) -> Callable[[F], F]:
    """Function decorator: make ``metric(model, data, **options) -> dict of floats`` the metric
    ``name`` (``vaelab evaluate --metrics NAME``). Each keyword of ``options`` names one of the
    function's keyword parameters, which must have a default, and says what it means; the command
    line offers it as ``--NAME-OF-OPTION``. ``default``: computed when no metric is named;
    ``images_only``: skipped on vectors. ``description`` defaults to the docstring's first line."""

    def decorate(fn: F) -> F:
        if not callable(fn):
            raise ConfigError(f"register_metric({name!r}) decorates a function metric(model, data, **options), got {fn!r}")
        params = inspect.signature(fn).parameters
        declared = {}
        for key, meaning in options.items():
            p = params.get(key)
            if p is None or p.default is inspect.Parameter.empty or key in COMMON_OPTIONS:
                raise ConfigError(f"register_metric({name!r}): option {key!r} must be a keyword parameter of "
                                  f"{fn.__name__} with a default (and not one of {', '.join(COMMON_OPTIONS)})")
            declared[key] = MetricOption(key, p.default, meaning, *_parser(fn, key, p.default))
        doc = (fn.__doc__ or "").strip().splitlines()
        METRICS[name] = MetricSpec(name, fn, description or (doc[0] if doc else name), declared, default, images_only,
                                   getattr(fn, "__module__", ""))
        return fn

    return decorate


def _parser(fn: Callable[..., Any], key: str, default: Any) -> tuple[Callable[[str], Any], tuple[Any, ...] | None]:
    """How the command line's text becomes option ``key``: from its type hint (a Literal gives the
    choices), else from the default's type; a tuple or list is comma-separated text."""
    try:
        hint = typing.get_type_hints(fn).get(key)
    except Exception:  # a hint that does not resolve: read the default's type
        hint = None
    if typing.get_origin(hint) is Literal:
        return type(typing.get_args(hint)[0]), typing.get_args(hint)
    kinds = [a for a in typing.get_args(hint) if a is not type(None)] or ([hint] if hint else [])
    kind = type(default) if default is not None else (typing.get_origin(kinds[0]) or kinds[0]) if kinds else str
    if kind in (tuple, list) or isinstance(default, (tuple, list)):
        return comma_list, None
    if kind is bool:
        return yes_no, None
    return (kind if kind in (int, float, str) else str), None


def comma_list(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def yes_no(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on")


def get_metric(name: str) -> MetricSpec:
    if name not in METRICS:
        raise ConfigError(f"unknown metric {name!r}; choose from: {', '.join(METRICS)} (or all). {OWN_METRIC_HINT}")
    return METRICS[name]


def default_metrics() -> tuple[str, ...]:
    """The metrics computed when none is named, in the order they were registered."""
    return tuple(n for n, s in METRICS.items() if s.default)


def metric_options() -> dict[str, list[tuple[str, MetricOption]]]:
    """Each option name with the (metric, option) pairs that declare it (one name may serve several metrics)."""
    out: dict[str, list[tuple[str, MetricOption]]] = {}
    for name, spec in METRICS.items():
        for key, opt in spec.options.items():
            out.setdefault(key, []).append((name, opt))
    return out
