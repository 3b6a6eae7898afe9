"""Backbone loading: the embedded Llama (random or saved), local folders of other causal LMs, errors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, GPT2Config, LlamaForCausalLM, Qwen2Config

from medmm.config import from_dict, to_dict
from medmm.errors import CheckpointError, ConfigError
from medmm.lm import backbone as backbone_module
from medmm.lm.adapters import FinetuneConfig
from medmm.lm.backbone import BackboneConfig, embedded_config, load_backbone, resolve_compute_dtype
from medmm.lm.tokenizer import BOS_ID, EOS_ID, PAD_ID, VOCAB_SIZE, build_tokenizer

TINY = {"hidden_size": 32, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2, "intermediate_size": 64}


def test_config_defaults_are_the_documented_ones():
    cfg = BackboneConfig()
    ft = cfg.finetune
    assert (cfg.source, ft.method) == ("embedded", "frozen")
    assert (cfg.hidden_size, cfg.num_layers, cfg.num_heads, cfg.num_kv_heads) == (256, 4, 4, 4)
    assert (ft.lora_r, ft.lora_alpha, ft.lora_dropout, ft.target_modules) == (16, 32, 0.05, None)
    assert (ft.quant_type, ft.double_quant, cfg.compute_dtype, cfg.trust_remote_code) == ("nf4", True, "auto", False)
    assert (ft.quant_storage, ft.upcast_non_quantized, ft.gradient_checkpointing) == ("uint8", True, False)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("hidden_size", 250),  # not a multiple of the 4 heads
        ("num_layers", 0),
        ("num_kv_heads", 3),  # 4 heads do not group by 3
        ("compute_dtype", "float8"),
        ("source", " "),
        ("finetune", "qlora"),  # the group, not its method
    ],
)
def test_config_rejects_out_of_range_fields(field, value):
    with pytest.raises(ConfigError) as info:
        BackboneConfig(**{field: value})
    assert info.value.where == f"backbone.{field}"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("method", "adapters"),
        ("lora_r", 0),
        ("lora_alpha", True),
        ("lora_dropout", 1.0),
        ("quant_type", "int4"),
        ("quant_storage", "int4"),
        ("target_modules", ()),
    ],
)
def test_finetune_config_rejects_out_of_range_fields(field, value):
    with pytest.raises(ConfigError) as info:
        FinetuneConfig(**{field: value})
    assert info.value.where == f"backbone.finetune.{field}"


def test_finetune_settings_written_beside_the_backbone_are_grouped():
    """Configs and checkpoints from before the grouping (finetune: qlora, lora_r: 8 beside it) read the same."""
    flat = {"source": "embedded", "finetune": "qlora", "lora_r": 8, "quant_storage": "bfloat16", "hidden_size": 64}
    grouped = {
        "source": "embedded",
        "hidden_size": 64,
        "finetune": {"method": "qlora", "lora_r": 8, "quant_storage": "bfloat16"},
    }
    assert from_dict(BackboneConfig, flat) == from_dict(BackboneConfig, grouped)
    cfg = from_dict(BackboneConfig, flat)
    assert (cfg.finetune.method, cfg.finetune.lora_r, cfg.finetune.quant_storage, cfg.finetune.lora_alpha) == (
        "qlora",
        8,
        "bfloat16",
        32,
    )
    assert to_dict(cfg)["finetune"] == {
        **to_dict(FinetuneConfig()),
        "method": "qlora",
        "lora_r": 8,
        "quant_storage": "bfloat16",
    }
    # a flat override over a grouped file joins the group
    assert from_dict(BackboneConfig, {"finetune": {"method": "lora"}, "lora_r": 4}).finetune == FinetuneConfig(
        "lora", lora_r=4
    )
    with pytest.raises(ConfigError) as info:
        from_dict(BackboneConfig, {"finetune": {"method": "lora", "rank": 4}})
    assert "rank" in str(info.value)


def test_target_modules_from_yaml_lists_become_tuples():
    assert FinetuneConfig(target_modules=["q_proj", "v_proj"]).target_modules == ("q_proj", "v_proj")


def test_compute_dtype_auto_is_float32_on_cpu():
    assert resolve_compute_dtype("auto", torch.device("cpu")) is torch.float32
    assert resolve_compute_dtype("bfloat16", torch.device("cpu")) is torch.bfloat16


def test_embedded_config_and_parameter_count():
    cfg = BackboneConfig()
    config = embedded_config(cfg, VOCAB_SIZE)
    assert config.model_type == "llama"
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (256, 4, 4)
    assert (config.num_key_value_heads, config.intermediate_size, config.max_position_embeddings) == (4, 704, 512)
    assert (config.pad_token_id, config.bos_token_id, config.eos_token_id) == (PAD_ID, BOS_ID, EOS_ID)
    model = LlamaForCausalLM(config)
    d, f, v, layers = 256, 704, VOCAB_SIZE, 4
    per_layer = 4 * d * d + 3 * d * f + 2 * d  # q,k,v,o + gate,up,down + two RMSNorm weights
    expected = v * d + layers * per_layer + d  # tied embedding/head + final norm
    assert sum(p.numel() for p in model.parameters()) == expected
    assert expected < 5_000_000  # small enough to train on two CPU cores


def test_embedded_random_backbone_runs():
    bb = load_backbone(BackboneConfig(**TINY))
    assert isinstance(bb.model, LlamaForCausalLM) and bb.model_type == "llama" and not bb.quantized
    assert bb.hidden_size == 32 and bb.base is bb.model
    assert bb.model.get_input_embeddings().weight is bb.model.get_output_embeddings().weight  # tied
    assert len(bb.tokenizer) == bb.model.config.vocab_size == VOCAB_SIZE
    batch = bb.tokenizer(["no pneumothorax", "right lower lobe pneumonia"], padding=True, return_tensors="pt")
    logits = bb.model(**batch).logits  # (2, T, V)
    assert logits.shape == (2, batch.input_ids.shape[1], VOCAB_SIZE)
    assert not any(p.requires_grad for p in bb.model.parameters())


def test_embedded_weights_dir_round_trip(tmp_path):
    cfg = BackboneConfig(**TINY)
    trained = load_backbone(cfg, device=torch.device("cpu"))
    trained.model.save_pretrained(tmp_path)
    trained.tokenizer.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "model.safetensors")
    bb = load_backbone(cfg, weights_dir=tmp_path)
    state = bb.model.state_dict()
    for name, tensor in saved.items():
        assert torch.equal(state[name], tensor), name
    assert bb.tokenizer.get_vocab() == trained.tokenizer.get_vocab()
    ids = torch.tensor([[BOS_ID, 100, 200, 300]])
    with torch.no_grad():
        torch.testing.assert_close(bb.model(input_ids=ids).logits, trained.model(input_ids=ids).logits, rtol=0, atol=0)


def test_embedded_weights_of_other_sizes_are_refused(tmp_path):
    load_backbone(BackboneConfig(**TINY)).model.save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="hidden_size is 32, expected 64") as info:
        load_backbone(BackboneConfig(**{**TINY, "hidden_size": 64}), weights_dir=tmp_path)
    assert info.value.where == "config.json"


@pytest.mark.parametrize("kind", ["llama", "qwen2", "gpt2"])
def test_local_folder_of_any_causal_lm(tmp_path, kind):
    tokenizer = build_tokenizer()
    sizes = {"vocab_size": len(tokenizer), "num_hidden_layers": 2, "num_attention_heads": 4}
    if kind == "gpt2":
        config = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=4, n_positions=64)
    else:
        config = embedded_config(BackboneConfig(**TINY), len(tokenizer))
        if kind == "qwen2":
            config = Qwen2Config(hidden_size=32, intermediate_size=64, num_key_value_heads=2, **sizes)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == kind

    bb = load_backbone(BackboneConfig(source=str(tmp_path)))
    assert bb.model_type == kind and type(bb.model) is type(model) and not bb.quantized
    saved = load_file(tmp_path / "model.safetensors")
    state = bb.model.state_dict()
    assert all(torch.equal(state[name], tensor) for name, tensor in saved.items())
    assert bb.tokenizer("no effusion").input_ids == tokenizer("no effusion").input_ids
    assert bb.hidden_size == 32


def test_missing_local_folder_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="local model folder") as info:
        load_backbone(BackboneConfig(source=str(tmp_path / "missing")))
    assert info.value.where == "backbone.source"


def test_missing_weights_dir_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="trained LM") as info:
        load_backbone(BackboneConfig(**TINY), weights_dir=tmp_path / "missing")
    assert info.value.path == str(tmp_path / "missing")


def test_folder_without_config_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="Hugging Face model folder") as info:
        load_backbone(BackboneConfig(source=str(tmp_path)))
    assert info.value.where == "config.json" and info.value.path == str(tmp_path)


def test_unreachable_hub_id_says_a_hub_is_needed(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("no connection")

    monkeypatch.setattr(backbone_module.AutoConfig, "from_pretrained", offline)
    with pytest.raises(ConfigError, match="model hub is reachable") as info:
        load_backbone(BackboneConfig(source="some-org/some-model"))
    assert info.value.path == "some-org/some-model"


def test_remote_code_is_off_unless_asked(tmp_path, monkeypatch):
    seen = {}

    def record(location, **kwargs):
        seen.update(kwargs)
        raise OSError("stop here")

    monkeypatch.setattr(backbone_module.AutoConfig, "from_pretrained", record)
    with pytest.raises(ConfigError):
        load_backbone(BackboneConfig(source="some-org/some-model"))
    assert seen["trust_remote_code"] is False
