"""FHIR ingest: a patient's demographics, notes, vital signs and diagnoses from FHIR files.

Reads a Bundle (collection, transaction, searchset, document, ...) or a single resource in a
.json file, and Bulk Data NDJSON (.ndjson, one resource per line, usually one file per type),
in R4 (read with the R4B models), R4B or R5; several files are merged and their references
resolved across files. Invalid entries, NDJSON lines and files are reported as Issues naming
the file, the entry or line, the resource type and the field, and the rest of the input is used. fhir.resources objects stay here:
callers get medmm records. The FHIR version rule is documented in medmm.io.fhir_load; times
are timezone-aware UTC (zone-less ones taken as UTC and reported once per file).

Which resources belong to the patient: a resource whose subject is absent or resolves to the
selected Patient. One whose subject resolves to another Patient (Bulk exports hold many) is
left out and counted in one Issue; one whose subject does not resolve is left out with an
Issue, except when the input has no Patient at all.
"""

from __future__ import annotations

import calendar
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

from medmm.codes import US_CORE_BIRTHSEX, US_CORE_ETHNICITY, US_CORE_RACE, VitalSign
from medmm.errors import FhirError
from medmm.io.fhir_clinical import Vitals, encounter_time, is_vital, label_from_condition, observation_time, read_vitals
from medmm.io.fhir_load import NDJSON_SUFFIXES, WITHDRAWN, Entry, Log, load_entries
from medmm.io.fhir_notes import note_from_composition, note_from_diagnostic_report, note_from_document_reference
from medmm.io.fhir_refs import ReferenceIndex, identity
from medmm.records import ClinicalNote, Demographics, DroppedValue, Issue, Label, VitalReading

__all__ = ["FhirRecord", "read_fhir", "age_at"]

_SUBJECT_TYPES = ("Observation", "Condition", "DocumentReference", "DiagnosticReport", "Composition", "Encounter")


@dataclass(frozen=True)
class FhirRecord:
    """What medmm takes from one patient's FHIR input.

    `resource_counts` counts every resource in the input by type (including ones not used and
    invalid ones). `last_time` is the latest clinically meaningful time seen (encounter end,
    observation, note), a fallback study time.
    """

    patient_id: str | None
    demographics: Demographics | None
    notes: tuple[ClinicalNote, ...] = ()
    readings: tuple[VitalReading, ...] = ()
    labels: tuple[Label, ...] = ()
    dropped: tuple[DroppedValue, ...] = ()
    issues: tuple[Issue, ...] = ()
    resource_counts: Mapping[str, int] = field(default_factory=dict)
    last_time: datetime | None = None
    patient_keys: tuple[str, ...] = ()  # the Patient's id and identifier values (to match other files)
    files_read: tuple[str, ...] = ()  # the input files that could be read (the others are in `issues`)


