"""Impression quality writes each impression as Predictor does: after the guided prompt when the model has the guide, then grounded."""

from __future__ import annotations

import numpy as np
import pytest

from medmm.ablation import impression_quality
from medmm.lm.prompts import guided_prompt
from medmm.predict import Predictor
from tests.test_model import note_tokenizer, open_gates, randomize, tiny_config, tiny_model
from tests.test_predict import make_study


@pytest.mark.parametrize("guide", [False, True])
def test_impressions_are_the_predictors(guide):
    model = tiny_model(tiny_config(impression_guide=guide, guide_threshold=0.5)).eval()
    randomize(model.lm, 0.1)
    randomize(model.head, 0.5, seed=4)
    open_gates(model, 0.3)
    predictor = Predictor(model, note_tokenizer=note_tokenizer())
    studies = [make_study("a", seed=0), make_study("b", image=False, seed=1)]
    prompts = []
    generate = model.generate
    model.generate = lambda batch, p, **kw: prompts.append(list(p)) or generate(batch, p, **kw)
    try:
        quality = impression_quality(predictor, [predictor.preprocessor(s) for s in studies], studies)
    finally:
        del model.generate
    probs = predictor.probabilities(predictor.batch(studies))  # (2, K)
    names = model.config.diagnoses
    guides = [
        [names[k] for k in np.argsort(-row, kind="stable") if row[k] >= 0.5] for row in probs
    ]  # most probable first
    expected = (
        [p for g in guides for p in ([guided_prompt([n]) for n in g] or [guided_prompt([])])]
        if guide
        else ["Impression:"] * 2
    )
    assert prompts == [expected]  # one generation for the batch: a clause per named diagnosis
    assert guide == any(p != "Impression:" for p in expected)
    assert [e["impression"] for e in quality["examples"]] == [p.impression for p in predictor.predict_many(studies)]
    assert quality["cases"] == 2 and quality["positives"] == 0 and np.isnan(quality["names_true_top"])
