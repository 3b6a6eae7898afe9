"""What grounding knows about one study: its in-scope data, what the model read, and what it predicted.

`PatientFacts` is built by the Predictor (medmm.predict) from the study as the model may read it;
`check_finding` turns one stated finding into a Claim with its verdict and the data behind it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from medmm.grounding.findings import IMAGE, NOTES, VITALS, Finding
from medmm.grounding.notes import AFFIRMED, NEGATED, Mention, NoteText, mentions
from medmm.grounding.vitals import ChannelSummary, check_rule
from medmm.records import Claim, InputUse, Study
from medmm.tasks import Vocabulary, default_vocabulary

SUPPORTED, CONTRADICTED, UNSUPPORTED = "supported", "contradicted", "unsupported"


@dataclass(frozen=True)
class PatientFacts:
    """One study as grounding reads it, beside the model's prediction for it."""

    study: Study  # the study as the model may read it (its input scope applied)
    inputs: tuple[InputUse, ...]  # every input of the original study, used or not
    vitals: Mapping[str, ChannelSummary]  # channel -> summary of the grid inside the window
    notes: tuple[NoteText, ...]  # in-scope notes, with how much of each the model read
    image_used: bool
    image_scores: Mapping[str, float]  # diagnosis -> the image branch's own score (empty without an image)
    image_thresholds: Mapping[str, float]  # diagnosis -> score at which an image finding is stated
    image_source: str  # how the image scores were made, in words
    probabilities: Mapping[str, float]  # diagnosis -> calibrated probability
    ranked: tuple[str, ...]  # diagnoses, most probable first
    operating: Mapping[str, float]  # diagnosis -> operating threshold (calibrated) or the model's guide threshold
    calibrated: bool  # operating thresholds were fitted on validation data
    conformal_set: tuple[str, ...]
    coverage: float | None
    adult: tuple[bool, str] = field(
        default=(False, "the patient's age is unknown")
    )  # adult thresholds apply, or why not
    displays: Mapping[str, str] = field(
        default_factory=lambda: default_vocabulary().lower
    )  # label -> lower-case display (the model's task)
    vocabulary: Vocabulary = field(default_factory=default_vocabulary)  # the model's task's labels and their words

    def display(self, diagnosis: str) -> str:
        """A label's display name in lower case (its name with spaces when the task has none for it)."""
        return self.displays.get(diagnosis, diagnosis.replace("_", " "))

    @property
    def by_display(self) -> dict[str, str]:
        """Lower-case display -> label name."""
        return {display: name for name, display in self.displays.items()}

    @property
    def suspected(self) -> tuple[str, ...]:
        """Diagnoses at or above their operating threshold, most probable first."""
        return tuple(d for d in self.ranked if self.probabilities[d] >= self.operating[d])

    @property
    def not_ruled_out(self) -> tuple[str, ...]:
        """Diagnoses suspected or in the prediction set, most probable first."""
        chosen = set(self.suspected) | set(self.conformal_set)
        return tuple(d for d in self.ranked if d in chosen)

    def note_mentions(self, finding: str) -> list[Mention]:
        return mentions(self.notes, finding)


def _quote(m: Mention) -> str:
    return f'"{m.sentence}" ({m.note})'


def check_vitals(facts: PatientFacts, name: str) -> tuple[str, str]:
    """(verdict, reason) of a vital-sign finding on this patient's grid."""
    if not facts.vitals:
        return UNSUPPORTED, "no vital sign was read for this study"
    ok, why = facts.adult
    if not ok:
        return UNSUPPORTED, f"no vital-sign finding is stated: {why}"
    result = check_rule(name, dict(facts.vitals))
    if result.holds is None:
        return UNSUPPORTED, result.reason
    return (SUPPORTED if result.holds else CONTRADICTED), result.reason


def check_notes(facts: PatientFacts, name: str) -> tuple[str, str]:
    """(verdict, reason) of a note finding: an affirmed mention the model read supports it; a negated one contradicts it."""
    if not facts.notes:
        return UNSUPPORTED, "no note was read for this study"
    found = facts.note_mentions(name)
    affirmed = [m for m in found if m.status == AFFIRMED and m.read]
    negated = [m for m in found if m.status == NEGATED]
    if negated:
        return CONTRADICTED, f"the notes say otherwise: {_quote(negated[0])}"
    if affirmed:
        return SUPPORTED, f"the notes say so: {_quote(affirmed[0])}"
    other = [m for m in found if m.status != AFFIRMED or not m.read]
    if other:
        m = other[0]
        kind = "beyond the text the model read" if m.status == AFFIRMED else m.status
        return UNSUPPORTED, f"only a {kind} mention: {_quote(m)}"
    return UNSUPPORTED, f"no note the model read mentions {name}"


def check_image(facts: PatientFacts, diagnosis: str) -> tuple[str, str]:
    """(verdict, reason) of a radiograph finding: the image branch's own score for its diagnosis against the threshold."""
    if not facts.image_used:
        return UNSUPPORTED, "no radiograph was read for this study"
    score = facts.image_scores.get(diagnosis)
    if score is None:
        return UNSUPPORTED, "the model gives no image score for this finding"
    cut = facts.image_thresholds.get(diagnosis, 0.5)
    text = f"{facts.image_source} for {facts.display(diagnosis)}: {score:.0%} (threshold {cut:.0%})"
    # a low score is the model's reading, not an observation: unsupported rather than contradicted
    return (SUPPORTED if score >= cut else UNSUPPORTED), text


def check_finding(facts: PatientFacts, finding: Finding, words: str, diagnosis: str | None) -> Claim:
    """The Claim that `words` (recognised as `finding`), stated for `diagnosis`, makes about this patient."""
    if finding.kind == VITALS:
        verdict, reason = check_vitals(facts, finding.name)
    elif finding.kind == NOTES:
        verdict, reason = check_notes(facts, finding.name)
    elif finding.kind == IMAGE:
        verdict, reason = check_image(facts, finding.diagnosis or "")
    else:
        verdict, reason = UNSUPPORTED, "not a finding the check can read"
    return Claim(words, finding.kind, diagnosis, verdict, reason)
