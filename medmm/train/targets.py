"""Text targets of a case: the impression to write and the question-answer pairs to learn.

From a synthetic case's truth.json when there is one (which modality carries which diagnosis),
else from the labels alone. Only modalities present in the study are named as evidence.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from medmm.prompts import QA, impression_text, qa_pairs


@dataclass(frozen=True)
class CaseText:
    impression: str
    qa: tuple[QA, ...]


def load_truth(folder: str | Path) -> dict | None:
    """The parsed truth.json of a synthetic case, or None for real data."""
    path = Path(folder) / "truth.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def case_text(labels: list[str], present: set[str], truth: dict | None) -> CaseText:
    """Targets for a case with these diagnosis names and present modalities."""
    evidence = {}
    if truth is not None:
        for name, entry in (truth.get("evidence") or {}).items():
            evidence[name] = [m for m in entry.get("modalities", ()) if m in present]
    return CaseText(impression_text(labels, evidence), tuple(qa_pairs(labels, evidence)))
