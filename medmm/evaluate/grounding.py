"""Impressions and answers measured against the patient's data: the LM's raw text beside the grounded text.

For every test case the impression is drafted once; the raw draft and the grounded impression
(what the Predictor gives out) are both read by the independent verifier
(medmm.evaluate.verifier), which counts claims the data contradict or do not support. A fixed set
of questions (templates over the diagnoses and vital signs, plus questions it must decline) is
asked of every case through the Predictor's answering, and the answers are verified the same way.
Impression quality (names the true top diagnosis, contradicts none) is computed on the grounded
impression, as served, and on the raw draft beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch

from medmm.cases import collate, to_device
from medmm.evaluate.verifier import (
    CONTRADICTED,
    UNSUPPORTED,
    UNVERIFIED,
    PredictionView,
    verify_answer,
    verify_free_answer,
    verify_impression,
)
from medmm.grounding import GroundedText, PatientFacts, answer_question, ground_impression
from medmm.grounding.record import VALUE_QUESTIONS, quotes_value, signs_of, value_prompt
from medmm.lm.prompts import diagnoses_named, qa_prompt
from medmm.records import Study
from medmm.tasks import default_vocabulary

# The questions the LM was instruction-tuned on, asked of it as free text for the "before" figure.
FREE_TEXT_TEMPLATES = ("Is there {d}?", "What supports {d}?")
DIAGNOSIS_TEMPLATES = (
    "Is there {d}?",
    "How likely is {d}?",
    "Could this be {d}?",
    "What supports {d}?",
    "What argues against {d}?",
)
OTHER_QUESTIONS = (
    "What is the patient's temperature?",
    "What is the heart rate?",
    "What is the respiratory rate?",
    "What is the SpO2?",
    "What is the blood pressure?",
    "What is the patient's weight?",
    "Does the patient have a fever?",
    "Is the patient tachycardic?",
    "Is there tachypnoea?",
    "Is the patient hypotensive?",
    "Is there hypoxaemia?",
    "Has there been weight gain?",
    "What do the notes say about productive cough?",
    "What do the notes say about crackles?",
    "What do the notes say about orthopnoea?",
    "What do the notes say about ankle oedema?",
    "What do the notes say about dullness to percussion?",
    "What do the notes say about chest pain?",
    "What do the notes say about rigors?",
    "What do the notes say about confusion?",
    "What is the differential?",
    "List the diagnoses by probability.",
    "Which inputs were used?",
    "What does the radiograph show?",
    "What antibiotic should I give?",
    "Should we start furosemide?",
    "What is the weather like today?",
)


def question_set(names: Sequence[str], displays: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The fixed questions asked of every test case (diagnosis templates first; `displays`: the model's task's)."""
    table = {n: d.lower() for n, d in (displays if displays is not None else default_vocabulary()).items()}
    return (
        tuple(t.format(d=table.get(n, n.replace("_", " "))) for n in names for t in DIAGNOSIS_TEMPLATES)
        + OTHER_QUESTIONS
    )


FREE_TEXT_CASES = 64  # test cases whose LM free-text answers are drafted and verified (a reference sample)


def free_text_questions(names: Sequence[str], displays: Mapping[str, str] | None = None) -> tuple[str, ...]:
    table = {n: d.lower() for n, d in (displays if displays is not None else default_vocabulary()).items()}
    return tuple(t.format(d=table.get(n, n.replace("_", " "))) for n in names for t in FREE_TEXT_TEMPLATES)


@dataclass(frozen=True)
class CaseText:
    """One test case's texts and what they are checked against."""

    study: Study | None  # as read from the cohort (the verifier reads all of it); None when not given
    truth: dict | None  # the synthetic case's truth.json, when there is one
    labels: frozenset[str]
    probabilities: np.ndarray  # (K,)
    raw: str  # the LM's draft
    grounded: GroundedText
    facts: PatientFacts
    free_answers: tuple[str, ...] = ()  # the LM's own answers to free_text_questions, when drafted
    readings: Mapping[str, Sequence] | None = None  # channel -> (last value, unit): what the record line states
    value_answers: tuple[tuple[str, str], ...] = ()  # (vital sign, the LM's answer to its value question), when drafted


