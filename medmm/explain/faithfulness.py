"""Faithfulness of the explanations, measured against planted ground truth, per method.

A (case, diagnosis) pair is scored for a figure only when the diagnosis is one of the case's
labels, its evidence was planted in that modality, and the model read that modality for the
case (for notes: read at least one word of the planted phrase). Maps are the ones the UI shows
(`explainer.explain_study`), on the original inputs.

pointing_game: over positive images with a planted lesion. A hit when the maximum of the
    method's map on the original pixel grid (the first maximum in row-major order) lies within
    `tolerance_pixels` (Euclidean) of the lesion mask: 15/224 of the longer image side, at
    least 1 pixel, the 15-pixel tolerance of Zhang et al. (ECCV 2016) at their 224-pixel input.
    A constant map points nowhere and misses. Figure: hits / cases. Target >= 0.80.
vitals_window_ratio: over positive cases with a planted vitals window. The window's cells are
    the observed (step, channel) cells whose step [t, t + step) overlaps [start, end) and whose
    channel carries the planted signal. m = the map's mass there (the map sums to 1 over the
    observed cells); u = their share of the observed cells (what a uniform spread gives).
    Figure: sum(m) / sum(u) over cases. Also reported: the median per-case m / u, and
    best_possible = n / sum(u), what maps with all their mass inside the windows would reach (a
    window covering most of the grid caps the ratio near 1). Target >= 2.
note_evidence_top10: over positive cases whose planted evidence phrase was read. The words read
    are ranked by relevance with ties counted against the method (a word's rank is the number of
    words with relevance >= its own); the top 10% are ranks <= ceil(0.1 n). A hit when a word of
    a planted evidence phrase is in the top 10%. Negated, hedged and historical mentions are
    never evidence. Target >= 0.70.
negated_top10: over (case, diagnosis) pairs with a negated mention of the diagnosis among the
    words read ("No sputum production" for pneumonia), explained for that diagnosis: the share
    where a word of the negated mention ranks in the top 10%. Lower is better.
map_distinctness: over every case, the maps of its two most probable diagnoses compared per
    modality: 1 - cosine similarity of the two token maps (0: the same picture for both
    diagnoses; 1: no overlap). Figure: the median over cases, per method and modality. It says
    whether a map explains the diagnosis asked for rather than how abnormal the case looks;
    it needs no ground truth. No target: a modality that carries little diagnosis-specific
    signal gives similar maps, and says so here.
deletion_ratio: over positive images with a planted lesion. The patches are the image tokens'
    cells in the preprocessed image (ImageEncoder.token_region); the ceil(0.1 N) patches with the
    most token-level relevance are set to the preprocessed image's mean and the drop of the
    diagnosis's probability (sigmoid of its logit) is recorded; likewise for 10 seeded random
    draws of as many patches, averaged. Figure: mean top drop / mean random drop. Target >= 2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch

from medmm.errors import EvaluationError
from medmm.explain.capture import check_single, diagnosis_logits, expand
from medmm.explain.mapping import NotesMap, VitalsMap
from medmm.synth.planted import PlantedSpan, PlantedWindow

TOLERANCE_FRACTION = 15.0 / 224.0
TOP_FRACTION = 0.1
DELETE_FRACTION = 0.1
RANDOM_DRAWS = 10
TARGETS = {"pointing_game": 0.8, "vitals_window_ratio": 2.0, "note_evidence_top10": 0.7, "deletion_ratio": 2.0}
# Which figure each method can be scored on (Grad-CAM explains the image; integrated gradients the vitals and notes).
APPLIES = {
    "pointing_game": ("attention", "rollout", "gradcam"),
    "deletion_ratio": ("attention", "rollout", "gradcam"),
    "vitals_window_ratio": ("attention", "rollout", "integrated_gradients"),
    "note_evidence_top10": ("attention", "rollout", "integrated_gradients"),
    "negated_top10": ("attention", "rollout", "integrated_gradients"),
}


@dataclass(frozen=True)
class CaseFigures:
    """The per-case quantities behind the figures, for one diagnosis explained by one method (None: not scored)."""

    diagnosis: str
    method: str
    pointing: bool | None = None
    window_mass: float | None = None
    window_uniform: float | None = None
    note_hit: bool | None = None
    negated_hit: bool | None = None
    drop_top: float | None = None
    drop_random: float | None = None


@dataclass(frozen=True)
class PairFigure:
    """How different the maps of a case's two most probable diagnoses are, for one method and modality."""

    method: str
    modality: str
    distinctness: float  # 1 - cosine similarity of the two token maps


