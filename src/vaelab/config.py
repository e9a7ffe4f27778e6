"""Typed configs: dataclasses that round-trip through plain dicts / YAML, with strict keys."""
from __future__ import annotations

import dataclasses
import math
import reprlib
import types
import typing
import warnings
from typing import Any, TypeVar

import yaml

from .errors import ConfigError

T = TypeVar("T")


_REPR = reprlib.Repr()
_REPR.maxstring, _REPR.maxother, _REPR.maxlevel = 60, 60, 3


def _short(value: Any) -> str:
    """A bounded repr for messages: a hostile value (deep, huge, self-referencing) stays short."""
    return _REPR.repr(value)


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{key}: {_short(value)} does not fit {tp}")
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{key}: {_short(value)} is not one of {list(typing.get_args(tp))}")
        return value
    if origin in (list, tuple):
        (inner, *_) = typing.get_args(tp) or (Any,)
        if isinstance(value, str) and inner is str:  # a list of names as text: --set train.loggers=csv,mlflow
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {_short(value)}")
        return [_coerce(v, inner, key) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {_short(value)}")
        return dict(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):  # YAML 1.1 reads '1e-3' as text
            raise ConfigError(f"{key}: expected a number, got {_short(value)}")
        try:
            number = float(value)
        except (ValueError, OverflowError):
            raise ConfigError(f"{key}: expected a number, got {_short(value)}") from None
        if not math.isfinite(number):
            raise ConfigError(f"{key}: expected a finite number, got {_short(value)}")
        return number
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{key}: expected an integer, got {_short(value)}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {_short(value)}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected text, got {_short(value)}")
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, prefix=key + ".")
    return value


def from_dict(cls: type[T], data: dict[str, Any] | None, prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, refusing unknown keys and values of the wrong type."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or cls.__name__}: expected a mapping of options, got {_short(data)}")
    data = dict(data)
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(str(k) for k in set(data) - fields)
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(prefix + u for u in unknown)}; valid keys: {', '.join(prefix + f for f in sorted(fields))}"
        )
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{prefix or cls.__name__}: {e}") from None


def parse_set(items: list[str] | None) -> dict[str, Any]:
    """Turn ``["model.beta=4", "train.lr=1e-3"]`` into a nested dict; values are YAML scalars."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r} (e.g. --set model.beta=4)")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except Exception:  # noqa: BLE001 - PyYAML's constructors raise many types (see load_yaml): keep the text
            value = raw
        if isinstance(value, str):
            try:
                value = float(value) if value.strip().lower() not in ("nan", "inf", "-inf", "infinity") else value
            except ValueError:
                pass
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {p} is not a section")
        node[parts[-1]] = value
    return out


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


class _Dumper(yaml.SafeDumper):
    """Writes a value shared by two keys twice, never as an anchor and an alias: vaelab's own YAML
    holds no aliases, so a reader can refuse every one."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_yaml(d: dict[str, Any]) -> str:
    return yaml.dump(d, Dumper=_Dumper, sort_keys=False)


# the largest YAML file vaelab reads: a run's config is a few kB
MAX_YAML_BYTES = 1 << 20


class _AliasFound(Exception):
    pass


