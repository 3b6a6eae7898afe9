"""Pretraining the image encoder alone: where each diagnosis's evidence lies in the radiograph.

Trained jointly from the start, the image branch learns little in a short run: the notes explain
the training labels sooner, and the image's gradient fades (the "modality laziness" of
multimodal training). Pretraining the encoder alone on image targets, then freezing it, fixes
that (uni-modal pretraining, as in Du et al., "On Uni-Modal Feature Learning in Supervised
Multi-Modal Learning", 2023).

Targets, per case with an image:
- finding (K,): 1 where the diagnosis's evidence was drawn into the image (synthetic truth), or
  the diagnosis labels for a case without truth (real data);
- cover (K, *grid): the share of each encoder token's cell inside the diagnosis's lesion mask.
  The preprocessor resizes the whole radiograph to a square, so a cell's share is the mask
  averaged over the cell (adaptive average pooling: the cell bounds of
  `ImageEncoder.token_region`). Only for cases whose truth has masks.

The model scores every token for every diagnosis; an image's finding logit pools its tokens
(log-mean-exp), so the token scores must also be right where the image has no masks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from medmm.encoders.image import ImageEncoder, ImageEncoderConfig
from medmm.errors import CheckpointError, ConfigError
from medmm.synth.planted import TRUTH_FILE, read_lesions

WEIGHTS_FILE = "image_encoder.safetensors"
META_FILE = "image_encoder.json"


@dataclass(frozen=True)
class ImageTargets:
    finding: Tensor  # (K,) float
    cover: Tensor  # (K, *grid) float in [0, 1]
    cover_known: bool  # cover comes from lesion masks


def image_targets(folder: str | Path, labels: Tensor, diagnoses: Sequence[str], grid: Sequence[int]) -> ImageTargets:
    """The targets of the case in `folder` with diagnosis labels (K,), for an encoder grid."""
    folder = Path(folder)
    cover = torch.zeros(len(diagnoses), *grid)  # (K, *grid)
    if not (folder / TRUTH_FILE).is_file():
        return ImageTargets(labels.float().clone(), cover, False)
    lesions = read_lesions(folder)  # every diagnosis drawn into the image has its mask
    finding = torch.tensor([float(d in lesions) for d in diagnoses])  # (K,)
    for name, mask in lesions.items():
        if name in diagnoses:
            m = torch.from_numpy(mask.astype(np.float32))[None, None]  # (1, 1, H, W)
            cover[list(diagnoses).index(name)] = F.adaptive_avg_pool2d(m, tuple(grid))[0, 0]
    return ImageTargets(finding, cover, True)


class ImagePretrainer(nn.Module):
    """The image encoder with a linear scorer on its tokens: token logits (B, N, K)."""

    def __init__(self, config: ImageEncoderConfig, num_diagnoses: int):
        super().__init__()
        if config.spatial_dims != 2:
            raise ConfigError("image pretraining reads radiographs (spatial_dims=2)", where="model.image")
        self.encoder = ImageEncoder(dataclasses.replace(config, frozen=False))
        self.scorer = nn.Linear(config.dim, num_diagnoses)

    def forward(self, pixels: Tensor) -> Tensor:
        tokens, _ = self.encoder(pixels)  # (B, N, D)
        return self.scorer(tokens)  # (B, N, K)


def finding_logits(token_logits: Tensor) -> Tensor:
    """Image-level logits (B, K): the log-mean-exp of the token logits (B, N, K)."""
    return torch.logsumexp(token_logits, dim=1) - math.log(token_logits.shape[1])


def pretrain_loss(
    token_logits: Tensor, finding: Tensor, cover: Tensor, cover_known: Tensor, cover_weight: float = 1.0
) -> Tensor:
    """Finding BCE over rows, plus `cover_weight` x token BCE against the lesion cover where known.

    token_logits (B, N, K); finding (B, K); cover (B, K, *grid); cover_known (B,) bool.
    """
    loss = F.binary_cross_entropy_with_logits(finding_logits(token_logits), finding)
    if bool(cover_known.any()):
        target = cover[cover_known].flatten(2).transpose(1, 2)  # (b, N, K)
        loss = loss + cover_weight * F.binary_cross_entropy_with_logits(token_logits[cover_known], target)
    return loss


def mask_background(
    pixels: Tensor, cover: Tensor, cover_known: Tensor, rate: float, max_fraction: float, generator: torch.Generator
) -> tuple[Tensor, int]:
    """A copy of `pixels` (B, C, H, W) with random background cells of some images set to each image's mean.

    An image is chosen with chance `rate` when its lesion cover (B, K, *grid) is known; between 1
    and ceil(max_fraction * cells) of its cells whose cover is zero for every diagnosis are blanked,
    at the cell bounds of `ImageEncoder.token_region`. Returns the pixels and the number of cells blanked.
    """
    if rate <= 0.0 or not bool(cover_known.any()):
        return pixels, 0
    out = pixels.clone()
    grid = tuple(cover.shape[2:])
    size = tuple(pixels.shape[2:])
    cells = math.prod(grid)
    most = max(1, math.ceil(max_fraction * cells))
    blanked = 0
    for row in range(pixels.shape[0]):
        if not bool(cover_known[row]) or float(torch.rand((), generator=generator)) >= rate:
            continue
        background = torch.nonzero(cover[row].flatten(1).sum(dim=0) == 0).flatten()  # (n,) cell indices
        if background.numel() == 0:
            continue
        count = min(int(torch.randint(1, most + 1, (), generator=generator)), background.numel())
        chosen = background[torch.randperm(background.numel(), generator=generator)[:count]]
        fill = pixels[row].mean()
        for index in chosen.tolist():
            cell = np.unravel_index(index, grid)
            region = tuple(slice(c * n // g, (c + 1) * n // g) for c, n, g in zip(cell, size, grid))
            out[(row, slice(None), *region)] = fill
        blanked += count
    return out, blanked


def pointing_rate(token_logits: Tensor, cover: Tensor, finding: Tensor) -> tuple[int, int]:
    """(hits, trials): over (image, diagnosis) pairs with a finding and a mask, whether the top token is in the lesion."""
    target = cover.flatten(2)  # (B, K, N)
    has_mask = (finding > 0) & (target.sum(dim=-1) > 0)  # (B, K)
    top = token_logits.argmax(dim=1)  # (B, K)
    hit = target.gather(-1, top[..., None]).squeeze(-1) > 0  # (B, K)
    return int((hit & has_mask).sum()), int(has_mask.sum())


# -- the encoder's weights, for the next stage ----------------------------------------------------


def save_image_encoder(encoder: ImageEncoder, directory: str | Path, extra: dict | None = None) -> Path:
    """Write the encoder's weights (safetensors) and config with a SHA-256 of the weights."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / WEIGHTS_FILE
    save_file({k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}, str(weights))
    meta = {
        "config": dataclasses.asdict(encoder.config),
        "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        **(extra or {}),
    }
    (directory / META_FILE).write_text(json.dumps(meta, indent=2))
    return directory


def load_image_encoder(encoder: ImageEncoder, directory: str | Path) -> dict:
    """Load pretrained weights into `encoder` (its config must match but for `frozen`); returns the metadata."""
    directory = Path(directory)
    weights, meta_path = directory / WEIGHTS_FILE, directory / META_FILE
    if not weights.is_file() or not meta_path.is_file():
        raise CheckpointError(
            f"not a pretrained image encoder ({WEIGHTS_FILE} and {META_FILE} expected)", path=directory
        )
    meta = json.loads(meta_path.read_text())
    if hashlib.sha256(weights.read_bytes()).hexdigest() != meta.get("sha256"):
        raise CheckpointError("the weights do not match their recorded SHA-256", path=weights)
    mine = {k: v for k, v in dataclasses.asdict(encoder.config).items() if k != "frozen"}
    theirs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in meta.get("config", {}).items() if k != "frozen"}
    if mine != theirs:
        differ = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        raise CheckpointError(
            f"pretrained with another image encoder config ({', '.join(differ)} differ)", path=meta_path
        )
    encoder.load_state_dict(load_file(str(weights)))
    return meta
