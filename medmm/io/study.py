"""Assemble one :class:`~medmm.records.Study` from a patient's files.

A patient folder may hold DICOM files (any names, any depth, or zips of them), FHIR JSON or
NDJSON, and a vitals table (CSV or Parquet). Each reader reports what it skipped; the study
keeps every good part and carries those reports as warnings.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Sequence

from medmm.codes import VITAL_SIGNS, VitalSign
from medmm.errors import InputError, MedmmError
from medmm.io.dates import plausible_time
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
        suffix = f.suffix.lower()
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
    time_source: str = "given",
    patient_id: str | None = None,
    window_hours: float = 48.0,
    step_minutes: float = 60.0,
    encounter_steps: int = 0,
    vital_signs: Sequence[VitalSign] | None = None,
) -> Study:
    """Read a patient folder (or one file) into a Study.

    The study time is `study_time` when given (`time_source` says where it came from, e.g. a
    cohort manifest), else the latest image acquisition, else the latest note or vital-sign
    reading (encounter and condition dates do not move it). Dates before 1900 or in the future
    never become the study time; they are reported. The time anchors the age and the
    vital-sign window (the `window_hours` before it, on steps of `step_minutes`, or with
    `encounter_steps` > 0 one step per encounter, the latest that many); readings outside the
    window are counted in the warnings. `Study.time_source` says which rule chose it.
    `vital_signs` are the grid's channels, read from FHIR Observations and vitals tables by their
    LOINC codes (default medmm's seven; a task's channels, in its order).

    Files of more than one patient are refused (InputError), unless `patient_id` names one of
    them: then the other patient's images are reported and not used.
    A single file that cannot be read raises its reader's MedmmError; in a folder, bad files
    become warnings and the rest is used.
    """
    from medmm.io.dicom import read_dicom, read_dicom_files
    from medmm.io.fhir import age_at, read_fhir
    from medmm.io.vitals import build_encounter_grid, build_grid, read_vitals_table

    root = Path(path)
    files = classify_files(root)
    single = root.is_file()
    if single and files.ignored:
        raise InputError(
            "not a recognised input (expected DICOM, FHIR JSON/NDJSON or a CSV/Parquet vitals table)", path=root
        )
    warnings: list[Issue] = []
    provenance: list[SourceRef] = []

    def guarded(reader, source: Path):
        try:
            return reader()
        except MedmmError as err:
            if single:
                raise
            warnings.append(
                Issue(err.path or str(source), err.where or "", f"{type(err).__name__}: {err.detail}", "skipped")
            )
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
            provenance.append(
                SourceRef(
                    s.source_files[0] if s.source_files else str(f),
                    "dicom",
                    f"series {s.series_uid} ({len(s.source_files)} files)",
                )
            )

    record = None
    if files.fhir:
        record = guarded(
            lambda: read_fhir(list(files.fhir), patient_id=patient_id, vital_signs=vital_signs), files.fhir[0]
        )
        if record is not None:
            warnings.extend(record.issues)
            counts = ", ".join(f"{k} {v}" for k, v in sorted(record.resource_counts.items()))
            provenance.extend(SourceRef(f, "fhir", counts) for f in record.files_read)

    readings: list[VitalReading] = list(record.readings) if record else []
    dropped = list(record.dropped) if record else []
    for f in files.vitals:
        table = guarded(lambda f=f: read_vitals_table(f, vital_signs), f)
        if table is None:
            continue
        readings.extend(table.readings)
        dropped.extend(table.dropped)
        warnings.extend(table.issues)
        provenance.append(SourceRef(str(f), "vitals", f"{len(table.readings)} readings"))
    for f in files.ignored:
        if not _is_bookkeeping(f):
            warnings.append(
                Issue(str(f), "", "not a recognised input (DICOM, FHIR JSON/NDJSON, CSV/Parquet)", "skipped")
            )

    images, skipped = one_patient(images, record, patient_id, root)
    warnings.extend(skipped)

    if study_time is not None:
        when = study_time if study_time.tzinfo is not None else study_time.replace(tzinfo=timezone.utc)
        if not plausible_time(when):
            raise InputError(
                f"study time {when.isoformat()} is implausible (before 1900 or in the future)",
                path=root,
                where="study_time",
            )
        source = time_source
    else:
        when, source = _infer_time(images, record, readings, step_minutes, root, warnings)

    channels = tuple(vital_signs) if vital_signs else VITAL_SIGNS
    vitals = None
    if readings or dropped:
        if when is None:
            warnings.append(
                Issue(str(root), "vitals", "no study time known: vital signs cannot be placed on a grid", "skipped")
            )
        else:
            if encounter_steps > 0:
                vitals = build_encounter_grid(
                    readings,
                    end=when,
                    window_hours=window_hours,
                    max_steps=encounter_steps,
                    dropped=dropped,
                    channels=channels,
                )
            else:
                vitals = build_grid(
                    readings,
                    end=when,
                    window_hours=window_hours,
                    step_minutes=step_minutes,
                    dropped=dropped,
                    channels=channels,
                )
            outside = _outside_window(readings, vitals, when)
            if outside is not None:
                warnings.append(outside)

    demographics = record.demographics if record else None
    # A folder's name is the patient's key in a cohort; a lone file falls back to the record's id.
    pid = patient_id or (None if single else root.name) or (record.patient_id if record else None) or root.stem
    if demographics is None:
        demographics = _from_images(pid, images)
    else:
        demographics = dataclasses.replace(demographics, patient_id=pid)
    if when is not None and demographics.birth_date:
        try:
            demographics = dataclasses.replace(demographics, age_years=age_at(demographics.birth_date, when))
        except (ValueError, MedmmError):
            warnings.append(Issue(str(root), "Patient.birthDate", "birth date not usable for an age", "warning"))

    notes = (
        tuple(sorted(record.notes, key=lambda n: (n.time is None, n.time or datetime.min.replace(tzinfo=timezone.utc))))
        if record
        else ()
    )
    return Study(
        study_id=pid,
        demographics=demographics,
        images=tuple(images),
        notes=notes,
        vitals=vitals,
        labels=record.labels if record else None,
        time=when,
        time_source=source,
        provenance=tuple(provenance),
        warnings=tuple(warnings),
    )


def _is_bookkeeping(f: Path) -> bool:
    name = f.name.lower()
    return name.startswith(".") or name in _IGNORED_NAMES or (name.startswith("truth") and f.suffix.lower() == ".npz")


def _infer_time(
    images, record, readings, step_minutes: float, root: Path, warnings: list[Issue]
) -> tuple[datetime | None, str | None]:
    """The study time when none is given, and how it was chosen.

    Image acquisitions first (the readers already refuse implausible ones); else the latest
    note or vital-sign reading, the grid ending just after that reading's step. Encounter and
    condition dates are administrative or outcomes, not data the model reads: they never count.
    """
    acquired = [s.acquired for s in images if s.acquired is not None]
    if acquired:
        return max(acquired), "image acquisition (latest)"
    notes = [n.time for n in (record.notes if record is not None else ()) if n.time is not None]
    times = [(t, "note") for t in notes] + [(r.time, "vital-sign reading") for r in readings]
    plausible = [(_utc(t), kind) for t, kind in times if plausible_time(_utc(t))]
    if len(plausible) < len(times):
        warnings.append(
            Issue(
                str(root),
                "time",
                f"{len(times) - len(plausible)} note or reading time(s) before 1900 or in "
                "the future: not used to choose the study time",
            )
        )
    if not plausible:
        return None, None
    last, kind = max(plausible, key=lambda p: p[0])
    if kind == "note":
        return last, "latest note"
    # the grid is [end - window, end): end just after the last reading's step (plausible: no overflow)
    return last + timedelta(minutes=step_minutes), "latest vital-sign reading (plus one step)"


_SEX = {"M": "male", "F": "female", "O": "other"}
_AGE_UNIT_YEARS = {"Y": 1.0, "M": 1 / 12, "W": 7 / 365.25, "D": 1 / 365.25}


def _from_images(pid: str, images) -> Demographics:
    """Demographics from the DICOM header when there is no FHIR record: sex, birth date, else PatientAge.

    `extra["demographics_source"]` says where they came from; an age from a birth date is
    computed against the study time afterwards, as for a record.
    """
    stated = next((s.patient for s in images if s.patient is not None), None)
    if stated is None:
        return Demographics(patient_id=pid)
    age = None
    if stated.age and not stated.birth_date:
        age = int(stated.age[:3]) * _AGE_UNIT_YEARS[stated.age[3]]
    return Demographics(
        patient_id=pid,
        sex=_SEX.get(stated.sex or ""),
        birth_date=stated.birth_date,
        age_years=age,
        extra={"demographics_source": "DICOM header"},
    )


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)


def _outside_window(readings, vitals, end: datetime) -> Issue | None:
    """One warning counting the readings of the grid's channels that fall before or after its window."""
    start = vitals.start
    channels = set(vitals.channels)
    before = after = 0
    for r in readings:
        if r.channel not in channels:
            continue
        t = _utc(r.time)
        before += t < start
        after += t >= end
    if not before and not after:
        return None
    hours = (end - start).total_seconds() / 3600.0
    return Issue(
        "vital signs",
        "window",
        f"{before + after} reading(s) outside the {hours:g}-hour window before the study "
        f"time ({before} before it, {after} at or after it): not on the grid",
        "dropped",
    )


