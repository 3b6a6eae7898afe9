"""Token relevance mapped back onto the inputs: pixels, the vital-sign time axis, words of the notes.

- Image: the token grid (one cell per feature-map cell) is upsampled linearly (bilinear, or
  trilinear for volumes, which gives a map per slice) onto the original pixel grid of the
  series the model read. The preprocessed image is the whole original resized, so the grid
  spans the whole original image.
- Vital signs: the model's grid is the study's own grid (same start, step and steps), so
  relevance per (step, channel) is reported on that time axis, in medmm's channel order.
- Notes: each kept note's token relevance is summed into the words (runs of letters and digits,
  with inner apostrophes or hyphens) its character offsets fall in; special tokens and
  punctuation belong to no word. Words after the token limit were not read and get 0.

Every map is >= 0 and sums to 1 over its support (pixels, observed cells, words read).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from medmm.errors import ConfigError
from medmm.records import ImageSeries, Study
from medmm.transforms.study import primary_radiograph

_WORD = re.compile(r"[^\W_]+(?:['\u2019-][^\W_]+)*")


@dataclass(frozen=True)
class ImageMap:
    """Relevance on the original pixel grid of the series the model read."""

    relevance: np.ndarray  # (H, W), or (S, H, W) for a volume; >= 0, sums to 1
    grid: np.ndarray  # the token-level map it was upsampled from; sums to 1
    series_uid: str


@dataclass(frozen=True)
class VitalsMap:
    """Relevance per time step and channel on the study's vital-sign grid."""

    start: datetime  # left edge of step 0
    step_seconds: float
    channels: tuple[str, ...]  # medmm channel names (the model's order)
    relevance: np.ndarray  # (T, C) >= 0, 0 where unobserved, sums to 1
    observed: np.ndarray  # (T, C) bool
    step_times: tuple[datetime, ...] | None = None  # a grid of one step per encounter: each encounter's start

    @property
    def times(self) -> tuple[datetime, ...]:
        """Left edge of each step (its encounter's start on a per-encounter grid)."""
        if self.step_times is not None:
            return self.step_times
        return tuple(self.start + timedelta(seconds=t * self.step_seconds) for t in range(self.relevance.shape[0]))

    @property
    def hours(self) -> np.ndarray:
        """Left edge of each step in hours from `start`."""
        if self.step_times is not None:
            return np.array([(t - self.start).total_seconds() / 3600.0 for t in self.step_times], dtype=np.float64)
        return np.arange(self.relevance.shape[0], dtype=np.float64) * self.step_seconds / 3600.0


@dataclass(frozen=True)
class WordRelevance:
    """One word of a note: where it is in the note's text, and its relevance."""

    note: int  # index into Study.notes
    start: int  # character offsets [start, end) in that note's text
    end: int
    relevance: float
    read: bool  # False for words wholly after the token limit (the model never saw them)


@dataclass(frozen=True)
class NotesMap:
    """Relevance per word of the notes the model read (the newest `max_notes`)."""

    words: tuple[WordRelevance, ...]  # in note order, then text order; relevance of read words sums to 1
    notes: tuple[int, ...]  # indices into Study.notes of the notes the model read

    def for_note(self, note: int) -> tuple[WordRelevance, ...]:
        return tuple(w for w in self.words if w.note == note)


@dataclass(frozen=True)
class Explanation:
    """One explanation of one target by one method, mapped onto the study's inputs.

    A modality the model did not read for this study has None, never a map of zeros.
    """

    target: str  # diagnosis name or "impression"
    method: str  # attention | rollout | gradcam | integrated_gradients
    probability: float | None  # the diagnosis's probability (None for the impression)
    image: ImageMap | None
    vitals: VitalsMap | None
    notes: NotesMap | None
    share: Mapping[str, float]  # modality -> share of latent relevance ({} for gradient methods)


# -- image -------------------------------------------------------------------------------------


def model_series(study: Study) -> ImageSeries | None:
    """The series the model reads (the primary radiograph), or None."""
    return primary_radiograph(study)


