"""Classical per-modality baselines, HAIM-style: the simple peers every evaluation reports beside the model.

Each modality of a study becomes a fixed feature vector, read from the same `Study` records the
model reads (with the model's input scope applied):

- notes: the notes' text as TF-IDF of words and word pairs;
- vitals: per channel over the model's window: mean, SD, min, max, last, slope (per hour),
  fraction of steps observed, and mean, min, max over the last 12 hours (NaN where unobserved);
- image: the radiograph windowed to [0, 1] and shrunk to 32 x 32 (area), its PCA scores, the
  means of a 4 x 4 and an 8 x 8 grid and the left-right differences of the 8 x 8 means;
- demographics: age, sex, race and ethnicity (a reference row; the model does not read them).

One scikit-learn classifier per (modality, diagnosis) is fitted on the train split's cases that
have the modality; its hyperparameters are chosen on the validation split (AUROC). Fusion of the
modalities (late, stacking, early) lives in `baseline_fusion`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from medmm.io.window import series_window
from medmm.records import MODALITIES, Study
from medmm.tasks import Task
from medmm.transforms.study import grey_2d, primary_radiograph

IMAGE_SIDE = 32
RECENT_HOURS = 12.0
VITAL_STATS = (
    "mean",
    "sd",
    "min",
    "max",
    "last",
    "slope_per_hour",
    "observed",
    "recent_mean",
    "recent_min",
    "recent_max",
)
C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
BASELINE_MODALITIES = (*MODALITIES, "demographics")


@dataclass
class CaseTable:
    """The baseline features of a set of cases (one row per case) and their labels."""

    patient_ids: list[str]
    labels: np.ndarray  # (N, K) int
    notes: list[str]  # the text of the notes read ("" when none)
    vitals: np.ndarray  # (N, C * len(VITAL_STATS)) float, NaN where unobserved
    image: np.ndarray  # (N, IMAGE_SIDE ** 2) float in [0, 1], NaN rows without an image
    demographics: pd.DataFrame  # age, sex, race, ethnicity
    present: dict[str, np.ndarray] = field(default_factory=dict)  # modality -> (N,) bool

    def subset(self, rows: np.ndarray) -> "CaseTable":
        """The cases at `rows`, in that order."""
        return CaseTable(
            [self.patient_ids[i] for i in rows],
            self.labels[rows],
            [self.notes[i] for i in rows],
            self.vitals[rows],
            self.image[rows],
            self.demographics.iloc[rows].reset_index(drop=True),
            {m: p[rows] for m, p in self.present.items()},
        )


def vitals_summary(study: Study, channels: Sequence[str], steps: int) -> np.ndarray | None:
    """The per-channel summary of the study's vital-sign grid (None when it has none the model could read)."""
    v = study.vitals
    fits = v is not None and (v.values.shape[0] <= steps if v.per_encounter else v.values.shape[0] == steps)
    if v is None or not fits or not v.mask.any():
        return None
    hours = v.hours  # (T,)
    recent = hours >= hours[-1] + v.step_seconds / 3600.0 - RECENT_HOURS
    out = []
    for name in channels:
        if name not in v.channels:
            out += [np.nan] * len(VITAL_STATS)
            continue
        c = v.channels.index(name)
        seen = v.mask[:, c]
        x, t = v.values[seen, c].astype(np.float64), hours[seen]
        if x.size == 0:
            out += [np.nan] * (len(VITAL_STATS) - 4) + [0.0] + [np.nan] * 3
            continue
        slope = float(np.polyfit(t, x, 1)[0]) if x.size > 1 and np.ptp(t) > 0 else np.nan
        r = v.values[seen & recent, c].astype(np.float64)
        out += [
            x.mean(),
            x.std(),
            x.min(),
            x.max(),
            x[-1],
            slope,
            seen.mean(),
            *((r.mean(), r.min(), r.max()) if r.size else (np.nan,) * 3),
        ]
    return np.asarray(out, dtype=np.float64)


def image_vector(study: Study) -> np.ndarray | None:
    """The radiograph windowed to [0, 1] and shrunk to IMAGE_SIDE x IMAGE_SIDE by area, flattened."""
    series = primary_radiograph(study)
    if series is None:
        return None
    pixels = grey_2d(series)
    center, width = series_window(series.window, pixels)
    scaled = np.clip((pixels - (center - width / 2.0)) / max(width, 1e-6), 0.0, 1.0)
    small = F.adaptive_avg_pool2d(torch.from_numpy(scaled)[None, None].float(), IMAGE_SIDE)[0, 0]
    return small.numpy().astype(np.float64).ravel()


