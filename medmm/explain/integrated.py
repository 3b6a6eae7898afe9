"""Integrated gradients (captum) for the vital signs and the notes, a second opinion beside attention.

Both modalities are integrated together, from a baseline to the case, along a straight path:

- vital signs: the z-scored grid the model reads; baseline 0 in every cell, i.e. every observed
  value at its reference mean (unobserved cells are masked by the encoder and get nothing);
- notes: the token embeddings of the notes encoder; baseline the zero vector for every token
  (same tokens read, no content).

A token's attribution is the sum of its attribution over embedding dimensions. The map shown
keeps the positive part (evidence for the target), scaled to sum to 1 over the tokens read; the
signed attributions and the completeness gap stay available from `integrated_gradients`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from captum.attr import IntegratedGradients
from torch import Tensor

from medmm.explain.capture import Target, check_single, expand, target_score
from medmm.explain.relevance import TokenRelevance, normalise, token_validity

IG_MODALITIES = ("vitals", "notes")
DEFAULT_STEPS = 32


@dataclass(frozen=True)
class Attributions:
    """Signed integrated-gradients attributions per modality token grid, and the completeness check."""

    maps: dict[str, np.ndarray]  # "vitals" (T, C), "notes" (M, L); only modalities the case has
    delta: float  # |sum of attributions - (score(case) - score(baseline))|: the integration error
    score: float


def note_embeddings(model, batch: dict) -> Tensor:
    """Token embeddings (B, M, L, D) of the batch's notes: precomputed ones, else from the notes encoder."""
    if batch.get("notes_embeddings") is not None:
        return batch["notes_embeddings"].float()
    attention = batch["notes_attention"] * batch["notes_present"][..., None].long()  # (B, M, L)
    with torch.no_grad():
        tokens, _ = model.encoders["notes"].embed_notes(batch["notes_ids"], attention)  # (B, M, L, D)
    return tokens.float()


def integrated_gradients(model, batch: dict, target: Target, *, n_steps: int = DEFAULT_STEPS) -> Attributions | None:
    """Signed attributions of `target` to the vital-sign cells and note tokens the case has; None if it has neither."""
    check_single(batch)
    valid = token_validity(model, batch)
    names = [m for m in IG_MODALITIES if m in valid]
    if not names:
        return None
    device = model.head[0].weight.device
    inputs = []
    for name in names:
        inputs.append(batch["vitals"].float() if name == "vitals" else note_embeddings(model, batch).to(device))

    def forward(*values: Tensor) -> Tensor:
        rows = values[0].shape[0]
        rows_batch = expand(batch, rows)
        for name, value in zip(names, values):
            rows_batch["vitals" if name == "vitals" else "notes_embeddings"] = value
        return target_score(model, rows_batch, target)  # (rows,)

    baselines = tuple(torch.zeros_like(x) for x in inputs)
    ig = IntegratedGradients(forward)
    with torch.enable_grad():
        attributions, delta = ig.attribute(
            tuple(inputs),
            baselines=baselines,
            n_steps=n_steps,
            internal_batch_size=n_steps,
            return_convergence_delta=True,
        )
        with torch.no_grad():
            score = float(forward(*inputs)[0])
    maps = {}
    for name, attr in zip(names, attributions):
        grid = attr[0].detach().cpu().double()
        maps[name] = (grid.sum(dim=-1) if name == "notes" else grid).numpy()  # notes (M, L); vitals (T, C)
    return Attributions(maps, float(delta.detach().abs().max()), score)


def ig_relevance(model, batch: dict, target: Target, *, n_steps: int = DEFAULT_STEPS) -> TokenRelevance | None:
    """The positive part of the integrated gradients of `target`, per modality, scaled to sum 1."""
    result = integrated_gradients(model, batch, target, n_steps=n_steps)
    if result is None:
        return None
    valid = token_validity(model, batch)
    maps = {m: normalise(a, valid[m]) for m, a in result.maps.items()}
    return TokenRelevance(target.name, "integrated_gradients", maps, {}, result.score)
