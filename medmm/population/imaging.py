"""Joining a population's images to its records, from a DICOM folder or a DICOMweb server.

For one sample, the studies joined are, in this order of trust:

1. each ImagingStudy of the patient in the task's image window, by its Study Instance UID
   (`identifier` with system ``urn:dicom:uid``), else, when the source has no such study, by the
   patient's PatientID and the ImagingStudy's accession number (an identifier of type ACSN);
2. only for a patient whose record lists no ImagingStudy at all (many exports leave them out):
   every study of the source whose PatientID is one of the patient's (its id and identifier
   values) and whose acquisition time lies in the task's image window.

A study is joined only when every PatientID its files carry is one of the patient's: a study
found by UID that the source files under another patient is reported and left out (the
study reader would refuse a folder of two patients). Every outcome is counted in the cohort
report: studies joined by UID, by accession or by PatientID and time; ImagingStudies in the
window that the source does not hold; studies left out for their PatientID; source files that
are not DICOM.

The folder source indexes the headers once, in SQLite in the build's scratch folder, so memory
stays flat however large the archive; the DICOMweb source asks the server per study (QIDO-RS,
WADO-RS) and keeps what it retrieved in the scratch folder for the copy into the sample.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Iterable, Protocol, Sequence

from medmm.errors import CohortError, MedmmError
from medmm.io.dicom_index import DicomHeader, read_header, scan_headers
from medmm.population.hygiene import CleanPatient, ImagingFact
from medmm.population.record import PopulationReport
from medmm.population.samples import _in_window
from medmm.records import Issue
from medmm.tasks import Task

BY_UID, BY_ACCESSION, BY_PATIENT_TIME = (
    "Study Instance UID",
    "PatientID and AccessionNumber",
    "PatientID and study time",
)


@dataclass(frozen=True)
class JoinedStudy:
    study_uid: str
    how: str  # BY_UID | BY_ACCESSION | BY_PATIENT_TIME
    files: tuple[DicomHeader, ...]


class ImageSource(Protocol):
    def study(self, uid: str) -> list[DicomHeader]: ...

    def patient_studies(self, keys: Iterable[str]) -> list[str]: ...

    def close(self) -> None: ...


class FolderImages:
    """A DICOM folder, its headers indexed once (SQLite under `scratch`)."""

    def __init__(self, root: str | Path, scratch: str | Path, report: PopulationReport):
        self.root = Path(root)
        self.db = sqlite3.connect(Path(scratch) / "images.sqlite")
        self.db.execute(
            "CREATE TABLE files (path TEXT, study TEXT, series TEXT, sop TEXT, patient TEXT, accession TEXT, time TEXT)"
        )
        rows = []
        for item in scan_headers(self.root):
            if isinstance(item, Issue):
                report.add(f"imaging source: {item.message}", item.source, item.where)
                continue
            rows.append(
                (
                    str(item.path),
                    item.study_uid,
                    item.series_uid,
                    item.sop_uid,
                    item.patient_id,
                    item.accession,
                    None if item.time is None else item.time.isoformat(),
                )
            )
            if len(rows) >= 1000:
                self.db.executemany("INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
                rows.clear()
        self.db.executemany("INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        self.db.execute("CREATE INDEX by_study ON files (study)")
        self.db.execute("CREATE INDEX by_patient ON files (patient)")

    def study(self, uid: str) -> list[DicomHeader]:
        found = self.db.execute("SELECT * FROM files WHERE study = ? ORDER BY path", (uid,)).fetchall()
        return [
            DicomHeader(Path(p), s, se, so, pa, ac, None if t is None else datetime.fromisoformat(t))
            for p, s, se, so, pa, ac, t in found
        ]

    def patient_studies(self, keys: Iterable[str]) -> list[str]:
        keys = sorted(set(keys))
        if not keys:
            return []
        marks = ",".join("?" * len(keys))
        return [
            r[0]
            for r in self.db.execute(
                f"SELECT DISTINCT study FROM files WHERE patient IN ({marks}) ORDER BY study", keys
            )
        ]

    def close(self) -> None:
        self.db.close()


class DicomWebImages:
    """A DICOMweb server: studies searched by PatientID (QIDO-RS) and retrieved by UID (WADO-RS) into `scratch`."""

    def __init__(self, url: str, scratch: str | Path, report: PopulationReport):
        self.url = url
        self.scratch = Path(scratch) / "dicomweb"
        self.report = report
        self._cache: dict[str, list[DicomHeader]] = {}

    def study(self, uid: str) -> list[DicomHeader]:
        from medmm.io.pacs import retrieve_study

        if uid not in self._cache:
            folder = self.scratch / uid
            try:
                paths = retrieve_study(self.url, uid, folder)
            except MedmmError as err:
                self.report.add(f"imaging source: study not retrieved ({type(err).__name__})", "DICOMweb")
                paths = []
            headers = [read_header(p) for p in paths]
            self._cache[uid] = [h for h in headers if isinstance(h, DicomHeader)]
        return self._cache[uid]

    def patient_studies(self, keys: Iterable[str]) -> list[str]:
        from medmm.io.pacs import search_studies

        found: set[str] = set()
        for key in sorted(set(keys)):
            try:
                found.update(s.study_uid for s in search_studies(self.url, key))
            except MedmmError as err:
                self.report.add(f"imaging source: search failed ({type(err).__name__})", "DICOMweb", "PatientID")
        return sorted(found)

    def close(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)


def open_images(source: str | Path, scratch: str | Path, report: PopulationReport) -> ImageSource:
    """A DICOMweb server for an http(s) URL, else a DICOM folder."""
    text = str(source)
    if text.startswith(("http://", "https://")):
        return DicomWebImages(text, scratch, report)
    root = Path(source)
    if not root.is_dir():
        raise CohortError(
            "image source not found (expected a DICOM folder or a DICOMweb URL)", path=root, where="--images"
        )
    return FolderImages(root, scratch, report)


def patient_keys(patient: CleanPatient) -> set[str]:
    """The ids a DICOM PatientID may carry for this patient: the Patient's id and identifier values."""
    keys = {patient.record.patient_id}
    for ident in patient.record.patient.get("identifier") or []:
        value = ident.get("value") if isinstance(ident, dict) else None
        if isinstance(value, str) and value.strip():
            keys.add(value.strip())
    return keys