def case_table(
    studies: Sequence[Study], names: Sequence[str], channels: Sequence[str], steps: int, task: Task | None = None
) -> CaseTable:
    """Features and labels of `studies` (already restricted to what the model may read); `task` (the
    model's) makes the labels from each study's Conditions, as the model's preprocessing does."""
    n = len(studies)
    width = len(channels) * len(VITAL_STATS)
    vitals, image = np.full((n, width), np.nan), np.full((n, IMAGE_SIDE**2), np.nan)
    notes, demo, labels = [], [], np.zeros((n, len(names)), dtype=np.int8)
    present = {m: np.zeros(n, dtype=bool) for m in BASELINE_MODALITIES}
    for i, s in enumerate(studies):
        summary, pixels = vitals_summary(s, channels, steps), image_vector(s)
        if summary is not None:
            vitals[i], present["vitals"][i] = summary, True
        if pixels is not None:
            image[i], present["image"][i] = pixels, True
        text = " ".join(note.text for note in s.notes if note.text.strip())
        notes.append(text)
        present["notes"][i] = bool(text)
        d = s.demographics
        demo.append(
            {
                "age": d.age_years if d else None,
                "sex": (d.sex if d else None) or "unknown",
                "race": (d.race if d else None) or "unknown",
                "ethnicity": (d.ethnicity if d else None) or "unknown",
            }
        )
        present["demographics"][i] = d is not None and (d.age_years is not None or d.sex is not None)
        positive = set(task.positives(s.labels)) if task is not None else set(s.label_names)
        labels[i] = [int(name in positive) for name in names]
    frame = pd.DataFrame(demo, columns=["age", "sex", "race", "ethnicity"])
    frame["age"] = pd.to_numeric(frame["age"], errors="coerce")
    return CaseTable([s.study_id for s in studies], labels, notes, vitals, image, frame, present)


def _image_features(pixels: np.ndarray) -> np.ndarray:
    """Grid means (4 x 4, 8 x 8) and left-right differences of the 8 x 8 means, per row."""
    imgs = pixels.reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
    g4 = imgs.reshape(-1, 4, IMAGE_SIDE // 4, 4, IMAGE_SIDE // 4).mean(axis=(2, 4)).reshape(len(imgs), -1)
    g8 = imgs.reshape(-1, 8, IMAGE_SIDE // 8, 8, IMAGE_SIDE // 8).mean(axis=(2, 4))
    lr = (g8[:, :, :4] - g8[:, :, ::-1][:, :, :4]).reshape(len(imgs), -1)
    return np.hstack([g4, g8.reshape(len(imgs), -1), lr])


class ImageFeatures:
    """PCA scores of the 32 x 32 image with its regional statistics (fitted on the train images)."""

    def __init__(self, components: int = 50):
        self.components = components

    def fit(self, pixels: np.ndarray) -> "ImageFeatures":
        self.pca = PCA(n_components=min(self.components, len(pixels) - 1, pixels.shape[1]), random_state=0).fit(pixels)
        return self

    def transform(self, pixels: np.ndarray) -> np.ndarray:
        return np.hstack([self.pca.transform(pixels), _image_features(pixels)])


def _rows(table: CaseTable, modality: str, rows: np.ndarray):
    if modality == "notes":
        return [table.notes[i] for i in rows]
    if modality == "demographics":
        return table.demographics.iloc[rows]
    return (table.vitals if modality == "vitals" else table.image)[rows]


def _candidates(modality: str) -> list:
    """The classifiers tried for a modality, one per hyperparameter setting."""
    lr = [LogisticRegression(C=c, max_iter=3000) for c in C_GRID]
    if modality == "notes":
        return [make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True), m) for m in lr]
    if modality == "vitals":
        linear = [
            make_pipeline(
                SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True), StandardScaler(), m
            )
            for m in lr
        ]
        boosted = [
            HistGradientBoostingClassifier(
                max_iter=150, learning_rate=rate, max_leaf_nodes=15, l2_regularization=1.0, random_state=0
            )
            for rate in (0.03, 0.1)
        ]
        return linear + boosted
    if modality == "demographics":
        encode = OneHotEncoder(handle_unknown="ignore")
        from sklearn.compose import ColumnTransformer

        return [
            make_pipeline(
                ColumnTransformer(
                    [
                        ("age", SimpleImputer(strategy="median", keep_empty_features=True), ["age"]),
                        ("cat", encode, ["sex", "race", "ethnicity"]),
                    ]
                ),
                StandardScaler(with_mean=False),
                m,
            )
            for m in lr
        ]
    return [make_pipeline(StandardScaler(), m) for m in lr]  # image, on ImageFeatures