def _image_patient(series) -> str | None:
    return series.patient.patient_id if series.patient is not None else None


def one_patient(images, record, patient_id: str | None, root: Path) -> tuple[list, list[Issue]]:
    """The images of the one patient the input is about; refuses files of several patients.

    DICOM PatientID values are compared with each other and with the FHIR Patient's id and
    identifiers. With `patient_id` naming one of the patients found, the other patient's images
    are reported and left out; without it, a mix raises InputError naming what was found.
    """
    keys = set(record.patient_keys) if record is not None else set()
    ids = Counter(pid for s in images if (pid := _image_patient(s)))
    if len(ids) <= 1 and not (ids and keys and not set(ids) & keys):
        return list(images), []
    found = [f"DICOM PatientID {i!r} ({n} series)" for i, n in sorted(ids.items())]
    if keys:
        found.append("FHIR Patient " + "/".join(repr(k) for k in sorted(keys)))
    if patient_id and (patient_id in keys or (patient_id in ids and not keys)):
        wanted = keys if patient_id in keys else {patient_id}
        kept = [s for s in images if _image_patient(s) in (None, *wanted)]
        skipped = [
            Issue(
                s.source_files[0] if s.source_files else str(root),
                "(0010,0020) PatientID",
                "image of another patient: not used",
                "skipped",
            )
            for s in images
            if _image_patient(s) not in (None, *wanted)
        ]
        return kept, skipped
    raise InputError(
        "files of more than one patient: "
        + ", ".join(found)
        + "; give one patient's files, or name the patient to use",
        path=root,
        where="PatientID",
    )
