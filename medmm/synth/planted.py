"""The planted ground truth of a synthetic patient (truth.json and its mask archive), read back as typed records
(medmm.synth.truth writes them); explanations, image pretraining and training targets read them here.

Positions are put in the study's own terms: lesion masks on the original pixel grid, the vitals
window as absolute times, note spans as indices into Study.notes (matched through the note's
resource reference, so note order never matters).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Mapping

import numpy as np

from medmm.errors import CohortError
from medmm.records import Study

TRUTH_FILE = "truth.json"


@dataclass(frozen=True)
class PlantedSpan:
    """A planted phrase in a note: characters [start, end) of Study.notes[note]."""

    note: int
    start: int
    end: int
    diagnosis: str
    kind: str  # evidence | negated | hedged | historical


@dataclass(frozen=True)
class PlantedWindow:
    """The time window [start, end) in which a diagnosis's signal was planted, and its channels."""

    start: datetime
    end: datetime
    channels: tuple[str, ...]


@dataclass(frozen=True)
class PlantedEvidence:
    """Where one diagnosis's evidence was planted, per modality (None where it was not)."""

    diagnosis: str
    lesion: np.ndarray | None  # (H, W) bool on the original pixel grid of the radiograph
    window: PlantedWindow | None
    spans: tuple[PlantedSpan, ...]


@dataclass(frozen=True)
class GroundTruth:
    labels: tuple[str, ...]
    evidence: Mapping[str, PlantedEvidence]
    distractors: tuple[PlantedSpan, ...]  # negated, hedged and historical mentions (not evidence)
    unmatched_spans: int = 0  # planted spans whose note is not among the study's notes


def _time(value, path: Path, where: str) -> datetime:
    """An ISO 8601 time; a time without offset is taken as UTC, as everywhere in medmm."""
    try:
        when = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise CohortError("expected an ISO 8601 time", path=path, where=where) from exc
    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)


def read_ground_truth(folder: str | Path, study: Study) -> GroundTruth | None:
    """The planted truth of the patient in `folder`, aligned with `study`; None when there is no truth.json."""
    folder = Path(folder)
    path = folder / TRUTH_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        labels = tuple(str(x) for x in data["labels"])
        evidence_in = data["evidence"]
        notes_in = data.get("notes") or []
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CohortError(
            "expected a JSON truth record with labels, evidence and notes", path=path, where="top level"
        ) from exc
    by_reference = {n.source_id: i for i, n in enumerate(study.notes) if n.source_id}
    note_index = {int(n["index"]): by_reference.get(n.get("reference")) for n in notes_in}
    unmatched = 0
    masks: dict[str, dict[str, np.ndarray]] = {}

    def spans(items, diagnosis: str | None, kind: str | None) -> tuple[PlantedSpan, ...]:
        nonlocal unmatched
        out = []
        for s in items or ():
            note = note_index.get(int(s["note"]))
            if note is None:
                unmatched += 1
                continue
            out.append(
                PlantedSpan(
                    note, int(s["start"]), int(s["end"]), diagnosis or str(s["diagnosis"]), kind or str(s["kind"])
                )
            )
        return tuple(out)

    evidence = {}
    grid_start = data.get("vitals", {}) or {}
    for name, entry in evidence_in.items():
        where = f"evidence.{name}"
        lesion = None
        if entry.get("image"):
            image = entry["image"]
            lesion = _mask(folder, image["mask_file"], image["mask_key"], masks, f"{where}.image")
        window = None
        if entry.get("vitals"):
            v = entry["vitals"]
            if "grid_start" not in grid_start:
                raise CohortError("expected vitals.grid_start for a planted vitals window", path=path, where=where)
            origin = _time(grid_start["grid_start"], path, "vitals.grid_start")
            window = PlantedWindow(
                origin + timedelta(hours=float(v["start_hour"])),
                origin + timedelta(hours=float(v["end_hour"])),
                tuple(str(c) for c in v["channels"]),
            )
        note_spans = spans((entry.get("notes") or {}).get("spans"), name, "evidence")
        evidence[name] = PlantedEvidence(name, lesion, window, note_spans)
    distractors = spans((data.get("distractors") or {}).get("notes"), None, None)
    return GroundTruth(labels, evidence, distractors, unmatched)


def read_lesions(folder: str | Path) -> dict[str, np.ndarray]:
    """Diagnosis -> lesion mask (H, W) bool on the radiograph's pixel grid, for each diagnosis drawn into the image."""
    folder = Path(folder)
    path = folder / TRUTH_FILE
    try:
        evidence = json.loads(path.read_text(encoding="utf-8"))["evidence"]
        images = {str(name): entry["image"] for name, entry in evidence.items() if entry.get("image")}
        keys = {name: (str(image["mask_file"]), str(image["mask_key"])) for name, image in images.items()}
    except (OSError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise CohortError(
            "expected a JSON truth record whose image evidence names a mask file and key", path=path, where="evidence"
        ) from exc
    masks: dict[str, dict[str, np.ndarray]] = {}
    return {name: _mask(folder, file, key, masks, f"evidence.{name}.image") for name, (file, key) in keys.items()}


def _mask(folder: Path, file: str, key: str, cache: dict, where: str) -> np.ndarray:
    path = folder / file
    if not path.is_file():
        raise CohortError("the lesion mask archive named in truth.json is missing", path=path, where=where)
    if file not in cache:
        with np.load(path, allow_pickle=False) as archive:
            cache[file] = {k: archive[k] for k in archive.files}
    if key not in cache[file]:
        raise CohortError(f"the archive has no mask {key!r}", path=path, where=where)
    return cache[file][key].astype(bool)