def _auroc(y: np.ndarray, p: np.ndarray) -> float | None:
    return float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else None


class ModalityModels:
    """One classifier per (modality, diagnosis), fitted on train and chosen on val; prior where a class is missing."""

    def refit(self, train: CaseTable, modalities: Sequence[str]) -> "ModalityModels":
        """The same choices (classifier and hyperparameter per modality and diagnosis) fitted again on `train`."""
        other = ModalityModels()
        other.k, other.prior = self.k, train.labels.mean(axis=0).astype(np.float64)
        other.image = (
            ImageFeatures().fit(train.image[train.present["image"]]) if train.present["image"].sum() > 2 else None
        )
        other.vital_columns = self.vital_columns
        other.models, other.choice = {}, {}
        for m in modalities:
            rows = np.flatnonzero(train.present[m])
            if m == "image" and other.image is None:
                rows = rows[:0]
            x = other._x(train, m, rows)
            fitted = []
            for k, model in enumerate(self.models[m]):
                y = train.labels[rows, k]
                ok = model is not None and len(rows) >= 4 and 0 < y.sum() < len(y)
                fitted.append(clone(model).fit(x, y) if ok else None)
            other.models[m], other.choice[m] = fitted, list(self.choice[m])
        return other

    def fit(
        self, train: CaseTable, val: CaseTable, modalities: Sequence[str] = BASELINE_MODALITIES
    ) -> "ModalityModels":
        self.k = train.labels.shape[1]
        self.prior = train.labels.mean(axis=0).astype(np.float64)  # (K,)
        self.models: dict[str, list] = {}
        self.choice: dict[str, list[str]] = {}
        self.image = (
            ImageFeatures().fit(train.image[train.present["image"]]) if train.present["image"].sum() > 2 else None
        )
        self.vital_columns = np.isfinite(train.vitals[train.present["vitals"]]).any(
            axis=0
        )  # a channel never seen is left out
        for m in modalities:
            rows, vrows = np.flatnonzero(train.present[m]), np.flatnonzero(val.present[m])
            if m == "image" and self.image is None:
                rows = rows[:0]
            x, vx = self._x(train, m, rows), self._x(val, m, vrows)
            fitted, chosen = [], []
            for k in range(self.k):
                y, vy = train.labels[rows, k], val.labels[vrows, k]
                if len(rows) < 4 or not 0 < y.sum() < len(y):
                    fitted.append(None)
                    chosen.append("prior")
                    continue
                best, best_score, best_name = None, -1.0, ""
                for candidate in _candidates(m):
                    model = clone(candidate).fit(x, y)
                    score = _auroc(vy, model.predict_proba(vx)[:, 1]) if len(vrows) else None
                    score = -0.5 if score is None else score
                    if score > best_score:
                        best, best_score, best_name = model, score, _describe(candidate)
                fitted.append(best)
                chosen.append(best_name)
            self.models[m], self.choice[m] = fitted, chosen
        return self

    def _x(self, table: CaseTable, modality: str, rows: np.ndarray):
        x = _rows(table, modality, rows)
        if modality == "vitals":
            return x[:, self.vital_columns]
        return self.image.transform(x) if modality == "image" and len(rows) else x

    def probabilities(self, table: CaseTable, modality: str) -> np.ndarray:
        """(N, K) probabilities of one modality's models; NaN rows for cases without the modality."""
        out = np.full((len(table.patient_ids), self.k), np.nan)
        rows = np.flatnonzero(table.present[modality])
        if modality not in self.models or not len(rows) or (modality == "image" and self.image is None):
            return out
        x = self._x(table, modality, rows)
        for k, model in enumerate(self.models[modality]):
            out[rows, k] = self.prior[k] if model is None else model.predict_proba(x)[:, 1]
        return out


def _describe(model) -> str:
    """A short name of a candidate classifier and its hyperparameter."""
    last = model.steps[-1][1] if hasattr(model, "steps") else model
    if isinstance(last, LogisticRegression):
        return f"logistic regression (C={last.C:g})"
    return f"gradient boosting (learning rate {last.learning_rate:g})"
