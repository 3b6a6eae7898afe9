"""Typed records: the one language every layer of medmm speaks.

All records are frozen dataclasses. Every modality of a :class:`Study` is optional: a study
with no image, no note or no vital sign is normal and still gets a prediction. Library
objects (pydicom datasets, fhir.resources models) never appear here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Mapping

import numpy as np


@dataclass(frozen=True)
class Issue:
    """A warning found while reading input: what was skipped, dropped or assumed, and where.

    `source` is the file, `where` the entry/tag/row inside it. No patient values appear here.
    """

    source: str
    where: str
    message: str
    kind: str = "warning"  # "warning" | "skipped" | "dropped"

    def __str__(self) -> str:
        return f"{self.source}: {self.where}: {self.message}" if self.where else f"{self.source}: {self.message}"


@dataclass(frozen=True)
class Demographics:
    patient_id: str  # pseudonymous identifier, never a name or MRN in de-identified data
    sex: str | None = None  # FHIR administrative gender: female | male | other | unknown
    age_years: float | None = None  # age at the study time
    birth_date: str | None = None  # ISO date as given (kept for re-computing age)
    race: str | None = None  # OMB category code (e.g. 2106-3)
    ethnicity: str | None = None  # OMB ethnicity code (2135-2 / 2186-5)
    birth_sex: str | None = None  # US Core birth sex: F | M | UNK
    extra: Mapping[str, str] = field(default_factory=dict)  # other audit attributes


@dataclass(frozen=True)
class ImagePatient:
    """The patient attributes an image's DICOM header states (as given; empty ones are None)."""

    patient_id: str | None = None  # PatientID
    sex: str | None = None  # PatientSex: M | F | O
    age: str | None = None  # PatientAge as stored, e.g. "087Y"
    birth_date: str | None = None  # PatientBirthDate as an ISO date


@dataclass(frozen=True)
class ImageSeries:
    """One DICOM series as pixels in physical units.

    `pixels` is float32, shape (H, W) for a 2D image, (S, H, W) for a volume or multi-frame,
    with a trailing channel axis (..., 3) for colour. The modality LUT is applied (HU for CT);
    MONOCHROME1 is inverted so that higher always means brighter.
    """

    pixels: np.ndarray
    spacing: tuple[float, ...]  # mm per pixel axis, in the order of `pixels` (slice axis first)
    modality: str  # CR | DX | CT | MR | ...
    series_uid: str
    study_uid: str = ""
    sop_uids: tuple[str, ...] = ()
    orientation: tuple[float, ...] | None = None  # ImageOrientationPatient (6 direction cosines)
    origin: tuple[float, ...] | None = None  # ImagePositionPatient of the first slice
    body_part: str | None = None
    view_position: str | None = None  # PA | AP | LAT | ...
    photometric: str = "MONOCHROME2"  # as stored in the file
    inverted: bool = False  # True when MONOCHROME1 was inverted
    window: tuple[float, float] | None = None  # (center, width) for display, in output units
    rescale: tuple[float, float] = (1.0, 0.0)  # (slope, intercept) applied
    bits_stored: int | None = None
    transfer_syntax: str | None = None
    description: str | None = None
    acquired: datetime | None = None
    source_files: tuple[str, ...] = ()
    spacing_assumed: bool = False  # no pixel spacing in the file: 1.0 mm was assumed
    patient: ImagePatient | None = None  # who the files say the image is of

    @property
    def frame_count(self) -> int:
        """Frames (or slices) in the series: 1 for a single 2D image."""
        spatial = self.pixels.ndim - (1 if self.is_colour else 0)
        return int(self.pixels.shape[0]) if spatial == 3 else 1

    @property
    def is_volume(self) -> bool:
        grey = self.pixels.ndim == 3 and not self.is_colour
        return grey or self.pixels.ndim == 4

    @property
    def is_colour(self) -> bool:
        return (
            self.pixels.shape[-1] == 3
            and self.pixels.ndim in (3, 4)
            and self.photometric
            not in (
                "MONOCHROME1",
                "MONOCHROME2",
            )
        )


