from __future__ import annotations

import numpy as np
import pytest

from medmm.synth.radiograph import cardiothoracic_ratio, render_radiograph

SEEDS = range(6)


def render(seed: int, evidence: dict, size: int = 96, degradation: float = 0.0):
    return render_radiograph(np.random.default_rng(seed), size, evidence, degradation)


def lung_of(lungs: np.ndarray, side: str) -> np.ndarray:
    """One lung field: the patient's right lung is on the image's left in a PA view."""
    out = lungs.copy()
    mid = lungs.shape[1] // 2
    if side == "right":
        out[:, mid:] = False
    else:
        out[:, :mid] = False
    return out


def measured_ctr(heart: np.ndarray, lungs: np.ndarray) -> float:
    """Cardiothoracic ratio by hand: widest heart row extent over the lungs' outer extent."""
    heart_cols = [c for c in range(heart.shape[1]) if heart[:, c].any()]
    lung_cols = [c for c in range(lungs.shape[1]) if lungs[:, c].any()]
    return (max(heart_cols) - min(heart_cols) + 1) / (max(lung_cols) - min(lung_cols) + 1)


@pytest.mark.parametrize("seed", SEEDS)
def test_heart_failure_enlarges_the_heart_beyond_half_the_thorax(seed):
    normal = render(seed, {})
    failing = render(seed, {"heart_failure": 0.5})  # weakest planted strength
    assert measured_ctr(normal.heart, normal.lungs) < 0.5
    assert measured_ctr(failing.heart, failing.lungs) > 0.5
    assert failing.ctr == pytest.approx(measured_ctr(failing.heart, failing.lungs))
    assert np.array_equal(failing.lesions["heart_failure"], failing.heart)


def test_cardiothoracic_ratio_of_known_masks():
    heart = np.zeros((10, 20), bool)
    lungs = np.zeros((10, 20), bool)
    heart[5, 6:12] = True  # 6 columns wide
    lungs[2, 2:18] = True  # 16 columns wide
    assert cardiothoracic_ratio(heart, lungs) == pytest.approx(6 / 16)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("finding", ["pneumonia", "pleural_effusion", "pneumothorax"])
def test_lesion_masks_lie_inside_the_lungs(seed, finding):
    img = render(seed, {finding: 0.75})
    mask = img.lesions[finding]
    assert mask.sum() >= 3
    assert not (mask & ~img.lungs).any()
    rows, cols = np.nonzero(mask)
    box = img.findings[0].bbox
    assert (box["row_min"], box["row_max"], box["col_min"], box["col_max"]) == (
        rows.min(),
        rows.max(),
        cols.min(),
        cols.max(),
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_pneumonia_sits_in_its_zone_and_is_brighter_than_the_rest_of_that_lung(seed):
    img = render(seed, {"pneumonia": 1.0}, size=128)
    finding = img.findings[0]
    side, zone = finding.zone.split("_")
    assert side == finding.side
    mask = img.lesions["pneumonia"]
    lung_side = lung_of(img.lungs, side)
    assert not (mask & ~lung_side).any()
    rows = np.flatnonzero(lung_side.any(axis=1))
    third = (rows[-1] - rows[0] + 1) / 3
    centre_row = np.nonzero(mask)[0].mean()
    zone_index = int((centre_row - rows[0]) // third)
    assert abs(zone_index - ["upper", "middle", "lower"].index(zone)) <= 1  # the blob may straddle a border
    px = img.pixels.astype(float)
    assert px[mask].mean() > px[lung_side & ~mask].mean() + 200


@pytest.mark.parametrize("seed", SEEDS)
def test_effusion_is_basal_and_pneumothorax_apical(seed):
    eff = render(seed, {"pleural_effusion": 0.8})
    ptx = render(seed, {"pneumothorax": 0.8})
    lung_rows = np.flatnonzero(eff.lungs.any(axis=1))
    middle = (lung_rows[0] + lung_rows[-1]) / 2
    assert np.nonzero(eff.lesions["pleural_effusion"])[0].mean() > middle
    assert np.nonzero(ptx.lesions["pneumothorax"])[0].mean() < middle
    # free pleural air is darker than the lung it displaced
    lung_side = lung_of(ptx.lungs, ptx.findings[0].side)
    assert not (ptx.lesions["pneumothorax"] & ~lung_side).any()
    px = ptx.pixels.astype(float)
    assert px[ptx.lesions["pneumothorax"]].mean() < px[lung_side & ~ptx.lesions["pneumothorax"]].mean()


def test_pixels_are_12_bit_and_lungs_darker_than_mediastinum():
    img = render(0, {})
    assert img.pixels.dtype == np.uint16 and img.pixels.max() <= 4095
    px = img.pixels.astype(float)
    assert px[img.lungs].mean() < px[img.heart].mean() - 500
    assert 380 / 96 <= img.spacing_mm <= 430 / 96


def test_no_findings_without_evidence():
    img = render(3, {})
    assert img.findings == () and dict(img.lesions) == {}


def test_degradation_adds_noise_and_blur():
    clean = render(1, {}, size=128).pixels.astype(float)
    noisy = render(1, {}, size=128, degradation=1.0).pixels.astype(float)
    # pixel-to-pixel differences measure high-frequency noise
    assert np.abs(np.diff(noisy, axis=1)).mean() > 3 * np.abs(np.diff(clean, axis=1)).mean()


def test_same_generator_state_gives_the_same_image():
    a = render(5, {"pneumonia": 0.7, "pleural_effusion": 0.6})
    b = render(5, {"pneumonia": 0.7, "pleural_effusion": 0.6})
    assert np.array_equal(a.pixels, b.pixels)
    assert all(np.array_equal(a.lesions[k], b.lesions[k]) for k in a.lesions)
