"""The image-branch score at which a radiograph finding is stated, fitted per diagnosis on validation data.

The target is whether the radiograph shows the diagnosis's finding: the synthetic cohort's lesion
truth (truth.json: the diagnosis has image evidence) where a case has one, else the diagnosis
label (real data: the best available proxy). A finding stated wrongly is worse than one left
unsaid (the grounding rule: say nothing rather than something false), so the threshold is the
one that states the finding for as many validation cases with a radiograph as possible without
stating it for any that lack it (no false positive on validation), placed at the top of the
score gap, at the lowest validation score it was rightly stated for: the costs are not symmetric,
so the margin goes to the negatives (a finding is stated only as surely as one stated rightly on
validation). When every positive scores below some negative, the finding is never stated
(threshold above every score). Too few positives keep the default.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_POSITIVES = 3


@dataclass(frozen=True)
class ImageFindingFit:
    thresholds: dict[str, float]
    detail: dict[
        str, dict
    ]  # per diagnosis: cases, positives, precision and recall on validation, or why the default stands
    target: str  # what the validation target was

    def calibration(self) -> dict:
        """Keys for calibration.json (read by the Predictor's grounding)."""
        return {
            "image_finding_thresholds": self.thresholds,
            "image_finding_rule": f"highest recall with no false positive on the validation split (target: {self.target})",
        }

    def to_dict(self) -> dict:
        return {
            "thresholds": self.thresholds,
            "target": self.target,
            "per_diagnosis": self.detail,
            "rule": "highest recall with no false positive on validation",
        }


def fit_threshold(scores: np.ndarray, positive: np.ndarray) -> tuple[float, float, float]:
    """(threshold, precision, recall): the lowest positive score above every negative one (the highest recall
    with no false positive, the cut at the top of the score gap); above every score when no positive clears
    every negative."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(positive, dtype=bool)
    top_negative = s[~y].max() if (~y).any() else -np.inf
    stated = s[y & (s > top_negative)]
    if stated.size == 0:
        return float(s.max()) + 1e-6, 1.0, 0.0
    return float(stated.min()), 1.0, stated.size / int(y.sum())


def fit_image_findings(scores: np.ndarray, targets: np.ndarray, names, default: float, target: str) -> ImageFindingFit:
    """Thresholds per diagnosis from image-branch scores (N, K) and image-finding targets (N, K) of validation cases with a radiograph."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1, len(names))
    targets = np.asarray(targets, dtype=bool).reshape(-1, len(names))
    thresholds, detail = {}, {}
    for k, name in enumerate(names):
        positives = int(targets[:, k].sum())
        negatives = int((~targets[:, k]).sum())
        if positives < MIN_POSITIVES or negatives == 0:
            thresholds[name] = float(default)
            detail[name] = {
                "cases": int(len(targets)),
                "positives": positives,
                "kept_default": True,
                "why": f"fewer than {MIN_POSITIVES} positives or no negative on validation",
            }
            continue
        cut, precision, recall = fit_threshold(scores[:, k], targets[:, k])
        thresholds[name] = float(cut)
        detail[name] = {
            "cases": int(len(targets)),
            "positives": positives,
            "precision": precision,
            "recall": recall,
            "kept_default": False,
        }
    return ImageFindingFit(thresholds, detail, target)
