"""Samples: what a Task draws from one patient, one (patient, index time) at a time.

For each index time the sample holds the task's labels, the notes and vital signs of the
windows before it (nothing at or after the index unless the task includes it), the imaging
studies of the image window, demographics at the index, the audit attributes, and the warnings
met on the way. An index time that cannot be used (no time, before birth, after death) is an
exclusion with its reason, counted in the PopulationReport.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from medmm.codes import US_CORE_BIRTHSEX, US_CORE_ETHNICITY, US_CORE_RACE
from medmm.io.fhir import age_at
from medmm.population.hygiene import CleanPatient, ImagingFact, clean_patient
from medmm.population.record import PatientRecord, PopulationReport, parse_time
from medmm.records import ClinicalNote, Demographics, DroppedValue, Issue
from medmm.tasks import Task
from medmm.tasks.task import INACTIVE_STATUSES

SKIPPED_VERIFICATION = frozenset({"refuted", "entered-in-error"})


@dataclass(frozen=True)
class VitalGrid:
    """Vital signs on the task's grid: values[t, c] is the mean of channel c's readings in step t.

    `step_times` are the left edges of the steps (hourly grid) or the encounters' starts (one
    step per encounter); `outside_window` counts the patient's readings of the task's channels
    that fell outside the window (or, per encounter, in no step's encounter).
    """

    step_times: tuple[datetime, ...]
    step_sources: tuple[str, ...]  # "" for a regular grid, "Encounter/<id>" per encounter
    channels: tuple[str, ...]
    units: tuple[str, ...]
    values: np.ndarray  # (T, C) float32, NaN where unobserved
    mask: np.ndarray  # (T, C) bool
    dropped: tuple[DroppedValue, ...] = ()
    outside_window: int = 0


@dataclass(frozen=True)
class Sample:
    """One patient at one index time, as the task defines it."""

    patient_id: str
    index_time: datetime
    index_source: str  # the resource (Encounter/..., ImagingStudy/...) or manifest column
    labels: Mapping[str, bool]
    label_evidence: Mapping[str, tuple[str, ...]]  # the Conditions that made each label positive
    notes: tuple[ClinicalNote, ...]
    vitals: VitalGrid
    images: tuple[ImagingFact, ...]
    demographics: Demographics
    audit: Mapping[str, str | None]
    warnings: tuple[Issue, ...] = field(default_factory=tuple)

    @property
    def sample_id(self) -> str:
        return f"{self.patient_id}@{self.index_time.isoformat()}"


def population_samples(
    task: Task,
    records: Iterable[PatientRecord],
    report: PopulationReport,
    manifest: Mapping[str, Mapping[str, Any]] | None = None,
) -> Iterator[Sample]:
    """The samples of every patient in turn (`manifest`: patient id -> row, for manifest_column)."""
    for record in records:
        row = (manifest or {}).get(record.patient_id)
        yield from patient_samples(task, record, report, manifest_row=row)


def patient_samples(
    task: Task, record: PatientRecord, report: PopulationReport, manifest_row: Mapping[str, Any] | None = None
) -> list[Sample]:
    """The samples one patient gives under `task` (exclusions counted in `report`)."""
    patient = clean_patient(record, task.channels, report)
    times = index_times(task, patient, report, manifest_row)
    return [_sample(task, patient, when, source, report) for when, source in times]


def index_times(
    task: Task, patient: CleanPatient, report: PopulationReport, manifest_row: Mapping[str, Any] | None = None
) -> list[tuple[datetime, str]]:
    """(index time, where it came from) per the task's index rule, in time order, usable ones only."""
    rule = task.index
    source = patient.record.source
    found: list[tuple[datetime | None, str]] = []
    if rule.kind in ("encounter", "last_encounter"):
        for enc in patient.encounters:
            if enc.status == "entered-in-error":
                report.add("index: encounter entered-in-error; not an index", source, enc.id)
                continue
            if (not rule.classes or enc.class_code in rule.classes) and (
                not rule.types or any(code in rule.types for _, code in enc.types)
            ):
                found.append((enc.start, enc.id))
        if rule.kind == "last_encounter":
            timed = [f for f in found if f[0] is not None]
            found = [max(timed)] if timed else found[:1]
    elif rule.kind == "imaging_study":
        found = [(study.started, study.id) for study in patient.imaging]
    else:
        value = (manifest_row or {}).get(rule.column)
        found = [(parse_time(value if isinstance(value, str) else None), f"manifest:{rule.column}")]
    if not found:
        report.add(f"exclusion: patient has no index ({rule.kind})", source, f"Patient/{patient.record.patient_id}")
    return sorted(t for t in (_usable(when, where, patient, report) for when, where in found) if t is not None)


def _usable(
    when: datetime | None, where: str, patient: CleanPatient, report: PopulationReport
) -> tuple[datetime, str] | None:
    source = patient.record.source
    if when is None:
        report.add("exclusion: index has no usable time", source, where)
        return None
    birth = parse_time(patient.record.patient.get("birthDate"))
    death = parse_time(patient.record.patient.get("deceasedDateTime"))
    if birth is not None and when.date() < birth.date():
        report.add("exclusion: index before the birth date", source, where)
        return None
    if death is not None and when > death:
        report.add("exclusion: index after the death date", source, where)
        return None
    return when, where


def _sample(task: Task, patient: CleanPatient, index: datetime, where: str, report: PopulationReport) -> Sample:
    warnings: list[Issue] = []
    labels, evidence = sample_labels(task, patient, index, where, report)
    demographics = sample_demographics(patient.record, index, warnings)
    vitals = (
        per_encounter_grid(task, patient, index) if task.vitals.per_encounter else hourly_grid(task, patient, index)
    )
    if vitals.outside_window:
        report.add("vitals: readings outside the window (summed over samples)", n=vitals.outside_window)
    return Sample(
        patient_id=patient.record.patient_id,
        index_time=index,
        index_source=where,
        labels=labels,
        label_evidence=evidence,
        notes=window_notes(task, patient, index, report),
        vitals=vitals,
        images=window_images(task, patient, index),
        demographics=demographics,
        audit=audit_values(task, demographics),
        warnings=tuple(warnings),
    )


def _in_window(when: datetime, index: datetime, span: timedelta, include_index: bool) -> bool:
    """[index - span, index), or (index - span, index] when the index itself is included."""
    if include_index:
        return index - span < when <= index
    return index - span <= when < index


# ---------------------------------------------------------------------------------------------
# labels


def sample_labels(
    task: Task, patient: CleanPatient, index: datetime, where: str, report: PopulationReport
) -> tuple[dict[str, bool], dict[str, tuple[str, ...]]]:
    """Each label of the task, with the Conditions that made it positive."""
    evidence: dict[str, list[str]] = {spec.name: [] for spec in task.labels}
    for cond in patient.conditions:
        specs = [s for s in task.labels if any(s.matches(system, code) for system, code in cond.codes)]
        if not specs:
            continue
        if cond.verification in SKIPPED_VERIFICATION:
            report.add(f"label: condition {cond.verification}; never counts", patient.record.source, cond.id)
            continue
        if task.inactive_conditions == "ignore" and cond.clinical_status in INACTIVE_STATUSES:
            continue
        at_encounter = task.horizon.encounter_diagnosis and cond.encounter is not None and cond.encounter == where
        in_horizon = cond.onset is not None and task.horizon.holds(cond.onset, index)
        unbounded = task.horizon.before_days is None and task.horizon.after_days is None
        if cond.onset is None and not at_encounter and not unbounded:
            report.add("label: condition without onset or recordedDate; not counted", patient.record.source, cond.id)
            continue
        if at_encounter or in_horizon or unbounded:
            for spec in specs:
                evidence[spec.name].append(cond.id)
    return {k: bool(v) for k, v in evidence.items()}, {k: tuple(v) for k, v in evidence.items()}


# ---------------------------------------------------------------------------------------------
# notes and images


def window_notes(
    task: Task, patient: CleanPatient, index: datetime, report: PopulationReport
) -> tuple[ClinicalNote, ...]:
    """The patient's (deduplicated) notes dated within the notes window."""
    window = task.notes
    if window.days is None:
        return ()
    span = timedelta(days=window.days)
    untimed = sum(1 for n in patient.notes if n.time is None)
    if untimed:
        report.add("note: no date; never in a window", patient.record.source, n=untimed)
    return tuple(
        n for n in patient.notes if n.time is not None and _in_window(n.time, index, span, window.include_index)
    )


def window_images(task: Task, patient: CleanPatient, index: datetime) -> tuple[ImagingFact, ...]:
    """Imaging studies started within the image window (days 0: at the index itself)."""
    window = task.images
    if window.days is None:
        return ()
    span = timedelta(days=window.days)
    out = []
    for study in patient.imaging:
        if study.started is None:
            continue
        at_index = window.include_index and study.started == index
        if at_index or _in_window(study.started, index, span, window.include_index):
            out.append(study)
    return tuple(sorted(out, key=lambda s: (s.started, s.id)))


# ---------------------------------------------------------------------------------------------
# vital signs


def hourly_grid(task: Task, patient: CleanPatient, index: datetime) -> VitalGrid:
    """Readings averaged onto steps of `step_minutes` over the `hours` before the index."""
    if not task.vitals.step_minutes:  # the task reads no vital signs: a grid of no steps
        return _grid(task, (), (), {}, patient, index, 0)
    step = timedelta(minutes=task.vitals.step_minutes)
    n_steps = round(task.vitals.span / step)
    start = index - task.vitals.span
    include = task.vitals.include_index
    buckets: dict[tuple[int, str], list[float]] = {}
    outside = 0
    for r in patient.readings:
        if not _in_window(r.time, index, task.vitals.span, include):
            outside += 1
            continue
        offset = r.time - start
        t = (offset // step) if not include else -((-offset) // step) - 1  # left- or right-closed steps
        buckets.setdefault((int(t), r.channel), []).append(r.value)
    times = tuple(start + i * step for i in range(n_steps))
    return _grid(task, times, ("",) * n_steps, buckets, patient, index, outside)


def per_encounter_grid(task: Task, patient: CleanPatient, index: datetime) -> VitalGrid:
    """One step per Encounter starting within the window; each reading goes to its encounter's step."""
    span, include = task.vitals.span, task.vitals.include_index
    steps = [e for e in patient.encounters if e.start is not None and _in_window(e.start, index, span, include)]
    position = {e.id: i for i, e in enumerate(steps)}
    buckets: dict[tuple[int, str], list[float]] = {}
    outside = 0
    for r in patient.readings:
        t = position.get(r.encounter or "")
        if t is None or not _in_window(r.time, index, span, include):
            outside += 1
            continue
        buckets.setdefault((t, r.channel), []).append(r.value)
    times = tuple(e.start for e in steps if e.start is not None)
    return _grid(task, times, tuple(e.id for e in steps), buckets, patient, index, outside)


def _grid(
    task: Task,
    times: tuple[datetime, ...],
    sources: tuple[str, ...],
    buckets: Mapping[tuple[int, str], list[float]],
    patient: CleanPatient,
    index: datetime,
    outside: int,
) -> VitalGrid:
    channels = task.channel_names
    values = np.full((len(times), len(channels)), np.nan, dtype=np.float32)  # (T, C)
    for (t, name), found in buckets.items():
        values[t, channels.index(name)] = np.float32(np.mean(found))
    span = task.vitals.span
    dropped = tuple(
        d for d in patient.dropped if d.time is not None and _in_window(d.time, index, span, task.vitals.include_index)
    )
    return VitalGrid(
        step_times=times,
        step_sources=sources,
        channels=channels,
        units=tuple(s.unit for s in task.channels),
        values=values,
        mask=~np.isnan(values),
        dropped=dropped,
        outside_window=outside,
    )


# ---------------------------------------------------------------------------------------------
# demographics


def sample_demographics(record: PatientRecord, index: datetime, warnings: list[Issue]) -> Demographics:
    """Sex, age at the index, US Core race / ethnicity (first OMB category) and birth sex."""
    p = record.patient
    birth = p.get("birthDate") if isinstance(p.get("birthDate"), str) else None
    age = None
    if birth is None:
        warnings.append(Issue(record.source, f"Patient/{record.patient_id}", "no birth date; age unknown"))
    else:
        try:
            age = age_at(birth, index)
        except Exception as exc:  # FhirError: malformed birth date
            warnings.append(Issue(record.source, "Patient.birthDate", f"age not computed: {exc}"))
    races = _omb(p, US_CORE_RACE)
    ethnicities = _omb(p, US_CORE_ETHNICITY)
    birth_sex = next(
        (
            e.get("valueCode")
            for e in p.get("extension") or []
            if isinstance(e, dict) and e.get("url") == US_CORE_BIRTHSEX
        ),
        None,
    )
    return Demographics(
        patient_id=record.patient_id,
        sex=p.get("gender") if isinstance(p.get("gender"), str) else None,
        age_years=age,
        birth_date=birth,
        race=races[0] if races else None,
        ethnicity=ethnicities[0] if ethnicities else None,
        birth_sex=birth_sex if isinstance(birth_sex, str) else None,
        extra={"races": ";".join(races)} if len(races) > 1 else {},
    )


def _omb(patient: Mapping[str, Any], url: str) -> list[str]:
    """OMB category codes of a US Core race/ethnicity extension (nested `ombCategory` parts)."""
    out: list[str] = []
    for ext in patient.get("extension") or []:
        if not isinstance(ext, dict) or ext.get("url") != url:
            continue
        for part in ext.get("extension") or []:
            coding = part.get("valueCoding") if isinstance(part, dict) and part.get("url") == "ombCategory" else None
            code = coding.get("code") if isinstance(coding, dict) else None
            if isinstance(code, str) and code not in out:
                out.append(code)
    return out


def audit_values(task: Task, demographics: Demographics) -> dict[str, str | None]:
    """The task's audit attributes for one sample (None where unknown)."""
    values = {
        "sex": demographics.sex,
        "age_band": task.age_band(demographics.age_years),
        "race": demographics.race,
        "ethnicity": demographics.ethnicity,
        "birth_sex": demographics.birth_sex,
    }
    return {name: values[name] for name in task.audit_attributes}
