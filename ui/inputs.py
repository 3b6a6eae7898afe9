"""Opening a case: uploaded files, a demo-cohort patient, or a study pulled from a DICOMweb server.

`CaseInputs` is the part of `ui.session.ClinicianService` that reads input into a Study: it
relies on the service's `_new_folder`, `_open` (keep the case) and `_grid` (the model's
vital-sign grid). Error messages name files relative to the case folder, never its location.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from medmm.errors import CohortError, ConfigError, InputError, MedmmError
from medmm.io import classify_files, load_study
from medmm.io.pacs import StudySummary, retrieve_study, search_studies
from medmm.records import Issue, Study
from ui.uploads import stage_uploads

if TYPE_CHECKING:  # ui.session imports this module
    from ui.session import Case

log = logging.getLogger("ui.session")
_EPOCH = datetime(1, 1, 1, tzinfo=timezone.utc)  # sorts cases without a study time first


def relative_message(err: MedmmError, folder: Path) -> str:
    """The error's message with paths inside the case folder shown relative to it."""
    return _strip(str(err), folder)


def _strip(text: str, folder: Path) -> str:
    for prefix in (str(folder.resolve()), str(folder)):
        text = text.replace(prefix + "/", "").replace(prefix, ".")
    return text


class CaseInputs:
    """Read input into cases (mixed into ClinicianService)."""

    def open_uploads(self, paths: Sequence[str | Path]) -> Case:
        """Read uploaded files (DICOM, zips of a patient folder, FHIR JSON/NDJSON, vitals CSV/Parquet) into a case.

        One plain file is read strictly (its error is raised); several files are read leniently
        (bad ones become warnings), but a case from which nothing usable was read is an error.
        """
        if not paths:
            raise InputError("no files were uploaded", where="upload")
        start = time.perf_counter()
        token, folder = self._new_folder()
        try:
            staged, issues = stage_uploads(paths, folder)
            single = staged[0] if len(staged) == 1 and staged[0].is_file() else None
            study = load_study(
                single or folder, patient_id=self._record_patient(folder) or f"upload-{token[:8]}", **self._grid
            )
            if issues:
                study = dataclasses.replace(study, warnings=tuple(issues) + study.warnings)
            if not study.provenance:  # not one file was read (a record with demographics alone is fine)
                raise InputError(self._nothing_read(study, folder), where="upload")
            study = self._relative(study, folder)
        except MedmmError as err:
            shutil.rmtree(folder, ignore_errors=True)
            raise type(err)(relative_message(err, folder)) from None
        except Exception:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        log.info("case opened from %d upload(s): %s", len(paths), ", ".join(study.modalities) or "no modality")
        return self._open(token, study, "upload", folder, start)

    def _record_patient(self, folder: Path) -> str | None:
        """The patient id of the uploaded FHIR record (None when there is none or it names several patients)."""
        from medmm.io.fhir import read_fhir

        fhir = classify_files(folder).fhir
        if not fhir:
            return None
        try:
            return read_fhir(list(fhir)).patient_id
        except MedmmError:
            return None

    @staticmethod
    def _nothing_read(study: Study, folder: Path) -> str:
        """Why nothing was read, naming files: a DICOM set that failed as a whole is retried file by file for its causes."""
        from medmm.io.dicom import read_dicom

        problems = []
        dicom = classify_files(folder).dicom
        for f in dicom:
            try:
                read_dicom(f)
            except MedmmError as err:
                problems.append(relative_message(err, folder))
        done = {"", ".", str(folder), *(str(f) for f in dicom)}
        problems += [_strip(str(w), folder) for w in study.warnings if w.kind == "skipped" and w.source not in done]
        if problems:
            more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
            return "nothing usable was read: " + "; ".join(problems[:3]) + more
        return "nothing usable was read (expected DICOM, FHIR JSON/NDJSON or a CSV/Parquet vitals table)"

    @staticmethod
    def _relative(study: Study, folder: Path) -> Study:
        warnings = tuple(
            Issue(_strip(w.source, folder), w.where, _strip(w.message, folder), w.kind) for w in study.warnings
        )
        return dataclasses.replace(study, warnings=warnings)

    def demo_patients(self) -> list[tuple[str, str]]:
        """(label, case key) of the cohort's cases, test split first; [] when no cohort is set.

        A case is a patient, or in a built cohort one sample of a patient (its index time in the label)."""
        if self.settings.cohort_dir is None:
            return []
        from medmm.io.cohort import Cohort

        try:
            cohort = Cohort.open(self.settings.cohort_dir)
        except MedmmError:
            return []
        order = {"test": 0, "val": 1}
        entries = sorted(
            cohort.entries, key=lambda e: (order.get(e.split or "", 2), e.patient_id, e.study_time or _EPOCH, e.key)
        )

        def label(e) -> str:
            when = "" if e.sample_id is None or e.study_time is None else f" at {e.study_time:%Y-%m-%d %H:%M}"
            return f"{e.patient_id}{when} ({e.split or 'no'} split)"

        return [(label(e), e.key) for e in entries]

    def open_demo(self, key: str) -> Case:
        """A case of the cohort, by patient id or (built cohort) sample id, read in place; nothing is copied."""
        from medmm.io.cohort import Cohort

        if self.settings.cohort_dir is None:
            raise ConfigError("no demo cohort is configured", where="cohort")
        start = time.perf_counter()
        cohort = Cohort.open(self.settings.cohort_dir)
        index = next((i for i, e in enumerate(cohort.entries) if e.key == key), None)
        if index is None:
            raise CohortError(
                "no such case in the cohort", path=cohort.root / "manifest.csv", where="patient_id / sample_id"
            )
        study = cohort.load(index, **self._grid)
        log.info("case opened from the demo cohort: %s", ", ".join(study.modalities) or "no modality")
        return self._open(secrets.token_hex(16), study, "demo", cohort.entries[index].folder, start)

    def search_pacs(self, patient_id: str) -> list[StudySummary]:
        """Studies of a patient on the configured DICOMweb server."""
        if not self.settings.pacs_url:
            raise ConfigError("no DICOMweb server is configured", where="pacs")
        return search_studies(self.settings.pacs_url, patient_id)

    def open_pacs(self, study_uid: str, patient_id: str) -> Case:
        """Pull one study from the DICOMweb server into a case."""
        if not self.settings.pacs_url:
            raise ConfigError("no DICOMweb server is configured", where="pacs")
        start = time.perf_counter()
        token, folder = self._new_folder()
        try:
            files = retrieve_study(self.settings.pacs_url, study_uid, folder)
            study = self._relative(load_study(folder, patient_id=patient_id, **self._grid), folder)
        except MedmmError as err:
            shutil.rmtree(folder, ignore_errors=True)
            raise type(err)(relative_message(err, folder)) from None
        log.info("case opened from DICOMweb: %d file(s)", len(files))
        return self._open(token, study, "pacs", folder, start)