@dataclass(frozen=True)
class ClinicalNote:
    text: str
    time: datetime | None = None
    type_code: str | None = None  # LOINC document type (e.g. 11506-3 progress note)
    type_display: str | None = None
    source_id: str | None = None  # resource reference, e.g. DocumentReference/abc


@dataclass(frozen=True)
class VitalReading:
    """One raw measurement before gridding, already in the channel's canonical unit."""

    time: datetime
    channel: str  # medmm channel name (medmm.codes.VITAL_NAMES)
    value: float
    unit: str  # canonical UCUM unit after conversion
    source: str = ""  # file and entry/row it came from
    step: datetime | None = None  # start of the encounter the reading belongs to (grids with one step per encounter)


@dataclass(frozen=True)
class DroppedValue:
    """A measurement removed from the grid, and why (never silently)."""

    channel: str
    time: datetime | None
    reason: str  # e.g. "implausible: above 300 /min", "unknown unit"
    source: str = ""


@dataclass(frozen=True)
class VitalSeries:
    """Vital signs on a time grid ending at the study time.

    values[t, c] is the mean of the readings of channel c in step t (NaN when none), mask is
    True where observed. On a regular grid the time of step t is start + t * step (the step's
    left edge); on a grid of one step per encounter, `step_times` holds each encounter's start
    (then `start` is the first of them, or the window's start without any, and `step_seconds` 0).
    """

    start: datetime
    step_seconds: float
    channels: tuple[str, ...]
    units: tuple[str, ...]
    values: np.ndarray  # (T, C) float32, NaN where unobserved
    mask: np.ndarray  # (T, C) bool
    dropped: tuple[DroppedValue, ...] = ()
    step_times: tuple[datetime, ...] | None = None  # per-encounter grids: each step's encounter start

    @property
    def per_encounter(self) -> bool:
        return self.step_times is not None

    @property
    def times(self) -> tuple[datetime, ...]:
        """Each step's time: its left edge (regular grid) or its encounter's start."""
        if self.step_times is not None:
            return self.step_times
        return tuple(self.start + timedelta(seconds=t * self.step_seconds) for t in range(self.values.shape[0]))

    def step_span(self) -> timedelta:
        """How wide a step is drawn: the step (regular grid), or half the smallest gap between
        encounters (at least an hour; an hour with fewer than two)."""
        if self.step_times is None:
            return timedelta(seconds=self.step_seconds)
        gaps = [b - a for a, b in zip(self.step_times, self.step_times[1:]) if b > a]
        return max(min(gaps) / 2, timedelta(hours=1)) if gaps else timedelta(hours=1)

    @property
    def hours(self) -> np.ndarray:
        """Each step's time, in hours from `start`."""
        if self.step_times is not None:
            return np.array([(t - self.start).total_seconds() / 3600.0 for t in self.step_times], dtype=np.float64)
        return np.arange(self.values.shape[0], dtype=np.float64) * self.step_seconds / 3600.0


@dataclass(frozen=True)
class Label:
    """A known diagnosis (Condition) of the study, mapped to medmm's vocabulary when possible."""

    code: str
    system: str
    display: str | None = None
    name: str | None = None  # medmm diagnosis name (medmm.codes.DIAGNOSIS_NAMES) or None
    onset: datetime | None = None
    status: str | None = None  # clinical status (active, resolved, ...)
    codings: tuple[
        tuple[str, str], ...
    ] = ()  # every (system, code) of Condition.code; a task's value sets match any of them


@dataclass(frozen=True)
class SourceRef:
    """Where a part of a study came from."""

    path: str
    kind: str  # dicom | fhir | vitals | manifest
    detail: str = ""  # e.g. series UID, resource counts


