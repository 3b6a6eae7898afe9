"""Cohort description for evaluation outputs: split sizes, prevalence, modalities and subgroups (counts only)."""

from __future__ import annotations

import json
from collections import Counter

from medmm.evaluate.scores import SplitScores
from medmm.io.cohort import Cohort

SYNTH_MARKER = ".medmm-synth.json"  # written by `medmm synth` beside the manifest
SYNTH_KEYS = (
    "patients",
    "seed",
    "image_size",
    "missing_image",
    "missing_notes",
    "missing_vitals",
    "evidence_rate",
    "bias_attribute",
    "bias_value",
    "bias_kind",
    "bias_strength",
    "train_fraction",
    "val_fraction",
    "test_fraction",
)


def describe_cohort(cohort: Cohort) -> dict:
    """Name, size, split counts and, for a synthetic cohort, the generator settings that matter to readers."""
    splits = Counter(e.split or "none" for e in cohort.entries)  # rows: patients, or a built cohort's samples
    out = {
        "name": cohort.root.name,
        "patients": len({e.patient_id for e in cohort.entries}),
        "splits": dict(sorted(splits.items())),
        "synthetic": None,
    }
    if any(e.sample_id is not None for e in cohort.entries):
        out["samples"] = len(cohort)
    marker = cohort.root / SYNTH_MARKER
    if marker.is_file():
        try:
            data = json.loads(marker.read_text(encoding="utf-8"))
            config = data.get("config", {}) if isinstance(data, dict) else {}
        except (OSError, ValueError):
            config = {}
        out["synthetic"] = {k: config.get(k) for k in SYNTH_KEYS if k in config}
        out["synthetic"]["generator_version"] = data.get("version") if isinstance(data, dict) else None
    return out


def describe_split(scores: SplitScores, items: list[dict] | None = None) -> dict:
    """Counts of one evaluated split: cases, positives per diagnosis, modalities present, audit groups."""
    y = scores.labels
    out: dict = {
        "split": scores.split,
        "cases": scores.n,
        "patients": len(set(scores.patient_ids)),
        "unreadable": scores.unreadable,
        "unlabelled": scores.unlabelled,
        "positives": {name: int(y[:, k].sum()) for k, name in enumerate(scores.names)},
        "no_diagnosis": int((y.sum(axis=1) == 0).sum()),
        "modalities": None,
        "groups": {a: dict(sorted(Counter(scores.attributes[a]).items())) for a in scores.attributes.columns},
        "missing_attributes": list(scores.missing_attributes),
    }
    if items is not None:
        present = Counter(m for it in items for m in it["meta"].get("modalities", ()))
        out["modalities"] = {m: int(present.get(m, 0)) for m in ("image", "notes", "vitals")}
    return out
