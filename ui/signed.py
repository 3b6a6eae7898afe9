"""Signed evidence for one diagnosis: integrated gradients per word of the notes and per hour of the vital signs.

medmm.explain keeps the positive part of integrated gradients (evidence for); the page also
shows evidence against (a pertinent negative such as "breath sounds equal"), so it takes the
signed attributions (`medmm.explain.integrated.integrated_gradients`) and sums each word's
token attributions itself, keeping the sign. Attention has no sign and is never given one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medmm.explain.mapping import kept_notes, word_scores
from medmm.records import Study

METHOD = "integrated gradients"


@dataclass(frozen=True)
class SignedWord:
    note: int  # index into the displayed study's notes
    start: int
    end: int
    value: float  # signed attribution to the diagnosis's logit (positive: for)
    read: bool


@dataclass(frozen=True)
class SignedEvidence:
    """Signed attributions of one diagnosis; `delta` is integrated gradients' completeness gap."""

    target: str
    words: tuple[SignedWord, ...]
    notes_read: tuple[int, ...]  # indices into the displayed study's notes that the model read
    vitals: np.ndarray | None  # (T, C) in the model's channel order, 0 where unobserved
    channels: tuple[str, ...]
    delta: float

    @property
    def top(self) -> float:
        """The largest absolute word attribution (0 when none)."""
        return max((abs(w.value) for w in self.words if w.read), default=0.0)


def signed_evidence(predictor, study: Study, diagnosis: str, *, n_steps: int | None = None) -> SignedEvidence | None:
    """Signed integrated gradients of `diagnosis` for the parts of `study` the model reads; None without notes or vital signs."""
    from medmm.explain.capture import diagnosis_target
    from medmm.explain.integrated import DEFAULT_STEPS, integrated_gradients

    model = predictor.model
    readable, _ = predictor.select(study)
    with predictor.lock:
        batch = predictor.batch([study])
        result = integrated_gradients(
            model, batch, diagnosis_target(model, diagnosis), n_steps=n_steps or DEFAULT_STEPS
        )
    if result is None:
        return None
    words: list[SignedWord] = []
    shown: list[int] = []
    if "notes" in result.maps:
        valid = (batch["notes_attention"][0].bool() & batch["notes_present"][0].bool()[:, None]).cpu().numpy()  # (M, L)
        offsets = batch["notes_offsets"][0].cpu().numpy()  # (M, L, 2)
        for slot, index in enumerate(kept_notes(readable, model.config.preprocess.max_notes)):
            note = readable.notes[index]
            where = next((i for i, n in enumerate(study.notes) if n is note), None)
            if where is None:
                continue
            shown.append(where)
            words += _note_words(note.text, result.maps["notes"][slot], offsets[slot], valid[slot], where)
    vitals = result.maps.get("vitals")
    return SignedEvidence(
        diagnosis,
        tuple(words),
        tuple(shown),
        None if vitals is None else np.asarray(vitals, dtype=np.float64),
        tuple(predictor.task.channel_names),
        result.delta,
    )


def _note_words(text: str, grid: np.ndarray, offsets: np.ndarray, valid: np.ndarray, note: int) -> list[SignedWord]:
    """Each word's summed signed token attribution; words after the last token read are marked unread."""
    spans, scores, read_until = word_scores(text, grid, offsets, valid)
    return [SignedWord(note, s, e, float(scores[w]), s < read_until) for w, (s, e) in enumerate(spans)]
