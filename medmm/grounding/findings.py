"""The findings generated text may state, what each one means in the patient's data, and how notes word it.

Three kinds: a vital-sign finding holds when the patient's grid meets the adult threshold of
CLINICAL.md ("fever": max temperature >= 38.0 Cel); a note finding holds when a note the model
read mentions it without negation, hedge or history; an image finding holds when the image
branch's own score for its diagnosis reaches the calibrated threshold. Every word an impression
may use (a task's LabelWords.evidence; the default task's for the synthetic chest cohort) is listed
here, with the synonyms questions use; radiograph finding words come from the task (LabelWords.image_findings).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

from medmm.tasks import default_vocabulary

VITALS, NOTES, IMAGE = "vitals", "notes", "image"


@dataclass(frozen=True)
class VitalRule:
    """A vital-sign finding and its adult threshold on the grid (CLINICAL.md, "Thresholds for stating ...")."""

    name: str  # the canonical words
    channels: tuple[str, ...]  # grid channels it reads (the first is the one shown)
    threshold: str  # the rule in words


VITAL_RULES: dict[str, VitalRule] = {
    r.name: r
    for r in (
        VitalRule("fever", ("temperature",), "max temperature >= 38.0 Cel"),
        VitalRule("hypothermia", ("temperature",), "min temperature < 36.0 Cel"),
        VitalRule("tachycardia", ("heart_rate",), "max heart rate > 100 /min"),
        VitalRule("bradycardia", ("heart_rate",), "min heart rate < 50 /min"),
        VitalRule("tachypnoea", ("resp_rate",), "max respiratory rate > 22 /min"),
        VitalRule("hypotension", ("sbp",), "min systolic < 90 mm[Hg]"),
        VitalRule("hypoxaemia", ("spo2",), "min SpO2 < 92 %, or a fall of >= 4 points"),
        VitalRule("weight gain", ("weight",), "last minus first weight >= 2 kg"),
    )
}

# Words an impression or answer uses -> the rule that must hold.
VITAL_WORDS: dict[str, str] = {
    "fever": "fever",
    "febrile": "fever",
    "pyrexia": "fever",
    "pyrexial": "fever",
    "hypothermia": "hypothermia",
    "hypothermic": "hypothermia",
    "tachycardia": "tachycardia",
    "tachycardic": "tachycardia",
    "bradycardia": "bradycardia",
    "bradycardic": "bradycardia",
    "tachypnoea": "tachypnoea",
    "tachypnea": "tachypnoea",
    "tachypnoeic": "tachypnoea",
    "tachypneic": "tachypnoea",
    "hypotension": "hypotension",
    "hypotensive": "hypotension",
    "hypoxaemia": "hypoxaemia",
    "hypoxemia": "hypoxaemia",
    "hypoxic": "hypoxaemia",
    "desaturation": "hypoxaemia",
    "sudden desaturation": "hypoxaemia",
    "falling oxygen saturation": "hypoxaemia",
    "low oxygen saturation": "hypoxaemia",
    "falling saturation": "hypoxaemia",
    "low saturation": "hypoxaemia",
    "weight gain": "weight gain",
}


@dataclass(frozen=True)
class NoteFinding:
    """A finding as the notes word it: `mention` finds a statement of it; `absence` also catches what a
    negation of it covers ("denies cough" rules out a productive cough)."""

    name: str
    mention: re.Pattern
    absence: re.Pattern


def _p(pattern: str) -> re.Pattern:
    return re.compile(pattern, re.IGNORECASE)


NOTE_FINDINGS: dict[str, NoteFinding] = {
    f.name: f
    for f in (
        NoteFinding(
            "productive cough",
            _p(r"\bproductive cough|\bcough\w* productive|\bsputum\b|\bpurulent\b"),
            _p(r"\bcough|\bsputum\b"),
        ),
        NoteFinding(
            "crackles", _p(r"\bcrackles\b|\bcrepitations\b|\brales\b"), _p(r"\bcrackles\b|\bcrepitations\b|\brales\b")
        ),
        NoteFinding("orthopnoea", _p(r"\borthopno?ea\b|\bthree pillows\b|\b\w+ pillows\b"), _p(r"\borthopno?ea\b")),
        NoteFinding(
            "ankle oedema",
            _p(r"\bankle (o?edema|swelling)|\b(pitting|pedal|peripheral|leg) o?edema\b|\bankle swelling\b"),
            _p(r"\b(ankle|pitting|pedal|peripheral|leg) (o?edema|swelling)\b|\bo?edema\b"),
        ),
        NoteFinding(
            "dullness to percussion", _p(r"\bdull(ness)? (to|on) percussion\b|\bstony dullness\b"), _p(r"\bdullness\b")
        ),
        NoteFinding(
            "sudden pleuritic chest pain",
            _p(r"\b(sudden|abrupt)\w*\b[^.;]*\bpain\b"),
            _p(r"\bchest pain\b|\bpleuritic\b"),
        ),
        NoteFinding("rigors", _p(r"\brigou?rs\b|\bshaking chills\b"), _p(r"\brigou?rs\b")),
        NoteFinding(
            "confusion",
            _p(r"\bconfus(ion|ed)\b|\bdisorient(at)?ed\b|\bdelirium\b"),
            _p(r"\bconfus(ion|ed)\b|\bdisorient"),
        ),
        # asked about, never written as note evidence by the impression
        NoteFinding("fever", _p(r"\bfevers?\b|\bfebrile\b|\bpyrexi\w*"), _p(r"\bfevers?\b|\bfebrile\b|\bpyrexi\w*")),
        NoteFinding("cough", _p(r"\bcough\w*"), _p(r"\bcough\w*")),
        NoteFinding("chest pain", _p(r"\bchest pain\b|\bpleuritic (chest )?pain\b"), _p(r"\bchest pain\b")),
        NoteFinding(
            "shortness of breath",
            _p(r"\bshortness of breath\b|\bbreathless\w*|\bdyspno?ea\b"),
            _p(r"\bshortness of breath\b|\bbreathless\w*|\bdyspno?ea\b"),
        ),
    )
}
NOTE_WORDS: dict[str, str] = {
    **{name: name for name in NOTE_FINDINGS},
    "orthopnea": "orthopnoea",
    "ankle edema": "ankle oedema",
    "ankle swelling": "ankle oedema",
    "oedema": "ankle oedema",
    "edema": "ankle oedema",
    "leg swelling": "ankle oedema",
    "dullness": "dullness to percussion",
    "rigours": "rigors",
    "pleuritic chest pain": "sudden pleuritic chest pain",
    "sputum": "productive cough",
    "crepitations": "crackles",
    "dyspnoea": "shortness of breath",
    "dyspnea": "shortness of breath",
    "breathlessness": "shortness of breath",
    "confused": "confusion",
    "disorientation": "confusion",
}


@dataclass(frozen=True)
class Finding:
    """A finding recognised in text: its canonical name and kind, and for an image finding its diagnosis."""

    name: str
    kind: str  # vitals | notes | image
    diagnosis: str | None = None


def finding_for(words: str, image_words: Mapping[str, str] | None = None) -> Finding | None:
    """The finding some words state ("fever", "Ankle oedema", "falling oxygen saturation"), or None.

    `image_words`: radiograph finding words -> their label (the model's task's Vocabulary.image_words;
    default: the default task's)."""
    key = " ".join(words.lower().split()).strip(" .")
    image_words = image_words if image_words is not None else default_vocabulary().image_words
    if key in VITAL_WORDS:
        return Finding(VITAL_WORDS[key], VITALS)
    if key in image_words:
        return Finding(key, IMAGE, image_words[key])
    if key in NOTE_WORDS:
        return Finding(NOTE_WORDS[key], NOTES)
    return None


def split_findings(group: str) -> list[str]:
    """The findings of one evidence group: "fever, tachycardia and hypotension" -> three."""
    parts = re.split(r",|\band\b", group)
    return [" ".join(p.split()) for p in parts if p.strip()]


def join_findings(words: list[str]) -> str:
    """The inverse of split_findings: "a", "a and b", "a, b and c"."""
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]
