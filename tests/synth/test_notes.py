from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta

import numpy as np
import pytest

from medmm.codes import NOTE_TYPES, RACES
from medmm.synth import SynthConfig
from medmm.synth.diagnoses import DIAGNOSIS_NAMES
from medmm.synth.notes import compose_notes
from medmm.synth.phrases import EVIDENCE, HEDGES, HISTORY, NEGATIONS
from medmm.synth.plan import draw_plan

CONFIG = SynthConfig(patients=300, seed=1, workers=1)
NEGATION_OF = {phrase: conflicts for phrase, conflicts in NEGATIONS}


def plan_with(index: int, labels: tuple[str, ...], evidence: dict | None = None, removed: tuple[str, ...] = ()):
    base = draw_plan(CONFIG, index, "train")
    ev = evidence if evidence is not None else {d: ("notes",) for d in labels}
    return replace(
        base,
        labels=labels,
        present=("image", "notes", "vitals"),
        evidence=ev,
        strength={d: 0.9 for d in labels},
        evidence_removed=removed,
    )


def _same(a: str, b: str) -> bool:
    return a.lower() == b.lower()


@pytest.mark.parametrize("seed", range(25))
def test_every_span_slices_to_its_planted_phrase(seed):
    labels = (DIAGNOSIS_NAMES[seed % 5],) if seed % 3 else ()
    notes = compose_notes(np.random.default_rng(seed), plan_with(seed, labels))
    assert 1 <= len(notes) <= 3
    for i, note in enumerate(notes):
        for span in note.spans:
            assert span.note == i
            assert note.text[span.start : span.end] == span.text
            if span.kind == "evidence":
                bank = [p for p, _ in EVIDENCE[span.diagnosis]]
            elif span.kind == "negated":
                bank = [p for p, c in NEGATIONS if c[0] == span.diagnosis]
            elif span.kind == "hedged":
                bank = list(HEDGES[span.diagnosis])
            else:
                assert span.kind == "historical"
                bank = list(HISTORY[span.diagnosis])
            assert any(_same(span.text, p) for p in bank)


@pytest.mark.parametrize("d", DIAGNOSIS_NAMES)
def test_evidence_appears_for_the_planted_diagnosis_only(d):
    for seed in range(10):
        notes = compose_notes(np.random.default_rng(seed), plan_with(seed, (d,)))
        evidence = [s for n in notes for s in n.spans if s.kind == "evidence"]
        assert evidence and {s.diagnosis for s in evidence} == {d}


def test_no_evidence_in_notes_when_it_lives_elsewhere_and_no_contradiction():
    for seed in range(30):
        plan = plan_with(seed, ("pneumonia", "sepsis"), evidence={"pneumonia": ("image",), "sepsis": ("vitals",)})
        notes = compose_notes(np.random.default_rng(seed), plan)
        spans = [s for n in notes for s in n.spans]
        assert not [s for s in spans if s.kind == "evidence"]
        for s in spans:  # a recorded diagnosis is never denied, not even indirectly
            if s.kind == "negated":
                assert s.diagnosis not in plan.labels
                assert not set(NEGATION_OF[s.text[0].lower() + s.text[1:]]) & set(plan.labels)


def test_distractor_kinds_all_occur_and_hedges_stay_a_minority():
    kinds = {"negated": 0, "hedged": 0, "historical": 0}
    n_notes = 0
    for seed in range(200):
        notes = compose_notes(np.random.default_rng(seed), plan_with(seed, ()))
        n_notes += len(notes)
        for s in (s for n in notes for s in n.spans):
            kinds[s.kind] += 1
    assert all(v > 0 for v in kinds.values())
    assert kinds["hedged"] < 0.25 * n_notes and kinds["hedged"] < kinds["negated"]


def test_label_noise_victims_read_like_negatives():
    plan = plan_with(0, ("pneumonia",), evidence={"pneumonia": ()}, removed=("pneumonia",))
    seen_negation = False
    for seed in range(60):
        spans = [s for n in compose_notes(np.random.default_rng(seed), plan) for s in n.spans]
        assert not [s for s in spans if s.kind == "evidence"]
        seen_negation |= any(s.diagnosis == "pneumonia" and s.kind == "negated" for s in spans)
    assert seen_negation


def test_note_types_times_and_text_are_demographics_free():
    banned = re.compile(r"\b(he|she|his|her|male|female|man|woman|year-old|years old|mr|mrs|ms)\b", re.I)
    types = set()
    for seed in range(120):
        plan = plan_with(seed, (DIAGNOSIS_NAMES[seed % 5],))
        notes = compose_notes(np.random.default_rng(seed), plan)
        assert [n.time for n in notes] == sorted(n.time for n in notes)
        for n in notes:
            types.add(n.type_code)
            assert n.type_code in NOTE_TYPES
            assert plan.study_time - timedelta(hours=48) < n.time < plan.study_time
            assert n.resource in ("DocumentReference", "DiagnosticReport")
            assert not banned.search(n.text)
            assert plan.patient_id not in n.text and str(plan.age_years) not in n.text.split()
            assert not any(name.lower() in n.text.lower() for name in RACES.values())
    assert types == set(NOTE_TYPES)


def test_hedges_and_history_also_appear_for_positives_without_note_evidence():
    kinds = set()
    for seed in range(150):
        plan = plan_with(seed, ("pleural_effusion",), evidence={"pleural_effusion": ("image",)})
        for s in (s for n in compose_notes(np.random.default_rng(seed), plan) for s in n.spans):
            if s.diagnosis == "pleural_effusion":
                kinds.add(s.kind)
    assert kinds == {"hedged", "historical"}  # never negated, never evidence
