"""The image-branch score at which a radiograph finding is stated, fitted per diagnosis on validation data.

The target is whether the radiograph shows the diagnosis's finding: the synthetic cohort's lesion
truth (truth.json: the diagnosis has image evidence) where a case has one, else the diagnosis
label (real data: the best available proxy). The threshold maximises F0.5 on the validation
cases with a radiograph (precision weighted twice recall: a finding stated wrongly costs more
than one left unsaid), placed in the middle of the widest score gap that reaches that maximum so
that it does not sit on a validation case. Too few positives keep the default.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_POSITIVES = 3
BETA = 0.5


@dataclass(frozen=True)
class ImageFindingFit:
    thresholds: dict[str, float]
    detail: dict[str, dict]  # per diagnosis: cases, positives, precision and recall on validation, or why the default stands
    target: str  # what the validation target was

    def calibration(self) -> dict:
        """Keys for calibration.json (read by the Predictor's grounding)."""
        return {
            "image_finding_thresholds": self.thresholds,
            "image_finding_rule": f"F{BETA:g}-optimal image-branch score on the validation split (target: {self.target})",
        }

    def to_dict(self) -> dict:
        return {"thresholds": self.thresholds, "target": self.target, "per_diagnosis": self.detail, "beta": BETA}


def fit_threshold(scores: np.ndarray, positive: np.ndarray) -> tuple[float, float, float]:
    """(threshold, precision, recall) maximising F-beta over cut points between the sorted unique scores."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(positive, dtype=bool)
    levels = np.unique(s)
    cuts = np.concatenate([[levels[0] - 1e-9], (levels[:-1] + levels[1:]) / 2.0, [levels[-1] + 1e-9]])
    best, best_gap, chosen = -1.0, -1.0, (0.5, 0.0, 0.0)
    for k, cut in enumerate(cuts):
        said = s >= cut
        tp = int((said & y).sum())
        precision = tp / max(int(said.sum()), 1)
        recall = tp / max(int(y.sum()), 1)
        f = 0.0 if tp == 0 else (1 + BETA**2) * precision * recall / (BETA**2 * precision + recall)
        lo = levels[k - 1] if k > 0 else 0.0
        hi = levels[k] if k < len(levels) else 1.0
        gap = hi - lo
        if f > best + 1e-12 or (abs(f - best) <= 1e-12 and gap > best_gap):
            best, best_gap, chosen = f, gap, ((lo + hi) / 2.0, precision, recall)
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