class _NoAliasLoader(yaml.SafeLoader):
    """safe_load's loader that refuses every alias (``*name``): a few hundred bytes of nested
    aliases expand to billions of nodes (an "alias bomb"), and vaelab writes none."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise _AliasFound(f"at line {mark.line + 1}, column {mark.column + 1}")
        return super().compose_node(parent, index)


def load_yaml(text: str, source: str) -> dict[str, Any]:
    """Plain data only (safe_load's constructors: no Python objects), at most ``MAX_YAML_BYTES``,
    no aliases; every failure is a ConfigError."""
    if len(text) > MAX_YAML_BYTES:
        raise ConfigError(f"{source}: {len(text):,} characters, more than the {MAX_YAML_BYTES:,} a vaelab config may "
                          "have; this is not a vaelab config, or it is damaged")
    try:
        loader = _NoAliasLoader(text)  # what yaml.safe_load does, with the alias-refusing loader
        try:
            d = loader.get_single_data()
        finally:
            loader.dispose()
    except _AliasFound as e:
        raise ConfigError(f"{source}: the YAML uses an alias (*name) {e}; vaelab configs hold none, and aliases can "
                          "expand a small file into billions of values. Write the value out in full") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: not valid YAML ({e}); fix the syntax or restore the file") from None
    except RecursionError:
        raise ConfigError(f"{source}: the YAML is nested too deeply to be a vaelab config") from None
    except Exception as e:  # noqa: BLE001
        # safe_load builds only plain data, but its constructors raise ValueError, IndexError,
        # AttributeError, ... on well-formed scalars they cannot build (the date 2001-13-45, '!!int ')
        raise ConfigError(f"{source}: a value in this YAML cannot be read ({type(e).__name__}: {e}); "
                          "quote it or correct it") from None
    if not isinstance(d, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(d).__name__}")
    return d


def _major_minor(version: str) -> tuple[int, int] | None:
    parts = version.strip().split(".")
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        return None


def check_version(found: str, source: str) -> None:
    """Files written by another vaelab: another MAJOR version is refused (formats may differ),
    another MINOR version gives a warning, another patch release is accepted silently."""
    from ._version import __version__
    from .errors import CheckpointError

    theirs, ours = _major_minor(found), _major_minor(__version__)
    if theirs is None:
        raise CheckpointError(f"{source}: vaelab_version {_short(found)} is not a version number; "
                              f"this file was not written by vaelab, or it is damaged")
    if ours is not None and theirs[0] != ours[0]:
        raise CheckpointError(
            f"{source} was written by vaelab {found}, and this is vaelab {__version__}: another major version, "
            f"whose files may mean something else. Install vaelab {theirs[0]}.x to use it, or retrain with this version"
        )
    if ours is not None and theirs[1] != ours[1]:
        warnings.warn(f"{source} was written by vaelab {found}, this is vaelab {__version__} (another minor version); "
                      "it is read as if it were current", UserWarning, stacklevel=3)


def field_help(cls: type) -> dict[str, str]:
    """Each dataclass field's meaning, read from where it is defined: the comment at the end of its
    line, else the comment lines just above it (through the class's base classes). Fields without
    a comment map to ''. Used by `vaelab train --help` and `vaelab models -v`."""
    import inspect
    import io
    import tokenize

    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass) or klass is object:
            continue
        try:
            src = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        names = {f.name for f in dataclasses.fields(klass)}
        above: list[str] = []
        line_tokens: list[tokenize.TokenInfo] = []
        try:
            tokens = list(tokenize.generate_tokens(io.StringIO(src).readline))
        except (tokenize.TokenError, SyntaxError):
            continue
        for tok in tokens:
            if tok.type == tokenize.COMMENT and not line_tokens:
                above.append(tok.string.lstrip("#").strip())
                continue
            if tok.type in (tokenize.NEWLINE, tokenize.NL):
                if line_tokens:
                    first = line_tokens[0]
                    is_field = (first.type == tokenize.NAME and first.string in names and len(line_tokens) > 1
                                and line_tokens[1].string == ":")
                    if is_field:
                        trailing = [t.string.lstrip("#").strip() for t in line_tokens if t.type == tokenize.COMMENT]
                        out[first.string] = trailing[0] if trailing else " ".join(above)
                    above = []
                elif tok.type == tokenize.NL and not above:
                    pass
                line_tokens = []
                continue
            if tok.type in (tokenize.INDENT, tokenize.DEDENT):
                continue
            line_tokens.append(tok)
    return {f.name: out.get(f.name, "") for f in dataclasses.fields(cls)}


def describe_fields(cls: type, prefix: str, skip: tuple[str, ...] = ()) -> list[str]:
    """One line per field: ``prefix.name = default  meaning``."""
    helps = field_help(cls)
    lines = []
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        else:
            default = "(required)"
        shown = "null" if default is None else json_like(default)
        meaning = helps.get(f.name, "")
        lines.append(f"  {prefix}{f.name} = {shown}" + (f"  -- {meaning}" if meaning else ""))
    return lines


def json_like(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(json_like(v) for v in value) + "]"
    return str(value)
