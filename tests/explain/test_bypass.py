"""Crediting the paths without attention (vitals window statistics, notes bag of words) in the attention view."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from medmm.encoders.vitals import SUMMARY_FEATURES
from medmm.explain import relevance as relevance_module
from medmm.explain.bypass import PathCapture, PathRelevance, mix, spread
from medmm.explain.capture import diagnosis_logits, diagnosis_target
from medmm.explain.relevance import attention_relevance
from medmm.predict import Predictor
from tests.test_model import note_tokenizer, open_gates, tiny_config, tiny_model


@pytest.fixture(scope="module")
def model():
    config = tiny_config()
    config = dataclasses.replace(
        config,
        vitals=dataclasses.replace(config.vitals, summary_tokens=True),
        notes=dataclasses.replace(config.notes, lexical_dim=4),
    )
    m = tiny_model(config).eval()
    open_gates(m, 0.5)
    torch.manual_seed(3)
    with torch.no_grad():  # the paths start at zero; give them something to carry
        m.summary_skip.weight.normal_(std=0.3)
        m.lexical_skip.weight.normal_(std=0.3)
    return m


@pytest.fixture()
def batch(model, study) -> dict:
    return Predictor(model, note_tokenizer=note_tokenizer()).batch([study])


def scaled_score(model, batch, index: int, module) -> tuple[torch.Tensor, torch.Tensor]:
    """The diagnosis logit with `module`'s output (its first element for a tuple) multiplied by a leaf alpha = 1."""
    alpha = torch.ones((), requires_grad=True)

    def hook(mod, inputs, output):
        if isinstance(output, tuple):
            return (output[0] * alpha, *output[1:])
        return output * alpha

    handle = module.register_forward_hook(hook)
    try:
        score = diagnosis_logits(model, batch)[0, index]
    finally:
        handle.remove()
    return score, alpha


def test_the_hooks_leave_the_outputs_bit_identical(model, batch):
    with torch.enable_grad():  # the same kernels as the captured pass
        plain = diagnosis_logits(model, batch).detach()
    with torch.enable_grad(), PathCapture(model) as paths:
        hooked = diagnosis_logits(model, batch)
    assert paths.modalities == ("vitals", "notes")
    assert torch.equal(plain, hooked.detach())


@pytest.mark.parametrize("modality, attr", [("vitals", "summary_skip"), ("notes", "lexical_skip")])
def test_the_split_is_each_addends_directional_derivative(model, batch, modality, attr):
    """c_s = dS/dalpha for s scaled by alpha, c_R likewise for the resampler output: the first-order split of L = R + s."""
    index = model.config.diagnoses.index("sepsis")
    with torch.enable_grad(), PathCapture(model) as paths:
        score = diagnosis_logits(model, batch)[:, index]
    c_s, c_r, _ = paths.contributions(score)[modality]
    with torch.enable_grad():
        s_score, s_alpha = scaled_score(model, batch, index, getattr(model, attr))
        (d_s,) = torch.autograd.grad(s_score, [s_alpha])
        r_score, r_alpha = scaled_score(model, batch, index, model.resamplers[modality])
        (d_r,) = torch.autograd.grad(r_score, [r_alpha])
    assert c_s == pytest.approx(float(d_s), rel=1e-4, abs=1e-7)
    assert c_r == pytest.approx(float(d_r), rel=1e-4, abs=1e-7)
    assert abs(c_s) > 1e-6  # the path is used, so the check above is not 0 == 0


def test_the_notes_spread_is_exact_and_only_on_words_read(model, batch):
    index = model.config.diagnoses.index("pneumonia")
    with torch.enable_grad(), PathCapture(model) as paths:
        score = diagnosis_logits(model, batch)[:, index]
    _, _, g_s = paths.contributions(score)["notes"]
    words = spread(model, batch, "notes", g_s)  # (M, L)
    read = (batch["notes_attention"][0].bool() & batch["notes_present"][0].bool()[:, None]).numpy()
    assert words.shape == read.shape and not read.all()
    assert (words[~read] == 0).all()
    # a mean of embeddings is linear: the words' shares add up to g_s . (s - bias)
    s = paths.vectors["notes"].detach()[0]
    expected = float(g_s @ (s - model.lexical_skip.bias.detach()))
    assert words.sum() == pytest.approx(expected, rel=1e-5, abs=1e-8)


