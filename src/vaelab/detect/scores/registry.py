"""The score registry: a name maps to a Score class and its options.

A score registers itself where it is defined, with ``@register_score("name")`` on its class; the
package imports each of its own modules once (``discover``), so a new score is one new file. A score
outside the package registers the same way and becomes known to every command through
``vaelab ... --import MODULE`` (a module name or a ``.py`` file) or the ``vaelab.scores`` entry-point
group of an installed package.

A score's options are its constructor's keyword arguments, declared there once with their defaults
(``register_score(name, **defaults)`` overrides them, so one class can serve under several names) and,
optionally, their meaning: ``patch_size: Annotated[int, "the window's side in pixels"] = 15``. The
detector, the command line's flags and help, and ``vaelab scores -v`` read them from here."""
from __future__ import annotations

import functools
import inspect
import typing
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from ...errors import ConfigError, ModelError
from ...models.registry import discover as discover_modules
from ...models.registry import import_entry_points, look_up

ENTRY_POINT_GROUP = "vaelab.scores"
T = TypeVar("T", bound=type)


@dataclass(frozen=True)
class ScoreOption:
    """One option of a score: its default, its meaning, the values it may take (a ``Literal``), and
    the type a command line's text is read as."""

    name: str
    default: Any
    help: str = ""
    choices: tuple[Any, ...] | None = None
    kind: type = str


@dataclass
class ScoreSpec:
    """A registered score: its class, a one-line description and its options. ``forwards``: the class
    takes ``**options`` and passes them on (a combination, to its members)."""

    name: str
    cls: type
    description: str
    options: dict[str, ScoreOption]
    forwards: bool = False
    module: str = ""

    def make(self, **options: Any) -> Any:
        """An unfitted score of this name; ``options`` it does not declare are left out (passed on
        when it ``forwards``), those it declares and are not given take its defaults."""
        kw = {k: options.get(k, o.default) for k, o in self.options.items()}
        if self.forwards:
            kw.update({k: v for k, v in options.items() if k not in kw})
        score = self.cls(**kw)
        if score.name != self.name:  # a class registered under several names
            score.name = self.name
        return score

    @property
    def exportable(self) -> bool:
        """Whether the class declares an export head (``export_head``); see vaelab.detect.export."""
        return self.cls.exportable()

    def needs(self) -> str:
        """What a model needs for this score, in words."""
        return self.cls.describe_needs()


SCORES: dict[str, ScoreSpec] = {}


def _kind(default: Any, hint: Any) -> type:
    """The type a command line's text for this option is read as."""
    for t in (bool, int, float, str):  # bool before int: True is an int
        if isinstance(default, t):
            return t
    for a in typing.get_args(hint) or (hint,):
        if a in (int, float, str, bool):
            return a
    return str  # None, a sequence (a comma list): text, which the score reads


def _options(name: str, cls: type, defaults: dict[str, Any]) -> tuple[dict[str, ScoreOption], bool]:
    """The keyword arguments of ``cls.__init__`` as options, ``defaults`` overriding theirs."""
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    try:
        hints = typing.get_type_hints(cls.__init__, include_extras=True)
    except Exception:  # an annotation that does not resolve: the options keep their names and defaults
        hints = {}
    unknown = set(defaults) - {p.name for p in params}
    if unknown:
        raise ModelError(f"register_score({name!r}) sets {sorted(unknown)}, which {cls.__name__}.__init__ does not take")
    options, forwards = {}, False
    for p in params:
        if p.kind is p.VAR_KEYWORD:
            forwards = True
            continue
        if p.kind is p.VAR_POSITIONAL:
            continue
        if p.default is p.empty and p.name not in defaults:
            raise ModelError(f"register_score({name!r}): {cls.__name__}.__init__ takes {p.name} without a default; "
                             "every option of a score needs one")
        hint, meaning, choices = hints.get(p.name), "", None
        if typing.get_origin(hint) is typing.Annotated:
            hint, *meta = typing.get_args(hint)
            meaning = next((m for m in meta if isinstance(m, str)), "")
        if typing.get_origin(hint) is typing.Literal:
            choices = typing.get_args(hint)
        default = defaults.get(p.name, p.default)
        options[p.name] = ScoreOption(p.name, default, meaning, choices, _kind(default, hint))
    return options, forwards


