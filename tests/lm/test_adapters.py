"""Fine-tuning set-up: the trainable set is exactly what the config says; QLoRA trains on CPU."""

from __future__ import annotations

import logging

import bitsandbytes as bnb
import numpy as np
import pytest
import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, GPT2Config, GPTNeoXConfig, LlamaConfig, Qwen2Config
from transformers.pytorch_utils import Conv1D

from medmm.errors import ConfigError
from medmm.lm import backbone as backbone_module
from medmm.lm.adapters import (
    DEFAULT_TARGET_MODULES,
    FinetuneConfig,
    expected_trainable,
    resolve_target_modules,
    trainable_parameter_names,
)
from medmm.lm.backbone import BackboneConfig, load_backbone
from medmm.lm.tokenizer import build_tokenizer

# Written out here rather than read from medmm's table, so the test checks the table too.
TARGETS = {
    "llama": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    "qwen2": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    "gpt2": ("c_attn", "c_proj", "c_fc"),
}
# Widths fit every 4-bit kernel (output features a multiple of 32, input features of 64).
SIZES = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4}


def tiny_config(kind: str, vocab_size: int):
    if kind == "llama":
        return LlamaConfig(vocab_size=vocab_size, num_key_value_heads=2, max_position_embeddings=64, **SIZES)
    if kind == "qwen2":
        return Qwen2Config(vocab_size=vocab_size, num_key_value_heads=2, max_position_embeddings=64, **SIZES)
    if kind == "gpt2":
        return GPT2Config(vocab_size=vocab_size, n_embd=64, n_layer=2, n_head=4, n_positions=64)
    if kind == "gpt_neox":
        return GPTNeoXConfig(vocab_size=vocab_size, **SIZES)
    raise AssertionError(kind)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A saved tiny model (weights + tokenizer) per architecture, as a user's local folder."""
    tokenizer = build_tokenizer()
    out = {}
    for kind in ("llama", "qwen2", "gpt2"):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(tiny_config(kind, len(tokenizer)))
        folder = tmp_path_factory.mktemp(kind)
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        out[kind] = folder
    return out


def fresh(folder) -> nn.Module:
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)


def lora_names(model: nn.Module, targets: tuple[str, ...]) -> set[str]:
    """What peft should add: lora_A/lora_B under each targeted linear layer of the unwrapped model."""
    names = set()
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, Conv1D)) and name.split(".")[-1] in targets:
            names |= {f"base_model.model.{name}.lora_{part}.default.weight" for part in ("A", "B")}
    return names


@pytest.mark.parametrize("model_type", sorted(DEFAULT_TARGET_MODULES))
def test_default_targets_are_every_projection_but_the_head(model_type):
    if model_type == "gpt2":
        config = tiny_config("gpt2", 128)
    else:
        config = AutoConfig.for_model(
            model_type,
            vocab_size=128,
            head_dim=8,
            num_key_value_heads=2,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
            **{**SIZES, "num_hidden_layers": 1},
        )
    model = AutoModelForCausalLM.from_config(config)
    head = model.get_output_embeddings()
    projections = {
        name.split(".")[-1] for name, m in model.named_modules() if isinstance(m, (nn.Linear, Conv1D)) and m is not head
    }
    assert resolve_target_modules(None, model) == DEFAULT_TARGET_MODULES[model_type]
    assert set(DEFAULT_TARGET_MODULES[model_type]) == projections


@pytest.mark.parametrize("kind", ["llama", "qwen2", "gpt2"])
@pytest.mark.parametrize("finetune", ["frozen", "full", "lora", "qlora"])
def test_trainable_set_is_exactly_the_configured_one(folders, kind, finetune):
    cfg = BackboneConfig(source=str(folders[kind]), finetune=FinetuneConfig(method=finetune, lora_r=4))
    bb = load_backbone(cfg)
    reference = fresh(folders[kind])
    if finetune == "frozen":
        expected = set()
    elif finetune == "full":
        expected = {name for name, _ in reference.named_parameters()}
    else:
        expected = lora_names(reference, TARGETS[kind])
        per_layer = 4 if kind == "gpt2" else 7  # GPT-2's c_proj names two layers (attention and MLP)
        assert len(expected) == 2 * per_layer * 2  # 2 layers x targets x (lora_A, lora_B)
    got = trainable_parameter_names(bb.model)
    assert got == expected
    assert expected_trainable(cfg.finetune, bb.model) == expected
    assert bb.model_type == kind and bb.quantized == (finetune == "qlora")


def test_custom_targets_wrap_only_those(folders):
    cfg = BackboneConfig(
        source=str(folders["llama"]),
        finetune=FinetuneConfig(method="lora", target_modules=["q_proj", "v_proj"], lora_r=4),
    )
    bb = load_backbone(cfg)
    assert cfg.finetune.target_modules == ("q_proj", "v_proj")
    assert trainable_parameter_names(bb.model) == lora_names(fresh(folders["llama"]), ("q_proj", "v_proj"))
    assert len(trainable_parameter_names(bb.model)) == 2 * 2 * 2  # 2 layers x 2 targets x (A, B)


