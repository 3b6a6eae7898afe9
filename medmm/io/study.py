"""Assemble one :class:`~medmm.records.Study` from a patient's files.

A patient folder may hold DICOM files (any names, any depth, or zips of them), FHIR JSON or
NDJSON, and a vitals table (CSV or Parquet). Each reader reports what it skipped; the study
keeps every good part and carries those reports as warnings.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from pathlib import Path

from medmm.errors import InputError, MedmmError
from medmm.records import Demographics, Issue, SourceRef, Study, VitalReading

# Files in a patient folder that are not model input (ground truth of synthetic cohorts,
# cohort bookkeeping).
_IGNORED_NAMES = {"truth.json", "manifest.csv", "manifest.parquet"}
_FHIR_SUFFIXES = {".json", ".ndjson"}
_VITALS_SUFFIXES = {".csv", ".tsv", ".parquet"}


@dataclasses.dataclass(frozen=True)
class PatientFiles:
    """A patient's input files sorted by kind."""

    dicom: tuple[Path, ...] = ()
    fhir: tuple[Path, ...] = ()
    vitals: tuple[Path, ...] = ()
    ignored: tuple[Path, ...] = ()


def classify_files(path: str | Path) -> PatientFiles:
    """Sort the files under `path` (a file or a folder, recursively) by input kind."""
    from medmm.io.dicom import is_dicom_file

    root = Path(path)
    if not root.exists():
        raise InputError("no such file or folder", path=root)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    dicom, fhir, vitals, ignored = [], [], [], []
    for f in files:
        name, suffix = f.name.lower(), f.suffix.lower()
        if _is_bookkeeping(f):
            ignored.append(f)
        elif suffix in _FHIR_SUFFIXES:
            fhir.append(f)
        elif suffix in _VITALS_SUFFIXES:
            vitals.append(f)
        elif suffix == ".zip" or suffix in {".dcm", ".dicom", ".ima"} or f.name == "DICOMDIR" or is_dicom_file(f):
            dicom.append(f)
        else:
            ignored.append(f)
    return PatientFiles(tuple(dicom), tuple(fhir), tuple(vitals), tuple(ignored))


