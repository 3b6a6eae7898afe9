"""Answers to questions about one study, composed from its data and the prediction (no free LM text).

Every answer states values read from the study (the vital-sign grid, note sentences quoted as
written, the image branch's scores) or from the prediction (calibrated probabilities, operating
thresholds, the prediction set). Evidence is listed for and against: a finding the data show, a
finding the data show absent ("no tachypnoea": the grid's maximum is below the threshold), and a
negated note mention ("No ankle oedema"). Treatment advice is never given.
"""

from __future__ import annotations

from dataclasses import dataclass

from medmm.grounding.facts import CONTRADICTED, SUPPORTED, PatientFacts, check_image, check_vitals
from medmm.grounding.findings import NOTE_FINDINGS, NOTE_WORDS, VITAL_RULES, VITAL_WORDS, split_findings
from medmm.grounding.impression import prediction_reason
from medmm.grounding.notes import AFFIRMED, NEGATED
from medmm.grounding.questions import (
    ADVICE,
    AGAINST,
    DIFFERENTIAL,
    IMAGE,
    INPUTS,
    LIKELIHOOD,
    NOTES,
    SUPPORT,
    UNKNOWN,
    VITAL,
    VITAL_CHANNELS,
    Question,
    recognise,
    sign_title,
)
from medmm.grounding.vitals import value_text, when
from medmm.records import Answer, Claim

RESEARCH_NOTE = "Research use only; not a clinical recommendation."
CAN_ANSWER = (
    'It can answer: whether a diagnosis the model predicts is likely ("Is there <diagnosis>?"), what supports or argues against it, '
    "the differential, a vital sign's values (temperature, heart rate, respiratory rate, SpO2, blood pressure, weight), "
    "what the notes say about a finding, what the radiograph shows, and which inputs were used."
)
_CHANNEL_TITLE = {"sbp": "systolic", "dbp": "diastolic"}
_SIGN_RULES = {
    sign: tuple(r for r, rule in VITAL_RULES.items() if set(rule.channels) & set(channels))
    for sign, channels in VITAL_CHANNELS.items()
}


@dataclass(frozen=True)
class Evidence:
    """A diagnosis's evidence in this patient's data: lines for, against, and what cannot be assessed."""

    supports: tuple[tuple[str, Claim], ...]
    against: tuple[tuple[str, Claim], ...]
    unassessed: tuple[str, ...]


def _findings(facts: PatientFacts, diagnosis: str, modality: str) -> list[str]:
    return split_findings(facts.vocabulary.evidence.get(diagnosis, {}).get(modality, ""))


def evidence(facts: PatientFacts, diagnosis: str) -> Evidence:
    """What speaks for and against `diagnosis` among the findings its task's words give it (LabelWords.evidence).

    Words that are no finding the checks know (a task's own wording) are listed as not assessed."""
    supports, against, unassessed = [], [], []
    vital_words = _findings(facts, diagnosis, "vitals")
    unassessed += [f"{w}: not a finding the check can verify" for w in vital_words if w not in VITAL_WORDS]
    rules = list(dict.fromkeys(VITAL_WORDS[w] for w in vital_words if w in VITAL_WORDS))
    for rule in rules:
        verdict, reason = check_vitals(facts, rule)
        if verdict == SUPPORTED:
            supports.append((f"{rule}: {reason}", Claim(rule, "vitals", diagnosis, SUPPORTED, reason)))
        elif verdict == CONTRADICTED:
            against.append((f"no {rule}: {reason}", Claim(f"no {rule}", "vitals", diagnosis, SUPPORTED, reason)))
        else:
            unassessed.append(f"{rule}: {reason}")
    for words in _findings(facts, diagnosis, "notes"):
        if words not in NOTE_WORDS:
            unassessed.append(f"{words}: not a finding the check can verify")
            continue
        name = NOTE_WORDS[words]
        found = facts.note_mentions(name) if facts.notes else []
        affirmed = [m for m in found if m.status == AFFIRMED and m.read]
        negated = [m for m in found if m.status == NEGATED]
        for m in affirmed[:2]:
            reason = f'"{m.sentence}" ({m.note})'
            supports.append((f"{name}: the notes say so: {reason}", Claim(name, "notes", diagnosis, SUPPORTED, reason)))
        for m in negated[:2]:
            reason = f'"{m.sentence}" ({m.note})'
            against.append(
                (
                    f"{name} negated in the notes: {reason}",
                    Claim(f"{name} negated", "notes", diagnosis, SUPPORTED, reason),
                )
            )
        if not facts.notes:
            unassessed.append(f"{name}: no note was read for this study")
        elif not affirmed and not negated:
            unassessed.append(f"{name}: no note the model read states or negates it")
    image_words = facts.vocabulary.image_words
    for words in _findings(facts, diagnosis, "image"):
        if words not in image_words:
            unassessed.append(f"{words}: not a finding the check can verify")
            continue
        verdict, reason = check_image(facts, image_words[words])
        if verdict == SUPPORTED:
            supports.append((f"{words}: {reason}", Claim(words, "image", diagnosis, SUPPORTED, reason)))
        elif facts.image_used and image_words[words] in facts.image_scores:
            line = f"{words} not found by the image branch: {reason}"
            against.append((line, Claim(f"{words} not found", "image", diagnosis, SUPPORTED, reason)))
        else:
            unassessed.append(f"{words}: {reason}")
    return Evidence(tuple(supports), tuple(against), tuple(unassessed))


