"""Making one patient's raw resources usable: notes, vital-sign readings, conditions, encounters.

Real exports repeat themselves, and each repetition is counted in the PopulationReport, never
dropped silently:

- a note whose text another note already has is kept once (Java Synthea writes every note both
  as a DocumentReference and as DiagnosticReport.presentedForm); the earliest copy stays, a
  DocumentReference before a DiagnosticReport at the same time;
- Observations with the same code, time and encounter are kept once;
- Observations with no value (a dataAbsentReason, or nothing at all) are counted;
- blood pressure is read from the 85354-9 panel's components (8480-6, 8462-4); separate
  systolic/diastolic Observations at a panel's time and encounter are the same measurement and
  are not counted twice;
- values in a unit medmm does not know, or that cannot be real, are dropped with the reason.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping, Sequence

from medmm.codes import BP_PANEL_LOINC, LOINC, VitalSign
from medmm.errors import VitalsError
from medmm.io.charsets import text_encoding
from medmm.io.html_text import html_to_text
from medmm.io.units import implausible_reason, to_canonical, vital_unit
from medmm.population.record import PatientRecord, PopulationReport, codings, parse_time
from medmm.records import ClinicalNote, DroppedValue

WITHDRAWN = frozenset({"entered-in-error", "cancelled"})
_BP_PARTS = frozenset({"8480-6", "8462-4"})  # systolic, diastolic: the panel's components
_NOTE_ORDER = {"DocumentReference": 0, "DiagnosticReport": 1}


@dataclass(frozen=True)
class Reading:
    """One vital-sign value in its channel's canonical unit, with the encounter it belongs to."""

    time: datetime
    channel: str
    value: float
    encounter: str | None  # "Encounter/<id>"
    source: str  # "Observation/<id>" (with " component[i]" for a panel part)


@dataclass(frozen=True)
class ConditionFact:
    id: str
    codes: tuple[tuple[str, str], ...]  # (system, code)
    onset: datetime | None  # onsetDateTime / onsetPeriod.start, else recordedDate
    verification: str | None
    clinical_status: str | None
    encounter: str | None


@dataclass(frozen=True)
class EncounterFact:
    id: str  # "Encounter/<id>"
    start: datetime | None
    end: datetime | None
    class_code: str | None
    types: tuple[tuple[str, str], ...]
    status: str | None


@dataclass(frozen=True)
class ImagingFact:
    id: str  # "ImagingStudy/<id>"
    started: datetime | None
    encounter: str | None
    series_uids: tuple[str, ...]
    modalities: tuple[str, ...]
    study_uid: str | None = None  # identifier with system urn:dicom:uid ("urn:oid:" dropped)
    accession: str | None = None  # identifier of type ACSN


@dataclass(frozen=True)
class CleanPatient:
    """A patient's resources after hygiene, ready for sampling (all sorted by time)."""

    record: PatientRecord
    notes: tuple[ClinicalNote, ...]
    readings: tuple[Reading, ...]
    dropped: tuple[DroppedValue, ...]
    conditions: tuple[ConditionFact, ...]
    encounters: tuple[EncounterFact, ...]
    imaging: tuple[ImagingFact, ...]


def clean_patient(record: PatientRecord, channels: Sequence[VitalSign], report: PopulationReport) -> CleanPatient:
    """Apply the hygiene rules of the module docstring to one patient."""
    readings, dropped = vital_readings(record, channels, report)
    return CleanPatient(
        record=record,
        notes=unique_notes(record, report),
        readings=readings,
        dropped=dropped,
        conditions=tuple(_condition(c) for c in record.of("Condition")),
        encounters=tuple(sorted((_encounter(e) for e in record.of("Encounter")), key=_by_start)),
        imaging=tuple(_imaging(s) for s in record.of("ImagingStudy")),
    )


# ---------------------------------------------------------------------------------------------
# notes


