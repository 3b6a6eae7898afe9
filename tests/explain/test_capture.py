"""Hooks read attention without changing the model: outputs bit-identical, hooks gone afterwards, shapes exact."""

from __future__ import annotations

import torch

from medmm.explain.capture import (
    IMPRESSION,
    AttentionCapture,
    AttentionSite,
    attention_sites,
    diagnosis_logits,
    diagnosis_target,
    impression_log_likelihood,
    impression_target,
    query_rows,
    target_score,
)
from medmm.lm.prompts import IMPRESSION_PROMPT, guided_prompt


def _hook_counts(model) -> list[int]:
    return [len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()]


def stepwise_log_likelihood(model, batch: dict, prompt: torch.Tensor, new_ids) -> float:
    """Sum of log p(token | prompt, earlier tokens) over `new_ids`, one forward pass per token."""
    seq = torch.cat([prompt, torch.tensor([list(new_ids)])], dim=1)
    total = 0.0
    with torch.no_grad():
        for t, token in enumerate(new_ids):
            prefix = seq[:, : prompt.shape[1] + t]
            out = model(batch, prefix, torch.ones_like(prefix), torch.tensor([prompt.shape[1] - 1]))
            total += float(out.lm_logits[0, -1].log_softmax(-1)[token])
    return total


def test_sites_cover_every_resampler_layer_and_fusion_block(model):
    sites = attention_sites(model)
    expected = {AttentionSite("resampler", 0, m) for m in ("image", "notes", "vitals")}
    expected |= {AttentionSite("cross", i) for i in range(len(model.fusion.blocks))}
    assert set(sites) == expected
    assert all(type(m).__name__ == "Identity" for m in sites.values())


def test_capture_leaves_outputs_bit_identical_and_removes_its_hooks(model, batch):
    ids, attn = model.prompt_ids([IMPRESSION_PROMPT], "cpu")
    pool = torch.tensor([ids.shape[1] - 1])
    with torch.no_grad():
        plain = model(batch, ids, attn, pool)
    before = _hook_counts(model)  # after a first pass: the LM may install its own output-capturing hooks once
    with torch.enable_grad():
        graded = model(batch, ids, attn, pool)
    with torch.enable_grad(), AttentionCapture(model) as capture:
        hooked = model(batch, ids, attn, pool)
        assert _hook_counts(model) != before  # hooks are in place inside the block
    assert _hook_counts(model) == before
    assert torch.equal(hooked.diagnosis_logits, graded.diagnosis_logits)
    assert torch.equal(hooked.lm_logits, graded.lm_logits)
    assert all(len(v) == 1 for v in capture.records.values())
    # without gradients (how Predictor runs) the hooks hand back the very tensors, and nothing changes either
    with torch.no_grad(), AttentionCapture(model):
        hooked = model(batch, ids, attn, pool)
    assert torch.equal(hooked.diagnosis_logits, plain.diagnosis_logits)
    assert torch.equal(hooked.lm_logits, plain.lm_logits)


def test_generation_is_unchanged_by_capture(model, batch):
    plain = model.generate_ids(batch, [IMPRESSION_PROMPT], max_new_tokens=6)
    with AttentionCapture(model):
        hooked = model.generate_ids(batch, [IMPRESSION_PROMPT], max_new_tokens=6)
    assert torch.equal(plain, hooked)


def test_recorded_shapes(model, batch):
    cfg = model.config
    heads, latents = cfg.resampler.heads, cfg.resampler.num_latents
    ids, _ = model.prompt_ids([IMPRESSION_PROMPT], "cpu")
    with torch.enable_grad(), AttentionCapture(model) as capture:
        diagnosis_logits(model, batch)
    grid = model.encoders["image"].grid(batch["image"].shape[2:])
    tokens = {
        "image": grid[0] * grid[1],
        "notes": cfg.preprocess.max_notes * cfg.preprocess.max_note_tokens,
        "vitals": cfg.preprocess.vitals_steps * cfg.vitals.num_channels,
    }
    for name, n in tokens.items():
        probs = capture.probs(AttentionSite("resampler", 0, name))
        assert probs.shape == (1, heads, latents, n + latents)
        torch.testing.assert_close(probs.sum(-1), torch.ones(1, heads, latents))  # rows are distributions
    cross = capture.probs(AttentionSite("cross", 0))
    assert cross.shape == (1, cfg.fusion.heads, ids.shape[1], 3 * latents)


