"""Input checks shared by the evaluation modules: label and probability matrices, names, patients.

Evaluation is strict: a NaN probability or a label other than 0/1 would silently skew every
figure, so it is an error naming the argument and what was expected (never the values).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from medmm.errors import EvaluationError


def label_matrix(y_true: np.ndarray, where: str = "y_true") -> np.ndarray:
    """`y_true` as a (N, K) int8 matrix of 0/1; a 1-D vector is one diagnosis."""
    arr = np.asarray(y_true)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise EvaluationError(f"expected a non-empty (N, K) array, got shape {arr.shape}", where=where)
    if arr.dtype == bool:
        return arr.astype(np.int8)
    if not np.issubdtype(arr.dtype, np.number):
        raise EvaluationError(f"expected numeric 0/1 labels, got dtype {arr.dtype}", where=where)
    if not np.all((arr == 0) | (arr == 1)):
        raise EvaluationError("expected labels in {0, 1} (no NaN)", where=where)
    return arr.astype(np.int8)


def score_matrix(y_score: np.ndarray, shape: tuple[int, int], where: str = "y_prob", unit: bool = True) -> np.ndarray:
    """`y_score` as a finite float64 matrix of `shape`; probabilities (`unit`) must lie in [0, 1]."""
    arr = np.asarray(y_score, dtype=np.float64)
    if arr.ndim == 1 and shape[1] == 1:
        arr = arr[:, None]
    if arr.shape != shape:
        raise EvaluationError(f"expected shape {shape} to match the labels, got {arr.shape}", where=where)
    if not np.all(np.isfinite(arr)):
        raise EvaluationError("expected finite values (no NaN or infinity)", where=where)
    if unit and (arr.min() < 0.0 or arr.max() > 1.0):
        raise EvaluationError("expected probabilities in [0, 1]", where=where)
    return arr


def labels_and_probs(y_true: np.ndarray, y_prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Checked (N, K) labels and probabilities of the same shape."""
    y = label_matrix(y_true)
    return y, score_matrix(y_prob, y.shape)


def diagnosis_names(names: Sequence[str] | None, k: int) -> tuple[str, ...]:
    """Column names: as given, the default task's labels when K matches them, else label_0 ... label_{K-1}."""
    if names is None:
        from medmm.tasks import default_vocabulary

        default = tuple(default_vocabulary())
        return default if k == len(default) else tuple(f"label_{i}" for i in range(k))
    out = tuple(str(n) for n in names)
    if len(out) != k:
        raise EvaluationError(f"expected {k} names (one per column), got {len(out)}", where="names")
    if len(set(out)) != k:
        raise EvaluationError("expected distinct names", where="names")
    return out


def patient_codes(patient_ids: Sequence[object] | np.ndarray | None, n: int) -> np.ndarray:
    """Integer code 0..P-1 of each row's patient; without ids every row is its own patient."""
    if patient_ids is None:
        return np.arange(n, dtype=np.int64)
    ids = pd.Series(np.asarray(patient_ids, dtype=object))
    if len(ids) != n:
        raise EvaluationError(f"expected {n} patient ids (one per row), got {len(ids)}", where="patient_ids")
    if ids.isna().any():
        raise EvaluationError("expected a patient id on every row (found a missing one)", where="patient_ids")
    codes, _ = pd.factorize(ids, sort=False)
    return codes.astype(np.int64)


def check_fraction(value: float, where: str, low: float = 0.0, high: float = 1.0) -> float:
    """`value` as a float strictly inside (low, high)."""
    v = float(value)
    if not low < v < high:
        raise EvaluationError(f"expected a number strictly between {low} and {high}", where=where)
    return v


def json_safe(obj: object) -> object:
    """A JSON-able copy of nested dicts/lists of numbers: NaN and infinity become None."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return None if not math.isfinite(float(obj)) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj
