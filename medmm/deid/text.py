"""Free-text scrubbing: a patient's own names and identifiers, as found in the record, removed.

The identifiers are gathered from the patient's files first (FHIR names, identifiers,
telecom and addresses; DICOM person names, patient ids and accession numbers), then every
occurrence in free text is replaced by a bracketed placeholder. Identifiers match whatever
their punctuation (an MRN "MRN-00123" also matches "MRN 00123" and "mrn00123"); names match
as whole words in any case. Common identifier shapes (US SSN, phone numbers, e-mail
addresses, "MRN: ..." labels) are removed too, and dates are shifted with the record.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from medmm.deid.dates import shift_dates_in_text

NAME, ID, CONTACT, ADDRESS = "[NAME]", "[ID]", "[CONTACT]", "[ADDRESS]"
_EDGE_L, _EDGE_R = r"(?<![^\W_])", r"(?![^\W_])"  # not next to a letter or digit
_HONORIFICS = frozenset({"dr", "mr", "mrs", "ms", "miss", "mx", "prof", "md", "phd", "rn", "jr", "sr", "ii", "iii"})
_GENERIC = (
    (re.compile(r"(?<!\d)\d{3}-\d{2}-\d{4}(?!\d)"), ID),  # US SSN
    (re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"), CONTACT),  # e-mail
    (re.compile(r"(?<![\d\w])(?:\+?\d{1,2}[\s.-]?)?\(?\d{3}\)?[\s.-]?\d{3}[\s.-]\d{4}(?!\d)"), CONTACT),  # phone
    (re.compile(r"(?i)\b(?:MRN|MR#|medical record(?: number| no\.?)?)\s*[:#]?\s*[A-Z0-9][A-Z0-9-]{2,}"), ID),
)


@dataclass
class Identifiers:
    """A patient's identifying strings, gathered from the record before anything is written."""

    names: set[str] = field(default_factory=set)
    ids: set[str] = field(default_factory=set)
    contacts: set[str] = field(default_factory=set)
    addresses: set[str] = field(default_factory=set)

    def add_name(self, text: str | None) -> None:
        """A person name in any form (FHIR parts, 'Family, Given', DICOM 'Family^Given^Middle')."""
        for token in re.split(r"[\s^,=]+", text or ""):
            token = token.strip(".'\"()")
            if len(token) >= 2 and any(c.isalpha() for c in token) and token.lower() not in _HONORIFICS:
                self.names.add(token)

    def add_id(self, text: str | None) -> None:
        """An identifier; its longest run of 5+ digits too, since notes often drop a prefix ("MRN-0012345")."""
        if text and sum(c.isalnum() for c in text) >= 3:
            self.ids.add(text.strip())
            digits = max(re.findall(r"\d+", text), key=len, default="")
            if len(digits) >= 5:
                self.ids.add(digits)

    def add_contact(self, text: str | None) -> None:
        if text and len(text.strip()) >= 3:
            self.contacts.add(text.strip())

    def add_address(self, text: str | None) -> None:
        if text and len(text.strip()) >= 3:
            self.addresses.add(text.strip())

    def all_values(self) -> set[str]:
        return self.names | self.ids | self.contacts | self.addresses


def _flexible(value: str) -> str:
    """A pattern for an identifier that ignores its punctuation and spacing."""
    chars = [re.escape(c) for c in value if c.isalnum()]
    return r"[\s\-./:#]?".join(chars)


def _alternation(patterns: list[str]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    ordered = sorted(set(patterns), key=len, reverse=True)  # longest first: "Anne-Marie" before "Anne"
    return re.compile(_EDGE_L + "(?:" + "|".join(ordered) + ")" + _EDGE_R, re.IGNORECASE)


class Scrubber:
    """Removes one patient's identifiers from text and shifts the dates in it."""

    def __init__(self, identifiers: Identifiers, offset_days: int):
        self.offset_days = offset_days
        self._rules = [
            (_alternation([_flexible(v) for v in identifiers.ids]), ID),
            (_alternation([p for v in identifiers.contacts for p in (re.escape(v), _flexible(v))]), CONTACT),
            (_alternation([r"\s+".join(map(re.escape, v.split())) for v in identifiers.addresses]), ADDRESS),
            (_alternation([re.escape(v) for v in identifiers.names]), NAME),
        ]
        self._any = [rule for rule, _ in self._rules if rule is not None]

    def known(self, text: str) -> tuple[str, int]:
        """Text with the record's own identifiers replaced, and how many were."""
        total = 0
        for rule, placeholder in self._rules:
            if rule is not None:
                text, n = rule.subn(placeholder, text)
                total += n
        return text, total

    def free_text(self, text: str) -> tuple[str, int]:
        """A note or description: known identifiers, common identifier shapes and dates handled."""
        text, total = self.known(text)
        for rule, placeholder in _GENERIC:
            text, n = rule.subn(placeholder, text)
            total += n
        text, shifted = shift_dates_in_text(text, self.offset_days)
        return text, total + shifted

    def contains_identifier(self, text: str) -> bool:
        """Whether text holds one of the record's identifiers (used for file and folder names)."""
        return any(rule.search(text) for rule in self._any)