def load_study(
    path: str | Path,
    *,
    study_time: datetime | None = None,
    patient_id: str | None = None,
    window_hours: float = 48.0,
    step_minutes: float = 60.0,
) -> Study:
    """Read a patient folder (or one file) into a Study.

    The study time is, in order of preference: `study_time`, the latest image acquisition,
    the latest time in the FHIR record, the latest vital-sign reading. It anchors the age and
    the vital-sign window (the `window_hours` before it).
    A single file that cannot be read raises its reader's MedmmError; in a folder, bad files
    become warnings and the rest is used.
    """
    from medmm.io.dicom import read_dicom, read_dicom_files
    from medmm.io.fhir import age_at, read_fhir
    from medmm.io.vitals import build_grid, read_vitals_table

    root = Path(path)
    files = classify_files(root)
    single = root.is_file()
    if single and files.ignored:
        raise InputError("not a recognised input (expected DICOM, FHIR JSON/NDJSON or a CSV/Parquet vitals table)", path=root)
    warnings: list[Issue] = []
    provenance: list[SourceRef] = []

    def guarded(reader, source: Path):
        try:
            return reader()
        except MedmmError as err:
            if single:
                raise
            warnings.append(Issue(str(source), err.where or "", f"{type(err).__name__}: {err.detail}", "skipped"))
            return None

    images = []
    zips = [f for f in files.dicom if f.suffix.lower() == ".zip"]
    plain = [f for f in files.dicom if f.suffix.lower() != ".zip"]
    # All plain files are read as one set so that a volume's slices in separate files stack.
    groups = [(f, lambda f=f: read_dicom(f)) for f in zips]
    if single and plain:
        groups.append((plain[0], lambda: read_dicom(plain[0])))
    elif plain:
        groups.append((root, lambda: read_dicom_files(plain, root)))
    for f, reader in groups:
        read = guarded(reader, f)
        if read is None:
            continue
        images.extend(read.series)
        warnings.extend(read.issues)
        for obj in read.non_images:
            warnings.append(Issue(obj.path, obj.kind, "non-image DICOM object recognised and not used", "skipped"))
        for s in read.series:
            provenance.append(SourceRef(s.source_files[0] if s.source_files else str(f), "dicom", f"series {s.series_uid} ({len(s.source_files)} files)"))

    record = None
    if files.fhir:
        record = guarded(lambda: read_fhir(list(files.fhir), patient_id=patient_id), files.fhir[0])
        if record is not None:
            warnings.extend(record.issues)
            counts = ", ".join(f"{k} {v}" for k, v in sorted(record.resource_counts.items()))
            provenance.extend(SourceRef(str(f), "fhir", counts) for f in files.fhir)

    readings: list[VitalReading] = list(record.readings) if record else []
    dropped = list(record.dropped) if record else []
    for f in files.vitals:
        table = guarded(lambda f=f: read_vitals_table(f), f)
        if table is None:
            continue
        readings.extend(table.readings)
        dropped.extend(table.dropped)
        warnings.extend(table.issues)
        provenance.append(SourceRef(str(f), "vitals", f"{len(table.readings)} readings"))
    for f in files.ignored:
        if not _is_bookkeeping(f):
            warnings.append(Issue(str(f), "", "not a recognised input (DICOM, FHIR JSON/NDJSON, CSV/Parquet)", "skipped"))

    when = study_time or _infer_time(images, record, readings, step_minutes)
    if when is not None and when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)

    vitals = None
    if readings or dropped:
        if when is None:
            warnings.append(Issue(str(root), "vitals", "no study time known: vital signs cannot be placed on a grid", "skipped"))
        else:
            vitals = build_grid(readings, end=when, window_hours=window_hours, step_minutes=step_minutes, dropped=dropped)

    demographics = record.demographics if record else None
    # A folder's name is the patient's key in a cohort; a lone file falls back to the record's id.
    pid = patient_id or (None if single else root.name) or (record.patient_id if record else None) or root.stem
    if demographics is None:
        demographics = Demographics(patient_id=pid)
    else:
        demographics = dataclasses.replace(demographics, patient_id=pid)
    if when is not None and demographics.birth_date:
        try:
            demographics = dataclasses.replace(demographics, age_years=age_at(demographics.birth_date, when))
        except (ValueError, MedmmError):
            warnings.append(Issue(str(root), "Patient.birthDate", "birth date not usable for an age", "warning"))

    notes = tuple(sorted(record.notes, key=lambda n: (n.time is None, n.time or datetime.min.replace(tzinfo=timezone.utc)))) if record else ()
    return Study(
        study_id=pid,
        demographics=demographics,
        images=tuple(images),
        notes=notes,
        vitals=vitals,
        labels=record.labels if record else None,
        time=when,
        provenance=tuple(provenance),
        warnings=tuple(warnings),
    )


def _is_bookkeeping(f: Path) -> bool:
    name = f.name.lower()
    return name.startswith(".") or name in _IGNORED_NAMES or (name.startswith("truth") and f.suffix.lower() == ".npz")


def _infer_time(images, record, readings, step_minutes: float) -> datetime | None:
    acquired = [s.acquired for s in images if s.acquired is not None]
    if acquired:
        return max(acquired)
    if record is not None and record.last_time is not None:
        return record.last_time
    if readings:  # the grid is [end - window, end): end just after the last reading's step
        last = max(r.time for r in readings)
        try:
            return last + timedelta(minutes=step_minutes)
        except OverflowError:  # a reading in the last step before datetime.max
            return datetime.max.replace(tzinfo=timezone.utc)
    return None
