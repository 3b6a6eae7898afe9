import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from medmm.errors import ConfigError
from medmm.fusion.context import ModalitySpan, MultimodalContext
from medmm.fusion.layers import CrossAttentionFusion, FusionConfig
from medmm.fusion.xattn import GatedCrossAttentionBlock


def parts():
    image = (torch.randn(2, 3, 8), torch.tensor([[True] * 3, [False] * 3]))
    vitals = (torch.randn(2, 2, 8), torch.tensor([[True] * 2, [True] * 2]))
    return {"image": image, "vitals": vitals}


def test_from_parts_concatenates_in_order_with_spans():
    p = parts()
    ctx = MultimodalContext.from_parts(p)
    assert ctx.latents.shape == (2, 5, 8) and ctx.batch_size == 2
    assert torch.equal(ctx.latents[:, :3], p["image"][0]) and torch.equal(ctx.latents[:, 3:], p["vitals"][0])
    assert ctx.mask.tolist() == [[True] * 5, [False] * 3 + [True] * 2]
    assert ctx.spans == (ModalitySpan("image", 0, 3), ModalitySpan("vitals", 3, 5))
    assert ctx.span("vitals") == slice(3, 5)
    with pytest.raises(ConfigError, match="notes"):
        ctx.span("notes")


def test_bad_shapes_and_empty_parts_are_config_errors():
    with pytest.raises(ConfigError, match="mask"):
        MultimodalContext(torch.zeros(2, 3, 4), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ConfigError, match="at least one"):
        MultimodalContext.from_parts({})


def test_key_value_cache_computes_once_per_block():
    torch.manual_seed(0)
    block = GatedCrossAttentionBlock(8, heads=2)
    calls = []
    block.attn.to_kv.register_forward_hook(lambda mod, args, out: calls.append(1))
    ctx = MultimodalContext.from_parts(parts(), cache_kv=True)
    first = ctx.keys_values(0, block, ctx.latents, ctx.mask)
    second = ctx.keys_values(0, block, ctx.latents, ctx.mask)
    assert first is second and len(calls) == 1
    ctx.keys_values(1, block, ctx.latents, ctx.mask)  # another block index: its own entry
    assert len(calls) == 2 and set(ctx.kv_cache) == {0, 1}
    ctx.clear_cache()
    assert ctx.kv_cache == {}
    plain = MultimodalContext.from_parts(parts())
    plain.keys_values(0, block, plain.latents, plain.mask)
    plain.keys_values(0, block, plain.latents, plain.mask)
    assert len(calls) == 4 and plain.kv_cache == {}


def test_repeat_interleave_matches_generate_expansion():
    ctx = MultimodalContext.from_parts(parts(), cache_kv=True)
    wide = ctx.repeat_interleave(3)
    assert wide.batch_size == 6 and wide.cache_kv and wide.kv_cache == {}
    assert torch.equal(wide.latents[4], ctx.latents[1]) and torch.equal(wide.mask[2], ctx.mask[0])
    assert wide.spans == ctx.spans


def fused_llama():
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    lm = AutoModelForCausalLM.from_config(config).eval()
    fusion = CrossAttentionFusion.for_lm(lm, FusionConfig(every_n=2, heads=2))
    fusion.attach(lm)
    with torch.no_grad():
        for block in fusion.blocks:
            block.attn_gate.fill_(1.0)
            block.ff_gate.fill_(1.0)
    return lm, fusion


def test_generation_computes_cross_attention_keys_values_once_per_case():
    lm, fusion = fused_llama()
    calls = []
    for block in fusion.blocks:
        block.attn.to_kv.register_forward_hook(lambda mod, args, out: calls.append(1))
    latents, mask = torch.randn(2, 5, 16), torch.ones(2, 5, dtype=torch.bool)
    prompt = torch.tensor([[5, 6, 7], [8, 9, 10]])
    settings = dict(max_new_tokens=6, min_new_tokens=6, do_sample=False)
    with torch.no_grad():
        with fusion.use_context(MultimodalContext(latents, mask, cache_kv=True)):
            cached = lm.generate(prompt, **settings)
        assert len(calls) == len(fusion.blocks)  # once per block for the whole case
        calls.clear()
        with fusion.use_context(MultimodalContext(latents, mask)):
            recomputed = lm.generate(prompt, **settings)
        assert len(calls) == 6 * len(fusion.blocks)  # once per block per forward pass
        base = lm.generate(prompt, **settings)
    assert torch.equal(cached, recomputed)
    assert not torch.equal(cached, base)  # the context does steer generation


def test_beam_search_with_an_expanded_context_keeps_each_case_its_own_context():
    lm, fusion = fused_llama()
    latents, mask = torch.randn(2, 5, 16), torch.ones(2, 5, dtype=torch.bool)
    prompt = torch.tensor([[5, 6, 7], [8, 9, 10]])
    settings = dict(max_new_tokens=4, min_new_tokens=4, do_sample=False, num_beams=2)
    with torch.no_grad():
        with fusion.use_context(MultimodalContext(latents, mask, cache_kv=True).repeat_interleave(2)):
            both = lm.generate(prompt, **settings)
        with fusion.use_context(MultimodalContext(latents[1:], mask[1:], cache_kv=True).repeat_interleave(2)):
            second = lm.generate(prompt[1:], **settings)
    assert torch.equal(both[1:], second)
