"""Window/level (medmm.io.window): presets, the window a series is shown and read through, and its application."""

from __future__ import annotations

import numpy as np

from medmm.io.window import CT_DEFAULT, CT_PRESETS, CT_VOLUME, apply_window, data_window, series_window


def test_applying_a_window_by_hand():
    # center 100, width 100: [50, 150] onto [0, 1]
    np.testing.assert_allclose(apply_window(np.array([0.0, 50.0, 100.0, 200.0]), (100.0, 100.0)), [0.0, 0.0, 0.5, 1.0])


def test_a_series_keeps_its_own_window_else_the_percentile_span():
    pixels = np.arange(1001, dtype=np.float64)  # 0..1000
    assert series_window((500.0, 1000.0), pixels) == (500.0, 1000.0)
    lo, hi = np.percentile(pixels, [0.5, 99.5])  # 5 and 995
    assert (
        series_window(None, pixels) == series_window((10.0, 0.0), pixels) == ((lo + hi) / 2, hi - lo) == (500.0, 990.0)
    )
    assert data_window(np.full((2, 2), np.nan)) == (0.5, 1.0) and data_window(np.zeros(0)) == (0.5, 1.0)
    assert data_window(np.full(4, 7.0)) == (7.0, 1e-3)  # a constant image: the narrowest window, not a division by zero


def test_one_set_of_ct_presets():
    assert CT_PRESETS["Lung"] == (-600.0, 1500.0) and CT_PRESETS[CT_DEFAULT] == (40.0, 400.0) and CT_VOLUME == "Lung"