@pytest.mark.parametrize("kind", ["llama", "qwen2", "gpt2"])
def test_lora_at_init_equals_the_base_model(folders, kind):
    bb = load_backbone(BackboneConfig(source=str(folders[kind]), finetune=FinetuneConfig(method="lora", lora_r=4)))
    bb.model.eval()
    ids = torch.tensor([[1, 50, 60, 70, 80, 90]])
    with torch.no_grad():
        expected = fresh(folders[kind]).eval()(input_ids=ids).logits  # (1, 6, V)
        got = bb.model(input_ids=ids).logits  # (1, 6, V)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)  # lora_B starts at zero


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        (("q_proj", "nope_proj"), "nope_proj"),
        (("lm_head",), "head"),
        (("embed_tokens",), "Embedding"),
    ],
)
def test_bad_targets_are_refused(folders, targets, message):
    with pytest.raises(ConfigError, match=message):
        load_backbone(
            BackboneConfig(source=str(folders["llama"]), finetune=FinetuneConfig(method="lora", target_modules=targets))
        )


def test_unknown_architecture_without_targets_names_the_model_type(tmp_path):
    tiny_config("gpt_neox", 300).save_pretrained(tmp_path)  # config only: must fail before loading weights
    with pytest.raises(ConfigError, match="gpt_neox"):
        load_backbone(BackboneConfig(source=str(tmp_path), finetune=FinetuneConfig(method="lora")))


def _step(model, ids):
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    return loss


def test_qlora_on_cpu_quantizes_trains_adapters_and_freezes_4bit(folders, cpu_4bit_kernel):
    bb = load_backbone(BackboneConfig(source=str(folders["llama"]), finetune=FinetuneConfig(method="qlora", lora_r=4)))
    original = fresh(folders["llama"])
    layers = {n: m for n, m in bb.base.named_modules() if n.endswith("base_layer")}
    assert len(layers) == 2 * 7
    for name, layer in layers.items():
        assert isinstance(layer, bnb.nn.Linear4bit)
        w = layer.weight
        assert isinstance(w, bnb.nn.Params4bit) and w.dtype == torch.uint8 and not w.requires_grad
        qs = w.quant_state
        assert qs.quant_type == "nf4" and qs.nested and qs.state2 is not None and qs.blocksize == 64
        # The 4-bit weights are NF4 of the saved ones: each block of 64 within half NF4's widest
        # level gap (0.304 / 2) of its absmax, plus the 8-bit error of the double-quantized absmax.
        ref = original.get_submodule(name.removesuffix(".base_layer")).weight.detach().numpy()
        deq = bnb.functional.dequantize_4bit(w.data, qs).numpy()
        assert deq.shape == ref.shape and w.data.numel() * 2 == ref.size  # two 4-bit codes per byte
        blocks_ref, blocks_deq = ref.reshape(-1, 64), deq.reshape(-1, 64)
        bound = 0.16 * np.abs(blocks_ref).max(axis=1) * 1.02 + 1e-6
        assert (np.abs(blocks_ref - blocks_deq).max(axis=1) <= bound).all()
    assert type(bb.base.lm_head) is nn.Linear  # the head stays full precision

    frozen_4bit = {n: m.weight.data.clone() for n, m in layers.items()}
    absmax = {n: m.weight.quant_state.absmax.clone() for n, m in layers.items()}
    lora_before = {n: p.detach().clone() for n, p in bb.model.named_parameters() if p.requires_grad}
    ids = torch.tensor([[1, 40, 41, 42, 43, 44, 45, 2], [1, 50, 51, 52, 53, 54, 55, 2]])
    bb.model.eval()
    with torch.no_grad():  # a validation pass first: where the CPU has the fused kernel, it repacks here
        bb.model(input_ids=ids)
    packed = [getattr(m.weight.quant_state, "packing_format_for_cpu", False) for m in layers.values()]
    assert all(packed) if cpu_4bit_kernel == "fused" else not any(packed)  # the path under test really ran
    bb.model.train()
    first = _step(bb.model, ids)
    for _ in range(4):
        last = _step(bb.model, ids)
    assert torch.isfinite(first) and last < first
    lora_after = dict(bb.model.named_parameters())
    for name, before in lora_before.items():
        assert not torch.equal(lora_after[name].detach(), before), name
    for name, layer in layers.items():
        assert isinstance(layer.weight, bnb.nn.Params4bit) and layer.weight.dtype == torch.uint8
        assert torch.equal(layer.weight.data, frozen_4bit[name])
        assert torch.equal(layer.weight.quant_state.absmax, absmax[name])
        assert layer.weight.grad is None


