"""Unit conversion of vital signs to their canonical UCUM unit, and plausibility checks.

Only units listed here are accepted; anything else raises :class:`VitalsError` so that a
value in an unknown unit is reported, never guessed.
"""

from __future__ import annotations

import math
import re

from medmm.codes import VitalSign
from medmm.errors import VitalsError

# Spellings seen in exports, mapped to the UCUM unit they mean. Keys are compared after
# stripping and lower-casing; "{...}" annotations are dropped first ("{beats}/min" -> "/min").
_ALIASES: dict[str, str] = {
    "/min": "/min",
    "1/min": "/min",
    "min-1": "/min",
    "bpm": "/min",
    "beats/min": "/min",
    "breaths/min": "/min",
    "per min": "/min",
    "%": "%",
    "percent": "%",
    "cel": "Cel",
    "degc": "Cel",
    "°c": "Cel",
    "c": "Cel",
    "[degf]": "[degF]",
    "degf": "[degF]",
    "°f": "[degF]",
    "f": "[degF]",
    "mm[hg]": "mm[Hg]",
    "mmhg": "mm[Hg]",
    "mm hg": "mm[Hg]",
    "kg": "kg",
    "g": "g",
    "[lb_av]": "[lb_av]",
    "lb": "[lb_av]",
    "lbs": "[lb_av]",
}

# "{...}" without braces inside; text after an unclosed "{" (or a "}" alone) stays, so such a unit
# is unknown.
_ANNOTATION = re.compile(r"\{[^{}]*\}")
MAX_UNIT_LENGTH = 256  # far past "{beats}/min"; longer text is no unit medmm knows

# (from unit, to unit) -> converter
_CONVERT = {
    ("[degF]", "Cel"): lambda v: (v - 32.0) * 5.0 / 9.0,
    ("[lb_av]", "kg"): lambda v: v * 0.45359237,
    ("g", "kg"): lambda v: v / 1000.0,
}


def canonical_unit(unit: str | None) -> str | None:
    """The UCUM spelling of `unit`, or None when medmm does not know it.

    Linear in the length of `unit`: annotations are removed in one pass, and a unit longer than
    any known spelling with its annotations (MAX_UNIT_LENGTH) is unknown without being read.
    """
    if unit is None or len(unit) > MAX_UNIT_LENGTH:
        return None
    key = _ANNOTATION.sub("", unit.strip())  # UCUM annotations ("{beats}") carry no meaning
    return _ALIASES.get(key.strip().lower())


def vital_unit(unit: str | None, vital: VitalSign) -> str | None:
    """The UCUM unit `unit` means for `vital`: a spelling medmm knows, or the vital's own canonical unit
    written as its definition gives it (a task's channel whose unit medmm has no spellings for); else None."""
    ucum = canonical_unit(unit)
    if ucum is not None or unit is None or len(unit) > MAX_UNIT_LENGTH:
        return ucum
    given = unit.strip()
    plain = _ANNOTATION.sub("", given).strip()
    return vital.unit if vital.unit in (given, plain) else None


def to_canonical(value: float, unit: str | None, vital: VitalSign, *, source: str = "", where: str = "") -> float:
    """Convert `value` in `unit` to the vital sign's canonical unit.

    Raises VitalsError (naming `source` and `where`) for an unknown or incompatible unit.
    """
    ucum = vital_unit(unit, vital)
    if ucum is None:
        raise VitalsError(
            f"unknown unit for {vital.name} (expected {vital.unit} or a convertible unit)",
            path=source or None,
            where=where or None,
        )
    if ucum == vital.unit:
        return float(value)
    convert = _CONVERT.get((ucum, vital.unit))
    if convert is None:
        raise VitalsError(
            f"unit {ucum} cannot be converted to {vital.unit} for {vital.name}",
            path=source or None,
            where=where or None,
        )
    return float(convert(float(value)))


def implausible_reason(value: float, vital: VitalSign) -> str | None:
    """Why a canonical-unit value cannot be real, or None when it is plausible."""
    if not math.isfinite(value):
        return "not a finite number"
    if value < vital.low:
        return f"implausible: below {vital.low:g} {vital.unit}"
    if value > vital.high:
        return f"implausible: above {vital.high:g} {vital.unit}"
    return None