@torch.no_grad()
def write_case_texts(
    predictor,
    items: list[dict],
    studies: Sequence[Study | None],
    truths: Sequence[dict | None],
    batch_size: int = 16,
    free_questions: Sequence[str] = (),
    free_tokens: int = 32,
    free_cases: int | None = FREE_TEXT_CASES,
    value_questions: bool = False,
) -> list[CaseText]:
    """Draft and ground the impression of every preprocessed case; `studies` and `truths` in the same order as `items`.

    With `free_questions`, the LM also answers each as free text after the question prompt it was
    tuned on (what the question box gave out before answers were composed from the data), for
    the first `free_cases` cases (all with None): a reference figure, so a sample suffices and
    the evaluation of a large test split stays quick. With `value_questions`, the same cases are
    asked each value question (medmm.grounding.record) after their record line, as in stage 2.
    """
    names = predictor.model.config.diagnoses
    signs = signs_of(predictor.task.channel_names) if value_questions else ()
    out = []
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        batch = collate(chunk)
        if "notes_embeddings" in batch:
            batch["notes_embeddings"] = batch["notes_embeddings"].float()
        batch = to_device(batch, predictor.device)
        batch["studies"] = list(studies[start : start + batch_size])
        probs = predictor.probabilities(batch)
        raw = predictor.draft_impressions(batch, probs)
        facts = predictor.facts(batch, probs)
        rows = len(chunk)
        asked = free_questions if free_cases is None or start < free_cases else ()
        free = [predictor.model.generate(batch, [qa_prompt(q)] * rows, max_new_tokens=free_tokens) for q in asked]
        readings = [it["meta"].get("vitals_last") or {} for it in chunk]
        sampled = signs if free_cases is None or start < free_cases else ()
        values = [
            predictor.model.generate(
                batch, [value_prompt(VALUE_QUESTIONS[s], r, signs) for r in readings], max_new_tokens=free_tokens
            )
            for s in sampled
        ]
        for row, (text, f) in enumerate(zip(raw, facts)):
            truth = {names[k] for k in np.flatnonzero(batch["labels"][row].cpu().numpy())}
            answers = tuple(a[row] for a in free)
            said = tuple((sign, v[row]) for sign, v in zip(sampled, values))
            out.append(
                CaseText(
                    batch["studies"][row],
                    truths[start + row],
                    frozenset(truth),
                    probs[row],
                    text,
                    ground_impression(text, f),
                    f,
                    answers,
                    readings[row],
                    said,
                )
            )
    return out


def impression_scores(cases: Sequence[CaseText], names: Sequence[str], *, raw: bool = False) -> dict:
    """names_true_top, names_all_true and contradicts_none (see medmm.ablation) of the grounded (or raw) impressions."""
    positives = top_hits = all_hits = contradiction_free = 0
    for case in cases:
        said = diagnoses_named(case.raw if raw else case.grounded.text, case.facts.displays)
        contradiction_free += int(said <= case.labels)
        if case.labels:
            positives += 1
            top = max(case.labels, key=lambda n: case.probabilities[list(names).index(n)])
            top_hits += int(top in said)
            all_hits += int(case.labels <= said)
    n = len(cases)
    nan = float("nan")
    return {
        "cases": n,
        "positives": positives,
        "names_true_top": top_hits / positives if positives else nan,
        "names_all_true": all_hits / positives if positives else nan,
        "contradicts_none": contradiction_free / n if n else nan,
    }


def _view(facts: PatientFacts) -> PredictionView:
    return PredictionView(
        dict(facts.probabilities),
        dict(facts.operating),
        tuple(facts.conformal_set),
        dict(facts.displays),
        facts.vocabulary.image_terms,
    )


def _tally(verdict_lists: list[list], texts: int) -> dict:
    claims = [v for vs in verdict_lists for v in vs]
    kinds = sorted({v.kind for v in claims})

    def share(label: str) -> float:
        return sum(any(v.verdict == label for v in vs) for vs in verdict_lists) / texts if texts else float("nan")

    return {
        "texts": texts,
        "with_contradicted_claim": share(CONTRADICTED),
        "with_unsupported_claim": share(UNSUPPORTED),
        "claims": len(claims),
        "contradicted_claims": sum(v.verdict == CONTRADICTED for v in claims),
        "unsupported_claims": sum(v.verdict == UNSUPPORTED for v in claims),
        "unverified_claims": sum(v.verdict == UNVERIFIED for v in claims),
        "contradicted_by_kind": {k: sum(v.verdict == CONTRADICTED and v.kind == k for v in claims) for k in kinds},
    }


