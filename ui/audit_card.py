"""How the model did, in its fairness audit, for patients in this patient's demographic groups.

The audit folder is what `medmm audit` writes (audit.json: one entry per group of the model's
task's audit attributes, by default sex, age band, race and ethnicity, and their pairwise
intersections, with metrics, status and flags; `model.strata` names the attributes and age
bands). The card shows the patient's group for each single attribute with its AUROC, TPR and
FPR, in the audit's own strata, and warns
when a group (or an intersection the patient belongs to) was flagged, was too small to score, is
not in the audit at all, or when the audit was made for another model.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection, Mapping

from medmm.evaluate.audit_document import AUDIT_FILE, audit_record
from medmm.evaluate.audit_document import load_audit as read_audit_file
from medmm.evaluate.fairness import UNKNOWN, AuditResult
from medmm.records import Demographics
from medmm.tasks.load import DEFAULT_AGE_BANDS, DEFAULT_AUDIT
from medmm.tasks.task import age_band_label
from ui.views import attribute_label, group_label

CARD_METRICS = ("auroc", "tpr", "fpr")
_METRIC_LABELS = {"auroc": "AUROC", "tpr": "sensitivity (TPR)", "fpr": "false-positive rate"}
_STATUS = {
    "reference": "reference group",
    "scored": "scored",
    "too small": "too small to score",
    "absent": "not in the audit",
}


@dataclass(frozen=True)
class GroupRow:
    """The patient's group for one attribute, as the audit saw it."""

    attribute: str
    group: str
    n: int | None  # cases in the audit's test split (None: group not in the audit)
    status: str  # reference | scored | too small | absent
    metrics: tuple[tuple[str, float | None, tuple[float | None, float | None]], ...] = ()  # (metric, value, CI)
    flags: tuple[str, ...] = ()  # the audit's reasons, one per flagged metric


@dataclass(frozen=True)
class GroupCard:
    """The card: rows per attribute and the warnings to show above them."""

    available: bool
    rows: tuple[GroupRow, ...] = ()
    warnings: tuple[str, ...] = ()
    min_group_size: int | None = None
    source: str = ""  # what the audit was made on (cohort name and split), for the caption


def load_audit(audit_dir: str | Path | None) -> AuditResult | None:
    """The audit of an audit folder, or None when there is none; EvaluationError names the file and a malformed field."""
    if audit_dir is None:
        return None
    path = Path(audit_dir) / AUDIT_FILE
    if not path.is_file():
        return None
    return read_audit_file(path)


def audit_strata(audit: AuditResult | None) -> tuple[tuple[str, ...], tuple[float, ...]]:
    """The single attributes and age bands an audit grouped by (an audit that does not say: medmm's defaults)."""
    context = audit.context if audit is not None else None
    attributes = (context.strata_attributes if context else ()) or DEFAULT_AUDIT
    bands = (context.age_bands if context else ()) or tuple(float(b) for b in DEFAULT_AGE_BANDS)
    return tuple(attributes), bands


def patient_groups(
    demographics: Demographics | None,
    attributes: Collection[str] = DEFAULT_AUDIT,
    age_bands: Collection[float] = DEFAULT_AGE_BANDS,
) -> dict[str, str]:
    """The patient's group label per audited attribute, as the audit names groups ('unknown' when not recorded)."""
    d = demographics or Demographics(patient_id="")
    values = {
        "sex": d.sex,
        "age_band": age_band_label(d.age_years, tuple(age_bands)),
        "race": d.race,
        "ethnicity": d.ethnicity,
        "birth_sex": d.birth_sex,
    }
    return {a: values.get(a) or d.extra.get(a) or UNKNOWN for a in attributes}


def model_ids(model_dir: str | Path) -> frozenset[str]:
    """The ids an audit may name this checkpoint by: its id now, and its id before a calibration file was added.

    An id is the first 16 hex digits of the SHA-256 of checksums.json. An audit made before the
    checkpoint was calibrated names the same weights by the id of their checksums without
    calibration.json (written as the checkpoint writes them: sorted keys, indent 2); those audits
    are matched too.
    """
    path = Path(model_dir) / "checksums.json"
    try:
        raw = path.read_bytes()
        sums = json.loads(raw)
    except (OSError, ValueError):
        return frozenset()
    ids = {hashlib.sha256(raw).hexdigest()[:16]}
    if isinstance(sums, dict) and "calibration.json" in sums:
        weights = {k: v for k, v in sums.items() if k != "calibration.json"}
        ids.add(hashlib.sha256(json.dumps(weights, indent=2, sort_keys=True).encode()).hexdigest()[:16])
    return frozenset(ids)