def unique_notes(record: PatientRecord, report: PopulationReport) -> tuple[ClinicalNote, ...]:
    """Notes of DocumentReferences and DiagnosticReport.presentedForm, each distinct text once."""
    found = []
    for rtype in ("DocumentReference", "DiagnosticReport"):
        for res in record.of(rtype):
            note = _note(res, record.source, report)
            if note is not None:
                found.append((note.time is None, note.time, _NOTE_ORDER[rtype], note.source_id or "", note))
    found.sort(key=lambda item: item[:4])
    kept: dict[str, ClinicalNote] = {}
    for *_, note in found:
        if note.text in kept:
            report.add("note: same text as another note; kept once", record.source, note.source_id or "")
            continue
        kept[note.text] = note
    return tuple(kept.values())


def _note(res: Mapping[str, Any], source: str, report: PopulationReport) -> ClinicalNote | None:
    rtype, rid = res["resourceType"], f"{res['resourceType']}/{res.get('id')}"
    if rtype == "DocumentReference":
        content = res.get("content") if isinstance(res.get("content"), list) else []
        attachments = [c.get("attachment") for c in content if isinstance(c, dict)]
        context = res.get("context") if isinstance(res.get("context"), dict) else {}
        period = context.get("period") if isinstance(context.get("period"), dict) else {}
        when = parse_time(res.get("date")) or parse_time(period.get("start"))
        concept = res.get("type")
    else:
        attachments = res.get("presentedForm") if isinstance(res.get("presentedForm"), list) else []
        if not attachments:
            return None  # a lab or panel report, not a note
        period = res.get("effectivePeriod") if isinstance(res.get("effectivePeriod"), dict) else {}
        when = (
            parse_time(res.get("effectiveDateTime")) or parse_time(period.get("start")) or parse_time(res.get("issued"))
        )
        concept = res.get("code")
    if res.get("status") in WITHDRAWN:
        report.add(f"note: status {res.get('status')}; not read", source, rid)
        return None
    text = _attachment_text([a for a in attachments if isinstance(a, dict)])
    if text is None:
        report.add("note: no readable text/plain or text/html attachment; not read", source, rid)
        return None
    code = next((c for s, c in codings(concept) if s == LOINC), None)
    display = concept.get("text") if isinstance(concept, dict) and isinstance(concept.get("text"), str) else None
    return ClinicalNote(text=text, time=when, type_code=code, type_display=display, source_id=rid)


def _attachment_text(attachments: list[Mapping[str, Any]]) -> str | None:
    """Text of the first plain-text attachment with inline data, else the first HTML one."""
    ranked = []
    for att in attachments:
        media, _, params = str(att.get("contentType") or "").partition(";")
        media = media.strip().lower()
        if media in ("text/plain", "text/html") and isinstance(att.get("data"), str):
            charset = next(
                (p.split("=", 1)[1].strip().strip('"') for p in params.split(";") if "charset=" in p.lower()), None
            )
            ranked.append((media != "text/plain", att["data"], media, charset))
    for _, data, media, charset in sorted(ranked, key=lambda item: item[0]):
        try:
            raw = base64.b64decode(data, validate=False)
        except (binascii.Error, ValueError):
            continue
        text = raw.decode((text_encoding(charset) or "utf-8") if charset else "utf-8", errors="replace")
        text = html_to_text(text).strip() if media == "text/html" else text
        if text.strip():
            return text
    return None


# ---------------------------------------------------------------------------------------------
# vital signs