def grounding_report(
    cases: Sequence[CaseText], questions: Sequence[str], examples: int = 5, free_questions: Sequence[str] = ()
) -> dict:
    """Shares of impressions (raw, grounded) and of answers with a contradicted or unsupported claim, by the verifier.

    With `free_questions` (the questions behind each case's `free_answers`), the LM's free-text
    answers are verified beside the composed answers to the same questions.
    """
    raw = [verify_impression(c.raw, c.study, _view(c.facts), c.truth) for c in cases]
    grounded = [verify_impression(c.grounded.text, c.study, _view(c.facts), c.truth) for c in cases]
    answers, kinds, declined = [], {}, 0
    for c in cases:
        for q in questions:
            a = answer_question(q, c.facts)
            verdicts = verify_answer(a.text, c.study, _view(c.facts), c.truth)
            answers.append(verdicts)
            kinds.setdefault(a.kind, []).append(verdicts)
            declined += int(not a.answered)
    free = {}
    if free_questions:
        lm = [verify_free_answer(a, c.study, _view(c.facts), c.truth) for c in cases for a in c.free_answers]
        drafted = [
            c for c in cases if c.free_answers
        ]  # the sample of cases the LM answered (write_case_texts' free_cases)
        composed = [
            verify_answer(answer_question(q, c.facts).text, c.study, _view(c.facts), c.truth)
            for c in drafted
            for q in free_questions
        ]
        sample = [
            {"question": q, "lm": a, "composed": answer_question(q, c.facts).text.splitlines()[0]}
            for c in cases[:1]
            for q, a in zip(free_questions, c.free_answers)
        ][:4]
        free = {
            "free_text": {
                "questions": list(free_questions),
                "lm": {k: v for k, v in _tally(lm, len(lm)).items() if k != "texts"},
                "composed": {k: v for k, v in _tally(composed, len(composed)).items() if k != "texts"},
                "answers": len(lm),
                "cases": len(drafted),
                "examples": sample,
            }
        }
    values = value_report(cases)
    shown = [
        {
            "raw": c.raw,
            "grounded": c.grounded.text,
            "removed": [f"{r.text} ({r.kind}): {r.verdict}: {r.reason}" for r in c.grounded.removed][:6],
        }
        for c in cases
        if c.raw != c.grounded.text
    ][:examples]
    return {
        "verifier": "medmm.evaluate.verifier (independent of the filter: own grid reading, word lists and negation check)",
        "impressions": {"raw": _tally(raw, len(cases)), "grounded": _tally(grounded, len(cases)), "examples": shown},
        "questions": {
            "questions": len(questions),
            "cases": len(cases),
            "answers": len(answers),
            "declined": declined,
            **{k: v for k, v in _tally(answers, len(answers)).items() if k != "texts"},
            "with_contradicted_claim_by_kind": {
                k: _tally(v, len(v))["with_contradicted_claim"] for k, v in sorted(kinds.items())
            },
            "set": list(questions),
            **free,
            **({"values": values} if values else {}),
        },
    }


def value_report(cases: Sequence[CaseText], examples: int = 4) -> dict:
    """How the LM's answers to value questions read against the patient's values (medmm.grounding.record).

    quotes_value: of the questions about a sign the patient has a reading of, the share whose
    answer states every value of it as the record charts it; wrong_number: the share stating a
    number that is none of them; declines: of the questions about a sign without a reading, the
    share answered without a number and with "no". Per sign and over all."""
    asked = [(sign, answer, c.readings or {}) for c in cases for sign, answer in c.value_answers]
    if not asked:
        return {}
    checks = [(sign, quotes_value(answer, sign, readings)) for sign, answer, readings in asked]

    def tally(rows: list) -> dict:
        have = [v for _, v in rows if v.has_reading]
        lack = [v for _, v in rows if not v.has_reading]
        return {  # None: no question of that kind
            "questions": len(rows),
            "with_reading": len(have),
            "quotes_value": sum(v.quotes for v in have) / len(have) if have else None,
            "wrong_number": sum(v.wrong_number for v in have) / len(have) if have else None,
            "without_reading": len(lack),
            "declines": sum(v.declines for v in lack) / len(lack) if lack else None,
        }

    signs = list(dict.fromkeys(sign for sign, _ in checks))
    return {
        "cases": sum(bool(c.value_answers) for c in cases),
        **tally(checks),
        "by_sign": {s: tally([row for row in checks if row[0] == s]) for s in signs},
        "examples": [
            {
                "question": VALUE_QUESTIONS[s],
                "answer": a,
                "record": value_prompt(VALUE_QUESTIONS[s], r).split(" Question:")[0],
            }
            for s, a, r in asked[:examples]
        ],
    }
