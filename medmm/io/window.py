"""Window/level: one set of presets and one way to choose and apply a window, for the model, the maps and the viewer.

A window is (center, width) in the pixels' own units (Hounsfield units for CT): [c - w/2, c + w/2]
maps onto [0, 1], clipped. A series keeps the window its file stores; without one, CT gets the
mediastinal (soft-tissue) preset and anything else the span of its pixel values between the
lower and upper percentiles (`data_window`), which ignores the outliers (collimator edges,
burnt-in text) that the minimum and maximum would follow.
"""

from __future__ import annotations

import numpy as np

CT_PRESETS: dict[str, tuple[float, float]] = {  # (center, width) in HU
    "Lung": (-600.0, 1500.0),
    "Mediastinum": (40.0, 400.0),
    "Bone": (400.0, 1800.0),
    "Abdomen": (60.0, 400.0),
}
CT_DEFAULT = "Mediastinum"  # a CT series without a stored window
CT_VOLUME = "Lung"  # the window the model reads CT volumes through (chest CT)


def data_window(pixels: np.ndarray, low: float = 0.5, high: float = 99.5) -> tuple[float, float]:
    """(center, width) spanning the pixel values between the `low` and `high` percentiles (NaN ignored)."""
    flat = np.asarray(pixels, dtype=np.float64).ravel()
    flat = flat[:: max(1, flat.size // 1_000_000)]  # a million samples pin the percentiles down
    flat = flat[np.isfinite(flat)]
    if flat.size == 0:
        return 0.5, 1.0
    lo, hi = np.percentile(flat, [low, high])
    return float(lo + hi) / 2.0, float(max(hi - lo, 1e-3))


def series_window(window: tuple[float, float] | None, pixels: np.ndarray) -> tuple[float, float]:
    """The series' own window when it has one (width > 0), else the 0.5-99.5 percentile span of its pixels."""
    if window is not None and window[1] > 0:
        return float(window[0]), float(window[1])
    return data_window(pixels)


def apply_window(pixels: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """Pixels through a (center, width) window onto [0, 1] (float64)."""
    center, width = window
    return np.clip((np.asarray(pixels, dtype=np.float64) - (center - width / 2.0)) / max(width, 1e-6), 0.0, 1.0)
