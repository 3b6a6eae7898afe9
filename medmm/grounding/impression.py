"""Ground a generated impression: every claim it makes is checked against the study and the prediction.

An impression reads "heart failure (cardiomegaly; weight gain and falling oxygen saturation),
pleural effusion (dullness to percussion)." Each named diagnosis is checked against the
prediction (at or above its operating threshold, or in the prediction set); each finding in its
parentheses against the patient's data (medmm.grounding.facts). What is contradicted or
unsupported is removed (a diagnosis keeps its name when only its findings go) and kept aside
with the reason. "no acute cardiopulmonary diagnosis" stands only when nothing is suspected and
the prediction set is empty; otherwise the text names what cannot be ruled out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from medmm.grounding.facts import CONTRADICTED, SUPPORTED, UNSUPPORTED, PatientFacts, check_finding
from medmm.grounding.findings import finding_for, join_findings, split_findings
from medmm.lm.prompts import NO_FINDING, NOT_RULED_OUT
from medmm.records import Claim

_CLAUSE = re.compile(r"^(?P<name>[^()]*?)\s*(?:\((?P<evidence>[^()]*)\))?$")
_NEGATED_NAME = re.compile(r"^(no|not|without|negative for)\s+(?P<name>.+)$")


@dataclass(frozen=True)
class GroundedText:
    """A generated text after the check: what may be given out, and every claim kept or removed."""

    text: str
    claims: tuple[Claim, ...]  # kept (supported)
    removed: tuple[Claim, ...]  # contradicted or unsupported, with the reason


def clauses(text: str) -> list[str]:
    """Top-level clauses: split at ",", ";" and "." outside parentheses."""
    out, depth, current = [], 0, []
    for ch in text:
        depth += ch == "("
        depth -= ch == ")" and depth > 0
        if ch in ",;." and depth == 0:
            out.append("".join(current))
            current = []
        else:
            current.append(ch)
    out.append("".join(current))
    return [" ".join(c.split()) for c in out if c.strip()]


def percent(p: float) -> str:
    """A probability as a whole percentage; "<1%" and ">99%" rather than a 0% or 100% the model never means."""
    text = f"{p:.0%}"
    return {"0%": "<1%", "100%": ">99%"}.get(text, text)


def prediction_reason(facts: PatientFacts, diagnosis: str) -> str:
    """The prediction behind a diagnosis, in words: probability, operating threshold, prediction set."""
    p, cut = facts.probabilities[diagnosis], facts.operating[diagnosis]
    side = "at or above" if p >= cut else "below"
    kind = "operating threshold" if facts.calibrated else "uncalibrated guide threshold"
    text = f"probability {percent(p)}, {side} its {kind} ({percent(cut)})"
    if facts.coverage is not None:
        where = "in" if diagnosis in facts.conformal_set else "outside"
        text += f"; {where} the prediction set at {facts.coverage:.0%} coverage"
    return text


def not_ruled_out_sentence(facts: PatientFacts) -> str:
    """The sentence naming what cannot be ruled out ("" when nothing), with each probability."""
    names = facts.not_ruled_out
    if not names:
        return ""
    basis = (
        f"prediction set at {facts.coverage:.0%} coverage"
        if facts.coverage is not None
        else "at or above the operating threshold"
    )
    listed = ", ".join(f"{facts.display(d)} ({percent(facts.probabilities[d])})" for d in names)
    return f"{NOT_RULED_OUT} ({basis}): {listed}."


def _diagnosis_in(name: str, by_display: dict[str, str]) -> tuple[str | None, str]:
    """(the one diagnosis a clause's name part names, the words left over) or (None, name)."""
    if name in by_display:
        return by_display[name], ""
    found = [(d, n) for d, n in by_display.items() if re.search(rf"\b{re.escape(d)}\b", name)]
    if len(found) != 1:
        return None, name
    display, diagnosis = found[0]
    return diagnosis, " ".join(re.sub(rf"\b{re.escape(display)}\b", " ", name).split())


def ground_impression(text: str, facts: PatientFacts) -> GroundedText:
    """The impression as it may be given out, with every claim it made kept or removed (see the module docstring)."""
    kept: list[Claim] = []
    removed: list[Claim] = []
    pieces: list[str] = []
    named: list[str] = []
    stated: dict[str, set[str]] = {}  # per diagnosis, the finding words already checked
    said_no_finding = False
    by_display = facts.by_display
    for clause in clauses(text.lower()):
        m = _CLAUSE.match(clause)
        if m is None:
            removed.append(Claim(clause, "text", None, UNSUPPORTED, "text the check cannot read"))
            continue
        name = m.group("name").strip()
        if name == NO_FINDING:
            said_no_finding = True
            continue
        negated = _NEGATED_NAME.match(name)
        if negated and negated.group("name") in by_display and not m.group("evidence"):
            diagnosis = by_display[negated.group("name")]
            if diagnosis in facts.not_ruled_out:
                removed.append(
                    Claim(
                        name,
                        "statement",
                        diagnosis,
                        CONTRADICTED,
                        f"not ruled out: {prediction_reason(facts, diagnosis)}",
                    )
                )
            else:
                kept.append(Claim(name, "statement", diagnosis, SUPPORTED, prediction_reason(facts, diagnosis)))
                pieces.append(name)
            continue
        diagnosis, extra = _diagnosis_in(name, by_display)
        if extra:
            removed.append(Claim(extra, "text", diagnosis, UNSUPPORTED, "words the check cannot verify"))
        if diagnosis is None:
            continue
        groups = [split_findings(g) for g in (m.group("evidence") or "").split(";")]
        if diagnosis not in facts.not_ruled_out:
            why = f"the prediction does not support it: {prediction_reason(facts, diagnosis)}"
            removed.append(Claim(facts.display(diagnosis), "diagnosis", diagnosis, CONTRADICTED, why))
            removed.extend(
                Claim(w, "text", diagnosis, UNSUPPORTED, f"stated for {facts.display(diagnosis)}, which was removed")
                for g in groups
                for w in g
            )
            continue
        if diagnosis not in named:
            kept.append(
                Claim(facts.display(diagnosis), "diagnosis", diagnosis, SUPPORTED, prediction_reason(facts, diagnosis))
            )
        kept_groups = []
        checked = stated.setdefault(diagnosis, set())
        for group in groups:
            words_kept = []
            for words in group:
                if words in checked:  # the draft repeats itself: one claim, checked and given out once
                    continue
                checked.add(words)
                finding = finding_for(words, facts.vocabulary.image_words)
                if finding is None:
                    removed.append(Claim(words, "text", diagnosis, UNSUPPORTED, "not a finding the check can verify"))
                    continue
                claim = check_finding(facts, finding, words, diagnosis)
                (kept if claim.verdict == SUPPORTED else removed).append(claim)
                if claim.verdict == SUPPORTED and words not in words_kept:
                    words_kept.append(words)
            if words_kept:
                kept_groups.append(join_findings(words_kept))
        if diagnosis in named:  # a repeated diagnosis: its findings join the first clause
            index = named.index(diagnosis)
            pieces[index] = _merge(pieces[index], kept_groups)
            continue
        named.append(diagnosis)
        pieces.append(facts.display(diagnosis) + (f" ({'; '.join(kept_groups)})" if kept_groups else ""))
    if said_no_finding:
        if facts.not_ruled_out:
            why = f"the prediction does not rule out {', '.join(facts.display(d) for d in facts.not_ruled_out)}"
            removed.append(Claim(NO_FINDING, "statement", None, CONTRADICTED, why))
        elif named:
            removed.append(Claim(NO_FINDING, "statement", None, CONTRADICTED, "the impression names a diagnosis"))
        else:
            kept.append(Claim(NO_FINDING, "statement", None, SUPPORTED, _nothing_reason(facts)))
            pieces.append(NO_FINDING)
    out = ", ".join(pieces) + "." if pieces else ""
    if not named and facts.not_ruled_out:
        sentence = not_ruled_out_sentence(facts)
        kept.append(
            Claim(sentence.rstrip("."), "statement", None, SUPPORTED, "the prediction set and operating thresholds")
        )
        out = f"{out} {sentence}".strip()
    return GroundedText(out, tuple(kept), tuple(removed))


def _merge(piece: str, groups: list[str]) -> str:
    if not groups:
        return piece
    if piece.endswith(")"):
        return piece[:-1] + "; " + "; ".join(groups) + ")"
    return f"{piece} ({'; '.join(groups)})"


def _nothing_reason(facts: PatientFacts) -> str:
    kind = "operating threshold" if facts.calibrated else "uncalibrated guide threshold"
    text = f"no diagnosis reaches its {kind}"
    if facts.coverage is not None:
        text += f" and the prediction set at {facts.coverage:.0%} coverage is empty"
    return text
