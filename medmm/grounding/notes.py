"""Mentions of a finding in the patient's notes, each read as affirmed, negated, hedged or historical.

A mention is looked at inside its sentence: history ("history of pneumonia in 2019", "Past
history: ...") and hedges ("cannot exclude", "possible", "query") come first, then a negation cue
before the mention in the same clause ("No ankle oedema", "denies cough", "afebrile"). Only an
affirmed mention in text the model read supports a finding; a negated one anywhere in the notes
in the model's scope argues against it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from medmm.grounding.findings import NOTE_FINDINGS

AFFIRMED, NEGATED, HEDGED, HISTORICAL = "affirmed", "negated", "hedged", "historical"

_SENTENCE = re.compile(r"[^.!?\n]+[.!?]?")
_HISTORY = re.compile(
    r"\b(history of|past (medical )?history|background (includes|of)|previous(ly)?|prior (episode|admission)|"
    r"in (19|20)\d\d|as a child|since resolved|remote|family history)\b",
    re.IGNORECASE,
)
_HEDGE = re.compile(
    r"\b(cannot (be )?exclude(d)?|can ?not be excluded|not (be )?excluded|cannot (be )?ruled? out|not ruled out|possible|possibly|"
    r"query|questionable|borderline|may (be|represent)|likely atelectasis|if febrile|equivocal)\b|\?",
    re.IGNORECASE,
)
_NEGATION = re.compile(
    r"\b(no|not|without|denies|denied|negative for|free of|nil|absence of|resolved)\b", re.IGNORECASE
)
_CLAUSE_BREAK = re.compile(r"[,;:]|\bbut\b|\bhowever\b", re.IGNORECASE)
_SELF_NEGATING = re.compile(r"\bafebrile\b|\bapyrexial\b", re.IGNORECASE)
_HEADING = re.compile(r"^[A-Z][A-Z ]+:\s*")  # "EXAMINATION: " before the sentence proper


@dataclass(frozen=True)
class NoteText:
    """One note the model's scope admits: what it is, its text, and how many leading characters the model read."""

    label: str  # e.g. "progress note 2026-02-28 10:00 UTC (DocumentReference/abc)"
    text: str
    read_chars: int  # the model read text[:read_chars] (0: not read at all, e.g. older than the newest notes kept)
    time: datetime | None = None


@dataclass(frozen=True)
class Mention:
    finding: str
    status: str  # affirmed | negated | hedged | historical
    sentence: str
    note: str  # the note's label
    read: bool  # inside the text the model read


def _status(sentence: str, start: int) -> str:
    if _HISTORY.search(sentence):
        return HISTORICAL
    if _HEDGE.search(sentence):
        return HEDGED
    clause = _CLAUSE_BREAK.split(sentence[:start])[-1]
    return NEGATED if _NEGATION.search(clause) else AFFIRMED


def mentions(notes: tuple[NoteText, ...], finding: str) -> list[Mention]:
    """Every sentence of `notes` that mentions `finding` (a key of NOTE_FINDINGS), one Mention per sentence.

    An affirmation needs the finding's own words; a negation may use the broader words its
    absence covers ("denies cough" is a negated productive cough).
    """
    spec = NOTE_FINDINGS[finding]
    out = []
    for note in notes:
        for m in _SENTENCE.finditer(note.text):
            raw = m.group(0)
            heading = _HEADING.match(raw.lstrip())
            skip = (len(raw) - len(raw.lstrip())) + (heading.end() if heading else 0)
            sentence = raw[skip:].strip()
            if not sentence:
                continue
            offset = m.start() + skip
            found = spec.mention.search(sentence)
            status = _status(sentence, found.start()) if found else None
            if status in (None, AFFIRMED) and spec.absence.search(sentence):
                broad = spec.absence.search(sentence)
                broad_status = _status(sentence, broad.start())
                if broad_status == NEGATED or (status is None and broad_status in (HEDGED, HISTORICAL)):
                    found, status = broad, broad_status
            if finding == "fever" and _SELF_NEGATING.search(sentence):
                found, status = _SELF_NEGATING.search(sentence), NEGATED
            if found is None or status is None:
                continue
            out.append(Mention(finding, status, sentence, note.label, offset + found.end() <= note.read_chars))
    return out


def note_label(type_display: str | None, time_text: str | None, source: str | None) -> str:
    kind = (type_display or "note").lower()
    parts = [kind] + ([time_text] if time_text else [])
    return " ".join(parts) + (f" ({source})" if source else "")
