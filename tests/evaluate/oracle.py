"""An oracle probability source for evaluation tests: scores read from a synthetic cohort's ground truth.

No model is trained. For each case and diagnosis the oracle's logit is +SEPARATION when
truth.json says the diagnosis's evidence was planted in any modality of the case, and
-SEPARATION otherwise, plus seeded Gaussian noise. A planted label_noise bias removes the
evidence of a group's positive cases while their recorded labels stay, so exactly that group's
positives look negative to the oracle, as they would to any model that reads the evidence.
Labels come from the manifest (the recorded diagnoses the evaluation scores against).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from medmm.evaluate.scores import SplitScores, cohort_attributes
from medmm.io.cohort import Cohort
from medmm.synth.diagnoses import DIAGNOSIS_NAMES
from medmm.tasks import DEFAULT_TASK, load_task

SEPARATION = 2.5
NOISE = 1.5


def oracle_scores(
    root: Path, split: str, seed: int = 0, separation: float = SEPARATION, noise: float = NOISE
) -> SplitScores:
    """SplitScores of `split` of the synthetic cohort at `root`, from the oracle described above."""
    cohort = Cohort.open(root).split(split)
    ids, labels, logits = [], [], []
    for entry, row in zip(cohort.entries, cohort.manifest.itertuples()):
        truth = json.loads((entry.folder / "truth.json").read_text())
        recorded = set(filter(None, str(row.labels).split(";")))
        planted = {d for d, ev in truth["evidence"].items() if ev["modalities"]}
        rng = np.random.default_rng([seed, int(entry.patient_id[3:])])
        ids.append(entry.patient_id)
        labels.append([int(d in recorded) for d in DIAGNOSIS_NAMES])
        logits.append(
            [separation if d in planted else -separation for d in DIAGNOSIS_NAMES]
            + rng.normal(0.0, noise, len(DIAGNOSIS_NAMES))
        )
    attributes, missing = cohort_attributes(cohort, ids, load_task(DEFAULT_TASK))
    return SplitScores(
        split, DIAGNOSIS_NAMES, tuple(ids), np.array(labels), np.array(logits), attributes, missing_attributes=missing
    )
