"""Checkpoints: save -> load gives identical outputs; tampered, incomplete or foreign checkpoints fail."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import LlamaForCausalLM

from medmm.checkpoint import (
    FORMAT,
    load_checkpoint,
    notes_fingerprint,
    save_checkpoint,
    stored_parameter_names,
    update_calibration,
    verify,
)
from medmm.errors import CheckpointError
from medmm.lm.backbone import embedded_config
from tests.test_model import PROMPTS, lm_folder, open_gates, random_batch, randomize, tiny_bert, tiny_config, tiny_model


def refresh_checksums(folder: Path) -> None:
    """Rewrite checksums.json by hand, as a careful forger would, so the later checks are reached."""
    sums = {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "checksums.json"
    }
    (folder / "checksums.json").write_text(json.dumps(sums))


def edit_config(folder: Path, edit) -> None:
    meta = json.loads((folder / "config.json").read_text())
    edit(meta)
    (folder / "config.json").write_text(json.dumps(meta))
    refresh_checksums(folder)


@torch.no_grad()
def trained_look(model) -> None:
    """Nonzero gates, a random head and nonzero LoRA B, so that every stored tensor matters."""
    open_gates(model, 0.2)
    randomize(model.head, 0.3, seed=7)
    for name, p in model.lm.named_parameters():
        if ".lora_B." in name:
            p.normal_(0.0, 0.05)


def outputs(model, batch) -> tuple[torch.Tensor, list[str]]:
    ids, attn = model.prompt_ids(["Impression:"] * 2, "cpu")
    with torch.no_grad():
        logits = model(batch, ids, attn, torch.full((2,), ids.shape[1] - 1)).diagnosis_logits
    return logits, model.generate(batch, PROMPTS[:2], max_new_tokens=6)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """An embedded, frozen-LM model with a random-looking training state, saved once for the module."""
    model = tiny_model().eval()
    randomize(model.lm, 0.1)
    trained_look(model)
    folder = save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "model", extra={"epoch": 3})
    return model, folder


def copy_of(saved, tmp_path) -> Path:
    return Path(shutil.copytree(saved[1], tmp_path / "copy"))


def test_save_load_gives_identical_logits_and_text(saved):
    model, folder = saved
    assert sorted(p.relative_to(folder).as_posix() for p in folder.iterdir()) == [
        "checksums.json",
        "config.json",
        "lm",
        "model.safetensors",
    ]
    stored = load_file(folder / "model.safetensors")
    assert set(stored) == set(stored_parameter_names(model))
    assert not any(
        n.startswith(("lm.", "encoders.notes.backbone.")) for n in stored
    )  # base LM in lm/, notes encoder is the package's
    meta = json.loads((folder / "config.json").read_text())
    assert (meta["format"], meta["model_type"], meta["epoch"]) == (FORMAT, "llama", 3)
    assert meta["labels"] == list(model.config.diagnoses)
    assert meta["notes_encoder_sha256"] == notes_fingerprint(model)

    loaded = load_checkpoint(folder, text_backbone=tiny_bert(0))
    assert not loaded.training and loaded.calibration is None and loaded.checkpoint_meta["epoch"] == 3
    batch = random_batch(model.config, 2)
    logits, texts = outputs(model, batch)
    logits2, texts2 = outputs(loaded, batch)
    torch.testing.assert_close(logits2, logits, rtol=0, atol=0)
    assert texts2 == texts and any(texts)
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, model.state_dict()[name]), name


def test_a_trained_notes_encoder_is_stored_and_replaces_the_given_weights(tmp_path):
    model = tiny_model(tiny_config(notes_frozen=False)).eval()
    trained_look(model)
    folder = save_checkpoint(model, tmp_path / "ckpt")
    assert "encoders.notes.backbone.embeddings.word_embeddings.weight" in load_file(folder / "model.safetensors")
    assert json.loads((folder / "config.json").read_text())["notes_encoder_sha256"] is None
    loaded = load_checkpoint(folder, text_backbone=tiny_bert(seed=9))  # other weights: overwritten by the stored ones
    batch = random_batch(model.config, 2)
    torch.testing.assert_close(outputs(loaded, batch)[0], outputs(model, batch)[0], rtol=0, atol=0)


def test_other_notes_encoder_weights_are_refused(saved):
    with pytest.raises(CheckpointError, match="notes encoder"):
        load_checkpoint(saved[1], text_backbone=tiny_bert(seed=1))


def test_lora_checkpoint_stores_a_clean_base_and_the_adapters_apart(tmp_path):
    model = tiny_model(tiny_config(finetune="lora")).eval()
    trained_look(model)
    folder = save_checkpoint(model, tmp_path / "ckpt")
    base_names = set(load_file(folder / "lm" / "model.safetensors"))
    plain = LlamaForCausalLM(embedded_config(model.config.backbone, len(model.tokenizer)))
    assert base_names == set(plain.state_dict()) - {"lm_head.weight"}  # tied to the embedding
    adapters = {n for n in load_file(folder / "model.safetensors") if n.startswith("lm.")}
    assert adapters and all(".lora_A." in n or ".lora_B." in n for n in adapters)
    loaded = load_checkpoint(folder, text_backbone=tiny_bert(0))
    batch = random_batch(model.config, 2)
    torch.testing.assert_close(outputs(loaded, batch)[0], outputs(model, batch)[0], rtol=0, atol=0)
    assert outputs(loaded, batch)[1] == outputs(model, batch)[1]


def test_qlora_checkpoint_copies_its_lm_source_and_reloads_identically(tmp_path, cpu_4bit_kernel):
    source = lm_folder("llama", tmp_path / "base")
    model = tiny_model(tiny_config(finetune="qlora", source=str(source))).eval()
    assert model.backbone_info.quantized
    trained_look(model)
    with pytest.raises(CheckpointError, match="lm_source"):
        save_checkpoint(
            tiny_model(tiny_config(finetune="qlora")), tmp_path / "embedded"
        )  # random 4-bit base: nowhere to copy from
    folder = save_checkpoint(model, tmp_path / "ckpt", lm_source=source)
    assert (folder / "lm" / "config.json").read_bytes() == (source / "config.json").read_bytes()
    shutil.rmtree(source)  # the checkpoint no longer needs the original folder
    loaded = load_checkpoint(folder, text_backbone=tiny_bert(0))
    assert loaded.backbone_info.quantized
    batch = random_batch(model.config, 2)
    logits, texts = outputs(model, batch)
    logits2, texts2 = outputs(loaded, batch)
    torch.testing.assert_close(logits2, logits, rtol=0, atol=0)
    assert texts2 == texts


def test_a_flipped_byte_is_refused(saved, tmp_path):
    folder = copy_of(saved, tmp_path)
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[len(data) // 2] ^= 0x01
    (folder / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum") as info:
        load_checkpoint(folder, text_backbone=tiny_bert(0))
    assert info.value.path.endswith("model.safetensors")


@pytest.mark.parametrize(
    ("remove", "message"),
    [
        ("model.safetensors", "missing"),
        ("lm/config.json", "missing"),
        ("config.json", "not a medmm checkpoint"),
        ("checksums.json", "checksums.json is missing"),
        (".", "not a medmm checkpoint"),
    ],
)
def test_a_missing_file_is_refused(saved, tmp_path, remove, message):
    folder = copy_of(saved, tmp_path)
    target = folder / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(folder, text_backbone=tiny_bert(0))


def test_unlisted_or_escaping_files_are_refused(saved, tmp_path):
    folder = copy_of(saved, tmp_path)
    (folder / "extra.bin").write_bytes(b"\0")
    with pytest.raises(CheckpointError, match="not listed"):
        verify(folder)
    (folder / "extra.bin").unlink()
    sums = json.loads((folder / "checksums.json").read_text())
    (folder / "checksums.json").write_text(json.dumps({**sums, "../outside": "0" * 64}))
    with pytest.raises(CheckpointError, match="outside"):
        verify(folder)
    (folder / "checksums.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="digests"):
        verify(folder)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.update(model_type="gpt2"), "architecture mismatch"),
        (
            lambda m: m["config"]["backbone"].update(hidden_size=64, num_heads=4, num_kv_heads=4),
            "hidden_size is 32, expected 64",
        ),
        (lambda m: m["config"]["resampler"].update(num_latents=8), "shape mismatch"),
        (lambda m: m["config"].update(head_hidden=24), "shape mismatch"),
        (lambda m: m["config"].update(diagnoses=["pneumonia", "sepsis"]), "labels .* are not task"),
        (lambda m: m["config"].update(modalities=["image", "notes"]), "unexpected"),
        (lambda m: m["config"].update(fusion_layers=3), "does not describe a medmm model"),
        (lambda m: m["config"]["fusion"].update(every_n=9), "does not fit"),
        (lambda m: m.update(format="other/2"), "unknown checkpoint format"),
    ],
    ids=[
        "model_type",
        "lm_width",
        "latents",
        "head_width",
        "labels",
        "modalities",
        "unknown_key",
        "fusion_layers",
        "format",
    ],
)
def test_a_config_that_does_not_fit_the_weights_is_refused(saved, tmp_path, edit, message):
    folder = copy_of(saved, tmp_path)
    edit_config(folder, edit)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(folder, text_backbone=tiny_bert(0))


def test_an_lm_of_another_architecture_is_refused(saved, tmp_path):
    folder = copy_of(saved, tmp_path)
    shutil.rmtree(folder / "lm")
    lm_folder("gpt2", folder / "lm")
    refresh_checksums(folder)
    with pytest.raises(CheckpointError, match="lm/ holds gpt2"):
        load_checkpoint(folder, text_backbone=tiny_bert(0))


@pytest.mark.parametrize(
    ("forge", "message"),
    [
        (lambda t: t.pop("head.3.bias"), "1 missing"),
        (lambda t: t.update({"head.9.weight": torch.zeros(2)}), "1 unexpected"),
        (lambda t: t.update({"head.3.bias": torch.zeros(3)}), "shape mismatch"),
        (lambda t: t.update({"head.3.bias": t["head.3.bias"].to(torch.int64)}), "dtype mismatch"),
    ],
    ids=["missing", "unexpected", "shape", "dtype"],
)
def test_weights_that_do_not_fit_are_refused(saved, tmp_path, forge, message):
    folder = copy_of(saved, tmp_path)
    tensors = load_file(folder / "model.safetensors")
    forge(tensors)
    save_file(tensors, str(folder / "model.safetensors"))
    refresh_checksums(folder)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(folder, text_backbone=tiny_bert(0))


def test_an_unreadable_weights_file_is_refused(saved, tmp_path):
    folder = copy_of(saved, tmp_path)
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 3])
    refresh_checksums(folder)
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(folder, text_backbone=tiny_bert(0))


def test_calibration_is_added_under_the_checksums(saved, tmp_path):
    folder = copy_of(saved, tmp_path)
    calibration = {"temperature": 1.5, "conformal_threshold": 0.7, "coverage_target": 0.9}
    update_calibration(folder, calibration)
    digest = hashlib.sha256((folder / "calibration.json").read_bytes()).hexdigest()
    assert json.loads((folder / "checksums.json").read_text())["calibration.json"] == digest
    assert load_checkpoint(folder, text_backbone=tiny_bert(0)).calibration == calibration
    (folder / "calibration.json").write_text(json.dumps({**calibration, "temperature": 0.5}))
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(folder, text_backbone=tiny_bert(0))


def test_saving_replaces_a_checkpoint_but_never_another_folder(saved, tmp_path):
    model, _ = saved
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a medmm checkpoint"):
        save_checkpoint(model, other)
    assert (other / "keep.txt").read_text() == "not a checkpoint"
    folder = save_checkpoint(model, tmp_path / "ckpt")
    (folder / "calibration.json").write_text("{}")
    refresh_checksums(folder)
    save_checkpoint(model, folder)  # an earlier checkpoint is replaced whole
    assert not (folder / "calibration.json").exists() and verify(folder)["format"] == FORMAT
