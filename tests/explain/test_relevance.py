"""Composition of captured attention into token relevance: the rules by hand, shapes, normalisation, absence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medmm.explain.capture import AttentionCapture, AttentionSite, diagnosis_logits, diagnosis_target, impression_target
from medmm.explain.relevance import attention_relevance, head_mean, latent_spans, normalise, perceiver_rollout
from tests.explain.conftest import make_study


def test_perceiver_rollout_by_hand():
    rng = np.random.default_rng(0)
    a1, a2 = rng.random((2, 3 + 2)), rng.random((2, 3 + 2))  # K = 2 latents, N = 3 tokens
    r1 = a1[:, :3]  # R_0 = 0, so the latent part adds nothing
    r2 = r1 + a2[:, :3] + a2[:, 3:] @ r1
    got = perceiver_rollout([torch.tensor(a1)[None], torch.tensor(a2)[None]], 3)[0].numpy()
    np.testing.assert_allclose(got, r2, rtol=1e-12)


def test_head_mean_is_positive_part_of_gradient_times_attention():
    probs = torch.tensor([[[[0.2, 0.8]], [[0.6, 0.4]]]])  # (1, H=2, Q=1, K=2)
    grads = torch.tensor([[[[1.0, -1.0]], [[2.0, 0.5]]]])
    expected = torch.tensor([[[(0.2 + 1.2) / 2, (0.0 + 0.2) / 2]]])
    torch.testing.assert_close(head_mean(probs, grads), expected)
    torch.testing.assert_close(head_mean(probs, None), torch.tensor([[[0.4, 0.6]]]))


def test_normalise():
    valid = np.array([[True, True], [True, False]])
    np.testing.assert_allclose(normalise(np.array([[1.0, -2.0], [3.0, 5.0]]), valid), [[0.25, 0.0], [0.75, 0.0]])
    np.testing.assert_allclose(normalise(np.array([[-1.0, 0.0], [0.0, 9.0]]), valid), np.array([[1, 1], [1, 0]]) / 3)


def test_latent_spans_follow_the_context_order(model, batch):
    k = model.config.resampler.num_latents
    assert latent_spans(model) == {"image": slice(0, k), "notes": slice(k, 2 * k), "vitals": slice(2 * k, 3 * k)}
    context = model.encode(batch)
    assert {s.name: slice(s.start, s.stop) for s in context.spans} == latent_spans(model)


def test_maps_have_the_token_grid_shapes_and_sum_to_one(model, batch):
    cfg = model.config.preprocess
    relevances = attention_relevance(
        model, batch, [diagnosis_target(model, "pneumonia"), impression_target(model, batch, max_new_tokens=4)]
    )
    assert [(r.target, r.method) for r in relevances] == [
        ("pneumonia", "attention"),
        ("pneumonia", "rollout"),
        ("impression", "attention"),
        ("impression", "rollout"),
    ]
    observed = batch["vitals_observed"][0].numpy()
    read = (batch["notes_attention"][0].bool() & batch["notes_present"][0][:, None]).numpy()
    assert not read.all() and not observed.all()  # padding and gaps exist, so "zero where not read" is tested
    for r in relevances:
        assert r.maps["image"].shape == model.encoders["image"].grid((cfg.image_size, cfg.image_size)) == (4, 4)
        assert r.maps["notes"].shape == (cfg.max_notes, cfg.max_note_tokens)
        assert r.maps["vitals"].shape == (cfg.vitals_steps, len(observed[0]))
        for name, m in r.maps.items():
            assert m.dtype == np.float64 and (m >= 0).all()
            assert m.sum() == pytest.approx(1.0, abs=1e-12)
        assert (r.maps["vitals"][~observed] == 0).all() and (r.maps["notes"][~read] == 0).all()
        assert set(r.share) == {"image", "notes", "vitals"} and sum(r.share.values()) == pytest.approx(1.0)


def test_gradient_weighted_maps_follow_the_rules_by_hand(model, batch):
    """Recompute the vitals map from the captured probabilities and gradients with numpy."""
    target = diagnosis_target(model, "heart_failure")
    with torch.enable_grad(), AttentionCapture(model) as capture:
        score = diagnosis_logits(model, batch)[:, target.index]
    grads = capture.gradients(score)
    a = {s: capture.probs(s).detach().numpy()[0] for s in capture.sites}
    g = {s: grads[s].numpy()[0] for s in capture.sites}
    r_lat = sum(np.clip(g[s] * a[s], 0, None).mean(axis=0).sum(axis=0) for s in capture.cross_layers())  # (K_total,)
    k = model.config.resampler.num_latents
    site = AttentionSite("resampler", 0, "vitals")
    abar = np.clip(g[site] * a[site], 0, None).mean(axis=0)  # (K, N + K)
    n = abar.shape[1] - k
    r_tok = r_lat[2 * k : 3 * k] @ abar[:, :n]  # one layer: R_1 = Ā[:, :N]
    observed = batch["vitals_observed"][0].numpy().reshape(-1)
    expected = np.where(observed, r_tok, 0) / np.where(observed, r_tok, 0).sum()
    got = attention_relevance(model, batch, [target], ["attention"])[0]
    np.testing.assert_allclose(got.maps["vitals"].reshape(-1), expected, rtol=1e-5, atol=1e-9)
    masses = {m: r_lat[i * k : (i + 1) * k].sum() for i, m in enumerate(("image", "notes", "vitals"))}
    assert got.share["vitals"] == pytest.approx(masses["vitals"] / sum(masses.values()), rel=1e-5)


def test_rollout_is_class_agnostic_and_gradient_weighting_is_not(model, batch):
    targets = [diagnosis_target(model, "pneumonia"), diagnosis_target(model, "sepsis")]
    by = {(r.target, r.method): r for r in attention_relevance(model, batch, targets)}
    for m in ("image", "notes", "vitals"):
        np.testing.assert_array_equal(by["pneumonia", "rollout"].maps[m], by["sepsis", "rollout"].maps[m])
    assert any(
        not np.allclose(by["pneumonia", "attention"].maps[m], by["sepsis", "attention"].maps[m])
        for m in ("image", "notes", "vitals")
    )


@pytest.mark.parametrize("present", [{"notes", "vitals"}, {"image"}, {"image", "vitals"}])
def test_absent_modalities_have_no_map(model, predictor, present):
    study = make_study(image="image" in present, notes="notes" in present, vitals="vitals" in present)
    batch = predictor.batch([study])
    for r in attention_relevance(model, batch, [diagnosis_target(model, "pneumonia")]):
        assert set(r.maps) == present and set(r.share) == present
        assert sum(r.share.values()) == pytest.approx(1.0)


def test_rollout_alone_runs_without_gradients_and_matches(model, batch):
    targets = [diagnosis_target(model, "pneumonia"), impression_target(model, batch, max_new_tokens=3)]
    both = {(r.target, r.method): r for r in attention_relevance(model, batch, targets)}
    alone = attention_relevance(model, batch, targets, ["rollout"])
    assert [r.method for r in alone] == ["rollout", "rollout"]
    for r in alone:
        for m, values in r.maps.items():
            np.testing.assert_allclose(values, both[r.target, "rollout"].maps[m], rtol=1e-5, atol=1e-9)


def test_vitals_summary_tokens_map_back_onto_the_grid(study):
    import dataclasses

    from medmm.predict import Predictor
    from tests.test_model import note_tokenizer, open_gates, tiny_config, tiny_model

    config = tiny_config()
    config = dataclasses.replace(config, vitals=dataclasses.replace(config.vitals, summary_tokens=True))
    torch.manual_seed(0)
    model = tiny_model(config).eval()
    open_gates(model, 0.5)
    batch = Predictor(model, note_tokenizer=note_tokenizer()).batch([study])
    observed = batch["vitals_observed"][0].numpy()
    for r in attention_relevance(model, batch, [diagnosis_target(model, "sepsis")]):
        v = r.maps["vitals"]
        assert v.shape == observed.shape and v.sum() == pytest.approx(1.0) and (v[~observed] == 0).all()
