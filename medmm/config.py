"""Configuration as a tree of dataclasses: to and from plain dicts, JSON and YAML, with overrides.

Unknown keys and wrong types are ConfigErrors naming the key path, so a typo in a YAML file
fails loudly instead of being ignored. YAML is always read with yaml.safe_load.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import json
import textwrap
import types
import typing
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar

import yaml

from medmm.errors import ConfigError

T = TypeVar("T")


def to_dict(obj: Any) -> Any:
    """A JSON-able copy of a dataclass tree (tuples become lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    return obj


def from_dict(cls: type[T], data: Mapping[str, Any] | None, where: str = "") -> T:
    """Build dataclass `cls` from `data`, recursing into nested dataclass fields."""
    if data is None:
        return cls()
    if not isinstance(data, Mapping):
        raise ConfigError(f"expected a mapping for {cls.__name__}", where=where or cls.__name__)
    upgrade = getattr(cls, "upgrade_dict", None)  # a class may read an older layout of its keys
    if upgrade is not None:
        data = upgrade(data)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}", where=where or cls.__name__
        )
    kwargs = {}
    for key, value in data.items():
        kwargs[key] = _coerce(hints[key], value, f"{where}.{key}" if where else key)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc), where=where or cls.__name__) from exc


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where)
            except ConfigError as err:
                errors.append(err.detail)
        raise ConfigError("; ".join(errors) or "invalid value", where=where)
    if dataclasses.is_dataclass(hint):
        return value if isinstance(value, hint) else from_dict(hint, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError("expected a list", where=where)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"expected {len(args)} items", where=where)
        return tuple(_coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            raise ConfigError("expected a mapping", where=where)
        return dict(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError("expected a number", where=where)
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError("expected an integer", where=where)
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError("expected true or false", where=where)
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError("expected a string", where=where)
        return value
    return value


def apply_overrides(data: dict, overrides: Sequence[str]) -> dict:
    """Apply `a.b.c=value` overrides (values parsed as YAML scalars) to a nested dict."""
    out = json.loads(json.dumps(data))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value", where="overrides")
        key, raw = item.split("=", 1)
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{key} does not name a nested key", where="overrides")
        node[parts[-1]] = yaml.safe_load(raw)
    return out


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping safely (no object construction)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError("config file not found", path=path) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError("not valid YAML", path=path, where=f"line {mark.line + 1}" if mark else None) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping at the top level", path=path)
    return data


def attribute_docs(cls: type) -> dict[str, str]:
    """Field name -> its attribute docstring (the string literal right under the field, PEP 257), one line.

    Options are documented once, on the dataclass that holds them; the command line's --help and
    the docs read them from here."""
    return _attribute_docs(inspect.getsource(cls), cls.__name__)


def attribute_docs_in(path: str | Path, class_name: str) -> dict[str, str]:
    """`attribute_docs` of class `class_name` in the Python file at `path`, read without importing it."""
    return _attribute_docs(Path(path).read_text(encoding="utf-8"), class_name)


@functools.lru_cache(maxsize=None)
def _attribute_docs(source: str, class_name: str) -> dict[str, str]:
    tree = ast.parse(textwrap.dedent(source))
    found = next((n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == class_name), None)
    if found is None:
        raise ConfigError(f"no class {class_name} in the source", where="attribute docs")
    docs: dict[str, str] = {}
    for field_node, after in zip(found.body, found.body[1:]):
        if (
            isinstance(field_node, ast.AnnAssign)
            and isinstance(field_node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[field_node.target.id] = " ".join(after.value.value.split())
    return docs
