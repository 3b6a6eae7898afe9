"""Per-case model outputs on one cohort split: the seam between a model and the evaluation.

`medmm evaluate` and `medmm audit` work from `SplitScores` (labels, raw logits, pseudonymous
patient ids and audit attributes per case). In production they come from a Predictor run over
a cohort split (`score_cases`); any other probability source can build them with
`SplitScores.from_probabilities` (tests use an oracle that reads the synthetic ground truth).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from medmm.cases import collate, to_device
from medmm.evaluate.arrays import EvaluationError, diagnosis_names, label_matrix, score_matrix
from medmm.evaluate.calibration import apply_temperature, probs_to_logits
from medmm.evaluate.fairness import UNKNOWN
from medmm.io.cohort import Cohort
from medmm.tasks import Task
from medmm.tasks.task import age_band_label

_MANIFEST_COLUMN = {
    "sex": "sex",
    "age_band": "age_years",
    "race": "race",
    "ethnicity": "ethnicity",
    "birth_sex": "birth_sex",
}


@dataclass(frozen=True)
class SplitScores:
    """Labels and raw (temperature 1) logits of the readable, labelled cases of one split."""

    split: str  # the split's name ("val", "test") or "all" for a cohort without splits
    names: tuple[str, ...]  # diagnoses, in column order
    patient_ids: tuple[str, ...]
    labels: np.ndarray  # (N, K) int8
    logits: np.ndarray  # (N, K) float64, before any temperature
    attributes: pd.DataFrame  # (N, A) audit attributes per case (the task's, where the manifest has them)
    unreadable: int = 0  # cases left out because they could not be read
    unlabelled: int = 0  # cases left out because their labels are unknown
    missing_attributes: tuple[str, ...] = field(default=())  # audit attributes the manifest lacks

    def __post_init__(self) -> None:
        y = label_matrix(self.labels, where=f"{self.split} labels")
        z = score_matrix(self.logits, y.shape, where=f"{self.split} logits", unit=False)
        if len(self.patient_ids) != y.shape[0] or len(self.attributes) != y.shape[0]:
            raise EvaluationError(
                "expected one patient id and one attribute row per case", where=f"{self.split} scores"
            )
        object.__setattr__(self, "names", diagnosis_names(self.names, y.shape[1]))
        object.__setattr__(self, "labels", y)
        object.__setattr__(self, "logits", z)

    @property
    def n(self) -> int:
        return int(self.labels.shape[0])

    def probabilities(self, temperature: float = 1.0) -> np.ndarray:
        """Probabilities (N, K) after dividing the logits by `temperature`."""
        return apply_temperature(self.logits, temperature)

    @classmethod
    def from_probabilities(
        cls,
        split: str,
        names: Sequence[str],
        patient_ids: Sequence[str],
        labels: np.ndarray,
        probs: np.ndarray,
        attributes: pd.DataFrame,
    ) -> "SplitScores":
        """Scores from probabilities of any source (their logits are taken, clipped away from 0 and 1)."""
        y = label_matrix(labels, where=f"{split} labels")
        p = score_matrix(probs, y.shape, where=f"{split} probabilities")
        return cls(
            split,
            tuple(names),
            tuple(str(i) for i in patient_ids),
            y,
            probs_to_logits(p),
            attributes.reset_index(drop=True),
        )


def cohort_attributes(cohort: Cohort, keys: Sequence[str], task: Task) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """The task's audit attributes of the given rows (patient ids, or a built cohort's sample ids) from the manifest, and the attributes it lacks.

    Age becomes the task's age band; an empty cell becomes "unknown". An attribute whose manifest
    column is absent or empty throughout is left out (and named), rather than audited as one
    "unknown" group.
    """
    column = "sample_id" if "sample_id" in cohort.manifest.columns else "patient_id"
    manifest = cohort.manifest.set_index(cohort.manifest[column].astype(str))
    rows = manifest.reindex([str(k) for k in keys])
    columns, missing = {}, []
    for attribute in task.audit_attributes:
        source = _MANIFEST_COLUMN[attribute]
        if source not in rows.columns:
            missing.append(attribute)
            continue
        raw = rows[source].astype(object).where(rows[source].notna(), None)
        raw = raw.map(lambda v: None if v is None or str(v).strip() == "" else str(v).strip())
        if raw.isna().all():
            missing.append(attribute)
            continue
        if attribute == "age_band":
            columns[attribute] = [age_band_label(v, task.age_bands) or UNKNOWN for v in raw]
        else:
            columns[attribute] = raw.fillna(UNKNOWN).tolist()
    return pd.DataFrame(columns, index=range(len(rows))), tuple(missing)


def label_columns(names: Sequence[str], vector: Sequence[str]) -> list[int]:
    """Columns of the preprocessed label vector (whose entries are the task's labels `vector`) for the model's `names`."""
    unknown = [n for n in names if n not in vector]
    if unknown:
        raise EvaluationError(
            f"the model predicts labels its task does not define ({len(unknown)})", where="model diagnoses"
        )
    return [list(vector).index(n) for n in names]


@torch.no_grad()
def case_logits(predictor, items: list[dict], batch_size: int = 32) -> np.ndarray:
    """Raw diagnosis logits (N, K) of preprocessed cases, before any temperature."""
    out = []
    for start in range(0, len(items), batch_size):
        batch = collate(items[start : start + batch_size])
        if "notes_embeddings" in batch:
            batch["notes_embeddings"] = batch["notes_embeddings"].float()
        out.append(predictor.logits(to_device(batch, predictor.device)).float().cpu().numpy())  # (b, K)
    k = len(predictor.model.config.diagnoses)
    return np.concatenate(out).astype(np.float64) if out else np.zeros((0, k))


def score_cases(
    predictor, cohort: Cohort, split: str, items: list[dict], unreadable: int = 0
) -> tuple[SplitScores, list[dict]]:
    """SplitScores of preprocessed `items` of `cohort` (cases with unknown labels left out), and the items kept."""
    kept = [it for it in items if bool(it.get("labels_known", torch.tensor(True)))]
    names = tuple(predictor.model.config.diagnoses)
    columns = label_columns(names, predictor.task.label_names)
    if not kept:
        raise EvaluationError("no readable case with known labels", path=cohort.root, where=f"split {split}")
    ids = [str(it["meta"]["patient_id"]) for it in kept]  # bootstraps resample patients, with all their samples
    labels = np.stack([it["labels"].numpy()[columns] for it in kept])  # (N, K)
    keys = [str(it["meta"].get("key", it["meta"]["patient_id"])) for it in kept]
    attributes, missing = cohort_attributes(cohort, keys, predictor.task)
    scores = SplitScores(
        split,
        names,
        tuple(ids),
        labels,
        case_logits(predictor, kept),
        attributes,
        unreadable=unreadable,
        unlabelled=len(items) - len(kept),
        missing_attributes=missing,
    )
    return scores, kept