def vital_readings(
    record: PatientRecord, channels: Sequence[VitalSign], report: PopulationReport
) -> tuple[tuple[Reading, ...], tuple[DroppedValue, ...]]:
    """The patient's readings of `channels` after the dedup and blood-pressure rules."""
    by_code = {code: sign for sign in channels for code in sign.loinc}
    observations = _unique_observations(record, report)
    panel_times = {
        (_obs_time(o), _encounter_ref(o)) for o in observations if (LOINC, BP_PANEL_LOINC) in codings(o.get("code"))
    }
    readings: list[Reading] = []
    dropped: list[DroppedValue] = []
    for obs in observations:
        rid = f"Observation/{obs.get('id')}"
        when, encounter = _obs_time(obs), _encounter_ref(obs)
        own = _sign_of(obs.get("code"), by_code)
        parts = [(own, obs, rid)] if own is not None else []
        for i, comp in enumerate(obs.get("component") if isinstance(obs.get("component"), list) else []):
            sign = _sign_of(comp.get("code") if isinstance(comp, dict) else None, by_code)
            if sign is not None:
                parts.append((sign, comp, f"{rid} component[{i}]"))
        if not parts:
            continue
        separate_bp = any(s == LOINC and c in _BP_PARTS for s, c in codings(obs.get("code")))
        if separate_bp and (when, encounter) in panel_times:
            report.add(
                "blood pressure: separate systolic/diastolic at a panel's time; the panel's value used",
                record.source,
                rid,
            )
            continue
        if when is None:
            report.add("observation: no time (effective[x] or issued); not used", record.source, rid)
            continue
        for sign, holder, where in parts:
            reading = _reading(sign, holder, when, encounter, where, dropped, report, record.source)
            if reading is not None:
                readings.append(reading)
    readings.sort(key=lambda r: (r.time, r.channel, r.source))
    return tuple(readings), tuple(dropped)


def _unique_observations(record: PatientRecord, report: PopulationReport) -> list[Mapping[str, Any]]:
    """Observations not withdrawn, each (code, time, encounter) once; no-value ones counted."""
    seen: set[tuple[Any, ...]] = set()
    kept = []
    for obs in record.of("Observation"):
        rid = f"Observation/{obs.get('id')}"
        if obs.get("status") in WITHDRAWN:
            report.add(f"observation: status {obs.get('status')}; not used", record.source, rid)
            continue
        if not _has_value(obs):
            why = (
                "a dataAbsentReason"
                if isinstance(obs.get("dataAbsentReason"), dict)
                else "no value and no dataAbsentReason"
            )
            report.add(f"observation: {why}; not used", record.source, rid)
            continue
        key = (tuple(sorted(codings(obs.get("code")))), _obs_time(obs), _encounter_ref(obs))
        if key in seen:
            report.add("observation: duplicate (same code, time and encounter); kept once", record.source, rid)
            continue
        seen.add(key)
        kept.append(obs)
    return kept


def _has_value(obs: Mapping[str, Any]) -> bool:
    if any(k.startswith("value") for k in obs) or obs.get("hasMember"):
        return True
    comps = obs.get("component") if isinstance(obs.get("component"), list) else []
    return any(isinstance(c, dict) and any(k.startswith("value") for k in c) for c in comps)


def _sign_of(concept: Any, by_code: Mapping[str, VitalSign]) -> VitalSign | None:
    return next((by_code[c] for s, c in codings(concept) if s == LOINC and c in by_code), None)


def _obs_time(obs: Mapping[str, Any]) -> datetime | None:
    period = obs.get("effectivePeriod") if isinstance(obs.get("effectivePeriod"), dict) else {}
    for value in (obs.get("effectiveDateTime"), period.get("start"), obs.get("effectiveInstant"), obs.get("issued")):
        when = parse_time(value)
        if when is not None:
            return when
    return None


def _encounter_ref(res: Mapping[str, Any]) -> str | None:
    enc = res.get("encounter") if isinstance(res.get("encounter"), dict) else {}
    ref = enc.get("reference")
    return ref if isinstance(ref, str) and ref.startswith("Encounter/") else None


def _reading(
    sign: VitalSign,
    holder: Mapping[str, Any],
    when: datetime,
    encounter: str | None,
    where: str,
    dropped: list[DroppedValue],
    report: PopulationReport,
    source: str,
) -> Reading | None:
    """One valueQuantity as a Reading in canonical units, or a DroppedValue with the reason."""
    qty = holder.get("valueQuantity") if isinstance(holder.get("valueQuantity"), dict) else None
    value = qty.get("value") if qty else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        report.add(f"vitals: {sign.name} without a numeric valueQuantity; not used", source, where)
        return None
    units = [u for u in (qty.get("code"), qty.get("unit")) if isinstance(u, str)]
    unit = next((u for u in units if vital_unit(u, sign) is not None), None)
    try:
        canonical = to_canonical(float(value), unit, sign, source=source, where=where)
    except VitalsError as exc:
        dropped.append(DroppedValue(sign.name, when, exc.detail, where))
        report.add(f"vitals: {sign.name} in an unknown or unconvertible unit; dropped", source, where)
        return None
    reason = implausible_reason(canonical, sign)
    if reason is not None:
        dropped.append(DroppedValue(sign.name, when, reason, where))
        report.add(f"vitals: {sign.name} implausible; dropped", source, where)
        return None
    return Reading(when, sign.name, canonical, encounter, where)


