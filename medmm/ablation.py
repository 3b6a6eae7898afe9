"""Modality ablation (the HAIM-style table) and impression quality, over preprocessed cases."""

from __future__ import annotations

from itertools import combinations
from typing import Sequence

import numpy as np
import torch

from medmm.cases import collate, to_device
from medmm.records import MODALITIES


def modality_subsets(modalities: Sequence[str] = MODALITIES) -> list[tuple[str, ...]]:
    """Every non-empty subset, singles first, the full set last."""
    return [c for r in range(1, len(modalities) + 1) for c in combinations(modalities, r)]


def subset_name(subset: Sequence[str], modalities: Sequence[str] = MODALITIES) -> str:
    return "all" if set(subset) == set(modalities) else "+".join(subset)


def _batches(items: list[dict], size: int):
    for start in range(0, len(items), size):
        batch = collate(items[start : start + size])
        if "notes_embeddings" in batch:
            batch["notes_embeddings"] = batch["notes_embeddings"].float()
        yield batch


@torch.no_grad()
def case_probabilities(
    predictor, items: list[dict], modalities: tuple[str, ...] | None = None, batch_size: int = 32
) -> np.ndarray:
    """Calibrated probabilities (N, K) of preprocessed cases, optionally restricted to some modalities."""
    out = [predictor.probabilities(to_device(b, predictor.device), modalities) for b in _batches(items, batch_size)]
    return np.concatenate(out) if out else np.zeros((0, len(predictor.model.config.diagnoses)))


def impression_quality(predictor, items: list[dict], studies: Sequence | None = None, batch_size: int = 16) -> dict:
    """How often the served (grounded) impression names the true top diagnosis, names all, and contradicts none.

    The true top diagnosis of a case is its true diagnosis the model rates most probable. A
    contradiction is a named diagnosis the case does not have, or any diagnosis named for a
    case that has none. Impressions are written and grounded as Predictor writes them, against
    `studies` (the cases' studies, in the order of `items`; without them no vital-sign or note
    finding can be supported, so none is given out).
    """
    from medmm.evaluate.grounding import impression_scores, write_case_texts

    studies = list(studies) if studies is not None else [None] * len(items)
    cases = write_case_texts(predictor, items, studies, [None] * len(items), batch_size=batch_size)
    names = predictor.model.config.diagnoses
    examples = [{"truth": sorted(c.labels), "impression": c.grounded.text} for c in cases[:5]]
    return {**impression_scores(cases, names), "examples": examples}
