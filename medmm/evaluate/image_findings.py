"""The image-branch score at which a radiograph finding is stated, fitted per diagnosis on validation data.

The target is whether the radiograph shows the diagnosis's finding: the synthetic cohort's lesion
truth (truth.json: the diagnosis has image evidence) where a case has one, else the diagnosis
label (real data: the best available proxy). A finding stated wrongly is worse than one left
unsaid (the grounding rule: say nothing rather than something false), so the threshold is the
one that states the finding for as many validation cases with a radiograph as possible without
stating it for any that lack it (no false positive on validation), placed in the middle of its
score gap so that it does not sit on a validation case. When every positive scores below some
negative, the finding is never stated (threshold above every score). Too few positives keep the
default.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_POSITIVES = 3


@dataclass(frozen=True)
class ImageFindingFit:
    thresholds: dict[str, float]
    detail: dict[str, dict]  # per diagnosis: cases, positives, precision and recall on validation, or why the default stands
    target: str  # what the validation target was

    def calibration(self) -> dict:
        """Keys for calibration.json (read by the Predictor's grounding)."""
        return {
            "image_finding_thresholds": self.thresholds,
            "image_finding_rule": f"highest recall with no false positive on the validation split (target: {self.target})",
        }

    def to_dict(self) -> dict:
        return {"thresholds": self.thresholds, "target": self.target, "per_diagnosis": self.detail,
                "rule": "highest recall with no false positive on validation"}


def fit_threshold(scores: np.ndarray, positive: np.ndarray) -> tuple[float, float, float]:
    """(threshold, precision, recall): the cut between sorted unique scores with the highest recall and
    no false positive (widest gap on ties); above every score when no such cut states any positive."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(positive, dtype=bool)
    levels = np.unique(s)
    cuts = np.concatenate([[levels[0] - 1e-9], (levels[:-1] + levels[1:]) / 2.0, [levels[-1] + 1e-9]])
    best, best_gap, chosen = 0.0, -1.0, (float(levels[-1]) + 1e-6, 1.0, 0.0)
    for k, cut in enumerate(cuts):
        said = s >= cut
        if (said & ~y).any():
            continue  # a false positive on validation
        recall = int((said & y).sum()) / max(int(y.sum()), 1)
        lo = levels[k - 1] if k > 0 else 0.0
        hi = levels[k] if k < len(levels) else 1.0
        gap = hi - lo
        if recall > best + 1e-12 or (recall > 0 and abs(recall - best) <= 1e-12 and gap > best_gap):
            best, best_gap, chosen = recall, gap, ((lo + hi) / 2.0, 1.0, recall)
    return chosen


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
            detail[name] = {"cases": int(len(targets)), "positives": positives, "kept_default": True,
                            "why": f"fewer than {MIN_POSITIVES} positives or no negative on validation"}
            continue
        cut, precision, recall = fit_threshold(scores[:, k], targets[:, k])
        thresholds[name] = float(cut)
        detail[name] = {"cases": int(len(targets)), "positives": positives, "precision": precision, "recall": recall, "kept_default": False}
    return ImageFindingFit(thresholds, detail, target)