def test_the_vitals_spread_of_a_channel_mean_by_hand(model, batch):
    """With only channel c's window mean on the path, g_s . s = a * mean_c + b: each observed cell of c gets a * x / n_c."""
    channel, features = 2, SUMMARY_FEATURES + 1
    weight = torch.zeros_like(model.summary_skip.weight)
    column = torch.linspace(-1.0, 1.0, weight.shape[0])
    weight[:, channel * features] = column  # feature 0 of channel c: its mean
    g_s = torch.linspace(0.5, -0.25, weight.shape[0])
    saved = model.summary_skip.weight.detach().clone()
    try:
        with torch.no_grad():
            model.summary_skip.weight.copy_(weight)
        cells = spread(model, batch, "vitals", g_s)
    finally:
        with torch.no_grad():
            model.summary_skip.weight.copy_(saved)
    x = batch["vitals"][0].numpy().astype(np.float64)
    observed = batch["vitals_observed"][0].numpy()
    a = float(g_s @ column)
    expected = np.zeros_like(x)
    expected[observed[:, channel], channel] = a * x[observed[:, channel], channel] / observed[:, channel].sum()
    np.testing.assert_allclose(cells, expected, rtol=1e-5, atol=1e-7)


def test_mix_by_hand():
    valid = np.array([True, True, True, False])
    attention = np.array([0.5, 0.5, 0.0, 0.0])
    path = PathRelevance(positive_path=1.0, positive_attention=3.0, tokens=np.array([0.0, 3.0, 1.0, 7.0]))
    assert path.share == 0.25
    np.testing.assert_allclose(mix(attention, path, valid), [0.375, 0.5 * 0.75 + 0.25 * 0.75, 0.25 * 0.25, 0.0])
    # a path that holds no evidence for the score, or contributes nothing, leaves the attention map as it is
    assert mix(attention, PathRelevance(1.0, 3.0, np.array([0.0, -1.0, 0.0, 0.0])), valid) is attention
    assert mix(attention, PathRelevance(0.0, 3.0, np.array([0.0, 1.0, 0.0, 0.0])), valid) is attention
    assert mix(attention, None, valid) is attention
    both = path + PathRelevance(1.0, 1.0, np.array([1.0, 0.0, 0.0, 0.0]))
    assert (both.positive_path, both.positive_attention, both.share) == (2.0, 4.0, 1 / 3)


def test_the_attention_view_mixes_in_the_paths_and_rollout_does_not(model, batch, monkeypatch):
    targets = [diagnosis_target(model, d) for d in model.config.diagnoses]
    mixed = {(r.target, r.method): r for r in attention_relevance(model, batch, targets)}
    seen = []

    def record(attention_map, path, valid):
        if path is not None:  # the attention view's calls (rollout has no path)
            seen.append((attention_map, path))
        return attention_map

    monkeypatch.setattr(relevance_module, "mix", record)
    plain = {(r.target, r.method): r for r in attention_relevance(model, batch, targets)}
    calls = iter(seen)
    shares = {"vitals": [], "notes": []}
    for target in model.config.diagnoses:
        for modality in ("notes", "vitals"):  # the order of the token grids
            attention_map, path = next(calls)
            got = mixed[target, "attention"].maps[modality]
            assert attention_map.shape == got.shape
            shares[modality].append(path.share)
            expected = attention_map
            if path.share > 0:
                spread_map = np.clip(path.tokens, 0, None)
                expected = (1 - path.share) * attention_map + path.share * spread_map / spread_map.sum()
            np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
            assert got.sum() == pytest.approx(1.0)
            np.testing.assert_array_equal(
                mixed[target, "rollout"].maps[modality], plain[target, "rollout"].maps[modality]
            )
    assert next(calls, None) is None
    for modality, values in shares.items():  # each path carries evidence for some diagnosis, so the mixing is exercised
        assert any(0.0 < f for f in values), (modality, values)


def test_the_vitals_spread_adds_up_to_the_paths_value_statistics(model, batch):
    """Every window statistic but the observed share is positively homogeneous of degree 1 in the values, so by
    Euler's theorem gradient x input adds up to each statistic times its weight: sum = g_s . W f with the share's
    and the seen flag's columns left out (they do not depend on the values)."""
    features = SUMMARY_FEATURES + 1
    g_s = torch.linspace(1.0, -0.5, model.summary_skip.weight.shape[0])
    cells = spread(model, batch, "vitals", g_s)
    observed = batch["vitals_observed"].bool() & batch["vitals_present"].bool()[:, None, None]
    f = model.encoders["vitals"].summary_features(batch["vitals"], observed)[0]  # (C * (F + 1),)
    value_columns = torch.tensor(
        [(j % features) not in (6, SUMMARY_FEATURES) for j in range(f.shape[0])]
    )  # 6: observed share
    expected = float(((g_s @ model.summary_skip.weight.detach()) * f * value_columns).sum())
    assert cells.sum() == pytest.approx(expected, rel=1e-4)
    assert (cells[~observed[0].numpy()] == 0).all()