# ---------------------------------------------------------------------------------------------
# conditions, encounters, imaging


def _status(concept: Any) -> str | None:
    return next((c for _, c in codings(concept)), None)


def _condition(res: Mapping[str, Any]) -> ConditionFact:
    period = res.get("onsetPeriod") if isinstance(res.get("onsetPeriod"), dict) else {}
    onset = (
        parse_time(res.get("onsetDateTime")) or parse_time(period.get("start")) or parse_time(res.get("recordedDate"))
    )
    return ConditionFact(
        id=f"Condition/{res.get('id')}",
        codes=tuple(codings(res.get("code"))),
        onset=onset,
        verification=_status(res.get("verificationStatus")),
        clinical_status=_status(res.get("clinicalStatus")),
        encounter=_encounter_ref(res),
    )


def _encounter(res: Mapping[str, Any]) -> EncounterFact:
    period = res.get("period") if isinstance(res.get("period"), dict) else {}
    klass = res.get("class") if isinstance(res.get("class"), dict) else {}
    types = (
        [t for concept in res.get("type") or [] for t in codings(concept)] if isinstance(res.get("type"), list) else []
    )
    return EncounterFact(
        id=f"Encounter/{res.get('id')}",
        start=parse_time(period.get("start")),
        end=parse_time(period.get("end")),
        class_code=klass.get("code") if isinstance(klass.get("code"), str) else None,
        types=tuple(types),
        status=res.get("status") if isinstance(res.get("status"), str) else None,
    )


def _by_start(enc: EncounterFact) -> tuple[bool, datetime | None, str]:
    return (enc.start is None, enc.start, enc.id)


def _imaging(res: Mapping[str, Any]) -> ImagingFact:
    series = [s for s in res.get("series") or [] if isinstance(s, dict)] if isinstance(res.get("series"), list) else []
    modalities = [s["modality"].get("code") for s in series if isinstance(s.get("modality"), dict)]
    return ImagingFact(
        id=f"ImagingStudy/{res.get('id')}",
        started=parse_time(res.get("started")),
        encounter=_encounter_ref(res),
        series_uids=tuple(s["uid"] for s in series if isinstance(s.get("uid"), str)),
        modalities=tuple(m for m in modalities if isinstance(m, str)),
        study_uid=_study_uid(res),
        accession=_accession(res),
    )


def _identifiers(res: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    found = res.get("identifier")
    return [i for i in found if isinstance(i, dict)] if isinstance(found, list) else []


def _study_uid(res: Mapping[str, Any]) -> str | None:
    """The Study Instance UID of an ImagingStudy: its urn:dicom:uid identifier (R4), else `uid` (R5 has none; DSTU2 did)."""
    for ident in _identifiers(res):
        value = ident.get("value")
        if ident.get("system") == "urn:dicom:uid" and isinstance(value, str) and value.strip():
            value = value.strip()
            return value[len("urn:oid:") :] if value.startswith("urn:oid:") else value
    uid = res.get("uid")
    return uid.strip() if isinstance(uid, str) and uid.strip() else None


def _accession(res: Mapping[str, Any]) -> str | None:
    """The accession number of an ImagingStudy: an identifier whose type is v2-0203 ACSN."""
    for ident in _identifiers(res):
        kind = ident.get("type") if isinstance(ident.get("type"), dict) else {}
        codes = [c.get("code") for c in kind.get("coding") or [] if isinstance(c, dict)]
        value = ident.get("value")
        if "ACSN" in codes and isinstance(value, str) and value.strip():
            return value.strip()
    return None