def test_qlora_stores_packed_weights_in_the_dtype_fsdp_shards(folders):
    bb = load_backbone(
        BackboneConfig(
            source=str(folders["llama"]), finetune=FinetuneConfig(method="qlora", lora_r=4, quant_storage="bfloat16")
        )
    )
    original = fresh(folders["llama"])
    layers = {n: m for n, m in bb.base.named_modules() if n.endswith("base_layer")}
    assert len(layers) == 2 * 7
    for name, layer in layers.items():
        w = layer.weight
        assert isinstance(w, bnb.nn.Params4bit) and w.dtype == torch.bfloat16 and w.quant_storage == torch.bfloat16
        ref = original.get_submodule(name.removesuffix(".base_layer")).weight.detach()
        assert w.data.numel() * 4 == ref.numel()  # four 4-bit codes per 16-bit storage element
        deq = bnb.functional.dequantize_4bit(w.data, w.quant_state)
        assert (deq - ref).abs().max() < 0.2 * ref.abs().max()
    ids = torch.tensor([[1, 40, 41, 42, 43, 44, 45, 2]])
    assert torch.isfinite(_step(bb.model, ids))


def test_qlora_embedded_goes_through_the_4bit_path(cpu_4bit_kernel):
    cfg = BackboneConfig(
        hidden_size=64,
        num_layers=2,
        num_heads=4,
        intermediate_size=128,
        finetune=FinetuneConfig(method="qlora", lora_r=4),
    )
    bb = load_backbone(cfg)
    assert bb.quantized and bb.model_type == "llama"
    n4 = sum(isinstance(m, bnb.nn.Linear4bit) for m in bb.base.modules())
    assert n4 == 2 * 7
    assert trainable_parameter_names(bb.model) == expected_trainable(cfg.finetune, bb.model)
    assert len(expected_trainable(cfg.finetune, bb.model)) == 2 * 7 * 2
    assert bb.base.lm_head.weight is bb.base.model.embed_tokens.weight  # still tied, still frozen
    bb.model.train()
    assert torch.isfinite(_step(bb.model, torch.tensor([[1, 40, 41, 42, 2]])))


def test_qlora_falls_back_to_lora_when_4bit_is_unavailable(folders, monkeypatch, caplog):
    monkeypatch.setattr(backbone_module, "four_bit_available", lambda device: False)
    with caplog.at_level(logging.WARNING, logger="medmm.lm.backbone"):
        bb = load_backbone(
            BackboneConfig(source=str(folders["llama"]), finetune=FinetuneConfig(method="qlora", lora_r=4))
        )
    assert not bb.quantized
    assert any("falling back to LoRA" in r.getMessage() for r in caplog.records)
    assert not any(isinstance(m, bnb.nn.Linear4bit) for m in bb.base.modules())
    assert trainable_parameter_names(bb.model) == lora_names(fresh(folders["llama"]), TARGETS["llama"])


@pytest.mark.parametrize("upcast", [True, False])
def test_qlora_upcast_and_checkpointing_follow_the_config(folders, upcast):
    cfg = BackboneConfig(
        source=str(folders["llama"]),
        compute_dtype="bfloat16",
        finetune=FinetuneConfig(method="qlora", upcast_non_quantized=upcast, gradient_checkpointing=upcast, lora_r=4),
    )
    bb = load_backbone(cfg)
    norm_dtype = bb.base.model.norm.weight.dtype
    assert norm_dtype == (torch.float32 if upcast else torch.bfloat16)
    assert bb.base.model.embed_tokens.weight.dtype == norm_dtype
    assert bb.base.is_activation_checkpointing == upcast
    assert bb.base.config.use_cache is not upcast
    bb.model.train()
    loss = _step(bb.model, torch.tensor([[1, 40, 41, 42, 2]]))  # runs with and without recomputation
    assert torch.isfinite(loss)


def test_lora_on_gpt2_trains_only_adapters(folders):
    bb = load_backbone(BackboneConfig(source=str(folders["gpt2"]), finetune=FinetuneConfig(method="lora", lora_r=4)))
    base_before = {n: p.detach().clone() for n, p in bb.model.named_parameters() if not p.requires_grad}
    lora_before = {n: p.detach().clone() for n, p in bb.model.named_parameters() if p.requires_grad}
    ids = torch.tensor([[1, 40, 41, 42, 43, 44, 2]])
    bb.model.train()
    _step(bb.model, ids)
    after = dict(bb.model.named_parameters())
    assert all(torch.equal(after[n].detach(), p) for n, p in base_before.items())
    assert all(not torch.equal(after[n].detach(), p) for n, p in lora_before.items())
    # Conv1D stores (in, out): LoRA's update must come out in that layout.
    c_attn = bb.base.transformer.h[0].attn.c_attn
    assert c_attn.get_delta_weight("default").shape == c_attn.base_layer.weight.shape == (64, 192)
