"""The detector's score options, read from the score registry: any registered score's options are keyword
arguments of ``AutoencoderDetector`` (``score_options``), kept as attributes and scikit-learn parameters
(``get_params``, ``set_params``, ``clone``); an option not given reads as its declared default, and an
option no registered score declares is refused."""
from __future__ import annotations

import inspect
from typing import Any

from ..errors import ConfigError
from ..models import Autoencoder
from .scores import Score, all_options, get_score


class ScoreOptions:
    """The score-options half of AutoencoderDetector (a mixin): it sets ``_score_options`` in ``__init__``."""

    _score_options: list[str]

    def _set_score_options(self, options: dict[str, Any]) -> None:
        known = all_options()
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ConfigError(f"unknown detector setting(s) {unknown}: neither a setting of the detector nor an option of "
                              f"a registered score ({', '.join(sorted(known))}); `vaelab scores -v` lists each score's")
        for k, v in options.items():
            setattr(self, k, v)
            if k not in self._score_options:
                self._score_options.append(k)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The detector's settings (scikit-learn), the score options given included."""
        return {**super().get_params(deep), **{k: getattr(self, k) for k in self._score_options}}

    def set_params(self, **params: Any) -> Any:
        options = {k: params.pop(k) for k in list(params) if k not in self._settings()}
        self._set_score_options(options)
        return super().set_params(**params) if params else self

    @classmethod
    def _settings(cls) -> list[str]:
        """The detector's own settings (its constructor's named parameters)."""
        return [p.name for p in inspect.signature(cls.__init__).parameters.values()
                if p.name != "self" and p.kind is not p.VAR_KEYWORD]

    def __getattr__(self, name: str) -> Any:
        """An option not given reads as its default: the detector's score's, else the first score's that declares it."""
        if not name.startswith("_"):
            declared = all_options().get(name)
            if declared:
                score = self.__dict__.get("score")
                return next((o.default for n, o in declared if n == score), declared[0][1].default)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _given_options(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self._score_options}

    def _make_score(self, model: Autoencoder | None = None) -> Score:
        """The unfitted score of this detector for ``model`` (None: before the model is known), with the options given."""
        spec = get_score(self.score)
        clash = sorted(set(spec.options) & set(self._settings()))
        if clash:
            raise ConfigError(f"the {self.score!r} score declares option(s) {clash} named like the detector's own settings, "
                              "which would never reach it; rename them where the score is defined")
        return spec.make(**spec.cls.options_for(model, self._given_options()))
