"""Vital signs from Observations and diagnosis labels from Conditions.

Vitals are matched on LOINC codes (medmm.codes.VITAL_SIGNS), on the Observation's code and on
each component's code (the blood-pressure panel 85354-9 carries systolic and diastolic as
components), and converted to the channel's canonical UCUM unit. A value in a unit medmm does
not know, or one that cannot be real, is dropped with its reason, never guessed or kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Sequence

from medmm.codes import ICD10, LOINC, SNOMED, UCUM, VitalSign, vital_for_code
from medmm.errors import VitalsError
from medmm.io.fhir_load import WITHDRAWN, Entry, Log, utc_time
from medmm.io.units import implausible_reason, to_canonical, vital_unit
from medmm.records import DroppedValue, Label, VitalReading

ICD10_SYSTEMS = frozenset({ICD10, "http://hl7.org/fhir/sid/icd-10", "http://www.cms.gov/Medicare/Coding/ICD10"})
SKIPPED_VERIFICATION = frozenset({"refuted", "entered-in-error"})


@dataclass
class Vitals:
    """Readings and dropped values found in one input."""

    readings: list[VitalReading] = field(default_factory=list)
    dropped: list[DroppedValue] = field(default_factory=list)


def observation_time(m: Any, source: str, log: Log) -> datetime | None:
    """effectiveDateTime, else effectivePeriod.start, else effectiveInstant, else issued (UTC)."""
    period = getattr(m, "effectivePeriod", None)
    for value in (m.effectiveDateTime, getattr(period, "start", None), getattr(m, "effectiveInstant", None), m.issued):
        if value is not None:
            return utc_time(value, source, log)
    return None


def _vital_of(concept: Any, signs: Sequence[VitalSign] | None = None) -> VitalSign | None:
    """The vital sign (of `signs`, default medmm's seven) a CodeableConcept's LOINC coding names, or None."""
    for coding in getattr(concept, "coding", None) or []:
        if coding.system == LOINC and coding.code:
            vital = vital_for_code(coding.code, signs)
            if vital is not None:
                return vital
    return None


def is_vital(m: Any, signs: Sequence[VitalSign] | None = None) -> bool:
    """Whether an Observation carries any vital sign of `signs` (itself or a component)."""
    return _vital_of(m.code, signs) is not None or any(_vital_of(c.code, signs) for c in m.component or [])


def read_vitals(
    entry: Entry, when: datetime | None, out: Vitals, log: Log, signs: Sequence[VitalSign] | None = None
) -> None:
    """Add the readings (or dropped values) of one vital-sign Observation taken at `when` to `out`."""
    m = entry.model
    if m.status in WITHDRAWN:
        log.add(entry.source, entry.where, f"status {m.status}: observation not read", kind="skipped")
        return
    parts = [(_vital_of(m.code, signs), m, "")]
    parts += [(_vital_of(c.code, signs), c, f" component[{i}]") for i, c in enumerate(m.component or [])]
    for vital, holder, suffix in parts:
        if vital is not None:
            _read_value(vital, holder, when, entry, entry.where + suffix, out, log)


def _read_value(
    vital: VitalSign, holder: Any, when: datetime | None, entry: Entry, where: str, out: Vitals, log: Log
) -> None:
    """One valueQuantity -> a VitalReading in canonical units, or a DroppedValue with the reason."""
    source = f"{entry.source}: {where}"
    quantity = getattr(holder, "valueQuantity", None)
    if quantity is None or quantity.value is None:
        if getattr(holder, "dataAbsentReason", None) is None:
            log.add(entry.source, where, f"{vital.name}: no valueQuantity.value", kind="skipped")
        return
    if when is None:
        out.dropped.append(DroppedValue(vital.name, None, "no time (effective[x] or issued)", source))
        return
    if quantity.comparator:
        out.dropped.append(DroppedValue(vital.name, when, "value is a bound (comparator), not a measurement", source))
        return
    candidates = []
    if quantity.code and (quantity.system in (None, UCUM)):
        candidates.append(quantity.code)
    if quantity.unit:
        candidates.append(quantity.unit)
    unit = next((u for u in candidates if vital_unit(u, vital) is not None), None)
    if unit is None:
        shown = (candidates[0] if candidates else "")[:32]
        reason = f"unknown unit {shown!r} for {vital.name} (expected {vital.unit} or a convertible unit)"
        out.dropped.append(DroppedValue(vital.name, when, reason, source))
        log.add(entry.source, where, reason, kind="dropped")
        return
    try:
        value = to_canonical(float(quantity.value), unit, vital, source=entry.source, where=where)
    except VitalsError as exc:
        out.dropped.append(DroppedValue(vital.name, when, exc.detail, source))
        log.add(entry.source, where, exc.detail, kind="dropped")
        return
    reason = implausible_reason(value, vital)
    if reason is not None:
        out.dropped.append(DroppedValue(vital.name, when, reason, source))
        return
    out.readings.append(VitalReading(time=when, channel=vital.name, value=value, unit=vital.unit, source=source))


def _status_code(concept: Any) -> str | None:
    for coding in getattr(concept, "coding", None) or []:
        if coding.code:
            return coding.code
    return None


def _default_label(system: str | None, code: str | None) -> str | None:
    """The default task's label a coding is in the value sets of (Label.name), or None."""
    from medmm.tasks import default_vocabulary  # not at module level: medmm.tasks reads medmm.io.units

    if not code:
        return None
    return next((spec.name for spec in default_vocabulary().labels if spec.matches(system or "", code)), None)


def label_from_condition(entry: Entry, log: Log) -> Label | None:
    """A Label from Condition.code (SNOMED CT or ICD-10), mapped to a medmm diagnosis when possible.

    Refuted and entered-in-error Conditions give no label (reported). Unmapped codes are kept
    with name=None.
    """
    m = entry.model
    verification = _status_code(m.verificationStatus)
    if verification in SKIPPED_VERIFICATION:
        log.add(entry.source, entry.where, f"verification status {verification}: condition not used", kind="skipped")
        return None
    codings = [c for c in getattr(m.code, "coding", None) or [] if c.code]
    if not codings:
        log.add(entry.source, entry.where, "Condition.code has no coding; condition not used", kind="skipped")
        return None
    known = [c for c in codings if c.system == SNOMED or c.system in ICD10_SYSTEMS]
    mapped = [(c, d) for c in known for d in [_default_label(c.system, c.code)] if d is not None]
    coding, diagnosis = mapped[0] if mapped else ((known or codings)[0], None)
    onset_period = getattr(m, "onsetPeriod", None)
    onset_value = m.onsetDateTime if m.onsetDateTime is not None else getattr(onset_period, "start", None)
    return Label(
        code=coding.code,
        system=coding.system or "",
        display=coding.display or getattr(m.code, "text", None),
        name=diagnosis,
        onset=utc_time(onset_value, entry.source, log),
        status=_status_code(m.clinicalStatus),
        codings=tuple((c.system or "", c.code) for c in codings),
    )


def encounter_time(entry: Entry, log: Log) -> datetime | None:
    """Latest time of an Encounter: period end, else start (R5: actualPeriod)."""
    m = entry.model
    if m.status == "entered-in-error":
        return None
    period = m.actualPeriod if entry.version == "R5" else m.period
    if period is None:
        return None
    return utc_time(period.end if period.end is not None else period.start, entry.source, log)
