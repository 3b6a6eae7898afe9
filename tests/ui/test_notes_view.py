"""Notes with signed marks (integrated gradients) or unsigned ones (attention), each with a legend; the signed words themselves."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import numpy as np
import pytest

from medmm.explain.capture import diagnosis_target
from medmm.explain.integrated import integrated_gradients
from medmm.explain.mapping import NotesMap, WordRelevance, kept_notes, word_spans
from medmm.records import ClinicalNote, Study
from tests.ui.conftest import full_patient
from ui.localtime import zone_named
from ui.notes_view import notes_evidence
from ui.signed import SignedEvidence, SignedWord, signed_evidence

TEXT = "<b>Crackles</b> at the left base; breath sounds equal."
UTC = zone_named("UTC")


def study() -> Study:
    return Study(
        "P",
        notes=(ClinicalNote(TEXT, time=datetime(2024, 1, 2, 3, 4, tzinfo=timezone.utc), type_display="Progress note"),),
    )


def word(text: str, value: float, read: bool = True) -> SignedWord:
    start = TEXT.index(text)
    return SignedWord(0, start, start + len(text), value, read)


def test_signed_words_are_marked_for_and_against_with_a_legend():
    evidence = SignedEvidence(
        "pneumonia", (word("Crackles", 0.8), word("equal", -0.4), word("left", 0.001)), (0,), None, (), 0.0
    )
    page = notes_evidence(study(), UTC, "Pneumonia", signed=evidence)
    assert "&lt;b&gt;" in page and "<b>" not in page  # note text escaped
    assert re.search(
        r'<mark class="medmm-for"[^>]*title="supports Pneumonia \(100% of the strongest word\)"[^>]*>Crackles</mark>',
        page,
    )
    assert re.search(
        r'<mark class="medmm-against"[^>]*title="argues against Pneumonia \(50% of the strongest word\)"[^>]*>equal</mark>',
        page,
    )
    assert ">left</mark>" not in page  # 0.1% of the strongest: unmarked
    assert "supports</mark>" in page and "argues against</mark>" in page and "signed contribution" in page  # the legend
    assert "Progress note \u00b7 2024-01-02 03:04" in page


def test_attention_marks_carry_no_sign_and_the_legend_says_so():
    start = TEXT.index("equal")
    attention = NotesMap((WordRelevance(0, start, start + 5, 1.0, True),), (0,))
    page = notes_evidence(
        study(), UTC, "Pneumonia", attention=attention, attention_method="attention (gradient-weighted)"
    )
    assert (
        'class="medmm-attended"' in page and "medmm-for" not in page and "medmm-against" not in page.split("</p>", 1)[1]
    )
    assert "It has no sign" in page
    plain = notes_evidence(study(), UTC, "Pneumonia")
    assert "<mark" not in plain and "No word relevance" in plain
    assert "No clinical notes" in notes_evidence(Study("P"), UTC, "x")


@pytest.mark.slow
def test_signed_words_sum_the_signed_token_attributions_of_integrated_gradients(ui_predictor, small_cohort):
    from medmm.io import load_study

    pre = ui_predictor.model.config.preprocess
    case = load_study(full_patient(small_cohort), window_hours=pre.window_hours, step_minutes=pre.step_minutes)
    target = ui_predictor.model.config.diagnoses[0]
    evidence = signed_evidence(ui_predictor, case, target)
    batch = ui_predictor.batch([case])
    raw = integrated_gradients(ui_predictor.model, batch, diagnosis_target(ui_predictor.model, target)).maps[
        "notes"
    ]  # (M, L) signed
    kept = kept_notes(ui_predictor.select(case)[0], pre.max_notes)
    assert evidence.notes_read == kept  # every note is in scope here, so indices agree
    slot, index = 0, kept[0]
    offsets = batch["notes_offsets"][0, slot].numpy()
    valid = (batch["notes_attention"][0, slot].bool() & batch["notes_present"][0, slot].bool()).numpy()
    spans = word_spans(case.notes[index].text)
    want = []
    for start, end in spans:
        inside = [t for t in np.flatnonzero(valid) if offsets[t][1] > offsets[t][0] and start <= offsets[t][0] < end]
        want.append(float(sum(raw[slot, t] for t in inside)))
    got = [w.value for w in evidence.words if w.note == index]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-9)  # summed with their signs: nothing clipped at 0
    assert evidence.vitals is not None and evidence.vitals.shape == case.vitals.values.shape
