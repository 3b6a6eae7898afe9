"""4-bit base weights behave the same on every path: the shape rule, the canonical layout, the
per-process CPU kernel, and a model trained on one path predicting on the other."""

from __future__ import annotations

import copy
import logging

import bitsandbytes as bnb
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModelForCausalLM, LlamaConfig

from medmm.checkpoint import load_checkpoint, save_checkpoint
from medmm.errors import ConfigError
from medmm.lm import fourbit
from medmm.lm.adapters import FinetuneConfig
from medmm.lm.backbone import BackboneConfig, load_backbone
from medmm.lm.tokenizer import build_tokenizer
from tests.test_model import lm_folder, prompt_batch, random_batch, tiny_bert, tiny_config, tiny_model

PATHS = ["plain", "fused"]


def is_packed(layer) -> bool:
    return bool(getattr(layer.weight.quant_state, "packing_format_for_cpu", False))


def force_path(monkeypatch, path: str) -> None:
    """The conftest fixture's set-up, for tests that switch path half-way."""
    if path == "fused" and not fourbit.fused_kernel_available():
        pytest.skip("this CPU lacks AVX-512 BF16: bitsandbytes has no fused 4-bit CPU kernel here")
    monkeypatch.setenv(fourbit.KERNEL_ENV, path)


@pytest.mark.parametrize(
    ("out_features", "in_features", "fits"),
    [
        (32, 64, True),
        (704, 256, True),
        (256, 704, True),
        (688, 256, False),
        (256, 688, False),
        (16, 64, False),
        (64, 32, False),
    ],
)
def test_the_shape_rule_is_the_fused_kernels(out_features, in_features, fits):
    # packed in blocks of 32 output features; one bf16 scale per 64 inputs of a row
    assert fourbit.fits_4bit(out_features, in_features) is fits


def odd_llama(tmp_path):
    """A Llama whose MLP width (100) no fused 4-bit kernel takes: gate/up have 100 outputs, down 100 inputs."""
    tokenizer = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=100,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    return tmp_path