def model_pixels(series: ImageSeries) -> np.ndarray:
    """The 2D frame of `series` the model reads (colour averaged, middle frame of a multi-frame)."""
    pixels = series.pixels
    if series.is_colour:
        pixels = pixels.mean(axis=-1)
    if pixels.ndim == 3:
        pixels = pixels[pixels.shape[0] // 2]
    return pixels.astype(np.float32)


def upsample(grid: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """A token grid (2D or 3D) linearly interpolated onto `shape` (same rank), clipped at 0, summing to 1."""
    if grid.ndim not in (2, 3) or len(shape) != grid.ndim:
        raise ConfigError(f"cannot map a {grid.ndim}-D grid onto a {len(shape)}-D image", where="image relevance")
    mode = "bilinear" if grid.ndim == 2 else "trilinear"
    x = torch.as_tensor(np.asarray(grid, dtype=np.float64))[None, None]  # (1, 1, *grid)
    up = F.interpolate(x, size=tuple(int(s) for s in shape), mode=mode, align_corners=False)[0, 0].numpy()  # (*shape)
    up = np.clip(up, 0.0, None)
    total = up.sum()
    return up / total if total > 0 else np.full(up.shape, 1.0 / up.size)


def image_map(study: Study, grid: np.ndarray) -> ImageMap:
    """The image token map of `study` on its original pixel grid."""
    series = model_series(study)
    if series is None:
        raise ConfigError("the study has no image the model reads", where="image relevance")
    return ImageMap(upsample(grid, model_pixels(series).shape), np.asarray(grid, dtype=np.float64), series.series_uid)


# -- vital signs -------------------------------------------------------------------------------


def vitals_map(study: Study, grid: np.ndarray, observed: np.ndarray, channels: Sequence[str]) -> VitalsMap:
    """The vitals token map (T, C) of `study` on its time axis; `channels` names the model's columns."""
    vitals = study.vitals
    if vitals is None or vitals.values.shape[0] != grid.shape[0]:
        raise ConfigError("the study's vital-sign grid does not match the model's", where="vitals relevance")
    return VitalsMap(
        vitals.start,
        float(vitals.step_seconds),
        tuple(channels),
        np.asarray(grid, dtype=np.float64),
        observed.astype(bool),
        vitals.step_times,
    )


# -- notes -------------------------------------------------------------------------------------


def word_spans(text: str) -> list[tuple[int, int]]:
    """Character spans [start, end) of the words of `text`."""
    return [m.span() for m in _WORD.finditer(text)]


def kept_notes(study: Study, max_notes: int) -> tuple[int, ...]:
    """Indices into Study.notes of the notes the model reads: the newest `max_notes`."""
    n = len(study.notes)
    return tuple(range(max(0, n - max_notes), n))


def word_scores(
    text: str, grid: np.ndarray, offsets: np.ndarray, valid: np.ndarray
) -> tuple[list[tuple[int, int]], np.ndarray, int]:
    """(word spans, each word's summed token relevance, end of the text read) of one note, from its token
    relevance `grid` (L,), character `offsets` (L, 2) and `valid` (L,); special tokens (empty spans) skipped."""
    spans = word_spans(text)
    owner = np.full(len(text) + 1, -1, dtype=np.int64)  # character -> word number
    for w, (s, e) in enumerate(spans):
        owner[s:e] = w
    scores = np.zeros(len(spans), dtype=np.float64)
    read_until = 0
    for t in np.flatnonzero(valid):
        s, e = (int(v) for v in offsets[t])
        if e <= s:
            continue  # a special token
        read_until = max(read_until, e)
        w = owner[min(s, len(text))]
        if w >= 0:
            scores[w] += float(grid[t])
    return spans, scores, read_until


def notes_map(study: Study, grid: np.ndarray, offsets: np.ndarray, valid: np.ndarray, max_notes: int) -> NotesMap:
    """Word relevance from token relevance `grid` (M, L) with character `offsets` (M, L, 2) and `valid` (M, L)."""
    kept = kept_notes(study, max_notes)
    words: list[tuple[int, int, int, float, bool]] = []
    for slot, index in enumerate(kept):
        spans, scores, read_until = word_scores(study.notes[index].text, grid[slot], offsets[slot], valid[slot])
        words += [(index, s, e, float(scores[w]), s < read_until) for w, (s, e) in enumerate(spans)]
    total = sum(w[3] for w in words)
    read = sum(1 for w in words if w[4])
    out = []
    for index, s, e, score, was_read in words:
        value = score / total if total > 0 else (1.0 / read if was_read else 0.0)
        out.append(WordRelevance(index, s, e, value, was_read))
    return NotesMap(tuple(out), kept)