def register_score(name: str, description: str | None = None, **defaults: Any) -> Callable[[T], T]:
    """Class decorator: make ``cls`` (a subclass of vaelab.detect.scores.Score) the anomaly score
    ``name`` (``vaelab detect --score NAME``, ``AutoencoderDetector(score=NAME)``), with its
    constructor's options, ``defaults`` overriding their defaults. ``description`` defaults to the
    first line of the class docstring."""

    def decorate(cls: T) -> T:
        from .base import Score

        if not (isinstance(cls, type) and issubclass(cls, Score)):
            raise ModelError(f"register_score({name!r}) decorates a subclass of vaelab.detect.scores.Score, got {cls!r}")
        options, forwards = _options(name, cls, defaults)
        if "name" not in vars(cls):  # its own name (not a parent's); an instance of a second registration is renamed
            cls.name = name
        doc = (cls.__doc__ or "").strip().splitlines()
        SCORES[name] = ScoreSpec(name, cls, description or (doc[0] if doc else name), options, forwards, cls.__module__)
        return cls

    return decorate


def discover() -> None:
    """Import every module of vaelab.detect.scores once: each registers the scores it defines."""
    discover_modules(__package__)


@functools.cache
def load_entry_points() -> None:
    """Import the modules that installed packages name in the ``vaelab.scores`` entry-point group, once."""
    import_entry_points(ENTRY_POINT_GROUP)


def get_score(name: str) -> ScoreSpec:
    """The registered score ``name``, or a ConfigError naming every score."""
    return look_up(SCORES, name, "anomaly score", "register_score", load_entry_points)


def single_scores() -> list[str]:
    """The scores that are not combinations of others (what a combination may combine)."""
    return [n for n, s in SCORES.items() if not s.cls.combines]


def vector_scores() -> list[str]:
    """The scores defined on vectors as well as images."""
    return [n for n in single_scores() if not SCORES[n].cls.image_only]


def density_free_scores(classifier: bool = True) -> list[str]:
    """The scores any model can back (no prior or posterior density needed); ``classifier=False``
    leaves out those that need a classifier on the code too."""
    return [n for n in single_scores() if not SCORES[n].cls.needs_density
            and (classifier or not SCORES[n].cls.needs_classifier)]


def exportable_scores() -> list[str]:
    """The scores whose class declares an export head."""
    return [n for n, s in SCORES.items() if s.exportable]


def all_options() -> dict[str, list[tuple[str, ScoreOption]]]:
    """Every option of every registered score: option name -> [(score name, option)], in the order
    the scores registered."""
    out: dict[str, list[tuple[str, ScoreOption]]] = {}
    for n, s in SCORES.items():
        for k, o in s.options.items():
            out.setdefault(k, []).append((n, o))
    return out


def export_refusal(what: str, why: str) -> ConfigError:
    """The error of a score the exporter cannot compute: why, and which scores it can."""
    return ConfigError(f"the {what} score cannot be exported: {why}. Exportable scores: {', '.join(exportable_scores())} "
                       "(combo with combo_method='zscore' and exportable members)")


def export_head_for(score: Any, model: Any) -> Any:
    """The module that computes ``score`` in an exported scorer (``score.export_head(model)``), or the
    refusal of a score that declares none."""
    head = score.export_head(model)
    if head is None:
        raise export_refusal(repr(score.name), score.why_not_exportable)
    return head


__all__ = ["ENTRY_POINT_GROUP", "SCORES", "ScoreOption", "ScoreSpec", "all_options", "density_free_scores", "discover",
           "export_head_for", "export_refusal", "exportable_scores", "get_score", "load_entry_points", "register_score",
           "single_scores", "vector_scores"]
