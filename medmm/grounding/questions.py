"""What a question asks: recognised from its words, never guessed by the language model.

Kinds: likelihood ("Is there pneumonia?", "How likely is sepsis?"), support ("What supports heart
failure?"), against ("What argues against pneumothorax?"), differential ("What is the
differential?"), vital (a vital sign's values, or a vital-sign finding such as "Is there a
fever?"), notes ("What do the notes say about ankle oedema?"), image ("What does the radiograph
show?": the image branch's scores), inputs ("Which inputs were used?"),
advice (treatment questions, which are never answered) and unknown.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from medmm.grounding.findings import NOTE_WORDS, VITAL_RULES, VITAL_WORDS
from medmm.tasks import Vocabulary, default_vocabulary

LIKELIHOOD, SUPPORT, AGAINST, DIFFERENTIAL, VITAL, NOTES, IMAGE, INPUTS, ADVICE, UNKNOWN = (
    "likelihood",
    "support",
    "against",
    "differential",
    "vital",
    "notes",
    "image",
    "inputs",
    "advice",
    "unknown",
)

# vital sign asked about -> grid channels shown (blood pressure shows both of its channels)
VITAL_SIGN_WORDS: dict[str, tuple[str, ...]] = {
    "temperature": ("temperature", "temp"),
    "heart_rate": ("heart rate", "pulse", "hr"),
    "resp_rate": ("respiratory rate", "resp rate", "breathing rate", "rr", "respirations"),
    "spo2": ("spo2", "sats", "saturation", "saturations", "oxygen saturation", "oxygen level", "o2"),
    "blood_pressure": ("blood pressure", "bp", "systolic", "diastolic"),
    "weight": ("weight",),
}
VITAL_CHANNELS: dict[str, tuple[str, ...]] = {
    "temperature": ("temperature",),
    "heart_rate": ("heart_rate",),
    "resp_rate": ("resp_rate",),
    "spo2": ("spo2",),
    "blood_pressure": ("sbp", "dbp"),
    "weight": ("weight",),
}
# vital sign -> its name in a sentence ("heart rate"); capitalise the first letter for a title
VITAL_SIGN_NAMES: dict[str, str] = {
    "temperature": "temperature",
    "heart_rate": "heart rate",
    "resp_rate": "respiratory rate",
    "spo2": "SpO2",
    "blood_pressure": "blood pressure",
    "weight": "weight",
}
assert set(VITAL_SIGN_NAMES) == set(VITAL_CHANNELS)


def sign_title(sign: str) -> str:
    """A vital sign's name as the start of a line: "Heart rate", "SpO2"."""
    name = VITAL_SIGN_NAMES[sign]
    return name[0].upper() + name[1:]


_RULE_SIGN = {
    "fever": "temperature",
    "hypothermia": "temperature",
    "tachycardia": "heart_rate",
    "bradycardia": "heart_rate",
    "tachypnoea": "resp_rate",
    "hypotension": "blood_pressure",
    "hypoxaemia": "spo2",
    "weight gain": "weight",
}
assert set(_RULE_SIGN) == set(VITAL_RULES)

_ADVICE = re.compile(
    r"\b(treat|treatment|treated|therapy|manage|management|prescribe|prescription|doses?|dosage|antibiotics?|diuretics?|"
    r"furosemide|chest drain|intubate|should (i|we|they)|recommend\w*|medications?|medicines?|drugs?|surgery|what to do|next steps?)\b"
)
_SUPPORT = re.compile(
    r"\b(support\w*|evidence for|in favou?r|points? to|suggest\w*|why (do|does|is|would)|what makes|based on what)\b"
)
_AGAINST = re.compile(
    r"\b(against|argues?|rule[sd]? (it )?out|exclude\w*|evidence against|why not|contradict\w*|speaks? against)\b"
)
_DIFFERENTIAL = re.compile(
    r"\b(differential|ddx|ranked|rank|ranking|list|which diagnos\w*|what diagnos\w*|diagnoses|most likely|top diagnos\w*|what (is|could) (it|this) be)\b"
)
_INPUTS = re.compile(
    r"\b(inputs?|which (data|images?|notes|files)|what (data|was used|did (you|it|the model) (use|read))|used|modalit\w*|read)\b"
)
_NOTES = re.compile(r"\b(notes?|documented|documentation|record|charted|written)\b")
_IMAGE = re.compile(r"\b(radiograph|x ray|xray|cxr|chest film|image|imaging|film)\b")


@dataclass(frozen=True)
class Question:
    kind: str
    diagnosis: str | None = None  # medmm diagnosis name
    sign: str | None = None  # a key of VITAL_CHANNELS
    finding: str | None = None  # a vital rule name (VITAL_RULES) or a note finding (NOTE_FINDINGS)


def _find(words: dict[str, tuple[str, ...]], text: str) -> str | None:
    hits = [(text.find(f" {w} "), key) for key, ws in words.items() for w in ws if f" {w} " in text]
    return min(hits)[1] if hits else None


def _phrase(table: dict[str, str], text: str) -> str | None:
    hits = sorted(((text.find(f" {w} "), -len(w), v) for w, v in table.items() if f" {w} " in text))
    return hits[0][2] if hits else None


def recognise(question: str, vocabulary: Vocabulary | None = None) -> Question:
    """The kind of `question` and what it names (a diagnosis, a vital sign, a finding).

    Diagnoses are named by the labels' displays and synonyms, and radiograph findings by their
    image findings, from `vocabulary` (the model's task; default: the default task's)."""
    vocabulary = vocabulary if vocabulary is not None else default_vocabulary()
    text = " " + re.sub(r"[^a-z0-9%]+", " ", question.lower()) + " "
    if _ADVICE.search(text):
        return Question(ADVICE)
    diagnosis = _find(vocabulary.question_words, text)
    note_finding = _phrase(NOTE_WORDS, text)
    vital_finding = _phrase(VITAL_WORDS, text)
    sign = _find(VITAL_SIGN_WORDS, text)
    if _NOTES.search(text) and (note_finding or not (diagnosis or sign)):
        return Question(NOTES, finding=note_finding)
    if diagnosis is not None:
        if _AGAINST.search(text):
            return Question(AGAINST, diagnosis)
        if _SUPPORT.search(text):
            return Question(SUPPORT, diagnosis)
        return Question(LIKELIHOOD, diagnosis)
    if vital_finding is not None:
        return Question(VITAL, sign=_RULE_SIGN[vital_finding], finding=vital_finding)
    if sign is not None:
        return Question(VITAL, sign=sign)
    if _DIFFERENTIAL.search(text):
        return Question(DIFFERENTIAL)
    if _INPUTS.search(text):
        return Question(INPUTS)
    if _IMAGE.search(text) or _phrase({w: w for w in vocabulary.image_words}, text):
        return Question(IMAGE)
    if note_finding is not None:
        return Question(NOTES, finding=note_finding)
    return Question(UNKNOWN)
