"""Text the language model reads and writes: prompts, impression targets, question-answer pairs.

Impressions are short and structured so that an evaluation can read back which diagnoses they
name (`diagnoses_named`) and whether they contradict the truth. A guided impression prompt
(`guided_prompt`) names the diagnoses the model suspects after "Impression:", and the
impression is written after it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from medmm.errors import ConfigError
from medmm.tasks import Vocabulary, default_vocabulary

IMPRESSION_PROMPT = "Impression:"
QUESTION_PREFIX = "Question:"
ANSWER_PREFIX = "Answer:"
NO_FINDING = "no acute cardiopulmonary diagnosis"
# A grounded impression that names no diagnosis lists what the prediction cannot rule out after
# these words, up to the end of its sentence; such a list is not an assertion of any of them.
NOT_RULED_OUT = "not ruled out"


def display_table(displays: Mapping[str, str] | None) -> dict[str, str]:
    """Label name -> lower-case display name, in label order: a task's (`displays`) or the default task's."""
    return {n: d.lower() for n, d in (displays if displays is not None else default_vocabulary()).items()}


def evidence_table(displays: Mapping[str, str] | None) -> dict[str, dict[str, str]]:
    """Label name -> {modality: the words that support it} from a task's vocabulary (`displays` as
    Task.displays gives it), else the default task's (LabelWords.evidence)."""
    return (displays if isinstance(displays, Vocabulary) else default_vocabulary()).evidence


MODALITY_WORDS = {"image": "the radiograph", "vitals": "the vital signs", "notes": "the notes"}


def impression_text(
    labels: Sequence[str],
    evidence: Mapping[str, Sequence[str]] | None = None,
    order: Sequence[str] = (),
    displays: Mapping[str, str] | None = None,
) -> str:
    """The target impression for a case: its diagnoses, each with its evidence.

    `evidence` maps a diagnosis to the modalities that carry its evidence in this case. The
    diagnoses named in `order` come first, in that order (a guide's order), then the others in
    the label order of `displays` (a task's label name -> display; default: the synthetic five).
    """
    table = display_table(displays)
    support_words = evidence_table(displays)
    first = [n for n in dict.fromkeys(order) if n in set(labels)]
    names = first + [n for n in table if n in set(labels) and n not in first]
    if not names:
        return f"{NO_FINDING}."
    parts = []
    for name in names:
        words = support_words.get(name, {})
        mods = [m for m in ("image", "vitals", "notes") if evidence and m in evidence.get(name, ()) and m in words]
        support = "; ".join(words[m] for m in mods)
        parts.append(f"{table[name]}" + (f" ({support})" if support else ""))
    return ", ".join(parts) + "."


def guided_prompt(names: Sequence[str], displays: Mapping[str, str] | None = None) -> str:
    """The impression prompt that names the suspected diagnoses in the given order, or "none".

    `displays` maps the label names a model knows to their display names (default: the
    synthetic-cxr five). The model's own guide lists them from least to most probable, and the
    impression names them the other way round (see medmm.train.targets.guided_pair)."""
    table = display_table(displays)
    unknown = sorted(set(names) - set(table))
    if unknown:
        raise ConfigError(f"unknown diagnosis name(s) {unknown}; known: {', '.join(table)}", where="guided prompt")
    chosen = [table[n] for n in dict.fromkeys(names)]
    # it ends in "]", which no training text ends with: after "." the LM would soon write EOS
    return f"{IMPRESSION_PROMPT} [suspected: {'; '.join(chosen) if chosen else 'none'}]"


_NEGATION = re.compile(r"\b(no|not|without|negative for|denies|free of)\b[^.,;()]*$")


_NOT_RULED_OUT_LIST = re.compile(rf"\b{NOT_RULED_OUT}\b[^.]*")


def diagnoses_named(text: str, displays: Mapping[str, str] | None = None) -> set[str]:
    """Diagnosis names an impression asserts (mentions not preceded by a negation in its clause).

    Names in a "not ruled out: ..." list are possibilities, not assertions, and are not counted.
    """
    lowered = _NOT_RULED_OUT_LIST.sub(" ", text.lower())
    found = set()
    for name, display in display_table(displays).items():
        for match in re.finditer(re.escape(display), lowered):
            clause = lowered[: match.start()]
            clause = re.split(r"[.;,]", clause)[-1]
            if not _NEGATION.search(clause):
                found.add(name)
    return found


@dataclass(frozen=True)
class QA:
    question: str
    answer: str


def qa_pairs(
    labels: Sequence[str],
    evidence: Mapping[str, Sequence[str]] | None = None,
    ask_about: Iterable[str] | None = None,
    displays: Mapping[str, str] | None = None,
) -> list[QA]:
    """Instruction-tuning pairs generated from a case's ground truth (about every label of `displays` by default)."""
    table = display_table(displays)
    support_words = evidence_table(displays)
    truth = set(labels)
    evidence = evidence or {}
    pairs = []
    for name in ask_about if ask_about is not None else table:
        display = table[name]
        if name in truth:
            pairs.append(QA(f"Is there {display}?", f"Yes, {display} is likely."))
            words = support_words.get(name, {})
            mods = [m for m in ("image", "vitals", "notes") if m in evidence.get(name, ()) and m in words]
            if mods:
                support = "; ".join(f"{words[m]} in {MODALITY_WORDS[m]}" for m in mods)
                pairs.append(QA(f"What supports {display}?", f"{support[0].upper()}{support[1:]}."))
        else:
            pairs.append(QA(f"Is there {display}?", f"No, {display} is unlikely."))
    pairs.append(QA("Summarise the findings.", impression_text(labels, evidence, displays=displays)))
    return pairs


def qa_prompt(question: str) -> str:
    return f"{QUESTION_PREFIX} {question} {ANSWER_PREFIX}"
