"""Image-finding thresholds fitted on validation scores: F0.5 worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from medmm.evaluate.image_findings import fit_image_findings, fit_threshold


def test_separated_scores_put_the_threshold_in_the_middle_of_the_gap():
    cut, precision, recall = fit_threshold(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1], bool))
    assert cut == pytest.approx(0.5) and (precision, recall) == (1.0, 1.0)


def test_overlapping_scores_take_the_cut_with_the_best_f_half():
    # cuts: all said F0.5=0.556; above 0.1: P 2/3 R 1, F0.5=0.714; above 0.6: P .5 R .5, 0.5; above 0.7: P 1 R .5, 0.833
    cut, precision, recall = fit_threshold(np.array([0.1, 0.6, 0.7, 0.9]), np.array([0, 1, 0, 1], bool))
    assert cut == pytest.approx(0.8) and (precision, recall) == (1.0, 0.5)


def test_too_few_positives_keep_the_default_and_say_why():
    scores = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.9], [0.1, 0.3]])
    targets = np.array([[1, 0], [1, 0], [1, 1], [0, 0]], bool)
    fit = fit_image_findings(scores, targets, ("pneumonia", "sepsis"), 0.5, "lesion truth")
    assert fit.thresholds == {"pneumonia": pytest.approx(0.4), "sepsis": 0.5}
    assert fit.detail["sepsis"]["kept_default"] and fit.detail["pneumonia"]["precision"] == 1.0
    assert fit.calibration()["image_finding_thresholds"] == fit.thresholds
