"""The multimodal context one forward pass (or one generate call) of the language model reads.

It is passed in explicitly through ``CrossAttentionFusion.use_context`` and never stored on the
LM's layers. It carries the concatenated latents of every modality, their mask, which latent
range belongs to which modality, and (when asked) a per-block cache of cross-attention keys and
values so that generation computes them once per case instead of once per token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import torch
from torch import Tensor, nn

from medmm.errors import ConfigError


@dataclass(frozen=True)
class ModalitySpan:
    """Latents [start, stop) of the context belong to modality `name`."""

    name: str
    start: int
    stop: int


@dataclass(frozen=True, eq=False)
class MultimodalContext:
    """Latents (B, K, D) with mask (B, K); the key/value cache is keyed by fusion block index."""

    latents: Tensor  # (B, K, D)
    mask: Tensor  # (B, K) bool, False for absent modalities of a row
    spans: tuple[ModalitySpan, ...] = ()
    cache_kv: bool = False  # reuse each block's keys/values across calls (generation)
    kv_cache: dict[int, tuple[Tensor, Tensor]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.latents.dim() != 3 or self.mask.shape != self.latents.shape[:2]:
            raise ConfigError(
                f"latents must be (B, K, D) and mask (B, K); got {tuple(self.latents.shape)} and {tuple(self.mask.shape)}",
                where="multimodal context",
            )

    @classmethod
    def from_parts(cls, parts: Mapping[str, tuple[Tensor, Tensor]], *, cache_kv: bool = False) -> MultimodalContext:
        """Concatenate per-modality (latents (B, K_m, D), mask (B, K_m)) in the mapping's order."""
        if not parts:
            raise ConfigError("a context needs at least one modality", where="multimodal context")
        spans, start = [], 0
        for name, (latents, _) in parts.items():
            spans.append(ModalitySpan(name, start, start + latents.shape[1]))
            start += latents.shape[1]
        latents = torch.cat([lat for lat, _ in parts.values()], dim=1)  # (B, K_total, D)
        mask = torch.cat([m.to(torch.bool) for _, m in parts.values()], dim=1)  # (B, K_total)
        return cls(latents, mask, tuple(spans), cache_kv=cache_kv)

    @property
    def batch_size(self) -> int:
        return int(self.latents.shape[0])

    def span(self, name: str) -> slice:
        """The latent positions of modality `name`."""
        for s in self.spans:
            if s.name == name:
                return slice(s.start, s.stop)
        raise ConfigError(f"no modality {name!r} in the context; have {[s.name for s in self.spans]}")

    def keys_values(self, index: int, block: nn.Module, latents: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Keys/values of fusion block `index` for `latents` (B, K, D), from the cache when caching is on."""
        if not self.cache_kv:
            return block.keys_values(latents, mask)
        if index not in self.kv_cache:
            self.kv_cache[index] = block.keys_values(latents, mask)
        return self.kv_cache[index]

    def clear_cache(self) -> None:
        """Drop cached keys/values (e.g. after the fusion weights changed)."""
        self.kv_cache.clear()

    def repeat_interleave(self, repeats: int) -> MultimodalContext:
        """Each row repeated `repeats` times, matching how generate() expands beams and samples."""
        return MultimodalContext(
            self.latents.repeat_interleave(repeats, dim=0),  # (B * r, K, D)
            self.mask.repeat_interleave(repeats, dim=0),  # (B * r, K)
            self.spans,
            cache_kv=self.cache_kv,
        )
