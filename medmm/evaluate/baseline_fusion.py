"""Fusing the per-modality baselines, for every modality subset the model is evaluated on.

- late: the mean of the probabilities of the subset's modalities the case has (the train
  prevalence when it has none);
- stacking: per diagnosis, a logistic regression over each modality's logit and presence,
  fitted on out-of-fold train probabilities (5 folds), so it never sees its own training fit;
- early: per diagnosis, one logistic regression over the concatenated features of the subset
  (image PCA and grid statistics, TF-IDF reduced to 100 SVD components, vital-sign summaries
  imputed, presence indicators; a modality a case lacks is zeros), C chosen on val.

For each subset the variant with the best macro AUROC on the validation split is the subset's
baseline; all three are reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.special import logit
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler

from medmm.evaluate.baselines import C_GRID, CaseTable, ModalityModels

VARIANTS = ("late", "stacking", "early")
FOLDS = 5


def macro_auroc(y: np.ndarray, p: np.ndarray) -> float | None:
    """Mean AUROC over the diagnoses with both classes present (None when none has)."""
    scores = [roc_auc_score(y[:, k], p[:, k]) for k in range(y.shape[1]) if 0 < y[:, k].sum() < len(y)]
    return float(np.mean(scores)) if scores else None


def late_fusion(per: dict[str, np.ndarray], subset: Sequence[str], prior: np.ndarray) -> np.ndarray:
    """Mean over the subset's available modality probabilities; the prior where a case has none of them."""
    stack = np.stack([per[m] for m in subset])  # (S, N, K), NaN where absent
    counts = np.isfinite(stack).sum(axis=0)
    mean = np.nansum(stack, axis=0) / np.maximum(counts, 1)
    return np.where(counts > 0, mean, prior[None, :])


def _stack_inputs(per: dict[str, np.ndarray], subset: Sequence[str], k: int) -> np.ndarray:
    """(N, 2S) per diagnosis k: each modality's logit (0 when absent) and its presence."""
    cols = []
    for m in subset:
        p = per[m][:, k]
        seen = np.isfinite(p)
        cols += [np.where(seen, logit(np.clip(np.nan_to_num(p, nan=0.5), 1e-4, 1 - 1e-4)), 0.0), seen.astype(float)]
    return np.stack(cols, axis=1)


def out_of_fold(
    models: ModalityModels, train: CaseTable, modalities: Sequence[str], seed: int = 0
) -> dict[str, np.ndarray]:
    """Per-modality train probabilities, each case's from models fitted without it (with the choices `models` made on val)."""
    n, k = train.labels.shape
    out = {m: np.full((n, k), np.nan) for m in modalities}
    # folds stratified on the first diagnosis that is not constant, else plain
    strat = next((train.labels[:, j] for j in range(k) if 0 < train.labels[:, j].sum() < n), np.zeros(n))
    for fit_rows, held in StratifiedKFold(FOLDS, shuffle=True, random_state=seed).split(np.zeros(n), strat):
        fold = models.refit(train.subset(fit_rows), modalities)
        part = train.subset(held)
        for m in modalities:
            out[m][held] = fold.probabilities(part, m)
    return out


