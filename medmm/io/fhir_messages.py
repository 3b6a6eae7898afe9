"""Validation failures of FHIR resources as short messages that name the element and what it
should hold, never the value found (which may be patient data)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

# What each primitive named in fhir_core's "<Type> value string does not match" errors expects.
_PRIMITIVE_WORDS = {
    "Decimal": "a number",
    "Integer": "an integer",
    "Integer64": "an integer",
    "PositiveInt": "a positive integer",
    "UnsignedInt": "a non-negative integer",
    "DateTime": "a FHIR dateTime (YYYY, YYYY-MM, YYYY-MM-DD or a date-time with time zone)",
    "Date": "a FHIR date (YYYY, YYYY-MM or YYYY-MM-DD)",
    "Instant": "a FHIR instant (date-time with time zone)",
    "Time": "a time (hh:mm:ss)",
    "Boolean": "true or false",
    "Base64Binary": "base64 data",
}
_PYDANTIC_WORDS = {
    "missing": "required but missing",
    "model_field_validation.missing": "required but missing",
    "extra_forbidden": "not an element of this type",
    "string_type": "expected a string",
    "list_type": "expected a list",
    "dict_type": "expected an object",
    "model_type": "expected an object",
    "model_attributes_type": "expected an object",
    "json_invalid": "expected an object",
    "json_type": "expected an object",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "int_from_float": "expected an integer",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "decimal_type": "expected a number",
    "decimal_parsing": "expected a number",
    "base64_decode": "expected base64 data",
    "literal_error": "expected one of the allowed codes",
    "enum": "expected one of the allowed codes",
    "string_pattern_mismatch": "expected text in the FHIR format of this element",
    "string_too_short": "expected non-empty text",
    "fhir-validation-wrong-resource-type": "resourceType does not match",
}


def describe_error(exc: Exception | None) -> str:
    """A validation failure as "field a.b[0].c: expected ..." without echoing any input value."""
    if not isinstance(exc, ValidationError):
        return f"invalid resource ({type(exc).__name__})"
    errors = exc.errors()
    if not errors:
        return "invalid resource"
    first = errors[0]
    path = _loc_path(first.get("loc", ()))
    text = _expected(first)
    more = f" (and {len(errors) - 1} more error(s))" if len(errors) > 1 else ""
    return f"field {path}: {text}{more}" if path else f"{text}{more}"


def describe_failure(exc: Exception, validate: Callable[[dict[str, Any]], object], raw: dict[str, Any]) -> str:
    """What a model raised while validating `raw`, as a message naming the element when it can.

    A ValidationError names its own fields. Anything else (a validator calling str methods on a
    number, say) is narrowed to the element that raises it by validating ever smaller copies of
    the resource (see `failing_element`); a RecursionError is the depth of the whole resource.
    """
    if isinstance(exc, (ValidationError, RecursionError)):
        return describe_error(exc)
    path = failing_element(validate, raw, type(exc))
    what = f"invalid value (the FHIR models raised {type(exc).__name__})"
    return f"field {path}: {what}" if path else f"invalid resource (the FHIR models raised {type(exc).__name__})"


def failing_element(
    validate: Callable[[dict[str, Any]], object], raw: dict[str, Any], kind: type[BaseException], budget: int = 64
) -> str:
    """The path ("content[0].attachment.url") of the deepest element that alone, in a copy of the
    resource holding nothing else, still makes `validate` raise `kind`; "" when none does.

    One level at a time, each child is tried alone (missing required elements give ordinary
    validation errors, not `kind`); at most `budget` copies are validated.
    """
    trail: list[Any] = []
    node: Any = raw
    while budget > 0 and isinstance(node, (dict, list)):
        children = [k for k in node if k != "resourceType"] if isinstance(node, dict) else range(len(node))
        found = None
        for child in children:
            budget -= 1
            if budget < 0:
                break
            try:
                validate(_alone(raw, [*trail, child]))
            except kind:
                found = child
                break
            except MemoryError:
                raise
            except Exception:  # noqa: BLE001 - any other outcome means: not this child
                pass
        if found is None:
            break
        trail.append(found)
        node = node[found]
    return _loc_path(tuple(trail))


def _alone(raw: dict[str, Any], trail: list[Any]) -> dict[str, Any]:
    """A copy of the resource that keeps only the element at `trail` (lists cut to that item)."""
    containers = [raw]
    for key in trail[:-1]:
        containers.append(containers[-1][key])
    value = containers[-1][trail[-1]]
    for container, key in zip(reversed(containers), reversed(trail)):
        value = [value] if isinstance(container, list) else {key: value}
    return {"resourceType": raw.get("resourceType"), **value}


def _loc_path(loc: tuple[Any, ...]) -> str:
    """('component', 0, 'valueQuantity', 'value') -> 'component[0].valueQuantity.value'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part != "root":
            out += ("." if out else "") + ("resourceType" if part == "resource_type" else str(part))
    return out


def _expected(error: Any) -> str:
    """What the element should have held, from the error's type (its input is never used)."""
    kind = str(error.get("type", ""))
    message = str(error.get("msg", ""))
    if kind in _PYDANTIC_WORDS:
        return _PYDANTIC_WORDS[kind]
    if kind.startswith("date"):
        return "expected a valid date or date-time"
    m = re.search(r"(\w+) value string does not match spec regex", message)
    if m and m[1] in _PRIMITIVE_WORDS:
        return f"expected {_PRIMITIVE_WORDS[m[1]]}"
    if "time zone" in message.lower() or "timezone aware" in message:
        return "expected a date-time with time zone"
    m = re.search(r"from this list \['([a-z][A-Za-z]*?)[A-Z]", message)
    if m and "got multiple" in message:
        return f"expected only one {m[1]}[x] element"
    if m:
        return f"expected a {m[1]}[x] element"
    m = re.search(r"instance of (\w+)", message)
    if m:
        return f"expected an object ({m[1]})"
    safe_kind = re.sub(r"[^a-z_.-]", "", kind.lower())[:40]
    return f"invalid value ({safe_kind or 'unknown error'})"
