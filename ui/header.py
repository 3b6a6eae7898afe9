"""The header above every result: who, when, from which files, and what was skipped.

It is drawn when the input is read and redrawn once the model says what it used, and it
stays with the result: a later stage never removes it, and the warnings about skipped files
live here (not in the passing status line), so they are still on the final page.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Sequence

from medmm.records import Prediction, Study
from ui.files import NOT_READ, NOT_USED, USED, FileRow, file_rows, relative
from ui.localtime import Zone, local_time
from ui.patient import PatientFacts, format_age, patient_facts

_STATUS_CLASS = {USED: "medmm-file-used", NOT_USED: "medmm-file-unused", NOT_READ: "medmm-file-unread"}


def _fact(label: str, value: str, source: str, key: str) -> str:
    where = f' <span class="medmm-source">({html.escape(source)})</span>' if source else ""
    return f'<div class="medmm-fact" data-fact="{key}"><dt>{html.escape(label)}</dt><dd>{html.escape(value)}{where}</dd></div>'


def facts_html(facts: PatientFacts, study: Study, zone: Zone) -> str:
    """Patient ID, age, sex and study date (in the clinician's zone, with how the study time was chosen)."""
    pid = str(facts.patient_id.value) if facts.patient_id.value else "not stated"
    sex = str(facts.sex.value) if facts.sex.value else "not stated"
    age = format_age(facts.age_years.value if isinstance(facts.age_years.value, float) else None)
    if study.time is not None:
        when = f"{local_time(study.time, zone)} ({zone.label(study.time)})"
        how = f"study time from {study.time_source}" if study.time_source else "study time"
    else:
        when, how = "unknown: no acquisition, note or reading time in the files", ""
    parts = [
        _fact("Patient ID", pid, facts.patient_id.source, "patient-id"),
        *([_fact("DICOM PatientID", facts.image_id, "images", "dicom-patient-id")] if facts.image_id else []),
        _fact("Age at the study", age, facts.age_years.source, "age"),
        _fact("Sex", sex, facts.sex.source, "sex"),
        _fact("Study date", when, how, "study-date"),
    ]
    return f'<dl class="medmm-facts">{"".join(parts)}</dl>'


def files_html(rows: Sequence[FileRow]) -> str:
    """The input files with their fate, used first."""
    if not rows:
        return '<p class="medmm-files-none">No input files.</p>'
    order = {USED: 0, "read": 1, NOT_USED: 2, NOT_READ: 3}
    body = "".join(
        f'<tr class="{_STATUS_CLASS.get(r.status, "")}" data-file="{html.escape(r.name)}" data-status="{html.escape(r.status)}">'
        f"<td>{html.escape(r.name)}</td><td>{html.escape(r.kind)}</td><td><strong>{html.escape(r.status)}</strong></td>"
        f"<td>{html.escape(r.detail)}</td></tr>"
        for r in sorted(rows, key=lambda r: order.get(r.status, 4))
    )
    counts = {s: sum(r.status == s for r in rows) for s in (USED, NOT_USED, NOT_READ)}
    summary = f"{len(rows)} file{'s' if len(rows) != 1 else ''}: {counts[USED]} used, {counts[NOT_USED]} not used, {counts[NOT_READ]} not read"
    return (
        f'<details class="medmm-files" open><summary>{html.escape(summary)}</summary><table>'
        f"<thead><tr><th>file</th><th>kind</th><th>by the model</th><th>what it held, and why</th></tr></thead>"
        f"<tbody>{body}</tbody></table></details>"
    )


def warnings_block(study: Study, folder: Path, facts: PatientFacts, extra: Sequence[str] = ()) -> str:
    """Everything skipped, dropped or assumed while reading, and record/image disagreements; empty when none."""
    items = [
        f"{relative(w.source, folder)}: {w.where + ': ' if w.where else ''}{relative(w.message, folder)}"
        for w in study.warnings
    ]
    items = list(facts.conflicts) + items + [w for w in extra if w not in items]
    if not items:
        return ""
    shown = "".join(f"<li>{html.escape(w)}</li>" for w in items[:30])
    more = f"<li>and {len(items) - 30} more</li>" if len(items) > 30 else ""
    return (
        f'<div class="medmm-input-warnings" role="note"><strong>{len(items)} input warning{"s" if len(items) != 1 else ""}</strong>'
        f"<ul>{shown}{more}</ul></div>"
    )


def header_html(study: Study, prediction: Prediction | None, folder: Path, zone: Zone) -> str:
    """The whole header: facts, no-answer notice, files, warnings."""
    facts = patient_facts(study)
    refusal = ""
    if prediction is not None and not prediction.answered:
        refusal = (
            f'<p class="medmm-no-answer" role="alert"><strong>No answer:</strong> {html.escape(prediction.refusal)}</p>'
        )
    return (
        f'<section class="medmm-header" aria-label="Patient and inputs of this result">{facts_html(facts, study, zone)}{refusal}'
        f"{files_html(file_rows(study, prediction, folder))}{warnings_block(study, folder, facts)}</section>"
    )


def pending_header(names: Sequence[str]) -> str:
    """The header while a new input is being read: the files named, nothing else yet."""
    listed = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
    return (
        f'<section class="medmm-header medmm-pending"><p>Reading {len(names)} file{"s" if len(names) != 1 else ""}: '
        f"{html.escape(listed)}</p></section>"
    )