def distinctness(a: np.ndarray, b: np.ndarray) -> float | None:
    """1 - cosine similarity of two maps of the same tokens; None when either is all zeros."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise EvaluationError(f"maps of {a.shape} and {b.shape} tokens cannot be compared", where="map distinctness")
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return None if norm == 0.0 else max(0.0, float(1.0 - a @ b / norm))  # max: rounding below 0 for equal maps


def summarise_distinctness(pairs: Sequence[PairFigure], methods: Sequence[str]) -> dict:
    """Median distinctness per method and modality, with the number of cases."""
    out: dict = {}
    for method in methods:
        out[method] = {}
        for modality in ("image", "vitals", "notes"):
            values = [p.distinctness for p in pairs if p.method == method and p.modality == modality]
            if values:
                out[method][modality] = {
                    "median": float(np.median(values)),
                    "mean": float(np.mean(values)),
                    "n": len(values),
                }
    return out


# -- image -------------------------------------------------------------------------------------


def tolerance_pixels(shape: Sequence[int]) -> float:
    """The pointing-game tolerance for an image of `shape`: 15/224 of its longer side, at least 1 pixel."""
    return max(1.0, TOLERANCE_FRACTION * max(int(s) for s in shape))


def pointing_hit(relevance: np.ndarray, lesion: np.ndarray, tolerance: float | None = None) -> bool:
    """Whether the map's first maximum lies within `tolerance` pixels (Euclidean) of the lesion mask (a constant map misses)."""
    if relevance.shape != lesion.shape:
        raise EvaluationError(
            f"map {relevance.shape} and lesion mask {lesion.shape} differ in shape", where="pointing game"
        )
    if relevance.size == 0 or relevance.max() == relevance.min():
        return False
    tolerance = tolerance_pixels(relevance.shape) if tolerance is None else tolerance
    peak = np.array(np.unravel_index(int(np.argmax(relevance)), relevance.shape))
    cells = np.argwhere(lesion)
    if cells.size == 0:
        return False
    return bool(np.sqrt(((cells - peak) ** 2).sum(axis=1)).min() <= tolerance)


def top_patches(grid: np.ndarray, fraction: float = DELETE_FRACTION) -> np.ndarray:
    """Flat indices of the ceil(fraction * N) most relevant tokens (ties: the earlier token first)."""
    flat = np.asarray(grid, dtype=np.float64).ravel()
    k = max(1, math.ceil(fraction * flat.size))
    return np.argsort(-flat, kind="stable")[:k]


@torch.no_grad()
def deletion_drops(
    model,
    batch: dict,
    index: int,
    grids: Mapping[str, np.ndarray],
    rng: np.random.Generator,
    *,
    draws: int = RANDOM_DRAWS,
) -> tuple[dict[str, float], float]:
    """Probability drop of diagnosis `index` when each method's top patches are set to the image mean, and the mean drop over random draws."""
    check_single(batch)
    encoder = model.encoders["image"]
    image = batch["image"]  # (1, 1, S, S)
    shape = tuple(image.shape[2:])
    num = int(np.prod(encoder.grid(shape)))
    regions = [encoder.token_region(i, shape) for i in range(num)]
    fill = image.mean()

    def masked(cells) -> torch.Tensor:
        out = image.clone()
        for c in cells:
            out[(0, 0, *regions[int(c)])] = fill
        return out

    methods = list(grids)
    k = len(top_patches(np.zeros(num)))
    images = [image] + [masked(top_patches(grids[m])) for m in methods]
    images += [masked(rng.choice(num, size=k, replace=False)) for _ in range(draws)]
    rows = expand(batch, len(images))
    rows["image"] = torch.cat(images)  # (R, 1, S, S)
    probs = torch.sigmoid(diagnosis_logits(model, rows)[:, index].float()).cpu().numpy()  # (R,)
    drops = probs[0] - probs[1:]
    return {m: float(drops[i]) for i, m in enumerate(methods)}, float(drops[len(methods) :].mean())


# -- vital signs -------------------------------------------------------------------------------


def window_cells(vitals: VitalsMap, window: PlantedWindow) -> np.ndarray:
    """(T, C) bool: observed cells whose step overlaps the window and whose channel carries the planted signal."""
    starts = np.array(
        [(t - window.start).total_seconds() for t in vitals.times]
    )  # step starts, seconds from the window start
    length = (window.end - window.start).total_seconds()
    overlaps = (starts < length) & (starts + vitals.step_seconds > 0)  # (T,)
    channels = np.array([c in window.channels for c in vitals.channels])  # (C,)
    return overlaps[:, None] & channels[None, :] & vitals.observed


