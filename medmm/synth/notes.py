"""Compose a patient's clinical notes from the phrase bank, keeping the span of every planted phrase."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from medmm.synth.diagnoses import DIAGNOSIS_NAMES
from medmm.synth.phrases import EVIDENCE, FILLERS, HEDGES, HISTORY, NEGATIONS, TEMPLATES
from medmm.synth.plan import PatientPlan

HP, PROGRESS, DISCHARGE, IMAGING = "34117-2", "11506-3", "18842-5", "18748-4"
TITLES = {
    HP: "HISTORY AND PHYSICAL",
    PROGRESS: "PROGRESS NOTE",
    DISCHARGE: "TRANSFER SUMMARY",
    IMAGING: "CHEST RADIOGRAPH REPORT",
}
# Section title per phrase section, by note kind.
CLINICAL_SECTIONS = (
    ("HISTORY", "symptom"),
    ("EXAMINATION", "exam"),
    ("RESULTS", "imaging"),
    ("ASSESSMENT AND PLAN", "assessment"),
)
IMAGING_SECTIONS = (("FINDINGS", "imaging"),)
NEGATION_RATE, HEDGE_RATE, HISTORY_RATE = 0.25, 0.08, 0.12


@dataclass(frozen=True)
class NoteSpan:
    """A planted phrase: where it is in which note, and what it is (evidence or a distractor)."""

    note: int  # index of the note in the patient's bundle order
    start: int  # character offsets into the note text, end exclusive
    end: int
    text: str
    diagnosis: str
    kind: str  # evidence | negated | hedged | historical


@dataclass(frozen=True)
class NoteDraft:
    """One note, ready for the FHIR writer."""

    text: str
    type_code: str  # LOINC document type
    time: datetime
    resource: str  # DocumentReference | DiagnosticReport
    spans: tuple[NoteSpan, ...]


@dataclass(frozen=True)
class _Item:
    section: str  # phrase section: symptom | exam | imaging | assessment
    kind: str  # template kind
    phrase: str
    diagnosis: str | None  # None for fillers
    span_kind: str | None


def _note_types(rng: np.random.Generator, plan: PatientPlan) -> list[str]:
    count = int(rng.choice([1, 2, 3], p=[0.35, 0.40, 0.25]))
    types = [HP]
    for _ in range(count - 1):
        if plan.has("image") and IMAGING not in types and rng.random() < 0.5:
            types.append(IMAGING)
        elif rng.random() < 0.15:
            types.append(DISCHARGE)
        else:
            types.append(PROGRESS)
    return types


def _fits(note_type: str, section: str) -> bool:
    return section == "imaging" if note_type == IMAGING else True


def _pick_note(rng: np.random.Generator, types: list[str], section: str) -> int:
    if section == "imaging" and IMAGING in types and rng.random() < 0.7:
        return types.index(IMAGING)
    options = [i for i, t in enumerate(types) if _fits(t, section)]
    return options[int(rng.integers(len(options)))]


def _negation_section(phrase: str) -> str:
    if phrase.startswith("denies"):
        return "symptom"
    return "imaging" if "consolidation" in phrase or "pneumothorax" in phrase else "exam"


def _plan_items(rng: np.random.Generator, plan: PatientPlan, types: list[str]) -> list[list[_Item]]:
    items: list[list[_Item]] = [[] for _ in types]
    for d in plan.evidence_in("notes"):
        bank = EVIDENCE[d]
        k = min(len(bank), 1 + int(plan.strength[d] > 0.75) + int(rng.random() < 0.3))
        for j in rng.choice(len(bank), size=k, replace=False):
            phrase, section = bank[int(j)]
            note = _pick_note(rng, types, section)  # labs never go into the imaging report
            kind, section = section, ("imaging" if section == "lab" else section)
            items[note].append(_Item(section, kind, phrase, d, "evidence"))
    # Negations only concern diagnoses the patient does not have: a recorded diagnosis is never
    # denied, even where its evidence lives elsewhere (one whose evidence was removed by the
    # label-noise knob reads like a negative). Hedges and history are not evidence and appear
    # for any diagnosis whose evidence is not in the notes, so they carry no label information.
    in_notes = set(plan.evidence_in("notes"))
    textual = set(plan.labels) - set(plan.evidence_removed)
    for d in DIAGNOSIS_NAMES:
        if d in in_notes:
            continue
        draws = rng.random(3)
        if d not in textual and draws[0] < NEGATION_RATE:
            options = [(p, c) for p, c in NEGATIONS if c[0] == d and not textual.intersection(c)]
            if options:
                phrase, _ = options[int(rng.integers(len(options)))]
                section = _negation_section(phrase)
                kind = "denied" if phrase.startswith("denies") else "negated"
                items[_pick_note(rng, types, section)].append(_Item(section, kind, phrase, d, "negated"))
        if draws[1] < HEDGE_RATE:
            phrase = HEDGES[d][int(rng.integers(len(HEDGES[d])))]
            items[_pick_note(rng, types, "imaging")].append(_Item("imaging", "hedged", phrase, d, "hedged"))
        if draws[2] < HISTORY_RATE:
            phrase = HISTORY[d][int(rng.integers(len(HISTORY[d])))]
            items[_pick_note(rng, types, "symptom")].append(_Item("symptom", "historical", phrase, d, "historical"))
    for i, t in enumerate(types):
        sections = ("imaging",) if t == IMAGING else ("symptom", "exam", "assessment")
        for section in sections:
            pool = FILLERS[section]
            for j in rng.choice(len(pool), size=int(rng.integers(1, 3)), replace=False):
                items[i].append(_Item(section, "filler", pool[int(j)], None, None))
    return items


def _render(rng: np.random.Generator, index: int, note_type: str, items: list[_Item]) -> tuple[str, list[NoteSpan]]:
    text = TITLES[note_type] + "\n"
    spans: list[NoteSpan] = []
    layout = IMAGING_SECTIONS if note_type == IMAGING else CLINICAL_SECTIONS
    for title, section in layout:
        chosen = [it for it in items if it.section == section]
        if not chosen:
            continue
        text += f"\n{title}:"
        for k in rng.permutation(len(chosen)):
            it = chosen[int(k)]
            if it.kind == "filler":
                text += " " + it.phrase
                continue
            templates = TEMPLATES[it.kind]
            template = templates[int(rng.integers(len(templates)))]
            shown = it.phrase[0].upper() + it.phrase[1:] if "{P}" in template else it.phrase
            key = "{P}" if "{P}" in template else "{p}"
            prefix, suffix = template.split(key)
            start = len(text) + 1 + len(prefix)
            text += " " + prefix + shown + suffix
            spans.append(NoteSpan(index, start, start + len(shown), shown, it.diagnosis or "", it.span_kind or ""))
        text += "\n"
    return text, spans


def compose_notes(rng: np.random.Generator, plan: PatientPlan) -> tuple[NoteDraft, ...]:
    """The patient's 1-3 notes (time-ordered), with the spans of evidence and distractor phrases."""
    types = _note_types(rng, plan)
    items = _plan_items(rng, plan, types)
    offsets = sorted(float(h) for h in rng.uniform(-40.0, -0.5, len(types) - 1))
    hours = [-48.0 + float(rng.uniform(0.5, 6.0))] + offsets
    notes = []
    for i, note_type in enumerate(types):
        text, spans = _render(rng, i, note_type, items[i])
        time = plan.study_time + timedelta(minutes=int(round(hours[i] * 60)))
        resource = "DiagnosticReport" if note_type == IMAGING or rng.random() < 0.4 else "DocumentReference"
        notes.append(NoteDraft(text, note_type, time, resource, tuple(spans)))
    return tuple(notes)
