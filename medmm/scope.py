"""What a model was trained to read, and which parts of a study fall inside it.

A checkpoint carries its `InputScope` (part of the model config). Before a study reaches the
model, `select_inputs` keeps the parts inside the scope and says, for every image series, the
notes and the vital signs, whether it is used and why (or why not). A series outside the scope
(a CT slice, an ultrasound frame, a lateral view, a hand radiograph) is never read as a chest
radiograph; a study left with nothing the model can read gets no answer.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from medmm.codes import NOTE_TYPES
from medmm.records import ImageSeries, InputUse, Study

NO_INPUT = "nothing this model can read"


@dataclass(frozen=True)
class ImageScope:
    """The images the image encoder was trained on (default: chest projection radiographs)."""

    modalities: tuple[str, ...] = ("CR", "DX")
    """DICOM Modality values read as radiographs."""
    body_parts: tuple[str, ...] = ("CHEST",)
    """BodyPartExamined values accepted; a series that does not state one is read, and says so."""
    views: tuple[str, ...] = ("PA", "AP")
    """ViewPosition values accepted; a series that does not state one is read, and says so."""
    photometric: tuple[str, ...] = ("MONOCHROME1", "MONOCHROME2")
    """Photometric interpretations accepted (greyscale only)."""
    max_frames: int = 1
    """Frames a series may have."""
    field_of_view_mm: tuple[float, float] = (150.0, 650.0)
    """Plausible physical size of the image (rows x row spacing, columns x column spacing), in mm."""


@dataclass(frozen=True)
class NotesScope:
    """The notes the notes encoder was trained on."""

    types: tuple[str, ...] = tuple(NOTE_TYPES)
    """LOINC document types read; a note that states no type is read, and says so."""


@dataclass(frozen=True)
class InputScope:
    """What each encoder of a model was trained to read."""

    image: ImageScope = ImageScope()
    notes: NotesScope = NotesScope()

    def describe(self) -> list[str]:
        """Lines for the model card and the interface."""
        i, n = self.image, self.notes
        return [
            f"Images: {'/'.join(i.modalities)} projection radiographs, body part {'/'.join(i.body_parts)}, "
            f"view {'/'.join(i.views)}, greyscale ({'/'.join(i.photometric)}), at most {i.max_frames} frame(s), "
            f"{i.field_of_view_mm[0]:g}-{i.field_of_view_mm[1]:g} mm across; anything else is reported and not used.",
            f"Notes: document types {', '.join(n.types)} (LOINC); notes of other types are reported and not used.",
        ]


def _upper(value: str | None) -> str | None:
    return value.strip().upper() if value and value.strip() else None


def image_verdict(series: ImageSeries, scope: ImageScope) -> tuple[bool, str]:
    """(in scope, the reason): every way `series` differs from what the image encoder read."""
    problems, notes = [], []
    modality = _upper(series.modality) or "no modality"
    if modality not in scope.modalities:
        problems.append(f"modality {modality}, not a {'/'.join(scope.modalities)} projection radiograph")
    body = _upper(series.body_part)
    if body is None:
        notes.append("body part not stated")
    elif body not in scope.body_parts:
        problems.append(f"body part {body}, not {'/'.join(scope.body_parts)}")
    view = _upper(series.view_position)
    if view is None:
        notes.append("view not stated")
    elif view not in scope.views:
        problems.append(f"view {view}, not {'/'.join(scope.views)}")
    if series.photometric not in scope.photometric:
        problems.append(f"photometric interpretation {series.photometric}, not greyscale")
    frames = series.frame_count
    if frames > scope.max_frames:
        problems.append(f"{frames} frames (at most {scope.max_frames})")
    if series.spacing_assumed:
        notes.append("pixel spacing not stated")
    else:
        lo, hi = scope.field_of_view_mm
        rows, cols = series.pixels.shape[-3:-1] if series.is_colour else series.pixels.shape[-2:]
        size = (rows * series.spacing[-2], cols * series.spacing[-1])
        if not all(lo <= s <= hi for s in size):
            problems.append(f"{size[0]:.0f} x {size[1]:.0f} mm across, not {lo:g}-{hi:g} mm")
    if problems:
        return False, "; ".join(problems)
    described = f"{modality} {body or 'body part not stated'} {view or 'view not stated'}"
    return True, described + (f" ({', '.join(notes)}: read as a chest radiograph)" if notes else "")


def _series_label(series: ImageSeries) -> str:
    parts = [
        series.source_files[0] if series.source_files else "",
        f"(series {series.series_uid})" if series.series_uid else "",
    ]
    return " ".join(p for p in parts if p) or "image"


def select_inputs(
    study: Study, scope: InputScope, modalities: tuple[str, ...], vitals_steps: int | None = None
) -> tuple[Study, tuple[InputUse, ...]]:
    """The study as the model may read it, and a verdict for every input it holds.

    `modalities` are the model's encoders, `vitals_steps` the length of the vital-sign grid it
    reads. Out-of-scope images and notes are removed from the
    returned study; the first in-scope radiograph (PA before AP) is the one read, others are
    reported as not used.
    """
    uses: list[InputUse] = []
    images: list[ImageSeries] = []
    candidates = []
    for series in study.images:
        if "image" not in modalities:
            uses.append(InputUse("image", _series_label(series), False, "this model has no image encoder"))
            continue
        ok, reason = image_verdict(series, scope.image)
        if ok:
            candidates.append((series, reason))
        else:
            uses.append(InputUse("image", _series_label(series), False, reason))
    order = {v: k for k, v in enumerate(scope.image.views)}
    candidates.sort(key=lambda c: order.get(_upper(c[0].view_position) or "", len(order)))
    for k, (series, reason) in enumerate(candidates):
        if k == 0:
            images.append(series)
            uses.append(InputUse("image", _series_label(series), True, reason))
        else:
            uses.append(
                InputUse(
                    "image", _series_label(series), False, "another radiograph of this study is read (one per study)"
                )
            )

    notes = []
    for note in study.notes:
        label = note.source_id or "note"
        if "notes" not in modalities:
            uses.append(InputUse("notes", label, False, "this model has no notes encoder"))
        elif note.type_code and note.type_code not in scope.notes.types:
            uses.append(InputUse("notes", label, False, f"document type {note.type_code} is not one the model read"))
        elif not note.text.strip():
            uses.append(InputUse("notes", label, False, "no text"))
        else:
            notes.append(note)
            uses.append(InputUse("notes", label, True, note.type_code or "document type not stated"))

    vitals = study.vitals
    if vitals is not None:
        observed = int(vitals.mask.any(axis=1).sum())
        if "vitals" not in modalities:
            uses.append(InputUse("vitals", "vital signs", False, "this model has no vital-sign encoder"))
            vitals = None
        elif observed == 0:
            uses.append(InputUse("vitals", "vital signs", False, "no reading inside the window before the study time"))
        elif vitals_steps is not None and (
            vitals.values.shape[0] > vitals_steps if vitals.per_encounter else vitals.values.shape[0] != vitals_steps
        ):
            uses.append(
                InputUse(
                    "vitals",
                    "vital signs",
                    False,
                    f"grid of {vitals.values.shape[0]} steps, the model reads {vitals_steps}",
                )
            )
            vitals = None
        else:
            uses.append(
                InputUse("vitals", "vital signs", True, f"{observed} of {vitals.values.shape[0]} steps observed")
            )
    if "vitals" not in modalities:
        vitals = None
    kept = dataclasses.replace(study, images=tuple(images), notes=tuple(notes), vitals=vitals)
    return kept, tuple(uses)


def nothing_readable(uses: tuple[InputUse, ...]) -> str:
    """The answer for a study of which nothing is used: what there was and why each part is not read."""
    if not uses:
        return f"{NO_INPUT}: the input holds no image, note or vital sign"
    reasons = "; ".join(f"{u.modality} {u.source}: {u.reason}" for u in uses)
    return f"{NO_INPUT}: {reasons}"
