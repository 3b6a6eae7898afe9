"""Image encoder: a MONAI DenseNet whose last feature map becomes patch tokens.

The same class serves radiographs (spatial_dims=2, pixels (B, 1, H, W)) and CT/MR volumes
(spatial_dims=3, pixels (B, 1, D, H, W)). Token i is the cell ``numpy.unravel_index(i, grid)``
of the feature map, so relevance over tokens can be drawn back onto the pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from monai.networks.nets import DenseNet
from torch import Tensor, nn

from medmm.errors import ConfigError


@dataclass(frozen=True)
class ImageEncoderConfig:
    """Size of the DenseNet feature extractor and of the tokens it emits."""

    spatial_dims: int = 2  # 2: radiographs (B, 1, H, W); 3: volumes (B, 1, D, H, W)
    in_channels: int = 1
    dim: int = 256  # token width after the projection
    init_features: int = 32  # channels of the stem convolution
    growth_rate: int = 16  # channels each dense layer adds
    block_config: tuple[int, ...] = (2, 2, 2)  # dense layers per block; a 2x pooling between blocks
    bn_size: int = 4
    norm: str = "batch"  # any MONAI norm name: batch | instance | group ...
    dropout: float = 0.0
    max_grid: int = 64  # largest feature-map side the positional embedding covers
    # Frozen: no gradient reaches the weights and batch norm keeps its running statistics (eval
    # mode whatever the caller asks); for an encoder pretrained alone (training/pretrain_image.py).
    frozen: bool = False


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


class ImageEncoder(nn.Module):
    """Pixels -> patch tokens (B, N, dim) and mask (B, N); absent rows never reach the network."""

    def __init__(self, config: ImageEncoderConfig = ImageEncoderConfig()):
        super().__init__()
        if config.spatial_dims not in (2, 3):
            raise ConfigError(f"spatial_dims must be 2 or 3, got {config.spatial_dims}", where="image encoder")
        if not config.block_config:
            raise ConfigError("block_config needs at least one dense block", where="image encoder")
        self.config = config
        net = DenseNet(
            spatial_dims=config.spatial_dims,
            in_channels=config.in_channels,
            out_channels=1,
            init_features=config.init_features,
            growth_rate=config.growth_rate,
            block_config=tuple(config.block_config),
            bn_size=config.bn_size,
            norm=config.norm,
            dropout_prob=config.dropout,
        )
        # Keep only the feature extractor: the classification head would be unused parameters.
        self.features = net.features
        self.act = nn.ReLU()
        self.feature_channels = int(net.class_layers.out.in_features)
        self.proj_in = nn.Linear(self.feature_channels, config.dim)
        # Learned positional embedding factorised per axis: pos[i, j(, k)] = e0[i] + e1[j] (+ e2[k]).
        self.pos_axes = nn.ParameterList(
            [nn.Parameter(torch.randn(config.max_grid, config.dim) * 0.02) for _ in range(config.spatial_dims)]
        )
        if config.frozen:
            self.requires_grad_(False)
            self.eval()

    def train(self, mode: bool = True) -> ImageEncoder:
        """Switch mode; a frozen encoder stays in eval mode (batch-norm statistics fixed)."""
        return super().train(mode and not self.config.frozen)

    @property
    def dim(self) -> int:
        return self.config.dim

    def grid(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        """Feature-map shape for an input whose trailing `spatial_dims` sizes are `input_shape`."""
        spatial = tuple(int(s) for s in input_shape)[-self.config.spatial_dims :]
        out = []
        for size in spatial:
            size = _conv_out(size, kernel=7, stride=2, padding=3)  # stem convolution
            size = _conv_out(size, kernel=3, stride=2, padding=1)  # stem max-pool
            for _ in range(len(self.config.block_config) - 1):
                size = size // 2  # transition average-pool
            out.append(size)
        return tuple(out)

    def token_cell(self, index: int, input_shape: Sequence[int]) -> tuple[int, ...]:
        """Feature-map cell of token `index` (row-major over the grid)."""
        grid = self.grid(input_shape)
        return tuple(int(i) for i in np.unravel_index(int(index), grid))

    def token_region(self, index: int, input_shape: Sequence[int]) -> tuple[slice, ...]:
        """Pixel ranges (one slice per spatial axis) that token `index`'s cell covers at the map's stride."""
        spatial = tuple(int(s) for s in input_shape)[-self.config.spatial_dims :]
        grid = self.grid(spatial)
        cell = np.unravel_index(int(index), grid)
        return tuple(slice(c * n // g, (c + 1) * n // g) for c, n, g in zip(cell, spatial, grid))

    def _positions(self, grid: tuple[int, ...]) -> Tensor:
        if max(grid) > self.config.max_grid:
            raise ConfigError(
                f"feature grid {grid} exceeds max_grid={self.config.max_grid}; raise max_grid or shrink the input",
                where="image encoder",
            )
        pos = None
        for axis, size in enumerate(grid):
            shape = [1] * len(grid) + [self.config.dim]
            shape[axis] = size
            term = self.pos_axes[axis][:size].reshape(shape)  # broadcast over the other axes
            pos = term if pos is None else pos + term
        return pos.reshape(-1, self.config.dim)  # (N, D)

    def forward(self, pixels: Tensor, present: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Encode pixels (B, C, *spatial); rows with present False get zero tokens and a False mask."""
        if pixels.dim() != self.config.spatial_dims + 2:
            raise ConfigError(
                f"pixels must have {self.config.spatial_dims + 2} dimensions (B, C, *spatial), got {pixels.dim()}",
                where="image encoder",
            )
        batch = pixels.shape[0]
        if present is None:
            present = torch.ones(batch, dtype=torch.bool, device=pixels.device)
        present = present.to(device=pixels.device, dtype=torch.bool)  # (B,)
        grid = self.grid(pixels.shape[2:])
        if min(grid) < 1:
            raise ConfigError(
                f"input {tuple(pixels.shape[2:])} is too small for {len(self.config.block_config)} dense blocks",
                where="image encoder",
            )
        num_tokens = int(np.prod(grid))
        rows = present.nonzero(as_tuple=True)[0]  # (P,)
        out_dtype = self.proj_in.weight.dtype
        tokens = torch.zeros(batch, num_tokens, self.config.dim, device=pixels.device, dtype=out_dtype)  # (B, N, D)
        if rows.numel() > 0:
            x = pixels.index_select(0, rows).to(out_dtype)  # (P, C, *spatial)
            fmap = self.act(self.features(x))  # (P, F, *grid)
            flat = fmap.flatten(2).transpose(1, 2)  # (P, N, F)
            encoded = self.proj_in(flat) + self._positions(grid)  # (P, N, D)
            tokens = tokens.index_copy(0, rows, encoded)  # (B, N, D)
        mask = present[:, None].expand(batch, num_tokens).contiguous()  # (B, N)
        return tokens, mask
