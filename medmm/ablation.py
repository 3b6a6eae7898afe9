"""Modality ablation (the HAIM-style table) and impression quality, over preprocessed cases."""

from __future__ import annotations

from itertools import combinations
from typing import Sequence

import numpy as np
import torch

from medmm.data import collate, to_device
from medmm.prompts import diagnoses_named
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
def case_probabilities(predictor, items: list[dict], modalities: tuple[str, ...] | None = None, batch_size: int = 32) -> np.ndarray:
    """Calibrated probabilities (N, K) of preprocessed cases, optionally restricted to some modalities."""
    out = [predictor.probabilities(to_device(b, predictor.device), modalities) for b in _batches(items, batch_size)]
    return np.concatenate(out) if out else np.zeros((0, len(predictor.model.config.diagnoses)))


@torch.no_grad()
def impression_quality(predictor, items: list[dict], batch_size: int = 16) -> dict:
    """How often the generated impression names the true top diagnosis, names all, and contradicts none.

    The true top diagnosis of a case is its true diagnosis the model rates most probable. A
    contradiction is a named diagnosis the case does not have, or any diagnosis named for a
    case that has none. Impressions are written after the model's impression prompts (guided
    by these probabilities when the model has the guide), as Predictor writes them.
    """
    names = predictor.model.config.diagnoses
    positives = top_hits = all_hits = contradiction_free = 0
    examples = []
    for batch in _batches(items, batch_size):
        batch = to_device(batch, predictor.device)
        probs = predictor.probabilities(batch)
        texts = predictor.impressions(batch, probs)
        for row, text in enumerate(texts):
            truth = {names[k] for k in np.flatnonzero(batch["labels"][row].cpu().numpy())}
            said = diagnoses_named(text)
            contradiction_free += int(said <= truth)
            if truth:
                positives += 1
                top = max(truth, key=lambda n: probs[row, names.index(n)])
                top_hits += int(top in said)
                all_hits += int(truth <= said)
            if len(examples) < 5:
                examples.append({"truth": sorted(truth), "impression": text})
    n = len(items)
    return {
        "cases": n,
        "positives": positives,
        "names_true_top": top_hits / positives if positives else float("nan"),
        "names_all_true": all_hits / positives if positives else float("nan"),
        "contradicts_none": contradiction_free / n if n else float("nan"),
        "examples": examples,
    }
