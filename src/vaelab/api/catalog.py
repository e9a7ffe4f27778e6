"""What vaelab knows by name, read from the registries: every data source (and where it was found),
every model, anomaly score and metric (with their options), as plain data for `vaelab datasets` /
`vaelab models` / `vaelab scores` / `vaelab metrics` and for a notebook."""
from __future__ import annotations

from typing import Any

from ..config import describe_fields, json_like
from ..data import SOURCES, DataConfig
from ..data.download import data_roots
from ..detect.scores import SCORES
from ..detect.scores import load_entry_points as load_score_entry_points
from ..evaluate import METRICS
from ..models import MODELS, ModelConfig, import_models, load_entry_points, make_config
from ..models.registry import IMPORTED
from ..train.config import TrainConfig


def list_datasets(declared: bool = False) -> dict[str, Any]:
    """``{"search_order": [...], "sources": [{"name", "description", "found", "status"}]}``: each data
    source, where it was found on this machine, or how to get it (those reading data.path last). With
    ``declared``, each row's ``declared``: what the source declares (needs_path, classes, labelled, shape)."""

    rows = []
    for name, src in sorted(SOURCES.items(), key=lambda item: item[1].needs_path):
        where = None if src.needs_path else src.locate()
        status = f"found: {where}" if where else ("needs data.path" if src.needs_path else f"not found; {src.how_to_get}")
        row = {"name": name, "description": src.description, "found": str(where) if where else None, "status": status}
        if declared:
            row["declared"] = {"needs_path": src.needs_path, "classes": len(src.class_names) or None,
                               "labelled": src.labelled, "shape": list(src.shape) if src.shape else None,
                               "data keys": ["path", *src.config_keys] if src.needs_path else list(src.config_keys),
                               "module": src.module}
        rows.append(row)
    return {"search_order": [str(r) for r in data_roots()], "sources": rows}


def list_models(options: bool = False) -> list[dict[str, Any]]:
    """Every registered model (entry points included): name, description and, with ``options``, each
    of its config keys with this model's default (registry defaults applied) and meaning."""

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

    import_models(modules)


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

    load_score_entry_points()
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


def list_metrics(options: bool = False) -> list[dict[str, Any]]:
    """Every registered metric: name, description, whether it is a default one and whether it is
    for images only; with ``options``, each option it declares with its default, its meaning and the
    flag `vaelab evaluate` takes it by."""

    rows = []
    for name, spec in METRICS.items():
        row: dict[str, Any] = {"name": name, "description": spec.description, "default": spec.default,
                               "images_only": spec.images_only, "module": spec.module}
        if options:
            row["options"] = [{"key": o.name, "flag": "--" + o.name.replace("_", "-"), "meaning": o.meaning,
                               "default": o.shown}
                              for o in spec.options.values()]
        rows.append(row)
    return rows
