"""Every input file of a case and what became of it: used by the model, read but not used, or not read (with the reason).

Built from the case folder's files, the study's provenance and warnings (what was read, what
was skipped) and, once the model has run, the prediction's input verdicts (medmm.scope:
which image, notes and vital signs it used and why the rest was not used).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medmm.io import classify_files
from medmm.records import InputUse, Prediction, Study

USED = "used"
NOT_USED = "not used"
NOT_READ = "not read"
READ = "read"  # read, before the model has said what it used


@dataclass(frozen=True)
class FileRow:
    """One input file as the header lists it."""

    name: str  # path relative to the case folder
    kind: str  # DICOM | FHIR record | vital signs table | other
    status: str  # used | not used | read | not read
    detail: str  # what it held and why it was (not) used


def relative(path: str, folder: Path) -> str:
    """`path` relative to the case folder when it lies inside it, else as given."""
    for prefix in (str(folder.resolve()), str(folder)):
        if path.startswith(prefix + "/"):
            return path[len(prefix) + 1 :]
    return path


def input_files(folder: Path) -> tuple[list[Path], list[Path], list[Path], list[Path]]:
    """(DICOM, FHIR, vitals, other) files under the case folder; ground truth and bookkeeping files left out."""
    found = classify_files(folder)
    other = [
        f
        for f in found.ignored
        if not (f.name.startswith((".", "truth")) or f.name in ("manifest.csv", "manifest.parquet"))
    ]
    return list(found.dicom), list(found.fhir), list(found.vitals), other


def file_rows(study: Study, prediction: Prediction | None, folder: Path) -> list[FileRow]:
    """One row per input file, in the order DICOM, FHIR, vitals, other."""
    dicom, fhir, vitals, other = input_files(folder)
    skipped: dict[str, list[str]] = {}
    for w in study.warnings:
        if w.kind == "skipped" and w.source:
            skipped.setdefault(relative(w.source, folder), []).append(
                w.message if not w.where else f"{w.where}: {w.message}"
            )
    uses = prediction.inputs if prediction is not None else ()
    read = {relative(ref.path, folder) for ref in study.provenance}
    rows = []
    for f in dicom:
        name = relative(str(f), folder)
        rows.append(_dicom_row(name, study, uses, skipped.get(name), folder))
    notes = [u for u in uses if u.modality == "notes"]
    vital_use = next((u for u in uses if u.modality == "vitals"), None)
    for f in fhir:
        name = relative(str(f), folder)
        if name in skipped or name not in read:
            rows.append(FileRow(name, "FHIR record", NOT_READ, "; ".join(skipped.get(name, ["not read"]))))
        else:
            rows.append(_record_row(name, study, notes, prediction, bool(vital_use and vital_use.used)))
    for f in vitals:
        name = relative(str(f), folder)
        if name in skipped or name not in read:
            rows.append(FileRow(name, "vital signs table", NOT_READ, "; ".join(skipped.get(name, ["not read"]))))
        elif vital_use is None:
            status = READ if prediction is None else NOT_USED
            rows.append(
                FileRow(
                    name,
                    "vital signs table",
                    status,
                    "readings read" if prediction is None else "no vital signs on the grid",
                )
            )
        else:
            rows.append(FileRow(name, "vital signs table", USED if vital_use.used else NOT_USED, vital_use.reason))
    for f in other:
        name = relative(str(f), folder)
        rows.append(FileRow(name, "other", NOT_READ, "; ".join(skipped.get(name, ["not a recognised input"]))))
    return rows


def _dicom_row(name: str, study: Study, uses, problems: list[str] | None, folder: Path) -> FileRow:
    if problems:
        return FileRow(name, "DICOM", NOT_READ, "; ".join(problems))
    series = next((s for s in study.images if name in {relative(p, folder) for p in s.source_files}), None)
    if series is None:
        return FileRow(name, "DICOM", NOT_READ, "no image read from this file")
    what = " ".join(x for x in (series.modality, series.body_part, series.view_position) if x)
    use = next((u for u in uses if u.modality == "image" and series.series_uid and series.series_uid in u.source), None)
    if use is None:
        return FileRow(name, "DICOM", READ, what)
    return FileRow(name, "DICOM", USED if use.used else NOT_USED, use.reason)


def _record_row(
    name: str, study: Study, notes: list[InputUse], prediction: Prediction | None, vitals_used: bool
) -> FileRow:
    count = len(study.notes)
    counts = next((ref.detail for ref in study.provenance if ref.kind == "fhir"), "")
    holds_vitals = "Observation" in counts
    held = f"demographics, {count} note{'s' if count != 1 else ''}" + (", observations" if holds_vitals else "")
    if prediction is None:
        return FileRow(name, "FHIR record", READ, held)
    used = [u for u in notes if u.used]
    unused = [u for u in notes if not u.used]
    detail = f"{held}; notes used: {len(used)}"
    if unused:
        detail += "; not used: " + "; ".join(f"{u.source} ({u.reason})" for u in unused)
    if holds_vitals and vitals_used:
        detail += "; vital signs used"
    status = USED if used or (holds_vitals and vitals_used) else NOT_USED
    return FileRow(name, "FHIR record", status, detail)
