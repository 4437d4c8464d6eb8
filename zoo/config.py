"""Typed config dataclasses: build from overrides, parse from the command line, check types."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

__all__ = ["ConfigError", "make_config", "parse_overrides", "config_fields"]


class ConfigError(ValueError):
    """A config key or value is wrong; the message names the key and what is allowed."""


def config_fields(cls: type) -> dict[str, Any]:
    """Maps each field name of a config dataclass to its resolved type."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(cls_name: str, key: str, value: Any, tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None or (isinstance(value, str) and value.lower() == "none"):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(cls_name, key, value, arg)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{cls_name}.{key}: bad value {value!r}")
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if value in allowed:
            return value
        raise ConfigError(
            f"{cls_name}.{key} must be one of {', '.join(map(str, allowed))}; got {value!r}"
        )
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.replace(",", " ").split() if v]
        inner = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{cls_name}.{key} must be a tuple; got {value!r}")
        elem = inner[0] if inner else Any
        return tuple(_coerce(cls_name, key, v, elem) for v in value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{cls_name}.{key} must be true or false; got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{cls_name}.{key} must be an integer; got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{cls_name}.{key} must be an integer; got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{cls_name}.{key} must be a number; got {value!r}")
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{cls_name}.{key} must be a number; got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{cls_name}.{key} must be a string; got {value!r}")
    return value


def make_config(cls: type, overrides: dict[str, Any] | None = None, base: Any = None) -> Any:
    """Builds a config dataclass from ``base`` (or the defaults) and checked ``overrides``.

    Values may be strings (from the command line); they are converted to the field's type.
    An unknown key or a value of the wrong type raises :class:`ConfigError`, naming the key
    and the allowed keys or values.
    """
    fields = config_fields(cls)
    values = dataclasses.asdict(base) if base is not None else {}
    for key, value in (overrides or {}).items():
        if key not in fields:
            raise ConfigError(
                f"unknown config key {key!r} for {cls.__name__}; valid keys: {', '.join(fields)}"
            )
        values[key] = _coerce(cls.__name__, key, value, fields[key])
    try:
        config = cls(**values)
    except TypeError as e:  # a required field without default
        raise ConfigError(f"{cls.__name__}: {e}") from None
    check = getattr(config, "validate", None)
    if check is not None:
        check()
    return config


def parse_overrides(items: list[str]) -> dict[str, str]:
    """Parses ``["key=value", ...]`` into a dict, with a clear error for a malformed item."""
    out: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, value = item.split("=", 1)
        out[key.strip().replace("-", "_")] = value.strip()
    return out
