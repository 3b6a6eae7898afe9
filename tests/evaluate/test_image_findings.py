"""Image-finding thresholds fitted on validation scores: the highest recall with no false positive, by hand."""

from __future__ import annotations

import numpy as np
import pytest

from medmm.evaluate.image_findings import fit_image_findings, fit_threshold


def test_separated_scores_put_the_threshold_at_the_lowest_positive_above_the_gap():
    cut, precision, recall = fit_threshold(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1], bool))
    assert cut == pytest.approx(0.8) and (precision, recall) == (1.0, 1.0)
    assert (
        0.2 < cut and (np.array([0.8, 0.9]) >= cut).all()
    )  # every validation positive still stated, the negative margin widest


def test_overlapping_scores_take_the_cut_with_no_false_positive():
    # cuts above 0.1 and above 0.6 state the negative at 0.7; above 0.7: P 1, R 0.5
    cut, precision, recall = fit_threshold(np.array([0.1, 0.6, 0.7, 0.9]), np.array([0, 1, 0, 1], bool))
    assert cut == pytest.approx(0.9) and (precision, recall) == (1.0, 0.5)
    # F0.5 would take the cut above 0.1 (P 4/5, R 1: 0.833 against 0.625); no false positive is the rule
    cut, precision, recall = fit_threshold(
        np.array([0.1, 0.5, 0.55, 0.6, 0.65, 0.9]), np.array([0, 1, 1, 1, 0, 1], bool)
    )
    assert cut == pytest.approx(0.9) and (precision, recall) == (1.0, 0.25)
    # a positive tied with the top negative is not stated
    cut, _, recall = fit_threshold(np.array([0.3, 0.6, 0.6, 0.8]), np.array([0, 1, 0, 1], bool))
    assert cut == pytest.approx(0.8) and recall == 0.5


def test_when_every_positive_is_below_a_negative_the_finding_is_never_stated():
    cut, precision, recall = fit_threshold(np.array([0.2, 0.3, 0.9]), np.array([1, 1, 0], bool))
    assert cut > 0.9 and recall == 0.0


def test_too_few_positives_keep_the_default_and_say_why():
    scores = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.9], [0.1, 0.3]])
    targets = np.array([[1, 0], [1, 0], [1, 1], [0, 0]], bool)
    fit = fit_image_findings(scores, targets, ("pneumonia", "sepsis"), 0.5, "lesion truth")
    assert fit.thresholds == {"pneumonia": pytest.approx(0.7), "sepsis": 0.5}
    assert fit.detail["sepsis"]["kept_default"] and fit.detail["pneumonia"]["precision"] == 1.0
    assert fit.calibration()["image_finding_thresholds"] == fit.thresholds