def _section(title: str, lines) -> list[str]:
    return [f"{title}:"] + [f"- {line}" for line in lines] if lines else []


def likelihood_word(facts: PatientFacts, diagnosis: str) -> str:
    """likely (at or above the operating threshold), possible (below it, but in the prediction set), unlikely otherwise."""
    if facts.probabilities[diagnosis] >= facts.operating[diagnosis]:
        return "likely"
    return "possible" if diagnosis in facts.conformal_set else "unlikely"


def _diagnosis_answer(facts: PatientFacts, q: Question) -> tuple[str, tuple[Claim, ...]]:
    d = q.diagnosis or ""
    word = likelihood_word(facts, d)
    head = f"{facts.display(d).capitalize()} is {word}: {prediction_reason(facts, d)}."
    ev = evidence(facts, d)
    sections = [("For", ev.supports), ("Against", ev.against)]
    if q.kind == AGAINST:
        sections.reverse()
    lines = [head]
    for title, items in sections:
        lines += _section(title, [text for text, _ in items]) or [f"{title}: nothing among the findings checked."]
    lines += _section("Not assessable", ev.unassessed)
    claims = (Claim(f"{facts.display(d)} is {word}", "diagnosis", d, SUPPORTED, prediction_reason(facts, d)),) + tuple(
        c for _, c in ev.supports + ev.against
    )
    return "\n".join(lines), claims


def _differential(facts: PatientFacts) -> tuple[str, tuple[Claim, ...]]:
    lines = ["Diagnoses ranked by " + ("calibrated " if facts.calibrated else "uncalibrated ") + "probability:"]
    claims = []
    for k, d in enumerate(facts.ranked, start=1):
        word = likelihood_word(facts, d)
        lines.append(f"{k}. {facts.display(d)}: {word}; {prediction_reason(facts, d)}")
        claims.append(Claim(f"{facts.display(d)} is {word}", "diagnosis", d, SUPPORTED, prediction_reason(facts, d)))
    if facts.coverage is not None:
        chosen = ", ".join(facts.display(d) for d in facts.conformal_set) or "empty"
        lines.append(f"Prediction set at {facts.coverage:.0%} coverage: {chosen}.")
    else:
        lines.append("No prediction set: the model has no conformal calibration.")
    return "\n".join(lines), tuple(claims)


def _vital(facts: PatientFacts, q: Question) -> tuple[str, tuple[Claim, ...]]:
    sign = q.sign or ""
    title = sign_title(sign)
    if not facts.vitals and facts.study.vitals is None:
        return f"{title}: no vital sign was read for this study.", ()
    series = facts.study.vitals
    if series is None:
        window = "window"
    elif series.per_encounter:
        window = f"{series.values.shape[0]} encounter(s) of the window"
    else:
        window = f"{series.values.shape[0] * series.step_seconds / 3600:g}-hour window"
    lines, claims = [], []
    for channel in VITAL_CHANNELS[sign]:
        s = facts.vitals.get(channel)
        name = f"{title} ({_CHANNEL_TITLE[channel]})" if channel in _CHANNEL_TITLE else title
        if s is None:
            lines.append(f"{name}: no reading inside the {window} before the study time.")
            continue
        lines.append(
            f"{name} in the {window} before the study time: {s.count} step(s) with a reading; "
            f"min {value_text(s.low.value, s.unit)} at {when(s.low.time)}; max {value_text(s.high.value, s.unit)} at {when(s.high.time)}; "
            f"last {value_text(s.last.value, s.unit)} at {when(s.last.time)}."
        )
    adult, why = facts.adult
    rules = (q.finding,) if q.finding else _SIGN_RULES[sign]
    if not adult:
        lines.append(f"No finding is stated: {why}.")
        return "\n".join(lines), ()
    for rule in rules:
        verdict, reason = check_vitals(facts, rule)
        if verdict == SUPPORTED:
            lines.append(f"- {rule}: yes: {reason}")
            claims.append(Claim(rule, "vitals", None, SUPPORTED, reason))
        elif verdict == CONTRADICTED:
            lines.append(f"- {rule}: no: {reason}")
            claims.append(Claim(f"no {rule}", "vitals", None, SUPPORTED, reason))
        else:
            lines.append(f"- {rule}: cannot be assessed: {reason}")
    return "\n".join(lines), tuple(claims)


