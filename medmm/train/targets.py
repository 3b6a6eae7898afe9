"""Text targets of a case: the impression to write and the question-answer pairs to learn.

From a synthetic case's truth.json when there is one (which modality carries which diagnosis),
else from the labels alone. Only modalities present in the study are named as evidence.
`noisy_guide` picks the diagnoses a guided impression prompt names in training.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection, Mapping, Sequence

from medmm.lm.prompts import QA, guided_prompt, impression_text, qa_pairs
from medmm.synth.planted import TRUTH_FILE
from medmm.tasks import default_vocabulary


@dataclass(frozen=True)
class CaseText:
    impression: str
    qa: tuple[QA, ...]
    labels: tuple[str, ...] = ()
    evidence: Mapping[str, tuple[str, ...]] = field(
        default_factory=dict
    )  # diagnosis -> present modalities with its evidence
    displays: Mapping[str, str] | None = None  # the task's label name -> display (None: the synthetic five)


def load_truth(folder: str | Path) -> dict | None:
    """The parsed truth.json of a synthetic case, or None for real data."""
    path = Path(folder) / TRUTH_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def case_text(
    labels: list[str], present: set[str], truth: dict | None, displays: Mapping[str, str] | None = None
) -> CaseText:
    """Targets for a case with these diagnosis names and present modalities (`displays`: the task's labels)."""
    evidence = {}
    if truth is not None:
        for name, entry in (truth.get("evidence") or {}).items():
            evidence[name] = [m for m in entry.get("modalities", ()) if m in present]
    evidence = {name: tuple(mods) for name, mods in evidence.items()}
    return CaseText(
        impression_text(labels, evidence, displays=displays),
        tuple(qa_pairs(labels, evidence, displays=displays)),
        tuple(labels),
        evidence,
        displays,
    )


def noisy_guide(
    labels: Collection[str], rng: random.Random, drop: float, add: float, names: Sequence[str] | None = None
) -> list[str]:
    """The true diagnoses, each dropped with chance `drop`, plus each false one with chance `add`, in a random order.

    One draw per label in `names` order (the task's labels), then a shuffle, so a seeded `rng` gives the
    same guide. The noise keeps the LM reading the multimodal context rather than only copying
    the guide; the order varies because at inference the guide is ordered by probability.
    """
    truth = set(labels)
    named = []
    for name in names if names is not None else tuple(default_vocabulary()):
        draw = rng.random()
        if (draw >= drop) if name in truth else (draw < add):
            named.append(name)
    rng.shuffle(named)
    return named


def guided_pair(text: CaseText, rng: random.Random, drop: float, add: float) -> tuple[str, str]:
    """A training (prompt, impression) of a case with a noisy guide; the impression reads the guide backwards.

    At inference the guide lists the suspected diagnoses from least to most probable, so the most
    probable sits next to where the impression begins and is named first (a small LM copies the
    nearest name most reliably).
    """
    names = noisy_guide(text.labels, rng, drop, add, tuple(text.displays) if text.displays is not None else None)
    return guided_prompt(names, text.displays), impression_text(
        text.labels, text.evidence, order=names[::-1], displays=text.displays
    )
