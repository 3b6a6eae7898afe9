"""Small numpy image filters for the renderers (no BLAS, so worker processes stay single-threaded)."""

from __future__ import annotations

import numpy as np


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of a 2D array with edge padding; sigma in pixels (<= 0.2: unchanged)."""
    if sigma <= 0.2:
        return image
    radius = max(1, int(round(3.0 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    out = image
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="edge")
        acc = np.zeros_like(out)
        n = out.shape[axis]
        for k, w in enumerate(taps):
            acc += w * (padded[k : k + n] if axis == 0 else padded[:, k : k + n])
        out = acc
    return out


def upsample(low: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a small 2D array to `shape` (smooth random fields)."""
    rows = _interp_axis(low.shape[0], shape[0])
    cols = _interp_axis(low.shape[1], shape[1])
    i0, i1, wr = rows
    j0, j1, wc = cols
    top = low[i0][:, j0] * (1 - wc) + low[i0][:, j1] * wc  # (H, W)
    bottom = low[i1][:, j0] * (1 - wc) + low[i1][:, j1] * wc  # (H, W)
    return top * (1 - wr[:, None]) + bottom * wr[:, None]


def _interp_axis(n_low: int, n_high: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pos = (np.arange(n_high) + 0.5) * n_low / n_high - 0.5
    pos = np.clip(pos, 0, n_low - 1)
    i0 = np.floor(pos).astype(np.intp)
    i1 = np.minimum(i0 + 1, n_low - 1)
    return i0, i1, pos - i0


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    """Zero-mean, unit-ish random field varying over about shape/cells pixels."""
    low = rng.standard_normal((cells + 1, cells + 1))
    return upsample(low, shape)


def erode(mask: np.ndarray, k: int) -> np.ndarray:
    """Pixels of a 2D mask at least about `k` pixels from its edge (8 shifted copies, no scipy)."""
    if k <= 0:
        return mask.copy()
    padded = np.pad(mask, k, constant_values=False)
    h, w = mask.shape
    out = mask.copy()
    d = max(1, int(round(k * 0.7)))
    for dr, dc in ((k, 0), (-k, 0), (0, k), (0, -k), (d, d), (d, -d), (-d, d), (-d, -d)):
        out &= padded[k + dr : k + dr + h, k + dc : k + dc + w]
    return out


def bbox(mask: np.ndarray) -> dict[str, int]:
    """Inclusive pixel bounding box of a non-empty mask (last axes are rows, columns)."""
    rows = np.flatnonzero(mask.any(axis=-1).reshape(-1, mask.shape[-2]).any(axis=0))
    cols = np.flatnonzero(mask.any(axis=-2).reshape(-1, mask.shape[-1]).any(axis=0))
    return {"row_min": int(rows[0]), "col_min": int(cols[0]), "row_max": int(rows[-1]), "col_max": int(cols[-1])}
