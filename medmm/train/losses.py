"""Losses of the two objectives."""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor


def diagnosis_loss(logits: Tensor, labels: Tensor, known: Tensor, row_weight: Tensor | None = None) -> Tensor:
    """Mean binary cross-entropy over diagnoses of rows whose labels are known (and weighted in)."""
    weight = known.float()  # (B,)
    if row_weight is not None:
        weight = weight * row_weight.float()
    if float(weight.sum()) == 0.0:
        return logits.sum() * 0.0  # keeps the graph (DDP) without contributing
    per_row = F.binary_cross_entropy_with_logits(logits.float(), labels.float(), reduction="none").mean(dim=1)  # (B,)
    return (per_row * weight).sum() / weight.sum()


def unimodal_loss(modality_logits: Mapping[str, tuple[Tensor, Tensor]], labels: Tensor, known: Tensor) -> Tensor | None:
    """Mean over modalities of each unimodal head's diagnosis loss on the rows where its modality is present.

    `modality_logits` maps a modality to (logits (B, K), present (B,)), as MedMMOutput holds them;
    None when it is empty (a model without unimodal heads).
    """
    if not modality_logits:
        return None
    losses = [diagnosis_loss(logits, labels, known, present) for logits, present in modality_logits.values()]
    return torch.stack(losses).mean()
