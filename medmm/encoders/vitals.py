"""Vitals encoder: a small transformer over (time step, channel) tokens that honours the mask.

Each observed (t, c) pair becomes a token: a projection of its value plus a channel embedding
and a time embedding. Unobserved pairs are masked out as keys everywhere and their values are
replaced before use, so an unobserved value (zero, NaN or anything) never reaches an observed
token. Token i is step ``i // C``, channel ``i % C``.

With `summary_tokens`, each channel observed at least once also gets one token of its summary
over the window (mean, SD, min, max, last value, slope, share of steps observed, and mean, min,
max over the last quarter of the window), appended after the T*C step tokens: what a classical
model reads off the grid, handed to the transformer directly rather than left for it to learn
from a few hundred cases. Token T*C + c is channel c's summary.
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
    summary_tokens: bool = False  # one token per observed channel with its window statistics (see the module docstring)
    summary_dropout: float = 0.0  # training only: chance of hiding a row's statistics (tokens and linear path), so attention over the steps still learns


SUMMARY_FEATURES = 10  # mean, sd, min, max, last, slope, observed share, recent mean, recent min, recent max


def channel_summaries(values: Tensor, observed: Tensor) -> Tensor:
    """Per-channel statistics (B, C, SUMMARY_FEATURES) of a masked grid (B, T, C); 0 where a channel is unobserved.

    The slope is per window (time scaled to [0, 1]); "recent" is the last quarter of the window.
    """
    obs = observed.to(values.dtype)  # (B, T, C)
    steps = values.shape[1]
    n = obs.sum(dim=1).clamp(min=1.0)  # (B, C)
    mean = (values * obs).sum(dim=1) / n  # (B, C)
    centred = (values - mean[:, None]) * obs  # (B, T, C)
    sd = (centred.pow(2).sum(dim=1) / n).sqrt()  # (B, C)
    big = torch.finfo(values.dtype).max
    lo = torch.where(observed, values, torch.full_like(values, big)).amin(dim=1)  # (B, C)
    hi = torch.where(observed, values, torch.full_like(values, -big)).amax(dim=1)  # (B, C)
    t = torch.linspace(0.0, 1.0, steps, dtype=values.dtype, device=values.device)[None, :, None]  # (1, T, 1)
    t_mean = (t * obs).sum(dim=1) / n  # (B, C)
    t_centred = (t - t_mean[:, None]) * obs  # (B, T, C)
    slope = (t_centred * centred).sum(dim=1) / t_centred.pow(2).sum(dim=1).clamp(min=1e-6)  # (B, C)
    last_step = (obs * torch.arange(1, steps + 1, device=values.device, dtype=values.dtype)[None, :, None]).argmax(
        dim=1
    )  # (B, C)
    last = values.gather(1, last_step[:, None]).squeeze(1)  # (B, C)
    recent = obs.clone()
    recent[:, : steps - max(steps // 4, 1)] = 0.0
    r_n = recent.sum(dim=1)  # (B, C)
    r_mean = (values * recent).sum(dim=1) / r_n.clamp(min=1.0)
    r_lo = torch.where(recent.bool(), values, torch.full_like(values, big)).amin(dim=1)
    r_hi = torch.where(recent.bool(), values, torch.full_like(values, -big)).amax(dim=1)
    seen, r_seen = observed.any(dim=1), r_n > 0  # (B, C)
    zero = torch.zeros((), dtype=values.dtype, device=values.device)
    feats = [mean, sd, lo, hi, last, slope, obs.mean(dim=1)] + [
        torch.where(r_seen, f, zero) for f in (r_mean, r_lo, r_hi)
    ]
    return torch.stack([torch.where(seen, f, zero) for f in feats], dim=-1)  # (B, C, F)


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
        if config.summary_tokens:
            self.summary_in = nn.Sequential(
                nn.Linear(SUMMARY_FEATURES, config.dim), nn.GELU(), nn.Linear(config.dim, config.dim)
            )
            self.summary_embedding = nn.Parameter(torch.zeros(config.dim))  # marks a token as a summary

    @property
    def dim(self) -> int:
        return self.config.dim

    @staticmethod
    def grid(num_steps: int, num_channels: int) -> tuple[int, int]:
        """Token layout (steps, channels): token i is step i // C, channel i % C (summary tokens follow)."""
        return (int(num_steps), int(num_channels))

    @staticmethod
    def summary_features(values: Tensor, observed: Tensor) -> Tensor:
        """Every channel's window statistics and whether it was seen, flattened (B, C * (SUMMARY_FEATURES + 1))."""
        obs = observed.to(dtype=torch.bool)
        clean = torch.where(obs, values, torch.zeros((), dtype=values.dtype, device=values.device))  # (B, T, C)
        stats = channel_summaries(clean, obs)  # (B, C, F)
        seen = obs.any(dim=1, keepdim=True).transpose(1, 2).to(values.dtype)  # (B, C, 1)
        return torch.cat([stats, seen], dim=-1).flatten(1)  # (B, C * (F + 1))

    def tokens_to_grid(self, relevance: Tensor, observed: Tensor) -> Tensor:
        """Token relevance (N,) on the (T, C) grid: a summary token's share spread evenly over its channel's observed steps."""
        steps, channels = observed.shape
        grid = relevance[: steps * channels].reshape(steps, channels)  # (T, C)
        if not self.config.summary_tokens:
            return grid
        obs = observed.to(grid.dtype)  # (T, C)
        spread = relevance[steps * channels :][None, :] * obs / obs.sum(dim=0, keepdim=True).clamp(min=1.0)  # (T, C)
        return grid + spread

    @staticmethod
    def token_step_channel(index: int, num_channels: int) -> tuple[int, int]:
        """(time step, channel) of token `index`."""
        step, channel = divmod(int(index), int(num_channels))
        return step, channel

    def forward(
        self, values: Tensor, observed: Tensor, present: Tensor | None = None, summary_keep: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Encode values (B, T, C); only pairs with observed True (and present rows) are tokens.

        `summary_keep` (B,) bool: rows whose summary tokens are used (None: all)."""
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
        if self.config.summary_tokens:
            summary = self.summary_in(channel_summaries(clean, obs))  # (B, C, D)
            summary = summary + self.channel_embedding.weight[None] + self.summary_embedding  # (B, C, D)
            seen = obs.any(dim=1)  # (B, C)
            if summary_keep is not None:
                seen = seen & summary_keep.to(device=seen.device, dtype=torch.bool)[:, None]
            x = torch.cat([x, summary], dim=1)  # (B, N + C, D)
            mask = torch.cat([mask, seen], dim=1)  # (B, N + C)
            padding = ~mask & mask.any(dim=1, keepdim=True)
        x = self.norm(self.transformer(x, src_key_padding_mask=padding))  # (B, N, D)
        x = torch.where(mask[..., None], x, torch.zeros((), dtype=x.dtype, device=x.device))  # (B, N, D)
        return x, mask
