"""diagnosis_loss against binary cross-entropy written out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from medmm.train.losses import diagnosis_loss, unimodal_loss


def bce(logit: float, label: float) -> float:
    p = 1.0 / (1.0 + math.exp(-logit))
    return -(label * math.log(p) + (1.0 - label) * math.log(1.0 - p))


LOGITS = [[2.0, -1.0], [0.5, 0.0], [3.0, -3.0]]
LABELS = [[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]


def row(i: int) -> float:
    return (bce(LOGITS[i][0], LABELS[i][0]) + bce(LOGITS[i][1], LABELS[i][1])) / 2


def test_mean_over_diagnoses_then_over_known_rows():
    logits, labels = torch.tensor(LOGITS), torch.tensor(LABELS)
    known = torch.tensor([True, True, False])  # row 2 has no labels: it must not count, however wrong it is
    assert float(diagnosis_loss(logits[:2], labels[:2], known[:2])) == pytest.approx((row(0) + row(1)) / 2, rel=1e-6)
    assert float(diagnosis_loss(logits[1:], labels[1:], known[1:])) == pytest.approx(
        row(1), rel=1e-6
    )  # 2x2, one unknown
    assert float(diagnosis_loss(logits, labels, known)) == pytest.approx((row(0) + row(1)) / 2, rel=1e-6)
    assert float(diagnosis_loss(logits, labels, torch.ones(3, dtype=torch.bool))) == pytest.approx(
        (row(0) + row(1) + row(2)) / 3, rel=1e-6
    )


def test_row_weight_leaves_rows_out():
    logits, labels = torch.tensor(LOGITS), torch.tensor(LABELS)
    known = torch.ones(3, dtype=torch.bool)
    rows = torch.tensor([False, True, True])  # e.g. row 0 is a question-answer row, not an impression row
    assert float(diagnosis_loss(logits, labels, known, rows)) == pytest.approx((row(1) + row(2)) / 2, rel=1e-6)


def test_gradient_reaches_only_counted_rows():
    logits = torch.tensor(LOGITS, requires_grad=True)
    diagnosis_loss(logits, torch.tensor(LABELS), torch.tensor([True, False, True])).backward()
    assert torch.equal(logits.grad[1], torch.zeros(2))
    # d/dz of the mean BCE is (sigmoid(z) - y) / (rows * diagnoses)
    expected = (torch.sigmoid(torch.tensor(LOGITS[0])) - torch.tensor(LABELS[0])) / 4
    assert torch.allclose(logits.grad[0], expected)


def test_no_known_row_gives_zero_that_still_backpropagates():
    logits = torch.tensor(LOGITS, requires_grad=True)
    loss = diagnosis_loss(logits, torch.tensor(LABELS), torch.zeros(3, dtype=torch.bool))
    assert loss.detach().item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros(3, 2))


def test_unimodal_loss_averages_each_modality_over_its_present_rows():
    logits, labels = torch.tensor(LOGITS), torch.tensor(LABELS)
    known = torch.tensor([True, True, False])
    heads = {
        "image": (logits, torch.tensor([True, False, True])),  # only row 0 is both present and known
        "notes": (logits, torch.tensor([True, True, True])),  # rows 0 and 1
    }
    expected = (row(0) + (row(0) + row(1)) / 2) / 2
    assert float(unimodal_loss(heads, labels, known)) == pytest.approx(expected, rel=1e-6)
    assert unimodal_loss({}, labels, known) is None
