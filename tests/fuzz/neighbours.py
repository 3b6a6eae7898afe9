"""The neighbour check: untouched files keep what they hold beside one bad file.

A patient folder holds the intact FHIR seed (``record.json``), the intact long vitals seed
(``vitals.csv``) and one mutated FHIR or vitals file, and is read with ``load_study``. The study
time (the intact table's last reading plus one grid step) and the patient (the intact record's)
are passed explicitly, so the window does not move with what the mutated file says or with how
the folder-level study time is chosen. Every note of the intact record and every grid cell the
intact files fill must still be there; what that is comes from the intact files alone, read the
same way.
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
from tests.fuzz.seeds import FHIR, NDJSON, PARQUET, VITALS, Seed, all_seeds

NEIGHBOUR_KINDS = frozenset({FHIR, NDJSON, VITALS, PARQUET})
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


def lost_beside(case: Case, folder: Path) -> str:
    """What the intact files lost beside `case` (written into a patient folder under `folder`);
    "" when nothing. A MedmmError of load_study (the whole folder refused) propagates."""
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
