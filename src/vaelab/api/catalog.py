"""What vaelab knows by name: every data source (and where it was found), every model and every anomaly
score (with their options), as plain data for `vaelab datasets` / `vaelab models` / `vaelab scores` and
for a notebook."""
from __future__ import annotations

from typing import Any


def list_datasets() -> dict[str, Any]:
    """``{"search_order": [...], "sources": [{"name", "description", "found", "status"}]}``: each data
    source, where it was found on this machine, or how to get it."""
    from ..data import SOURCES
    from ..data.download import data_roots

    rows = []
    for name, src in SOURCES.items():
        where = None if src.needs_path else src.locate()
        status = f"found: {where}" if where else ("needs data.path" if src.needs_path else f"not found; {src.how_to_get}")
        rows.append({"name": name, "description": src.description, "found": str(where) if where else None, "status": status})
    return {"search_order": [str(r) for r in data_roots()], "sources": rows}


def list_models(options: bool = False) -> list[dict[str, Any]]:
    """Every registered model (entry points included): name, description and, with ``options``, each
    of its config keys with this model's default (registry defaults applied) and meaning."""
    from ..config import describe_fields, json_like
    from ..models import MODELS, load_entry_points, make_config

    load_entry_points()
    rows = []
    for name, spec in MODELS.items():
        row: dict[str, Any] = {"name": name, "description": spec.description}
        if options:
            cfg = make_config(name)
            row["options"] = []
            for line in describe_fields(type(cfg), "model.", skip=("name", "image_shape")):
                key = line.split(" = ", 1)[0].strip()[len("model."):]
                meaning = line.split(" = ", 1)[1].partition("  -- ")[2]
                default = getattr(cfg, key)
                row["options"].append({"key": "model." + key, "default": "null" if default is None else json_like(default),
                                       "meaning": meaning})
        rows.append(row)
    return rows


def config_keys_help() -> str:
    """Every data.* / train.* key and the model keys all models share, with defaults and meanings
    (the tail of `vaelab train --help`)."""
    from ..config import describe_fields
    from ..data import DataConfig
    from ..models import ModelConfig
    from ..train.config import TrainConfig

    parts = ["", "config keys (--set KEY=VALUE; KEY=null for none, lists as [a,b]):", "data:"]
    parts += describe_fields(DataConfig, "data.")
    parts += ["train:"] + describe_fields(TrainConfig, "train.")
    parts += ["model (every model; `vaelab models -v` lists each model's own options and defaults):"]
    parts += describe_fields(ModelConfig, "model.", skip=("name", "image_shape"))
    parts += ["  seed = 0  -- random seed of the run"]
    return "\n".join(parts) + "\n"


def import_modules(modules: list[str]) -> None:
    """Import each module (a dotted name or a .py file): the models, scores, data sources, metrics and
    samplers it registers become known to every job (`--import` on the command line)."""
    from ..models import import_models

    import_models(modules)


def check_sampler_names(names: list[str], option: str = "samplers") -> tuple[str, ...]:
    """The sampler names given (stripped, blanks dropped), or a ConfigError naming the unknown ones
    and the known samplers: before a job loads anything."""
    from ..errors import ConfigError
    from ..generate import SAMPLERS

    given = tuple(s.strip() for s in names if s.strip())
    bad = [s for s in given if s not in SAMPLERS]
    if bad or not given:
        raise ConfigError(f"{option}: unknown sampler(s) {bad or list(given)}; choose from {', '.join(SAMPLERS)}")
    return given


def _option_text(value: Any) -> str:
    """An option's default as the command line writes it: a sequence as a comma list, None as null."""
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


def list_scores(options: bool = False) -> list[dict[str, Any]]:
    """Every registered anomaly score (a user's imported ones and entry points included): name, description,
    family (its module), what a model needs for it, whether it exports and, with ``options``, each of its
    options with its default (as the command line writes it), meaning, type name and allowed values."""
    from ..detect.scores import SCORES, load_entry_points
    from ..models.registry import IMPORTED

    load_entry_points()
    rows = []
    for name, spec in SCORES.items():
        own = spec.module.startswith("vaelab.detect.scores.")
        row: dict[str, Any] = {"name": name, "description": spec.description, "needs": spec.needs(),
                               "exportable": spec.exportable,
                               "family": spec.module.rsplit(".", 1)[-1] if own else IMPORTED.get(spec.module, spec.module)}
        if options:
            row["options"] = [{"name": o.name, "default": _option_text(o.default), "meaning": o.help,
                               "type": o.kind.__name__, "choices": list(o.choices) if o.choices else None}
                              for o in spec.options.values()]
        rows.append(row)
    return rows