def window_masses(vitals: VitalsMap, window: PlantedWindow) -> tuple[float, float] | None:
    """(m, u): the map's mass in the window's cells and their share of the observed cells; None when the window has no observed cell."""
    cells = window_cells(vitals, window)
    observed = int(vitals.observed.sum())
    if not cells.any() or observed == 0:
        return None
    return float(vitals.relevance[cells].sum()), float(cells.sum()) / observed


# -- notes -------------------------------------------------------------------------------------


def top_ranked(scores: np.ndarray, fraction: float = TOP_FRACTION) -> np.ndarray:
    """Bool per item: rank <= ceil(fraction * n), the rank being the number of items scoring >= it (ties count against)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        return np.zeros(0, dtype=bool)
    k = max(1, math.ceil(fraction * scores.size))
    ranks = (scores[None, :] >= scores[:, None]).sum(axis=1)  # (n,)
    return ranks <= k


def phrase_in_top(notes: NotesMap, spans: Sequence[PlantedSpan], fraction: float = TOP_FRACTION) -> bool | None:
    """Whether a word read inside `spans` ranks in the top `fraction` of the words read; None if none was read."""
    read = [w for w in notes.words if w.read]
    inside = np.array(
        [any(w.note == s.note and w.start < s.end and w.end > s.start for s in spans) for w in read], dtype=bool
    )
    if not inside.any():
        return None
    top = top_ranked(np.array([w.relevance for w in read]), fraction)
    return bool((top & inside).any())


# -- aggregation -------------------------------------------------------------------------------


def _rate(values: list[bool]) -> float | None:
    return float(np.mean(values)) if values else None


def _figure(name: str, rows: list[CaseFigures]) -> dict:
    """One figure for one method's rows: value, n and the quantities behind it."""
    if name == "pointing_game":
        hits = [r.pointing for r in rows if r.pointing is not None]
        return {"value": _rate(hits), "n": len(hits)}
    if name == "note_evidence_top10":
        hits = [r.note_hit for r in rows if r.note_hit is not None]
        return {"value": _rate(hits), "n": len(hits)}
    if name == "negated_top10":
        hits = [r.negated_hit for r in rows if r.negated_hit is not None]
        return {"value": _rate(hits), "n": len(hits)}
    if name == "vitals_window_ratio":
        pairs = [(r.window_mass, r.window_uniform) for r in rows if r.window_mass is not None]
        if not pairs:
            return {"value": None, "n": 0}
        m, u = np.array(pairs).T
        return {
            "value": float(m.sum() / u.sum()),
            "n": len(pairs),
            "median_case_ratio": float(np.median(m / u)),
            "best_possible": float(len(u) / u.sum()),
        }
    pairs = [(r.drop_top, r.drop_random) for r in rows if r.drop_top is not None]
    if not pairs:
        return {"value": None, "n": 0}
    top, rand = np.array(pairs).T
    value = float(top.mean() / rand.mean()) if rand.mean() > 0 else None
    return {"value": value, "n": len(pairs), "mean_drop_top": float(top.mean()), "mean_drop_random": float(rand.mean())}


def summarise(results: Sequence[CaseFigures], methods: Sequence[str]) -> dict:
    """The faithfulness figures per method (and per diagnosis), with their targets, JSON-ready."""
    out: dict = {}
    for name in ("pointing_game", "vitals_window_ratio", "note_evidence_top10", "negated_top10", "deletion_ratio"):
        out[name] = {}
        for method in methods:
            if method not in APPLIES[name]:
                out[name][method] = {"value": None, "n": 0, "note": "not computed for this modality by this method"}
                continue
            rows = [r for r in results if r.method == method]
            entry = _figure(name, rows)
            if name in TARGETS:
                entry["target"] = TARGETS[name]
                entry["meets_target"] = entry["value"] is not None and entry["value"] >= TARGETS[name]
            diagnoses = sorted({r.diagnosis for r in rows})
            entry["by_diagnosis"] = {d: _figure(name, [r for r in rows if r.diagnosis == d]) for d in diagnoses}
            entry["by_diagnosis"] = {d: v for d, v in entry["by_diagnosis"].items() if v["n"]}
            out[name][method] = entry
    return out
