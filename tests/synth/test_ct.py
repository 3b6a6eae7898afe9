from __future__ import annotations

import numpy as np
import pytest

from medmm.synth.ct import render_ct

FINDINGS = {"pneumonia": 0.9, "pleural_effusion": 0.8, "pneumothorax": 0.8}


@pytest.mark.parametrize("seed", range(4))
def test_ct_lesions_lie_in_the_lungs_with_their_densities(seed):
    ct = render_ct(np.random.default_rng(seed), 16, 48, FINDINGS)
    assert ct.hu.shape == (16, 48, 48) and ct.hu.dtype == np.int16
    assert ct.hu.min() >= -1024 and ct.hu.max() <= 3071
    for name in FINDINGS:
        mask = ct.lesions[name]
        assert mask.any() and not (mask & ~ct.lungs).any(), name
        f = ct.findings[name]
        zs = np.flatnonzero(mask.any(axis=(1, 2)))
        assert (f["slice_min"], f["slice_max"]) == (zs[0], zs[-1])
    hu = ct.hu.astype(float)
    assert hu[ct.lesions["pleural_effusion"] & ~ct.lesions["pneumonia"]].mean() == pytest.approx(15, abs=10)
    assert hu[ct.lesions["pneumothorax"] & ~ct.lesions["pneumonia"]].mean() < -950
    # the dependent fluid is posterior (higher rows), the free air anterior
    assert np.nonzero(ct.lesions["pleural_effusion"])[1].mean() > np.nonzero(ct.lesions["pneumothorax"])[1].mean()


def test_normal_ct_has_aerated_lungs_and_apex_at_the_top():
    ct = render_ct(np.random.default_rng(0), 24, 64, {})
    hu = ct.hu.astype(float)
    assert hu[ct.lungs].mean() == pytest.approx(-850, abs=30)
    area = ct.lungs.sum(axis=(1, 2))
    assert (
        area[0] < 0.1 * area.max() and area.argmax() < 12 and area[-1] < 0.5 * area.max()
    )  # diaphragm below, apex above
    assert dict(ct.lesions) == {}


def test_heart_failure_enlarges_the_heart_in_ct():
    normal = render_ct(np.random.default_rng(1), 12, 48, {})
    failing = render_ct(np.random.default_rng(1), 12, 48, {"heart_failure": 1.0})
    heart = failing.lesions["heart_failure"]
    normal_area = np.pi * 0.13 * 0.11 * 48**2  # the normal heart ellipse's semi-axes, in pixels
    assert heart[5].sum() > 1.5 * normal_area
    assert normal.lungs.sum() > failing.lungs.sum()  # the bigger heart displaces lung
