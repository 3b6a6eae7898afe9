"""explain_study: every target by every method, mapped onto the inputs; absent modalities absent."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from medmm.explain.capture import impression_log_likelihood, impression_target, target_score
from medmm.explain.explainer import METHODS, explain_study
from medmm.explain.relevance import attention_relevance
from medmm.lm.prompts import guided_prompt
from tests.explain.conftest import make_study

MODALITIES_BY_METHOD = {
    "attention": {"image", "notes", "vitals"},
    "rollout": {"image", "notes", "vitals"},
    "gradcam": {"image"},
    "integrated_gradients": {"notes", "vitals"},
}


def _present(e) -> set[str]:
    return {m for m in ("image", "vitals", "notes") if getattr(e, m) is not None}


def test_every_target_and_method_on_the_inputs(predictor, study):
    result = explain_study(predictor, study, n_steps=8)
    names = predictor.model.config.diagnoses
    assert {(e.target, e.method) for e in result.explanations} == {
        (t, m) for t in (*names, "impression") for m in METHODS
    }
    assert result.present == ("image", "notes", "vitals")
    with torch.no_grad():
        probs = predictor.probabilities(predictor.batch([study]))[0]
    assert result.probabilities == pytest.approx(dict(zip(names, probs.tolist())))
    batch = predictor.batch([study])
    draft = predictor.model.generate(batch, ["Impression:"])[0]
    assert (
        result.impression
        == predictor.ground(batch, probs[None], [draft])[0].text
        == predictor.predict(study).impression
    )
    for e in result.explanations:
        assert _present(e) == MODALITIES_BY_METHOD[e.method]
        assert e.probability == (None if e.target == "impression" else pytest.approx(result.probabilities[e.target]))
        if e.image is not None:
            assert e.image.relevance.shape == (40, 50) and e.image.relevance.sum() == pytest.approx(1.0)
            assert e.image.grid.shape == (4, 4) and e.image.series_uid == "1.2.3.4"
        if e.vitals is not None:
            assert e.vitals.relevance.shape == (4, 7) and e.vitals.relevance.sum() == pytest.approx(1.0)
            assert (e.vitals.relevance[~study.vitals.mask] == 0).all()
        if e.notes is not None:
            assert sum(w.relevance for w in e.notes.words) == pytest.approx(1.0)
            assert all(w.relevance == 0 for w in e.notes.words if not w.read)
        assert (sum(e.share.values()) == pytest.approx(1.0)) if e.method in ("attention", "rollout") else e.share == {}
    assert result.get("pneumonia", "gradcam").image is not None and result.get("pneumonia", "nothing") is None


def test_absent_modalities_are_absent_not_zero(predictor):
    study = make_study(image=False, vitals=False)
    result = explain_study(
        predictor,
        study,
        methods=("attention", "gradcam", "integrated_gradients"),
        diagnoses=["sepsis"],
        impression=False,
        n_steps=4,
    )
    assert result.present == ("notes",)
    assert {(e.target, e.method) for e in result.explanations} == {
        ("sepsis", "attention"),
        ("sepsis", "integrated_gradients"),
    }
    for e in result.explanations:
        assert e.image is None and e.vitals is None and e.notes is not None
    assert result.get("sepsis", "attention").share == {"notes": 1.0}


def test_explaining_changes_nothing_in_the_model(predictor, study):
    model = predictor.model
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        before = predictor.probabilities(predictor.batch([study]))
    explain_study(predictor, study, diagnoses=["pneumonia"], n_steps=4)
    with torch.no_grad():
        after = predictor.probabilities(predictor.batch([study]))
    np.testing.assert_array_equal(before, after)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters()) and not model.training


def test_qlora_model_explains_and_stays_unchanged(study, cpu_4bit_kernel):
    from medmm.predict import Predictor
    from tests.test_model import note_tokenizer, open_gates, tiny_config, tiny_model

    model = tiny_model(tiny_config(finetune="qlora")).eval()
    open_gates(model, 0.5)
    predictor = Predictor(model, note_tokenizer=note_tokenizer())
    with torch.no_grad():
        before = predictor.probabilities(predictor.batch([study]))
    result = explain_study(
        predictor, study, methods=("attention", "gradcam", "integrated_gradients"), diagnoses=["pneumonia"], n_steps=4
    )
    e = result.get("pneumonia", "attention")
    assert e.image.relevance.sum() == pytest.approx(1.0) and not np.allclose(
        e.image.grid, 1 / 16
    )  # gradients flow through the 4-bit base
    assert result.get("impression", "integrated_gradients").vitals is not None
    with torch.no_grad():
        np.testing.assert_array_equal(predictor.probabilities(predictor.batch([study])), before)


def test_a_guided_impression_is_explained_as_the_predictor_writes_it(study):
    from medmm.predict import Predictor
    from tests.test_model import note_tokenizer, open_gates, tiny_config, tiny_model

    torch.manual_seed(0)
    model = tiny_model(tiny_config(impression_guide=True)).eval()
    open_gates(model, 0.5)
    predictor = Predictor(model, note_tokenizer=note_tokenizer())
    with torch.no_grad():
        probs = predictor.probabilities(predictor.batch([study]))[0]  # (K,)
    threshold = float(np.median(probs))
    model.config = dataclasses.replace(model.config, guide_threshold=threshold)
    named = [
        model.config.diagnoses[k] for k in np.argsort(-probs, kind="stable") if probs[k] >= threshold
    ]  # most probable first
    assert len(named) >= 2
    result = explain_study(predictor, study, methods=("rollout",), diagnoses=["sepsis"])
    clauses = [model.generate(predictor.batch([study]), [guided_prompt([d])])[0] for d in named]  # one clause each
    parts = [t.strip().rstrip(".").strip() for t in clauses]
    expected = ", ".join(p for p in parts if p) + "."
    batch = predictor.batch([study])
    assert predictor.draft_impressions(batch, probs[None]) == [expected]  # the draft the relevance explains
    assert (
        result.impression
        == predictor.ground(batch, probs[None], [expected])[0].text
        == predictor.predict(study).impression
    )
    assert result.get("impression", "rollout") is not None
    # the explained score is the sum of the clauses' log-likelihoods, each after its own guide
    target = impression_target(model, predictor.batch([study]), prompt=[guided_prompt([d]) for d in named])
    assert [c.prompt for c in target.clauses] == [guided_prompt([d]) for d in named]
    batch = predictor.batch([study])
    with torch.no_grad():
        total = sum(float(impression_log_likelihood(model, batch, c.ids, c.prompt)[0]) for c in target.clauses)
    assert attention_relevance(model, batch, [target], ("rollout",))[0].score == pytest.approx(total, rel=1e-5)
    with torch.no_grad():  # the same sum where gradient methods read it
        assert float(target_score(model, batch, target)[0]) == pytest.approx(total, rel=1e-5)