def test_layers_a_kernel_cannot_take_stay_full_precision_named_once_before_training(tmp_path, caplog, cpu_4bit_kernel):
    folder = odd_llama(tmp_path)
    with caplog.at_level(logging.WARNING, logger="medmm.lm.fourbit"):
        bb = load_backbone(BackboneConfig(source=str(folder), finetune=FinetuneConfig(method="qlora", lora_r=4)))
    lines = [r.getMessage() for r in caplog.records if r.name == "medmm.lm.fourbit"]
    assert len(lines) == 1  # said once, at load, before any step
    odd = {f"model.layers.{i}.mlp.{p}" for i in range(2) for p in ("gate_proj", "up_proj", "down_proj")}
    for name in odd:
        assert name in lines[0]
        assert type(bb.base.get_submodule(name).base_layer) is nn.Linear  # LoRA-wrapped, base in 32-bit
    assert "(100x64)" in lines[0] and "(64x100)" in lines[0] and "lm_head" not in lines[0]
    four_bit = {n for n, m in bb.base.named_modules() if isinstance(m, bnb.nn.Linear4bit)}
    assert len(four_bit) == 2 * 4  # q, k, v, o of each layer
    ids = torch.tensor([[1, 40, 41, 42, 43, 2]])
    optimizer = torch.optim.AdamW([p for p in bb.model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):  # the step-26 crash was a validation pass between training steps
        bb.model.eval()
        with torch.no_grad():
            bb.model(input_ids=ids)
        bb.model.train()
        bb.model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()


def fused_layer() -> bnb.nn.Linear4bit:
    torch.manual_seed(0)
    plain = nn.Linear(128, 64)
    layer = bnb.nn.Linear4bit(128, 64, compute_dtype=torch.float32, quant_type="nf4", compress_statistics=True)
    layer.load_state_dict(plain.state_dict())
    layer = layer.to("cpu")  # quantizes
    fourbit.use_cpu_kernel(layer)
    return layer


def test_a_packed_layer_comes_back_bit_for_bit(monkeypatch):
    force_path(monkeypatch, "fused")
    layer = fused_layer()
    codes, state = layer.weight.data.clone(), copy.copy(layer.weight.quant_state)
    absmax, state2_absmax, offset = state.absmax.clone(), state.state2.absmax.clone(), state.offset.clone()
    layer.eval()
    x = torch.randn(3, 128)
    with torch.no_grad():
        plain_out = F.linear(x, bnb.functional.dequantize_4bit(codes, state), layer.bias)
        fused_out = layer(x)
    assert is_packed(layer)
    # bf16 products: within a few bf16 roundings of the plain result, and not equal to it
    assert (fused_out - plain_out).abs().max() < 0.02 * plain_out.abs().max()
    # bitsandbytes' own inverse re-quantizes the scales from bf16: the base would drift
    qweight, recovered = bnb.functional._convert_weight_packed_for_cpu_inverse(
        layer.weight.data.clone(), copy.copy(layer.weight.quant_state)
    )
    assert torch.equal(qweight, codes) and not torch.equal(recovered.absmax, absmax)
    state_dict = layer.state_dict()  # restores first
    assert not is_packed(layer) and torch.equal(state_dict["weight"], codes)
    qs = layer.weight.quant_state
    assert (
        torch.equal(qs.absmax, absmax)
        and torch.equal(qs.state2.absmax, state2_absmax)
        and torch.equal(qs.offset, offset)
    )
    with torch.no_grad():
        layer(x)  # packs again
    layer.train()
    y = layer(x.requires_grad_())  # training: back to the canonical layout, gradients flow
    assert not is_packed(layer) and torch.equal(layer.weight.data, codes)
    y.sum().backward()
    torch.testing.assert_close(x.grad, bnb.functional.dequantize_4bit(codes, state).sum(0).expand(3, -1))


def test_a_grad_needing_eval_pass_unpacks(monkeypatch):
    force_path(monkeypatch, "fused")
    layer = fused_layer().eval()
    with torch.no_grad():
        layer(torch.randn(2, 128))
    assert is_packed(layer)
    x = torch.randn(2, 128, requires_grad=True)  # an explanation: eval mode, gradients wanted
    layer(x).pow(2).sum().backward()
    assert not is_packed(layer) and x.grad is not None and x.grad.abs().sum() > 0


def test_the_kernel_is_chosen_by_the_environment(monkeypatch, caplog):
    monkeypatch.delenv(fourbit.KERNEL_ENV, raising=False)
    assert fourbit.requested_cpu_kernel() == "plain"  # the default gives the same numbers on every CPU
    monkeypatch.setenv(fourbit.KERNEL_ENV, "fastest")
    with pytest.raises(ConfigError, match=fourbit.KERNEL_ENV):
        fourbit.requested_cpu_kernel()
    monkeypatch.setenv(fourbit.KERNEL_ENV, "fused")
    monkeypatch.setattr(fourbit, "fused_kernel_available", lambda: False)
    layer = bnb.nn.Linear4bit(128, 64, compute_dtype=torch.float32).to("cpu")
    with caplog.at_level(logging.WARNING, logger="medmm.lm.fourbit"):
        assert fourbit.use_cpu_kernel(layer) == "plain"
    assert not layer.support_avx512bf16_for_cpu and "lacks" in caplog.text


# -- a model trained on one path predicts on the other -------------------------------------------


def on(device, *tensors):
    return [t.to(device) for t in tensors]


def train_briefly(model, steps: int = 3, device: str = "cpu") -> None:
    """A few optimizer steps, each after a validation pass (the sequence that repacks on the fused path)."""
    torch.manual_seed(11)
    batch = {k: v.to(device) for k, v in random_batch(model.config, 3, seed=5).items()}
    ids, attn, pool, labels = on(device, *prompt_batch(model, 3))
    targets = torch.zeros(3, len(model.config.diagnoses), device=device)
    targets[0, 1] = targets[2, 3] = 1.0
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    for _ in range(steps):
        model.eval()
        with torch.no_grad():
            model(batch, ids, attn, pool, lm_labels=labels)
            model.generate(batch, ["Impression:"] * 3, max_new_tokens=3)
        model.train()
        out = model(batch, ids, attn, pool, lm_labels=labels)
        (F.binary_cross_entropy_with_logits(out.diagnosis_logits, targets) + out.lm_loss).backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


def probabilities(model, device: str = "cpu") -> torch.Tensor:
    batch = {k: v.to(device) for k, v in random_batch(model.config, 4, seed=9).items()}
    ids, attn = model.prompt_ids(["Impression:"] * 4, device)
    with torch.no_grad():
        logits = model(batch, ids, attn, torch.full((4,), ids.shape[1] - 1, device=device)).diagnosis_logits
    return torch.sigmoid(logits).cpu()


def trained_checkpoint(tmp_path, monkeypatch, path: str):
    force_path(monkeypatch, path)
    source = lm_folder("llama", tmp_path / "base")
    model = tiny_model(tiny_config(finetune="qlora", source=str(source)), seed=2)
    train_briefly(model)
    return save_checkpoint(model, tmp_path / f"trained-{path}", lm_source=source)


@pytest.mark.slow
@pytest.mark.parametrize("train_path", PATHS)
@pytest.mark.parametrize("predict_path", PATHS)
def test_trained_on_one_path_predicts_on_the_other(tmp_path, monkeypatch, train_path, predict_path):
    folder = trained_checkpoint(tmp_path, monkeypatch, train_path)
    force_path(monkeypatch, "plain")
    reference = probabilities(load_checkpoint(folder, text_backbone=tiny_bert(2)))
    force_path(monkeypatch, predict_path)
    loaded = load_checkpoint(folder, text_backbone=tiny_bert(2))
    layers = [m for m in loaded.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert layers and all(m.support_avx512bf16_for_cpu is (predict_path == "fused") for m in layers)
    got = probabilities(loaded)
    if predict_path == "plain":
        torch.testing.assert_close(got, reference, rtol=0, atol=1e-6)
    else:
        # bf16 products in the LM: about 3 significant digits per matmul
        assert (got - reference).abs().max() < 5e-3
        assert all(is_packed(m) for m in layers)


@pytest.mark.slow
def test_a_checkpoint_is_the_same_whichever_path_trained_it(tmp_path, monkeypatch):
    force_path(monkeypatch, "fused")  # skips where only one path exists
    plain = trained_checkpoint(tmp_path / "a", monkeypatch, "plain")
    fused = trained_checkpoint(tmp_path / "b", monkeypatch, "fused")
    # training steps never run packed, and the base goes back bit for bit: same adapters, same bytes
    assert (plain / "model.safetensors").read_bytes() == (fused / "model.safetensors").read_bytes()


# -- on a CUDA GPU (run with `python -m pytest -m cuda`; the default run deselects these) ---------


@pytest.fixture(autouse=True)
def _cuda_or_fail(request):
    if request.node.get_closest_marker("cuda"):
        from medmm.lm.adapters import four_bit_available

        assert torch.cuda.is_available() and four_bit_available("cuda"), (
            "asked for the CUDA checks on a machine without a usable GPU"
        )


@pytest.mark.cuda
def test_qlora_on_cuda_trains_and_its_checkpoint_predicts_on_the_cpu_and_back(tmp_path, monkeypatch):
    """CUDA and CPU in float32 (no TF32): the same probabilities within 1e-4 both ways."""
    import dataclasses

    from medmm.model import build_model

    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    force_path(monkeypatch, "plain")
    source = lm_folder("llama", tmp_path / "base")
    config = tiny_config(finetune="qlora", source=str(source))
    config = dataclasses.replace(config, backbone=dataclasses.replace(config.backbone, compute_dtype="float32"))
    torch.manual_seed(2)
    model = build_model(config, text_backbone=tiny_bert(2), device="cuda")
    assert model.backbone_info.quantized
    assert all(m.weight.device.type == "cuda" for m in model.modules() if isinstance(m, bnb.nn.Linear4bit))
    train_briefly(model, device="cuda")
    on_cuda = probabilities(model, "cuda")
    folder = save_checkpoint(model, tmp_path / "trained-cuda", lm_source=source)
    on_cpu = probabilities(load_checkpoint(folder, text_backbone=tiny_bert(2)))
    assert (on_cpu - on_cuda).abs().max() < 1e-4
    back = probabilities(load_checkpoint(folder, device="cuda", text_backbone=tiny_bert(2)), "cuda")
    assert (back - on_cuda).abs().max() < 1e-5


@pytest.mark.cuda
def test_a_cpu_trained_checkpoint_predicts_on_cuda_in_bf16(tmp_path, monkeypatch):
    """The default CUDA compute dtype is bf16: within bf16 rounding of the CPU's float32 answer."""
    folder = trained_checkpoint(tmp_path, monkeypatch, "plain")
    reference = probabilities(load_checkpoint(folder, text_backbone=tiny_bert(2)))
    loaded = load_checkpoint(folder, device="cuda", text_backbone=tiny_bert(2))
    assert loaded.backbone_info.quantized
    assert (probabilities(loaded, "cuda") - reference).abs().max() < 2e-2