class EarlyFusion:
    """One logistic regression per diagnosis over the subset's concatenated features."""

    def __init__(self, models: ModalityModels, subset: Sequence[str]):
        self.models, self.subset = models, tuple(subset)

    def _features(self, table: CaseTable, fit: bool) -> np.ndarray:
        parts = []
        for m in self.subset:
            present = table.present[m]
            if m == "image":
                block = np.zeros((len(present), 0))
                if self.models.image is not None:
                    block = np.zeros(
                        (len(present), self.models.image.transform(np.zeros((1, table.image.shape[1]))).shape[1])
                    )
                    if present.any():
                        block[present] = self.models.image.transform(table.image[present])
            elif m == "notes":
                texts = [t for t, s in zip(table.notes, present) if s]
                if fit:
                    self.svd = None
                    if len(texts) > 2:
                        self.tfidf = TfidfVectorizer(
                            ngram_range=(1, 2), min_df=min(2, len(texts)), sublinear_tf=True
                        ).fit(texts)
                        width = min(100, len(self.tfidf.vocabulary_) - 1, len(texts) - 1)
                        self.svd = (
                            TruncatedSVD(width, random_state=0).fit(self.tfidf.transform(texts)) if width > 0 else None
                        )
                block = np.zeros((len(present), 0 if self.svd is None else self.svd.n_components))
                if present.any() and self.svd is not None:
                    block[present] = self.svd.transform(self.tfidf.transform(texts))
            else:
                if fit:
                    self.imputer = SimpleImputer(strategy="median", keep_empty_features=True).fit(table.vitals[present])
                block = np.zeros((len(present), table.vitals.shape[1]))
                if present.any():
                    block[present] = self.imputer.transform(table.vitals[present])
            parts += [block, present[:, None].astype(float)]
        x = np.hstack(parts)
        if fit:
            self.scaler = StandardScaler().fit(x)
        return self.scaler.transform(x)

    def fit(self, train: CaseTable, val: CaseTable) -> "EarlyFusion":
        x, vx = self._features(train, fit=True), self._features(val, fit=False)
        self.fitted = []
        for k in range(train.labels.shape[1]):
            y, vy = train.labels[:, k], val.labels[:, k]
            if not 0 < y.sum() < len(y):
                self.fitted.append(None)
                continue
            candidates = [LogisticRegression(C=c, max_iter=3000).fit(x, y) for c in C_GRID]
            if 0 < vy.sum() < len(vy):
                candidates.sort(key=lambda m: -roc_auc_score(vy, m.predict_proba(vx)[:, 1]))
            self.fitted.append(candidates[0])
        return self

    def probabilities(self, table: CaseTable) -> np.ndarray:
        x = self._features(table, fit=False)
        prior = self.models.prior
        return np.stack(
            [np.full(len(x), prior[k]) if m is None else m.predict_proba(x)[:, 1] for k, m in enumerate(self.fitted)],
            axis=1,
        )


@dataclass
class SubsetBaseline:
    """The three fusions of one modality subset and the one chosen on val."""

    subset: tuple[str, ...]
    val_macro: dict[str, float | None]
    chosen: str


class BaselineSuite:
    """Per-modality models and their fusions for every subset; `probabilities(table, subset)` gives the chosen one."""

    def fit(self, train: CaseTable, val: CaseTable, subsets: Sequence[Sequence[str]], seed: int = 0) -> "BaselineSuite":
        modalities = sorted({m for s in subsets for m in s})
        self.models = ModalityModels().fit(train, val, [*modalities, "demographics"])
        oof = out_of_fold(self.models, train, modalities, seed)
        val_per = {m: self.models.probabilities(val, m) for m in modalities}
        self.stackers, self.early, self.subsets = {}, {}, {}
        for subset in map(tuple, subsets):
            self.stackers[subset] = [
                self._stacker(oof, subset, train.labels[:, k], k) for k in range(train.labels.shape[1])
            ]
            self.early[subset] = EarlyFusion(self.models, subset).fit(train, val)
            scores = {v: macro_auroc(val.labels, self._variant(v, val, val_per, subset)) for v in VARIANTS}
            chosen = max(VARIANTS, key=lambda v: -1.0 if scores[v] is None else scores[v])
            self.subsets[subset] = SubsetBaseline(subset, scores, chosen)
        return self

    @staticmethod
    def _stacker(oof: dict[str, np.ndarray], subset: tuple[str, ...], y: np.ndarray, k: int):
        if not 0 < y.sum() < len(y):
            return None
        return LogisticRegression(C=1.0, max_iter=3000).fit(_stack_inputs(oof, subset, k), y)

    def _variant(
        self, variant: str, table: CaseTable, per: dict[str, np.ndarray], subset: tuple[str, ...]
    ) -> np.ndarray:
        prior = self.models.prior
        if variant == "late":
            return late_fusion(per, subset, prior)
        if variant == "early":
            return self.early[subset].probabilities(table)
        cols = []
        for k, model in enumerate(self.stackers[subset]):
            cols.append(
                np.full(len(table.patient_ids), prior[k])
                if model is None
                else model.predict_proba(_stack_inputs(per, subset, k))[:, 1]
            )
        return np.stack(cols, axis=1)

    def probabilities(self, table: CaseTable, subset: Sequence[str], variant: str | None = None) -> np.ndarray:
        """(N, K) probabilities of `subset`'s baseline (the variant chosen on val unless named)."""
        subset = tuple(subset)
        per = {m: self.models.probabilities(table, m) for m in subset}
        return self._variant(variant or self.subsets[subset].chosen, table, per, subset)