def age_at(birth_date: str, when: datetime) -> float:
    """Age in years at `when` (its UTC date): full years plus the fraction of the current year of life.

    The fraction is days since the last birthday over the days between that birthday and the
    next. A 29 February birthday falls on 28 February in common years. A partial birth date
    ("1970", "1970-05") counts from the first day of that year or month. Raises FhirError for a
    malformed birth date or a `when` before it.
    """
    m = re.fullmatch(r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?", birth_date.strip())
    try:
        born = date(int(m[1]), int(m[2] or 1), int(m[3] or 1)) if m else None
    except ValueError:
        born = None
    if born is None:
        raise FhirError("birth date: expected YYYY, YYYY-MM or YYYY-MM-DD", where="Patient.birthDate")
    if when.tzinfo is not None:
        when = when.astimezone(timezone.utc)
    today = when.date()
    if today < born:
        raise FhirError("study time is before the birth date", where="Patient.birthDate")
    years = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
    last = _birthday(born, born.year + years)
    following = _birthday(born, born.year + years + 1)
    return years + (today - last).days / (following - last).days


def _birthday(born: date, year: int) -> date:
    """The birthday in `year` (29 February -> 28 February in common years)."""
    day = born.day if not (born.month == 2 and born.day == 29 and not calendar.isleap(year)) else 28
    return date(year, born.month, day)


def read_fhir(
    paths: str | Path | Sequence[str | Path],
    *,
    patient_id: str | None = None,
    study_time: datetime | None = None,
    vital_signs: Sequence[VitalSign] | None = None,
) -> FhirRecord:
    """Read one patient's FHIR input into a FhirRecord.

    `paths`: .json files (a Bundle or one resource), .ndjson files (Bulk Data; .gz allowed), or
    folders of a Bulk Data export, every .json / .ndjson file of which is read as FHIR.

    `patient_id` selects the Patient (by id, else by identifier value) when the input holds several,
    and names the record; `study_time` (naive = UTC) gives the age in the demographics;
    `vital_signs` are the channels read from Observations (default medmm's seven; a task's own).
    A file that is not JSON or not FHIR is reported in `issues` (kind "skipped", naming it) and
    the other files are read. Raises FhirError when no file can be read (naming the first, its
    error, and the others) and for several Patients with no `patient_id` to choose one.
    """
    files = _files(paths)
    log = Log()
    entries = load_entries(files, log, vital_signs)
    index = ReferenceIndex(entries)
    counts = Counter(e.rtype for e in entries)
    target = _select_patient(entries, patient_id, files)
    kept = _attributed(entries, target, patient_id, index, log)

    vitals = Vitals()
    notes: list[tuple[ClinicalNote, Entry]] = []
    labels: list[Label] = []
    times: list[datetime] = []
    for entry in kept:
        if entry.rtype == "Observation":
            when = observation_time(entry.model, entry.source, log)
            if when is not None and entry.model.status not in WITHDRAWN:
                times.append(when)
            if is_vital(entry.model, vital_signs):
                read_vitals(entry, when, vitals, log, vital_signs)
        elif entry.rtype == "Condition":
            label = label_from_condition(entry, log)
            if label is not None:
                labels.append(label)
        elif entry.rtype == "Encounter":
            when = encounter_time(entry, log)
            if when is not None:
                times.append(when)
        else:
            note = _note(entry, index, log)
            if note is not None:
                notes.append((note, entry))
    unique = _unique_notes(notes, log)
    times += [n.time for n in unique if n.time is not None]

    record_id = patient_id
    demographics = None
    if target is not None:
        record_id = patient_id or target.raw.get("id") or _uuid_tail(target.full_url)
        demographics = _demographics(target, record_id or "", study_time, log)
    elif patient_id is None:
        referenced = _referenced_patients(entries)
        record_id = referenced.pop().split("/", 1)[-1] if len(referenced) == 1 else None
    return FhirRecord(
        patient_id=record_id,
        demographics=demographics,
        notes=tuple(unique),
        readings=tuple(sorted(vitals.readings, key=lambda r: (r.time, r.channel))),
        labels=tuple(labels),
        dropped=tuple(vitals.dropped),
        issues=tuple(log.issues + log.time_issues()),
        resource_counts=dict(sorted(counts.items())),
        last_time=max(times) if times else None,
        patient_keys=_patient_keys(target) if target is not None else (),
        files_read=tuple(dict.fromkeys(e.source for e in entries)),
    )


def _files(paths: str | Path | Sequence[str | Path]) -> list[Path]:
    """The files to read: folders expand to their .json / .ndjson files (sorted)."""
    given = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    files: list[Path] = []
    for path in given:
        if path.is_dir():
            suffixes = (".json", *NDJSON_SUFFIXES)
            found = sorted(
                p for p in path.rglob("*") if p.is_file() and p.name.lower().removesuffix(".gz").endswith(suffixes)
            )
            if not found:
                raise FhirError("folder holds no .json or .ndjson file", path=path)
            files.extend(found)
        else:
            files.append(path)
    if not files:
        raise FhirError("no FHIR file given")
    return files


def _select_patient(entries: list[Entry], patient_id: str | None, files: list[Path]) -> Entry | None:
    """The Patient entry the record is about (None when the input has no Patient)."""
    patients: dict[str, Entry] = {}
    for entry in entries:
        if entry.rtype == "Patient":
            patients.setdefault(identity(entry), entry)
    source = str(files[0]) if len(files) == 1 else None
    if not patients:
        return None
    if len(patients) == 1:
        return next(iter(patients.values()))
    if patient_id is None:
        raise FhirError(f"input holds {len(patients)} Patients; give patient_id to choose one", path=source)
    # A Patient whose id is the one asked for is that patient, whatever other Patients' identifiers say.
    matches = [e for e in patients.values() if e.raw.get("id") == patient_id]
    matches = matches or [e for e in patients.values() if _has_identifier_value(e, patient_id)]
    if len(matches) != 1:
        found = "no" if not matches else f"{len(matches)}"
        raise FhirError(
            f"{found} Patient among {len(patients)} matches the given patient_id (by id or identifier)", path=source
        )
    return matches[0]


def _patient_keys(entry: Entry) -> tuple[str, ...]:
    """A Patient's id and identifier values: what DICOM PatientID or a cohort key may match."""
    idents = entry.raw.get("identifier")
    values = (
        [entry.raw.get("id")] + [i.get("value") for i in idents if isinstance(i, dict)]
        if isinstance(idents, list)
        else [entry.raw.get("id")]
    )
    return tuple(dict.fromkeys(v.strip() for v in values if isinstance(v, str) and v.strip()))


def _has_identifier_value(entry: Entry, value: str) -> bool:
    idents = entry.raw.get("identifier")
    return isinstance(idents, list) and any(isinstance(i, dict) and i.get("value") == value for i in idents)


def _attributed(
    entries: list[Entry], target: Entry | None, patient_id: str | None, index: ReferenceIndex, log: Log
) -> list[Entry]:
    """The entries about the selected patient (see the module docstring for the rule)."""
    kept: list[Entry] = []
    others: Counter[str] = Counter()
    if target is None:
        referenced = _referenced_patients(entries)
        if patient_id is None and len(referenced) > 1:
            raise FhirError(
                f"input refers to {len(referenced)} patients and holds no Patient; give patient_id to choose one"
            )
    for entry in entries:
        if entry.rtype not in _SUBJECT_TYPES or entry.model is None:
            continue
        subject = _subject(entry)
        if subject is None:
            kept.append(entry)
            continue
        resolved = index.resolve(subject, within=entry.source)
        if target is not None:
            if resolved is not None and identity(resolved) == identity(target):
                kept.append(entry)
            elif resolved is not None and resolved.rtype == "Patient":
                others[entry.source] += 1
            else:
                why = "does not resolve to a resource in the input" if resolved is None else "is not a Patient"
                log.add(entry.source, entry.where, f"subject reference {why}; resource not used", kind="skipped")
        elif patient_id is None or _literal_patient_id(subject) in (None, patient_id):
            kept.append(entry)
        else:
            others[entry.source] += 1
    for source, n in sorted(others.items()):
        log.add(source, "", f"{n} resource(s) about other patients not used", kind="skipped")
    return kept


def _subject(entry: Entry) -> Any:
    """The subject Reference of a validated resource (R5 Composition.subject is a list: its first)."""
    subject = entry.model.subject
    if isinstance(subject, list):
        subject = subject[0] if subject else None
    return subject


def _literal_patient_id(subject: Any) -> str | None:
    """The id in a literal 'Patient/<id>' reference (relative or absolute), else None."""
    ref = subject if isinstance(subject, str) else getattr(subject, "reference", None)
    m = re.search(r"(?:^|/)Patient/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]*)?$", ref or "")
    return m[1] if m else None


def _referenced_patients(entries: list[Entry]) -> set[str]:
    """Distinct patients named by literal subject references (used when no Patient is present)."""
    found = set()
    for entry in entries:
        if entry.rtype in _SUBJECT_TYPES and entry.model is not None:
            pid = _literal_patient_id(_subject(entry))
            if pid is not None:
                found.add(f"Patient/{pid}")
    return found


def _note(entry: Entry, index: ReferenceIndex, log: Log) -> ClinicalNote | None:
    if entry.rtype == "DocumentReference":
        return note_from_document_reference(entry, index, log)
    if entry.rtype == "DiagnosticReport":
        return note_from_diagnostic_report(entry, index, log)
    if entry.rtype == "Composition":
        return note_from_composition(entry, log)
    return None


def _unique_notes(notes: list[tuple[ClinicalNote, Entry]], log: Log) -> list[ClinicalNote]:
    """Notes in time order, each text-and-time once (exports often give one note as both a
    DiagnosticReport and a DocumentReference; the later copy is reported and merged)."""
    seen: dict[tuple[str, datetime | None], ClinicalNote] = {}
    for note, entry in notes:
        if (note.text, note.time) in seen:
            log.add(entry.source, entry.where, "same note text and time as an earlier resource; merged")
        seen.setdefault((note.text, note.time), note)
    far = datetime.max.replace(tzinfo=timezone.utc)
    return sorted(seen.values(), key=lambda n: n.time or far)


def _demographics(patient: Entry, record_id: str, study_time: datetime | None, log: Log) -> Demographics | None:
    """Demographics from the Patient: gender, birth date (-> age), US Core race/ethnicity/birth sex."""
    m = patient.model
    if m is None:  # invalid Patient: already reported by the loader
        return None
    race = _omb_codes(m, US_CORE_RACE)
    ethnicity = _omb_codes(m, US_CORE_ETHNICITY)
    birth_sex = next((e.valueCode for e in m.extension or [] if e.url == US_CORE_BIRTHSEX and e.valueCode), None)
    birth_date = m.birthDate.isoformat() if isinstance(m.birthDate, date) else m.birthDate
    age = None
    if birth_date and study_time is not None:
        when = study_time if study_time.tzinfo else study_time.replace(tzinfo=timezone.utc)
        try:
            age = age_at(birth_date, when)
        except FhirError as exc:
            log.add(patient.source, patient.where, f"age not computed: {exc.detail}")
    extra = {}
    if len(race) > 1:
        extra["races"] = ";".join(race)
    return Demographics(
        patient_id=record_id,
        sex=m.gender,
        age_years=age,
        birth_date=birth_date,
        race=race[0] if race else None,
        ethnicity=ethnicity[0] if ethnicity else None,
        birth_sex=birth_sex,
        extra=extra,
    )


def _omb_codes(patient: Any, url: str) -> list[str]:
    """OMB category codes of a US Core race/ethnicity extension (nested `ombCategory` items)."""
    codes: list[str] = []
    for ext in patient.extension or []:
        if ext.url != url:
            continue
        for part in ext.extension or []:
            if part.url == "ombCategory" and part.valueCoding is not None and part.valueCoding.code:
                if part.valueCoding.code not in codes:
                    codes.append(part.valueCoding.code)
    return codes


def _uuid_tail(full_url: str | None) -> str | None:
    """'urn:uuid:abc' -> 'abc'; other URLs -> their last path segment."""
    if not full_url:
        return None
    return full_url.rsplit(":", 1)[-1] if full_url.startswith("urn:") else full_url.rstrip("/").rsplit("/", 1)[-1]