@dataclass(frozen=True)
class Study:
    """One patient at one time point. Every modality is optional."""

    study_id: str
    demographics: Demographics | None = None
    images: tuple[ImageSeries, ...] = ()
    notes: tuple[ClinicalNote, ...] = ()
    vitals: VitalSeries | None = None
    labels: tuple[Label, ...] | None = None  # None: unknown; () known to have none
    time: datetime | None = None  # the study time (reference for age and the vitals window)
    time_source: str | None = None  # how the study time was chosen (given, image acquisition, latest data ...)
    provenance: tuple[SourceRef, ...] = ()
    warnings: tuple[Issue, ...] = ()

    @property
    def modalities(self) -> tuple[str, ...]:
        """Present modalities, in medmm's fixed order (image, notes, vitals)."""
        present = []
        if self.images:
            present.append("image")
        if self.notes:
            present.append("notes")
        if self.vitals is not None and bool(self.vitals.mask.any()):
            present.append("vitals")
        return tuple(present)

    @property
    def label_names(self) -> tuple[str, ...]:
        """medmm diagnosis names among the labels (empty when unknown or none)."""
        return tuple(sorted({lab.name for lab in self.labels or () if lab.name}))


MODALITIES: tuple[str, ...] = ("image", "notes", "vitals")


@dataclass(frozen=True)
class InputUse:
    """Whether one input of a study reached the model, and why (or why not)."""

    modality: str  # image | notes | vitals
    source: str  # the file and series, the note's resource, or "vital signs"
    used: bool
    reason: str  # what it is when used; why not otherwise


@dataclass(frozen=True)
class DiagnosisScore:
    name: str  # medmm diagnosis name
    display: str
    probability: float  # calibrated when the model carries a fitted temperature
    in_set: bool  # member of the conformal prediction set


@dataclass(frozen=True)
class Claim:
    """One thing a generated text states (a finding, a diagnosis, a statement), checked against the study.

    Kept claims are `supported`; a claim the data contradict, or that nothing in the study supports,
    is removed from the text and kept here with the reason, so that outputs can show what was withheld.
    """

    text: str  # the words as stated, e.g. "fever", "ankle oedema", "heart failure"
    kind: str  # vitals | notes | image | diagnosis | statement
    diagnosis: str | None  # the diagnosis the words were stated for (medmm name), when any
    verdict: str  # supported | contradicted | unsupported
    reason: str  # the data behind the verdict (values and times, the note sentence, the score and threshold)


@dataclass(frozen=True)
class Prediction:
    """What the model says about one study."""

    study_id: str
    scores: tuple[DiagnosisScore, ...]  # ranked, most probable first
    conformal_set: tuple[str, ...]  # diagnoses the model cannot rule out at the target coverage
    coverage_target: float | None  # e.g. 0.9; None when the model has no conformal calibration
    impression: str
    present: tuple[str, ...]  # modalities the prediction used
    missing: tuple[str, ...]  # modalities absent from the study
    model_id: str  # checksum-derived identifier of the exact weights
    model_version: str
    calibrated: bool  # probabilities passed through a fitted temperature
    seconds: float
    warnings: tuple[str, ...] = ()
    inputs: tuple[InputUse, ...] = ()  # every input of the study, used or not, with the reason
    answered: bool = True  # False: nothing the model can read; no scores, set or impression
    refusal: str = ""  # why there is no answer, when answered is False
    study_time: datetime | None = None
    time_source: str | None = None
    claims: tuple[Claim, ...] = ()  # what the impression states, each supported by the study
    removed_claims: tuple[Claim, ...] = ()  # what the generated impression stated and the check withheld, with why

    def probability(self, name: str) -> float:
        return next(s.probability for s in self.scores if s.name == name)


@dataclass(frozen=True)
class Answer:
    """The answer to one question about a study, composed from its data and the prediction."""

    question: str
    kind: str  # likelihood | support | against | differential | vital | notes | image | inputs | advice | unknown; none: nothing readable
    text: str
    answered: bool = True  # False: nothing the model can read, or a question outside what can be answered
    claims: tuple[Claim, ...] = ()  # the findings the answer states, each with the data behind it