def join_images(
    source: ImageSource,
    task: Task,
    patient: CleanPatient,
    index: datetime,
    in_window: Sequence[ImagingFact],
    report: PopulationReport,
) -> list[JoinedStudy]:
    """The studies of one sample (see the module docstring), each counted in `report` by how it was joined."""
    keys = patient_keys(patient)
    where = patient.record.source
    joined: list[JoinedStudy] = []
    for fact in in_window:
        headers, how = (source.study(fact.study_uid), BY_UID) if fact.study_uid else ([], BY_UID)
        if not headers and fact.accession:
            for uid in source.patient_studies(keys):
                files = [h for h in source.study(uid) if h.accession == fact.accession]
                if files:
                    headers, how = files, BY_ACCESSION
                    break
        if not headers:
            report.add("imaging: ImagingStudy in the window not found in the image source", where, fact.id)
            continue
        joined += _checked(headers, how, keys, report, where, fact.id)
    if not patient.imaging and task.images.days is not None:
        span = timedelta(days=task.images.days)
        for uid in source.patient_studies(keys):
            headers = source.study(uid)
            times = [h.time for h in headers if h.time is not None]
            if not times:
                report.add("imaging: study without an acquisition time; not joined by PatientID", where)
                continue
            when = min(times)
            if (task.images.include_index and when == index) or _in_window(
                when, index, span, task.images.include_index
            ):
                joined += _checked(headers, BY_PATIENT_TIME, keys, report, where, "")
    seen: set[str] = set()
    out = []
    for study in joined:
        if study.study_uid not in seen:
            seen.add(study.study_uid)
            out.append(study)
    return out


def _checked(
    headers: list[DicomHeader], how: str, keys: set[str], report: PopulationReport, source: str, where: str
) -> list[JoinedStudy]:
    others = {h.patient_id for h in headers if h.patient_id is not None and h.patient_id not in keys}
    uid = headers[0].study_uid
    if others:
        report.add(f"imaging: study found by {how} carries another PatientID; not joined", source, where)
        return []
    report.add(f"imaging: study joined by {how}", source, where)
    return [JoinedStudy(uid, how, tuple(headers))]


def copy_studies(studies: Sequence[JoinedStudy], folder: Path) -> int:
    """Hard-link (else copy) each study's files under folder/images/<study n>/; the number of files."""
    n = 0
    for s, study in enumerate(studies):
        target = folder / "images" / f"study-{s + 1:03d}"
        target.mkdir(parents=True, exist_ok=True)
        for f, header in enumerate(study.files):
            dest = target / f"{f + 1:05d}.dcm"
            try:
                os.link(header.path, dest)
            except OSError:
                shutil.copy2(header.path, dest)
            n += 1
    return n
