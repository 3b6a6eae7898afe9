"""Vitals encoder: a small transformer over (time step, channel) tokens that honours the mask.

Each observed (t, c) pair becomes a token: a projection of its value plus a channel embedding
and a time embedding. Unobserved pairs are masked out as keys everywhere and their values are
replaced before use, so an unobserved value (zero, NaN or anything) never reaches an observed
token. Token i is step ``i // C``, channel ``i % C``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from medmm.codes import VITAL_NAMES
from medmm.errors import ConfigError


@dataclass(frozen=True)
class VitalsEncoderConfig:
    """Size of the vitals transformer."""

    num_channels: int = len(VITAL_NAMES)  # channels in medmm.codes.VITAL_NAMES order
    max_steps: int = 256  # longest grid the time embedding covers
    dim: int = 128
    depth: int = 2
    heads: int = 4
    ff_mult: int = 4
    dropout: float = 0.0


class VitalsEncoder(nn.Module):
    """Vitals grid (B, T, C) with observed mask -> tokens (B, T*C, dim) and mask (B, T*C)."""

    def __init__(self, config: VitalsEncoderConfig = VitalsEncoderConfig()):
        super().__init__()
        if config.dim % config.heads:
            raise ConfigError(f"dim {config.dim} is not divisible by heads {config.heads}", where="vitals encoder")
        self.config = config
        self.value_in = nn.Linear(1, config.dim)
        self.channel_embedding = nn.Embedding(config.num_channels, config.dim)
        # Indexed by steps before the study time (0 = the last step), so a longer or shorter
        # window keeps the meaning of "the hour before the study".
        self.time_embedding = nn.Embedding(config.max_steps, config.dim)
        nn.init.normal_(self.channel_embedding.weight, std=0.02)
        nn.init.normal_(self.time_embedding.weight, std=0.02)
        layer = nn.TransformerEncoderLayer(
            d_model=config.dim,
            nhead=config.heads,
            dim_feedforward=config.dim * config.ff_mult,
            dropout=config.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.transformer = nn.TransformerEncoder(layer, num_layers=config.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.dim)

    @property
    def dim(self) -> int:
        return self.config.dim

    @staticmethod
    def grid(num_steps: int, num_channels: int) -> tuple[int, int]:
        """Token layout (steps, channels): token i is step i // C, channel i % C."""
        return (int(num_steps), int(num_channels))

    @staticmethod
    def token_step_channel(index: int, num_channels: int) -> tuple[int, int]:
        """(time step, channel) of token `index`."""
        step, channel = divmod(int(index), int(num_channels))
        return step, channel

    def forward(self, values: Tensor, observed: Tensor, present: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Encode values (B, T, C); only pairs with observed True (and present rows) are tokens."""
        batch, steps, channels = values.shape
        if channels != self.config.num_channels:
            raise ConfigError(f"expected {self.config.num_channels} channels, got {channels}", where="vitals encoder")
        if steps > self.config.max_steps:
            raise ConfigError(f"{steps} steps exceed max_steps={self.config.max_steps}", where="vitals encoder")
        obs = observed.to(device=values.device, dtype=torch.bool)  # (B, T, C)
        if present is not None:
            obs = obs & present.to(device=values.device, dtype=torch.bool)[:, None, None]
        dtype = self.value_in.weight.dtype
        clean = torch.where(obs, values.to(dtype), torch.zeros((), dtype=dtype, device=values.device))  # (B, T, C)
        x = self.value_in(clean.unsqueeze(-1))  # (B, T, C, D)
        x = x + self.channel_embedding.weight[None, None]  # (B, T, C, D)
        before = torch.arange(steps - 1, -1, -1, device=values.device)  # (T,) steps before the study
        x = x + self.time_embedding(before)[None, :, None]  # (B, T, C, D)
        x = x.reshape(batch, steps * channels, self.config.dim)  # (B, N, D)
        mask = obs.reshape(batch, steps * channels)  # (B, N)
        # A row with nothing observed would make every key masked (NaN); let it attend to its
        # own placeholder tokens instead, then zero its output below.
        padding = ~mask & mask.any(dim=1, keepdim=True)  # (B, N)
        x = self.norm(self.transformer(x, src_key_padding_mask=padding))  # (B, N, D)
        x = torch.where(mask[..., None], x, torch.zeros((), dtype=x.dtype, device=x.device))  # (B, N, D)
        return x, mask
