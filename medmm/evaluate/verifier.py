"""An independent check of generated text against the patient's data, for evaluation.

medmm.grounding filters what the Predictor gives out; this module measures the result and is
written apart from it on purpose: its own reading of the vital-sign grid with the thresholds of
CLINICAL.md, its own word lists, its own negation check (a cue within a few words before the
term, NegEx-style, rather than the filter's clause rule) and its own reading of impressions and
answers. A claim is `contradicted` when the data show otherwise (a grid below the threshold, a
note that negates it, a synthetic lesion truth without the lesion, a prediction that does not
support the statement), `unsupported` when nothing backs it (no such data, a child's vitals).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from medmm.records import Study
from medmm.tasks import default_vocabulary

CONTRADICTED, UNSUPPORTED, SUPPORTED, UNVERIFIED = "contradicted", "unsupported", "supported", "unverified"

# word pattern in generated text -> (check kind, what it is)
_VITAL_TERMS = (
    (r"(?<!a)febrile|\bfever\b|\bpyrexi", "fever"),
    (r"\bhypotherm", "hypothermia"),
    (r"\btachycardi", "tachycardia"),
    (r"\bbradycardi", "bradycardia"),
    (r"\btachypn", "tachypnoea"),
    (r"\bhypotens", "hypotension"),
    (r"desaturation|oxygen saturation|\bhypox", "desaturation"),
    (r"weight gain", "weight gain"),
)
_NOTE_TERMS = (
    (r"productive cough", "productive cough"),
    (r"\bcrackles\b", "crackles"),
    (r"\borthopn", "orthopnoea"),
    (r"ankle o?edema", "ankle oedema"),
    (r"dullness to percussion", "dullness"),
    (r"pleuritic chest pain", "sudden chest pain"),
    (r"\brigou?rs\b", "rigors"),
    (r"\bconfusion\b", "confusion"),
)
# what counts as the finding in a note sentence (broad on purpose: a negation of any of it counts against)
_NOTE_WORDS = {
    "productive cough": r"sputum|productive|cough",
    "crackles": r"crackle|crepitation|\brales\b",
    "orthopnoea": r"orthopn|pillows",
    "ankle oedema": r"o?edema|ankle swelling|swelling",
    "dullness": r"\bdull",
    "sudden chest pain": r"(sudden|abrupt)\w*[^.]*pain|chest pain",
    "rigors": r"rigou?r",
    "confusion": r"confus|disorient",
    "fever": r"fever|febrile|pyrexi",
    "cough": r"cough",
    "chest pain": r"chest pain",
    "shortness of breath": r"breath|dyspn",
}
_NEG_CUES = {"no", "not", "denies", "denied", "without", "negative", "free", "nil", "absence", "afebrile", "apyrexial"}
_HEDGE = re.compile(r"cannot|not excluded|possib|query|\?|borderline|questionable|equivocal|if febrile|may be")
_HISTORY = re.compile(r"histor|previous|background|\b(19|20)\d\d\b|as a child|resolved|remote")


@dataclass(frozen=True)
class PredictionView:
    """What the model predicted for the case, as the verifier needs it."""

    probabilities: Mapping[str, float]
    operating: Mapping[str, float]
    conformal_set: tuple[str, ...]
    displays: Mapping[str, str] | None = (
        None  # label -> lower-case display from the model's task (None: the default task's)
    )
    image_terms: tuple[tuple[str, str], ...] | None = (
        None  # (term, label) of radiograph claims (None: the default task's)
    )

    @property
    def names(self) -> Mapping[str, str]:
        """Label -> the lower-case words that name it in text."""
        return self.displays if self.displays is not None else default_vocabulary().lower

    @property
    def image_table(self) -> tuple[tuple[str, str], ...]:
        """(pattern, label) of the words that make a sentence a radiograph claim about the label (the task's image_terms)."""
        terms = self.image_terms if self.image_terms is not None else default_vocabulary().image_terms
        return tuple((re.escape(term), label) for term, label in terms)


@dataclass(frozen=True)
class Verdict:
    text: str
    kind: str  # vitals | notes | image | prediction | values
    verdict: str
    reason: str


# -- the patient's data, read independently ----------------------------------------------------------


def _channel(study: Study, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(values, step indices) of one grid channel where observed."""
    v = study.vitals
    if v is None or name not in v.channels:
        return np.zeros(0), np.zeros(0, dtype=int)
    c = v.channels.index(name)
    keep = [t for t in range(v.values.shape[0]) if v.mask[t, c] and not np.isnan(v.values[t, c])]
    return np.array([float(v.values[t, c]) for t in keep]), np.array(keep, dtype=int)


def _is_adult(study: Study) -> bool:
    age = study.demographics.age_years if study.demographics else None
    return age is not None and age >= 18


def vital_holds(study: Study, finding: str) -> bool | None:
    """Whether an adult vital-sign finding holds on the study's grid (None: no reading of its channel)."""
    channel = {
        "fever": "temperature",
        "hypothermia": "temperature",
        "tachycardia": "heart_rate",
        "bradycardia": "heart_rate",
        "tachypnoea": "resp_rate",
        "hypotension": "sbp",
        "desaturation": "spo2",
        "weight gain": "weight",
    }[finding]
    x, _ = _channel(study, channel)
    if x.size == 0 or (finding == "weight gain" and x.size < 2):
        return None
    if finding == "fever":
        return bool(max(x) >= 38.0)
    if finding == "hypothermia":
        return bool(min(x) < 36.0)
    if finding == "tachycardia":
        return bool(max(x) > 100.0)
    if finding == "bradycardia":
        return bool(min(x) < 50.0)
    if finding == "tachypnoea":
        return bool(max(x) > 22.0)
    if finding == "hypotension":
        return bool(min(x) < 90.0)
    if finding == "desaturation":
        fall = max((x[i] - x[j] for i in range(len(x)) for j in range(i + 1, len(x))), default=0.0)
        return bool(min(x) < 92.0 or fall >= 4.0)
    return bool(x[-1] - x[0] >= 2.0)


def sentence_polarity(sentence: str, term: str) -> str | None:
    """affirmed | negated | hedged | historical for the note finding `term` in one sentence; None when absent."""
    low = sentence.lower()
    m = re.search(_NOTE_WORDS[term], low)
    if term == "fever" and re.search(r"afebrile|apyrexial", low):
        return "negated"
    if m is None:
        return None
    if _HISTORY.search(low):
        return "historical"
    if _HEDGE.search(low):
        return "hedged"
    before = re.findall(r"[a-z]+", low[: m.start()])[-5:]
    return "negated" if _NEG_CUES.intersection(before) else "affirmed"


def note_polarities(study: Study, term: str) -> set[str]:
    out = set()
    for note in study.notes:
        # section titles ("HISTORY:", "EXAMINATION:") name where a sentence stands, not what it says
        text = re.sub(r"\b[A-Z][A-Z ]{2,}:", " ", note.text)
        for sentence in re.split(r"(?<=[.!?])\s+|\n", text):
            p = sentence_polarity(sentence, term)
            if p:
                out.add(p)
    return out


# -- claims ---------------------------------------------------------------------------------------------


def verify_vital(study: Study, finding: str, stated_present: bool, text: str) -> Verdict:
    if study.vitals is None:
        return Verdict(text, "vitals", UNSUPPORTED, "no vital signs")
    if not _is_adult(study):
        return Verdict(text, "vitals", UNSUPPORTED, "not an adult of known age")
    holds = vital_holds(study, finding)
    if holds is None:
        return Verdict(text, "vitals", UNSUPPORTED, "channel not observed")
    ok = holds == stated_present
    return Verdict(
        text,
        "vitals",
        SUPPORTED if ok else CONTRADICTED,
        f"{finding} {'holds' if holds else 'does not hold'} on the grid",
    )


def verify_note(study: Study, term: str, stated: str, text: str) -> Verdict:
    """`stated`: affirmed (the finding is present) or negated (the notes negate it)."""
    if not study.notes:
        return Verdict(text, "notes", UNSUPPORTED, "no notes")
    seen = note_polarities(study, term)
    if stated == "affirmed":
        if "affirmed" in seen:
            return Verdict(text, "notes", SUPPORTED, "an affirmed mention")
        if "negated" in seen:
            return Verdict(text, "notes", CONTRADICTED, "the notes negate it")
        return Verdict(text, "notes", UNSUPPORTED, "no affirmed mention")
    if "negated" in seen:
        return Verdict(text, "notes", SUPPORTED, "a negated mention")
    return Verdict(text, "notes", CONTRADICTED if "affirmed" in seen else UNSUPPORTED, "no negated mention")


def verify_image(study: Study, diagnosis: str, truth: dict | None, text: str) -> Verdict:
    if not study.images:
        return Verdict(text, "image", UNSUPPORTED, "no image")
    if truth is None:
        return Verdict(text, "image", UNVERIFIED, "no lesion truth for this case")
    evidence = (truth.get("evidence") or {}).get(diagnosis) or {}
    has = "image" in evidence.get("modalities", ())
    return Verdict(
        text, "image", SUPPORTED if has else CONTRADICTED, "lesion truth " + ("has" if has else "lacks") + " it"
    )


def _not_ruled_out(view: PredictionView, diagnosis: str) -> bool:
    return view.probabilities[diagnosis] >= view.operating[diagnosis] or diagnosis in view.conformal_set


def _negated_in(text: str, start: int) -> bool:
    before = re.findall(r"[a-z]+", text[:start].lower())[-3:]
    return bool({"no", "not", "without", "negative"}.intersection(before))


def verify_impression(text: str, study: Study, view: PredictionView, truth: dict | None = None) -> list[Verdict]:
    """Every claim an impression makes, verified."""
    low = text.lower()
    out = []
    hedged = re.search(r"not ruled out[^.]*", low)
    body = low[: hedged.start()] + low[hedged.end() :] if hedged else low
    if hedged:
        for d, display in view.names.items():
            if display in hedged.group(0) and not _not_ruled_out(view, d):
                out.append(
                    Verdict(
                        display, "prediction", CONTRADICTED, "listed as not ruled out but the prediction rules it out"
                    )
                )
    if "no acute cardiopulmonary" in body:
        live = [d for d in view.probabilities if _not_ruled_out(view, d)]
        out.append(
            Verdict(
                "no acute cardiopulmonary diagnosis",
                "prediction",
                CONTRADICTED if live else SUPPORTED,
                f"not ruled out: {', '.join(live)}" if live else "nothing suspected, empty set",
            )
        )
    for d, display in view.names.items():
        for m in re.finditer(rf"\b{re.escape(display)}\b", body):
            if not _negated_in(body, m.start()):
                ok = _not_ruled_out(view, d)
                out.append(
                    Verdict(
                        display,
                        "prediction",
                        SUPPORTED if ok else CONTRADICTED,
                        f"probability {view.probabilities[d]:.3f}",
                    )
                )
    for pattern, finding in _VITAL_TERMS:
        for m in re.finditer(f"(?:{pattern})\\w*", body):
            out.append(verify_vital(study, finding, not _negated_in(body, m.start()), m.group(0)))
    for pattern, term in _NOTE_TERMS:
        for m in re.finditer(f"(?:{pattern})\\w*", body):
            out.append(verify_note(study, term, "negated" if _negated_in(body, m.start()) else "affirmed", m.group(0)))
    for pattern, d in view.image_table:
        for m in re.finditer(f"(?:{pattern})\\w*", body):
            if not _negated_in(body, m.start()):
                out.append(verify_image(study, d, truth, m.group(0)))
    return out


# -- answers ------------------------------------------------------------------------------------------

_SIGN_CHANNEL = {
    "temperature": "temperature",
    "heart rate": "heart_rate",
    "respiratory rate": "resp_rate",
    "spo2": "spo2",
    "blood pressure (systolic)": "sbp",
    "blood pressure (diastolic)": "dbp",
    "weight": "weight",
}
_VALUE_LINE = re.compile(
    r"^(?P<sign>[a-z0-9 ()]+?) in the .*?: \d+ step\(s\) with a reading; min (?P<min>[-\d.]+)\S* ?\S* at (?P<tmin>\S+ \S+)"
    r".*?; max (?P<max>[-\d.]+)\S* ?\S* at (?P<tmax>\S+ \S+).*?; last (?P<last>[-\d.]+)\S* ?\S* at (?P<tlast>\S+ \S+)"
)
_EXTRA_NOTE_TERMS = (
    ("shortness of breath", "shortness of breath"),
    ("chest pain", "chest pain"),
    ("cough", "cough"),
    ("fever", "fever"),
)


def _term(words: str, table) -> str | None:
    for pattern, value in table:
        if re.search(pattern, words):
            return value
    return None


def _note_term(words: str) -> str | None:
    return _term(words, _NOTE_TERMS) or _term(words, _EXTRA_NOTE_TERMS)


def _likelihood(view: PredictionView, name: str, word: str, line: str) -> Verdict:
    d = next((k for k, v in view.names.items() if v == name.strip()), None)
    if d is None:
        return Verdict(line, "prediction", UNVERIFIED, "unknown diagnosis")
    p, cut = view.probabilities[d], view.operating[d]
    expected = "likely" if p >= cut else ("possible" if d in view.conformal_set else "unlikely")
    return Verdict(
        line,
        "prediction",
        SUPPORTED if word == expected else CONTRADICTED,
        f"expected {expected} (p={p:.3f}, cut={cut:.3f})",
    )


def _values(study: Study, m: re.Match, line: str) -> Verdict:
    channel = _SIGN_CHANNEL.get(m.group("sign").strip())
    if channel is None:
        return Verdict(line, "values", UNVERIFIED, "unknown sign")
    x, steps = _channel(study, channel)
    if x.size == 0:
        return Verdict(line, "values", CONTRADICTED, "values stated for a channel with no reading")
    v = study.vitals
    stamp = [v.times[int(t)].strftime("%Y-%m-%d %H:%M") for t in steps]
    lo, hi = int(np.argmin(x)), int(np.argmax(x))
    wanted = {"min": (x[lo], stamp[lo]), "max": (x[hi], stamp[hi]), "last": (x[-1], stamp[-1])}
    for key, (value, at) in wanted.items():
        stated, stated_at = float(m.group(key)), m.group("t" + key)
        if abs(stated - value) > 0.006 or stated_at != at:
            return Verdict(
                line, "values", CONTRADICTED, f"{key} is {value:.2f} at {at}, stated {stated} at {stated_at}"
            )
    return Verdict(line, "values", SUPPORTED, "min, max and last match the grid")


def _item(section: str | None, body: str, study: Study, truth: dict | None, image_terms) -> Verdict | None:
    """A "- ..." line of a For/Against section, or of a vital-sign, notes or radiograph answer."""
    head = body.split(":", 1)[0].strip()
    vital_answer = re.match(r"^(?P<what>[a-z ]+): (?P<yn>yes|no): ", body)
    if section is None and vital_answer and _term(vital_answer.group("what"), _VITAL_TERMS):
        finding = _term(vital_answer.group("what"), _VITAL_TERMS) or ""
        return verify_vital(study, finding, vital_answer.group("yn") == "yes", body)
    image_answer = re.match(r"^(?P<what>[a-z ]+): found: ", body)
    if section is None and image_answer and _term(image_answer.group("what"), image_terms):
        return verify_image(study, _term(image_answer.group("what"), image_terms) or "", truth, body)
    if section == "for":
        for table, kind in ((_VITAL_TERMS, "vitals"), (image_terms, "image"), (_NOTE_TERMS, "notes")):
            hit = _term(head, table)
            if hit is None:
                continue
            if kind == "vitals":
                return verify_vital(study, hit, True, body)
            if kind == "image":
                return verify_image(study, hit, truth, body)
            return verify_note(study, hit, "affirmed", body)
    if section == "against":
        if head.startswith("no ") and _term(head[3:], _VITAL_TERMS):
            return verify_vital(study, _term(head[3:], _VITAL_TERMS) or "", False, body)
        negated = re.match(r"^(?P<what>.+?) negated in the notes", body)
        if negated and _note_term(negated.group("what")):
            return verify_note(study, _note_term(negated.group("what")) or "", "negated", body)
    return None


def verify_answer(text: str, study: Study, view: PredictionView, truth: dict | None = None) -> list[Verdict]:
    """Every checkable statement of an answer (likelihood words, listed evidence, values, note readings), verified."""
    out = []
    section, notes_term = None, None
    for raw in text.splitlines():
        line = raw.strip()
        low = line.lower()
        m = re.match(r"^([a-z ]+?) is (likely|possible|unlikely): probability", low) or re.match(
            r"^\d+\. ([a-z ]+): (likely|possible|unlikely);", low
        )
        if m:
            out.append(_likelihood(view, m.group(1), m.group(2), line))
            continue
        m = re.match(r"^prediction set at \d+% coverage: (.*)\.$", low)
        if m:
            listed = [] if m.group(1) == "empty" else [s.strip() for s in m.group(1).split(",")]
            expected = [view.names.get(d, d) for d in view.conformal_set]
            out.append(
                Verdict(line, "prediction", SUPPORTED if listed == expected else CONTRADICTED, f"set {expected}")
            )
            continue
        m = _VALUE_LINE.match(low)
        if m:
            out.append(_values(study, m, line))
            continue
        m = re.match(r"^(for|against|not assessable):", low)
        if m:
            section = m.group(1)
            continue
        m = re.match(r"^the notes on (.+):$", low)
        if m:
            notes_term, section = _note_term(m.group(1)), "notes"
            continue
        if not low.startswith("- "):
            continue
        body = low[2:]
        quoted = re.match(r'^(affirmed|negated|hedged|historical): "(.*)" \(', line[2:])
        if section == "notes" and quoted and notes_term:
            stated, seen = quoted.group(1), sentence_polarity(quoted.group(2), notes_term)
            flipped = {stated, seen} == {"affirmed", "negated"}
            out.append(
                Verdict(line, "notes", CONTRADICTED if flipped else SUPPORTED, f"the verifier reads it as {seen}")
            )
            continue
        verdict = _item(section, body, study, truth, view.image_table)
        if verdict is not None:
            out.append(verdict)
    return out


def verify_free_answer(text: str, study: Study, view: PredictionView, truth: dict | None = None) -> list[Verdict]:
    """A free-text LM answer ("No, pneumonia is unlikely.", "Fever and tachypnoea in the vital signs."), verified.

    Its likelihood word is held to the same rule as a composed answer's; its finding words are read
    as in an impression.
    """
    low = text.strip().lower()
    out = []
    m = re.match(r"^(yes|no),? ([a-z ]+?) is (likely|unlikely|possible)\b", low)
    if m:
        out.append(_likelihood(view, m.group(2), m.group(3), text))
        low = low[m.end() :]
    return out + verify_impression(low, study, view, truth)
