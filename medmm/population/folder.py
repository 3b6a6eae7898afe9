"""One sample's folder in medmm's cohort layout: the record Bundle and the vitals table a build writes.

`write_sample` writes ``record.json`` (the Patient, the sample's window notes as DocumentReferences,
the Conditions behind its labels) and ``vitals.csv`` (the readings its grid is made of); the
layout is described in :mod:`medmm.population.build`.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

from medmm.codes import VitalSign
from medmm.population.hygiene import CleanPatient, Reading
from medmm.population.record import PatientRecord
from medmm.population.samples import Sample, _in_window
from medmm.tasks import Task


def grid_readings(task: Task, patient: CleanPatient, index: datetime) -> tuple[Reading, ...]:
    """The readings a sample's vital-sign grid is made of (per-encounter: those of its steps)."""
    vitals = task.vitals
    if not vitals.per_encounter and not vitals.step_minutes:
        return ()
    span, include = vitals.span, vitals.include_index
    in_time = [r for r in patient.readings if _in_window(r.time, index, span, include)]
    if not vitals.per_encounter:
        return tuple(in_time)
    steps = {e.id for e in patient.encounters if e.start is not None and _in_window(e.start, index, span, include)}
    return tuple(r for r in in_time if r.encounter in steps)


def write_sample(
    folder: Path, record: PatientRecord, sample: Sample, readings: Sequence[Reading], signs: Sequence[VitalSign]
) -> None:
    folder.mkdir(parents=True, exist_ok=False)
    bundle = sample_bundle(record, sample)
    (folder / "record.json").write_text(json.dumps(bundle, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    if readings:
        (folder / "vitals.csv").write_text(vitals_csv(readings, sample, signs), encoding="utf-8", newline="")


def sample_bundle(record: PatientRecord, sample: Sample) -> dict[str, Any]:
    """The R4 collection Bundle of one sample: Patient, window notes, label-making Conditions."""
    patient_ref = f"Patient/{record.patient_id}"
    evidence = {cid for ids in sample.label_evidence.values() for cid in ids}
    conditions = [dict(c) for c in record.of("Condition") if f"Condition/{c.get('id')}" in evidence]
    documents = []
    for note in sample.notes:
        doc: dict[str, Any] = {
            "resourceType": "DocumentReference",
            "id": "note-" + hashlib.sha256((note.source_id or note.text).encode("utf-8")).hexdigest()[:24],
            "status": "current",
            "subject": {"reference": patient_ref},
            "content": [
                {
                    "attachment": {
                        "contentType": "text/plain",
                        "data": _b64(note.text),
                    }
                }
            ],
        }
        if note.type_code or note.type_display:
            concept: dict[str, Any] = {}
            if note.type_code:
                concept["coding"] = [{"system": "http://loinc.org", "code": note.type_code}]
            if note.type_display:
                concept["text"] = note.type_display
            doc["type"] = concept
        if note.time is not None:
            doc["date"] = note.time.isoformat()
        documents.append(doc)
    resources = [dict(record.patient), *documents, *conditions]
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in resources],
    }


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def vitals_csv(readings: Sequence[Reading], sample: Sample, signs: Sequence[VitalSign]) -> str:
    """Long format: time (ISO 8601, UTC), code (the channel's preferred LOINC code among the task's `signs`),
    value, unit (canonical), and on a per-encounter grid step (the start of the reading's encounter, which
    the grid groups by)."""
    by_name = {s.name: s for s in signs}
    unit = dict(zip(sample.vitals.channels, sample.vitals.units))
    # one step per encounter: each reading's step is its encounter's start (what the grid groups by)
    steps = {source: when for source, when in zip(sample.vitals.step_sources, sample.vitals.step_times) if source}
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(("time", "code", "value", "unit") + (("step",) if steps else ()))
    for r in sorted(readings, key=lambda r: (r.time, r.channel, r.source)):
        sign = by_name.get(r.channel)
        code = sign.loinc[0] if sign is not None and sign.loinc else r.channel
        row = (r.time.isoformat(), code, repr(float(r.value)), unit.get(r.channel, ""))
        step = steps.get(r.encounter or "")
        writer.writerow(row + ((step.isoformat() if step is not None else "",) if steps else ()))
    return buf.getvalue()