def test_absent_image_gets_zero_resampler_attention(model, predictor):
    from tests.explain.conftest import make_study

    batch = predictor.batch([make_study(image=False)])
    with torch.enable_grad(), AttentionCapture(model) as capture:
        diagnosis_logits(model, batch)
    probs = capture.probs(AttentionSite("resampler", 0, "image"))  # (1, H, K, N + K)
    tokens = probs.shape[-1] - probs.shape[-2]
    assert float(probs[..., :tokens].abs().sum()) == 0.0  # latents see no image token, only themselves
    cross = capture.probs(AttentionSite("cross", 0))[0, :, :, : model.config.resampler.num_latents]
    assert float(cross.abs().sum()) == 0.0  # the LM never attends to the latents of an absent modality


def test_gradients_match_finite_differences_and_leave_parameter_grads_alone(model, batch):
    site = AttentionSite("resampler", 0, "vitals")
    with torch.enable_grad(), AttentionCapture(model) as capture:
        score = diagnosis_logits(model, batch)[:, 0]
    grads = capture.gradients(score)
    assert all(p.grad is None for p in model.parameters())
    assert grads[site].shape == capture.probs(site).shape
    # perturb one probability through a hook of our own and compare with the gradient
    h, q, k, eps = 1, 2, 3, 1e-3
    module = attention_sites(model)[site]

    def bumped(delta):
        handle = module.register_forward_hook(
            lambda m, i, o: (
                o
                + delta
                * torch.nn.functional.one_hot(torch.tensor(h * o.shape[2] * o.shape[3] + q * o.shape[3] + k), o.numel())
                .reshape(o.shape)
                .to(o.dtype)
            )
        )
        try:
            with torch.no_grad():
                return float(diagnosis_logits(model, batch)[0, 0])
        finally:
            handle.remove()

    numeric = (bumped(eps) - bumped(-eps)) / (2 * eps)
    assert abs(float(grads[site][0, h, q, k]) - numeric) < 1e-3 * max(1.0, abs(numeric))


def test_targets_and_scores(model, batch):
    target = diagnosis_target(model, "sepsis")
    assert target.index == model.config.diagnoses.index("sepsis")
    with torch.no_grad():
        assert torch.equal(target_score(model, batch, target), diagnosis_logits(model, batch)[:, target.index])
    imp = impression_target(model, batch, max_new_tokens=5)
    assert imp.name == IMPRESSION and 1 <= len(imp.impression_ids) <= 5
    # the impression score is the sum of log-probabilities of the generated tokens, recomputed here step by step
    prompt, _ = model.prompt_ids([IMPRESSION_PROMPT], "cpu")
    expected = stepwise_log_likelihood(model, batch, prompt, imp.impression_ids)
    with torch.no_grad():
        got = float(impression_log_likelihood(model, batch, imp.impression_ids)[0])
    assert abs(got - expected) < 1e-4
    assert query_rows(model, target) == (prompt.shape[1] - 1,)
    assert query_rows(model, imp) == tuple(range(prompt.shape[1] - 1, prompt.shape[1] - 1 + len(imp.impression_ids)))


def test_a_guided_impression_target_is_written_and_scored_after_its_prompt(model, batch):
    prompt_text = guided_prompt(["pneumonia", "sepsis"])
    imp = impression_target(model, batch, max_new_tokens=4, prompt=prompt_text)
    assert imp.prompt == prompt_text and diagnosis_target(model, "sepsis").prompt == IMPRESSION_PROMPT
    new = model.generate_ids(batch, [prompt_text], max_new_tokens=4)[0].tolist()
    eos = model.tokenizer.eos_token_id
    assert list(imp.impression_ids) == (new[: new.index(eos) + 1] if eos in new else new)
    tok = model.tokenizer
    prompt = torch.tensor(
        [[tok.bos_token_id] + tok.encode("Impression: [suspected: pneumonia; sepsis]", add_special_tokens=False)]
    )
    expected = stepwise_log_likelihood(model, batch, prompt, imp.impression_ids)
    with torch.no_grad():
        got = float(target_score(model, batch, imp)[0])
    assert abs(got - expected) < 1e-4
    assert query_rows(model, imp) == tuple(range(prompt.shape[1] - 1, prompt.shape[1] - 1 + len(imp.impression_ids)))
    plain = len(tok.encode(IMPRESSION_PROMPT, add_special_tokens=False)) + 1
    assert prompt.shape[1] > plain and query_rows(model, diagnosis_target(model, "sepsis")) == (plain - 1,)