def group_card(
    audit: AuditResult | Mapping[str, Any] | None, demographics: Demographics | None, model_id: str | Collection[str]
) -> GroupCard:
    """The card for a patient with these demographics; `model_id`: the id(s) the model in use is known by.

    `audit`: the audit (an audit.json document is read into one first), or None when there is none."""
    audit = audit_record(audit)
    if audit is None:
        return GroupCard(
            False,
            warnings=(
                "No fairness audit is available for this model: its performance for this patient's groups is unknown.",
            ),
        )
    warnings: list[str] = []
    context = audit.context
    audited_model = context.model_id if context else None
    known = {model_id} if isinstance(model_id, str) else set(model_id)
    if audited_model and audited_model not in known:
        warnings.append(
            "This audit was made for a different model version; its figures may not describe the model in use."
        )
    groups = {(g.attribute, g.group): g for g in audit.groups}
    flags: dict[tuple[str, str], list[str]] = {}
    for f in audit.flags:
        flags.setdefault((f.attribute, f.group), []).append(f"{f.metric.upper()}: {f.reason}")
    attributes, bands = audit_strata(audit)
    mine = patient_groups(demographics, attributes, bands)
    wanted = [(a, mine[a]) for a in attributes]
    rows = []
    for attribute, group in wanted:
        found = groups.get((attribute, group))
        if found is None:
            rows.append(GroupRow(attribute, group, None, "absent"))
            continue
        metrics = tuple(
            (m.metric, _defined(m.value), (_defined(m.ci[0]), _defined(m.ci[1])))
            for m in found.metrics
            if m.metric in CARD_METRICS
        )
        rows.append(
            GroupRow(attribute, group, found.n, found.status, metrics, tuple(flags.get((attribute, group), ())))
        )
    minimum = audit.min_group_size
    for row in rows:
        name = f"{attribute_label(row.attribute)} {group_label(row.attribute, row.group)}"
        if row.flags:
            warnings.append(
                f"Flagged by the audit: the model performs differently for {name} ({'; '.join(row.flags)})."
            )
        elif row.status == "too small":
            warnings.append(
                f"Too few patients ({row.n}, fewer than {minimum}) in the audit for {name} to judge the model's performance."
            )
        elif row.status == "absent":
            warnings.append(f"No patient of the group {name} was in the audit: performance for it is unknown.")
    for (attribute, group), reasons in sorted(flags.items()):
        if " x " not in str(attribute):
            continue
        parts = str(attribute).split(" x ")
        if all(mine.get(a) == g for a, g in zip(parts, str(group).split(" / "))):
            warnings.append(
                f"Flagged by the audit for the intersection {attribute_label(attribute)} {group_label(attribute, group)}."
            )
    split = (context.split_name if context else None) or "test"
    cohort = context.cohort_name if context else None
    source = f"{split} split" + (f' of cohort "{cohort}"' if cohort else "")
    return GroupCard(True, tuple(rows), tuple(warnings), minimum, source)


def _defined(value: float) -> float | None:
    """A figure as the card shows it: None where the audit found it undefined."""
    return value if math.isfinite(value) else None


def card_html(card: GroupCard) -> str:
    """The group card as an HTML fragment; warnings first."""
    parts = ['<div class="medmm-group-card"><h4>Model performance for this patient\'s groups (fairness audit)</h4>']
    if card.warnings:
        items = "".join(f"<li>{html.escape(w)}</li>" for w in card.warnings)
        parts.append(f'<ul class="medmm-group-warnings" role="alert">{items}</ul>')
    if card.available:
        head = "".join(f"<th>{html.escape(_METRIC_LABELS[m])}</th>" for m in CARD_METRICS)
        rows = []
        for r in card.rows:
            values = {m: (v, ci) for m, v, ci in r.metrics}
            cells = "".join(f"<td>{_estimate(*values[m]) if m in values else '-'}</td>" for m in CARD_METRICS)
            status = _STATUS.get(r.status, r.status)
            if r.flags:
                status += ", flagged"
            rows.append(
                f"<tr><td>{html.escape(attribute_label(r.attribute))}</td><td>{html.escape(group_label(r.attribute, r.group))}</td>"
                f"<td>{'-' if r.n is None else r.n}</td><td>{html.escape(status)}</td>{cells}</tr>"
            )
        parts.append(
            f"<table><thead><tr><th>attribute</th><th>group</th><th>n</th><th>status</th>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>"
        )
        if card.source:
            parts.append(
                f'<p class="medmm-caption">Figures from the audit on the {html.escape(card.source)}, with 95% intervals.</p>'
            )
    parts.append("</div>")
    return "".join(parts)


def _estimate(value: float | None, ci: tuple[float | None, float | None]) -> str:
    if value is None:
        return "n/a"
    low, high = ci
    interval = f" ({low:.2f}-{high:.2f})" if low is not None and high is not None else ""
    return f"{value:.2f}{interval}"
