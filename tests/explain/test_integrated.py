"""Integrated gradients: completeness against the model's own outputs, masking, and absence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medmm.explain.capture import diagnosis_logits, diagnosis_target
from medmm.explain.integrated import ig_relevance, integrated_gradients, note_embeddings
from tests.explain.conftest import make_study


def test_attributions_add_up_to_the_score_difference(model, batch):
    target = diagnosis_target(model, "pneumonia")
    result = integrated_gradients(model, batch, target, n_steps=48)
    with torch.no_grad():
        at_case = float(
            diagnosis_logits(model, {**batch, "notes_embeddings": note_embeddings(model, batch)})[0, target.index]
        )
        baseline = {
            **batch,
            "vitals": torch.zeros_like(batch["vitals"]),
            "notes_embeddings": torch.zeros_like(note_embeddings(model, batch)),
        }
        at_baseline = float(diagnosis_logits(model, baseline)[0, target.index])
    total = sum(float(a.sum()) for a in result.maps.values())
    assert total == pytest.approx(at_case - at_baseline, abs=2e-3 + 0.02 * abs(at_case - at_baseline))
    assert result.delta < 2e-3 + 0.02 * abs(at_case - at_baseline)
    assert result.score == pytest.approx(at_case, abs=1e-5)


def test_shapes_masking_and_normalisation(model, batch):
    relevance = ig_relevance(model, batch, diagnosis_target(model, "sepsis"), n_steps=8)
    assert set(relevance.maps) == {"vitals", "notes"} and relevance.method == "integrated_gradients"
    observed = batch["vitals_observed"][0].numpy()
    read = (batch["notes_attention"][0].bool() & batch["notes_present"][0][:, None]).numpy()
    assert relevance.maps["vitals"].shape == observed.shape and relevance.maps["notes"].shape == read.shape
    assert (relevance.maps["vitals"][~observed] == 0).all() and (relevance.maps["notes"][~read] == 0).all()
    for m in relevance.maps.values():
        assert (m >= 0).all() and m.sum() == pytest.approx(1.0)
    signed = integrated_gradients(model, batch, diagnosis_target(model, "sepsis"), n_steps=8).maps["vitals"]
    assert (signed[~observed] == 0).all()  # unobserved cells never reach the model
    positive = np.clip(signed, 0, None)
    assert positive.sum() > 0
    np.testing.assert_allclose(
        relevance.maps["vitals"] * positive.sum(), positive, rtol=1e-6, atol=1e-12
    )  # each modality's map is scaled on its own


@pytest.mark.parametrize(
    "present,expected", [({"image"}, None), ({"image", "vitals"}, {"vitals"}), ({"notes"}, {"notes"})]
)
def test_only_modalities_the_case_has(model, predictor, present, expected):
    batch = predictor.batch(
        [make_study(image="image" in present, notes="notes" in present, vitals="vitals" in present)]
    )
    relevance = ig_relevance(model, batch, diagnosis_target(model, "pneumonia"), n_steps=4)
    assert (relevance is None) if expected is None else set(relevance.maps) == expected
