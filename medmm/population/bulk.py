"""Reading a FHIR Bulk Data export (NDJSON per resource type) patient by patient.

An export holds any number of files per type (`Patient.ndjson`, `Observation.000.ndjson`,
`Observation.001.ndjson.gz`, ...), the type named by the file name or, failing that, by each
line's resourceType. Resources of one patient are spread across files, so a first pass writes a
small on-disk index (SQLite) of where each resource lies: (patient reference, file, byte
offset). Patients are then yielded one at a time, each read back by seeking to its lines.
Memory holds one patient, whatever the size of the export.
"""

from __future__ import annotations

import gzip
import json
import sqlite3
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator

from medmm.errors import FhirError
from medmm.population.record import (
    PATIENT_TYPES,
    PatientRecord,
    PopulationReport,
    build_record,
    normalise_references,
    patient_reference,
    validated,
)

NDJSON_SUFFIXES = (".ndjson", ".ndjson.gz", ".jsonl", ".jsonl.gz")
_SCHEMA = "CREATE TABLE loc (patient TEXT, rtype TEXT, file INTEGER, offset INTEGER, length INTEGER)"


def export_files(folder: str | Path) -> list[Path]:
    """The NDJSON files of an export folder (recursive), sorted; FhirError if there are none."""
    root = Path(folder)
    if not root.is_dir():
        raise FhirError("bulk export folder not found", path=root)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name.lower().endswith(NDJSON_SUFFIXES))
    if not files:
        raise FhirError("folder holds no .ndjson file (expected a FHIR Bulk Data export)", path=root)
    return files


def iter_bulk_export(
    folder: str | Path, report: PopulationReport | None = None, index_dir: str | Path | None = None
) -> Iterator[PatientRecord]:
    """Yield one PatientRecord per Patient of a Bulk Data export, in the export's Patient order.

    `index_dir` keeps the on-disk index (a temporary folder by default, removed at the end).
    """
    report = report if report is not None else PopulationReport()
    files = export_files(folder)
    with tempfile.TemporaryDirectory(dir=index_dir) as tmp:
        db = sqlite3.connect(Path(tmp) / "index.sqlite")
        try:
            db.execute(_SCHEMA)
            for n, path in enumerate(files):
                _index_file(db, n, path, report)
            db.execute("CREATE INDEX by_patient ON loc (patient, file, offset)")
            db.commit()
            yield from _patients(db, files, report)
        finally:
            db.close()


def _type_from_name(path: Path) -> str | None:
    """'Observation.001.ndjson' -> 'Observation'; None when the name does not start with a type."""
    head = path.name.split(".", 1)[0]
    return head if head[:1].isupper() and head.isalpha() else None


def _open(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _index_file(db: sqlite3.Connection, n: int, path: Path, report: PopulationReport) -> None:
    """Record where each patient resource of one NDJSON file lies; count the rest."""
    named = _type_from_name(path)
    if named is not None and named not in PATIENT_TYPES:
        report.add(f"resource: {named} not read (whole file)", str(path))
        return
    rows = []
    offset = 0
    try:
        with _open(path) as handle:
            for line_no, line in enumerate(handle, start=1):
                start, offset = offset, offset + len(line)
                if not line.strip():
                    continue
                res = _parse_line(line, path, line_no, report)
                if res is None:
                    continue
                rtype = res["resourceType"]
                if rtype not in PATIENT_TYPES:
                    report.add(f"resource: {rtype} not read")
                    continue
                owner = patient_reference(res)
                if owner is None:
                    report.add(f"resource: {rtype} without a Patient reference; skipped", str(path), f"line {line_no}")
                    continue
                rows.append((owner, rtype, n, start, len(line)))
                if len(rows) >= 10_000:
                    db.executemany("INSERT INTO loc VALUES (?, ?, ?, ?, ?)", rows)
                    rows.clear()
    except (OSError, EOFError):
        report.add("bulk: file cannot be read to its end; the lines before were used", str(path))
    db.executemany("INSERT INTO loc VALUES (?, ?, ?, ?, ?)", rows)


def _parse_line(line: bytes, path: Path, line_no: int, report: PopulationReport) -> dict[str, Any] | None:
    """One NDJSON line as a resource, or None (counted) when it is not one."""
    try:
        res = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        report.add("bulk: line is not JSON; skipped", str(path), f"line {line_no}")
        return None
    if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
        report.add("bulk: line is not a FHIR resource; skipped", str(path), f"line {line_no}")
        return None
    return res


def _patients(db: sqlite3.Connection, files: list[Path], report: PopulationReport) -> Iterator[PatientRecord]:
    """Read back each Patient and its resources through the index."""
    handles: dict[int, IO[bytes]] = {}
    try:
        duplicates = db.execute(
            "SELECT COUNT(*) - COUNT(DISTINCT patient) FROM loc WHERE rtype = 'Patient'"
        ).fetchone()[0]
        if duplicates:
            report.add("bulk: Patient appears more than once; later copies skipped", n=duplicates)
        patients = db.cursor().execute(  # iterated lazily: nothing here grows with the population
            "SELECT patient, file, offset, length FROM loc WHERE rowid IN "
            "(SELECT MIN(rowid) FROM loc WHERE rtype = 'Patient' GROUP BY patient) ORDER BY file, offset"
        )
        for owner, file_no, offset, length in patients:
            patient = _read_at(handles, files, file_no, offset, length)
            where = f"{files[file_no]}"
            model, field = validated(patient)
            if model is None:
                report.add(f"resource: invalid Patient ({field}); skipped", where)
                continue
            yield build_record(normalise_references(patient, {}), _resources(db, handles, files, owner, report), where)
        orphans = db.execute(
            "SELECT COUNT(*) FROM loc WHERE patient NOT IN (SELECT patient FROM loc WHERE rtype = 'Patient')"
        ).fetchone()[0]
        if orphans:
            report.add("resource: about a Patient not in the input; skipped", n=orphans)
    finally:
        for handle in handles.values():
            handle.close()


def _resources(
    db: sqlite3.Connection, handles: dict[int, IO[bytes]], files: list[Path], owner: str, report: PopulationReport
) -> Iterator[dict[str, Any]]:
    rows = db.execute(
        "SELECT rtype, file, offset, length FROM loc WHERE patient = ? AND rtype != 'Patient' ORDER BY file, offset",
        (owner,),
    ).fetchall()
    for rtype, file_no, offset, length in rows:
        res = normalise_references(_read_at(handles, files, file_no, offset, length), {})
        if rtype == "Condition":
            model, field = validated(res)
            if model is None:
                report.add(f"resource: invalid Condition ({field}); skipped", str(files[file_no]))
                continue
        yield res


def _read_at(
    handles: dict[int, IO[bytes]], files: list[Path], file_no: int, offset: int, length: int
) -> dict[str, Any]:
    handle = handles.get(file_no)
    if handle is None:
        handle = handles[file_no] = _open(files[file_no])
    handle.seek(offset)
    return json.loads(handle.read(length))
