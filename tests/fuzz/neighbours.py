"""The neighbour check: untouched files keep what they hold beside one bad file.

A patient folder holds the intact FHIR seed (``record.json``), the intact long vitals seed
(``vitals.csv``) and one mutated FHIR or vitals file, and is read with ``load_study``. The study
time (the intact table's last reading plus one grid step) and the patient (the intact record's)
are passed explicitly, so the window does not move with what the mutated file says or with how
the folder-level study time is chosen. Every note of the intact record and every grid cell the
intact files fill must still be there; what that is comes from the intact files alone, read the
same way.

A mutated DICOM file is read beside an intact radiograph (an instance of its own, sorted first):
with no patient identity the intact image must still be read; with an identity of its own, the
study must never hold images of two patients (an InputError refusing the mixed folder is right).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path

import numpy as np

from medmm.io import load_study
from medmm.io.vitals import read_vitals_table
from medmm.records import Study
from tests.fuzz.mutators import Case
from tests.fuzz.seeds import DICOM, FHIR, NDJSON, PARQUET, VITALS, Seed, all_seeds, radiograph_bytes

NEIGHBOUR_KINDS = frozenset({FHIR, NDJSON, VITALS, PARQUET, DICOM})
RECORD, TABLE = "record.json", "vitals.csv"  # the intact files, named as in a patient folder
STEP_MINUTES = 60.0  # load_study's default grid step


@dataclass(frozen=True)
class Expected:
    """What the intact files give when read alone."""

    patient_id: str
    study_time: datetime
    notes: frozenset[tuple[str, datetime | None]]  # (text, time) of each note
    observed: np.ndarray  # (T, C) grid cells with a reading


def _intact() -> tuple[Seed, Seed]:
    seeds = {s.name: s for s in all_seeds()}
    return seeds["bundle.json"], seeds["vitals.csv"]


def _read(folder: Path, record: Seed, table: Seed, expected: Expected | None) -> Study:
    """load_study of a folder holding the intact files (and whatever else is already in it)."""
    (folder / RECORD).write_bytes(record.data)
    (folder / TABLE).write_bytes(table.data)
    if expected is None:
        last = max(r.time for r in read_vitals_table(folder / TABLE).readings)
        patient = next(e["resource"] for e in record.doc["entry"] if e["resource"]["resourceType"] == "Patient")
        return load_study(folder, study_time=last + timedelta(minutes=STEP_MINUTES), patient_id=patient["id"])
    return load_study(folder, study_time=expected.study_time, patient_id=expected.patient_id)


@lru_cache(maxsize=1)
def expected() -> Expected:
    """The notes and grid cells of the intact files read alone (once per process)."""
    record, table = _intact()
    with tempfile.TemporaryDirectory(prefix="medmm-intact-") as tmp:
        study = _read(Path(tmp), record, table, None)
    assert study.vitals is not None and study.time is not None and study.notes, "the intact seeds give notes and vitals"
    notes = frozenset((n.text, n.time) for n in study.notes)
    return Expected(study.study_id, study.time, notes, study.vitals.mask.copy())


INTACT_DICOM = "a-intact.dcm"  # sorts first: an intact instance is never the later of two copies


@lru_cache(maxsize=2)
def intact_radiograph(patient_id: str | None) -> bytes:
    """The radiograph seed as an instance of its own (new UIDs), with `patient_id` (or none)."""
    import io

    import pydicom

    ds = pydicom.dcmread(io.BytesIO(radiograph_bytes()))
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "2.25.9.9.9"
    ds.SeriesInstanceUID = "2.25.9.9.8"
    if patient_id is None:
        ds.PatientID = ""
    else:
        ds.PatientID = patient_id
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def lost_beside_dicom(case: Case, folder: Path) -> str:
    """Beside a mutated DICOM file, an intact radiograph with no patient identity must still be read;
    beside one with an identity of its own, the study must never hold images of two patients
    (refusing the folder with an InputError is the right answer then)."""
    from medmm.errors import InputError

    patient = folder / "neighbours"
    lost = []
    for identity in (None, "FUZZ-OTHER"):
        patient.mkdir()
        try:
            (patient / INTACT_DICOM).write_bytes(intact_radiograph(identity))
            (patient / f"z-mutated-{case.name}").write_bytes(case.data)
            try:
                study = load_study(patient)
            except InputError as err:
                if identity is not None and "more than one patient" in err.detail:
                    continue  # a mixed folder refused: what must happen
                raise
        finally:
            shutil.rmtree(patient, ignore_errors=True)
        ids = {s.patient.patient_id for s in study.images if s.patient is not None and s.patient.patient_id}
        if len(ids) > 1:
            lost.append(f"images of {len(ids)} patients mixed in one study")
        if identity is None and not any("2.25.9.9.9" in s.sop_uids for s in study.images):
            lost.append(f"the intact {INTACT_DICOM} was not read")
    return "; ".join(lost)


def lost_beside(case: Case, folder: Path) -> str:
    """What the intact files lost beside `case` (written into a patient folder under `folder`);
    "" when nothing. A MedmmError of load_study (the whole folder refused) propagates."""
    if case.kind == DICOM:
        return lost_beside_dicom(case, folder)
    want = expected()
    record, table = _intact()
    patient = folder / "neighbours"
    patient.mkdir()
    try:
        (patient / f"mutated-{case.name}").write_bytes(case.data)
        study = _read(patient, record, table, want)
    finally:
        shutil.rmtree(patient, ignore_errors=True)
    lost = []
    missing = len(want.notes - {(n.text, n.time) for n in study.notes})
    if missing:
        lost.append(f"{missing} of {len(want.notes)} notes of the intact {RECORD}")
    observed = study.vitals.mask if study.vitals is not None else np.zeros_like(want.observed)
    gone = int((want.observed & ~observed).sum())
    if gone:
        lost.append(f"{gone} of {int(want.observed.sum())} grid cells of the intact {RECORD} and {TABLE}")
    return "; ".join(lost)