def _notes(facts: PatientFacts, q: Question) -> tuple[str, tuple[Claim, ...]]:
    if not facts.notes:
        return "No note was read for this study.", ()
    names = (q.finding,) if q.finding else tuple(NOTE_FINDINGS)
    lines, claims = [], []
    for name in names:
        found = facts.note_mentions(name)
        if not found:
            if q.finding:
                lines.append(f"No note in the model's scope mentions {name}.")
            continue
        lines.append(f"The notes on {name}:")
        for m in found:
            where = "" if m.read else " (beyond the text the model read)"
            lines.append(f'- {m.status}: "{m.sentence}" ({m.note}){where}')
            claims.append(Claim(f"{name} {m.status}", "notes", None, SUPPORTED, f'"{m.sentence}" ({m.note})'))
    if not lines:
        lines.append("No note in the model's scope mentions any of the findings checked (" + ", ".join(names) + ").")
    return "\n".join(lines), tuple(claims)


def _image(facts: PatientFacts) -> tuple[str, tuple[Claim, ...]]:
    if not facts.image_used:
        return "No radiograph was read for this study.", ()
    lines, claims = [f"Radiograph, as the {facts.image_source} reads it:"], []
    for words, d in facts.vocabulary.image_words.items():
        if words != facts.vocabulary.evidence.get(d, {}).get("image"):
            continue
        verdict, reason = check_image(facts, d)
        found = verdict == SUPPORTED
        lines.append(f"- {words}: {'found' if found else 'not found'}: {reason}")
        claims.append(Claim(words if found else f"{words} not found", "image", d, SUPPORTED, reason))
    return "\n".join(lines), tuple(claims)


def _inputs(facts: PatientFacts) -> str:
    used = [f"- {u.modality} {u.source}: {u.reason}" for u in facts.inputs if u.used]
    unused = [f"- {u.modality} {u.source}: {u.reason}" for u in facts.inputs if not u.used]
    return "\n".join((["Used:"] + used if used else ["Nothing was used."]) + (["Not used:"] + unused if unused else []))


def answer_question(question: str, facts: PatientFacts | None) -> Answer:
    """The answer to `question` about the study behind `facts`.

    `facts` may be None only for a question that is not answered (advice, or outside what can be answered).
    """
    q = recognise(question, facts.vocabulary if facts is not None else None)
    if q.kind == ADVICE:
        return Answer(
            question, q.kind, f"This research tool does not give treatment advice. {CAN_ANSWER}", answered=False
        )
    if q.kind == UNKNOWN:
        return Answer(
            question, q.kind, f"This tool cannot answer that from this patient's data. {CAN_ANSWER}", answered=False
        )
    if facts is None:
        raise ValueError(f"a {q.kind} question needs the study's facts")
    claims: tuple[Claim, ...] = ()
    if q.kind in (LIKELIHOOD, SUPPORT, AGAINST) and q.diagnosis not in facts.probabilities:
        known = ", ".join(facts.display(d) for d in facts.probabilities)
        return Answer(
            question,
            UNKNOWN,
            f"This model does not predict {(q.diagnosis or 'that').replace('_', ' ')}; it predicts {known}. {CAN_ANSWER}",
            answered=False,
        )
    if q.kind in (LIKELIHOOD, SUPPORT, AGAINST):
        text, claims = _diagnosis_answer(facts, q)
    elif q.kind == DIFFERENTIAL:
        text, claims = _differential(facts)
    elif q.kind == VITAL:
        text, claims = _vital(facts, q)
    elif q.kind == NOTES:
        text, claims = _notes(facts, q)
    elif q.kind == IMAGE:
        text, claims = _image(facts)
    else:
        assert q.kind == INPUTS, q.kind
        text = _inputs(facts)
    return Answer(question, q.kind, f"{text}\n{RESEARCH_NOTE}", answered=True, claims=claims)
