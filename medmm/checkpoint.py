"""Checkpoints: safetensors for every weight, JSON for everything else. Nothing is unpickled.

Layout of a checkpoint folder (what `--model DIR` accepts everywhere)::

    config.json          ModelConfig, medmm version, architecture, label map
    model.safetensors    encoders, resamplers, fusion, head, and LoRA adapters (no base LM weights)
    lm/                  the base LM as a Hugging Face folder (config, model.safetensors, tokenizer)
                         when the backbone is the embedded default or was fully fine-tuned
    calibration.json     optional: temperature and conformal threshold (written by evaluate)
    checksums.json       SHA-256 of every file above; loading refuses a file that does not match

A frozen default notes encoder is not stored: it is the pretrained package model.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

import medmm
from medmm.config import from_dict, to_dict
from medmm.errors import CheckpointError, ConfigError
from medmm.fusion.layers import base_model

FORMAT = "medmm-checkpoint/1"


def stored_parameter_names(model) -> list[str]:
    """Names of the state-dict entries a checkpoint stores for `model` (everything but the base LM)."""
    names = []
    notes = model.encoders["notes"] if "notes" in model.encoders else None
    skip_notes = notes is not None and model.config.notes.frozen and model.config.notes.model_path is None
    for name in model.state_dict():
        if name.startswith("lm.") and "lora_" not in name:
            continue
        if skip_notes and name.startswith("encoders.notes.backbone."):
            continue
        names.append(name)
    return names


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_checkpoint(model, directory: str | Path, *, lm_source: str | Path | None = None, extra: dict | None = None) -> Path:
    """Write `model` to `directory` (created; replaced atomically if it exists).

    The base LM goes to lm/: copied from `lm_source` (a Hugging Face folder of the weights the
    model was built from) when the LM did not train, else saved from the model itself.
    """
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    state = model.state_dict()
    tensors = {name: state[name].detach().to("cpu").contiguous() for name in stored_parameter_names(model)}
    save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": FORMAT})
    cfg = model.config
    if cfg.backbone.finetune == "full" or lm_source is None:
        if getattr(model.backbone_info, "quantized", False):
            raise CheckpointError("a 4-bit base cannot be saved as weights; pass lm_source", path=directory)
        if cfg.backbone.source == "embedded" or cfg.backbone.finetune == "full":
            lm = base_model(model.lm)
            lm.save_pretrained(tmp / "lm", safe_serialization=True)
            model.tokenizer.save_pretrained(tmp / "lm")
    elif lm_source is not None:
        shutil.copytree(lm_source, tmp / "lm")
    meta = {
        "format": FORMAT,
        "medmm_version": medmm.__version__,
        "model_type": model.backbone_info.model_type,
        "labels": list(cfg.diagnoses),
        "config": to_dict(cfg),
        **(extra or {}),
    }
    (tmp / "config.json").write_text(json.dumps(meta, indent=2))
    _write_checksums(tmp)
    if directory.exists():
        shutil.rmtree(directory)
    tmp.rename(directory)
    return directory


def _write_checksums(directory: Path) -> None:
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.name != "checksums.json")
    sums = {str(p.relative_to(directory)): _sha256(p) for p in files}
    (directory / "checksums.json").write_text(json.dumps(sums, indent=2, sort_keys=True))


def update_calibration(directory: str | Path, calibration: dict) -> None:
    """Add or replace calibration.json (temperature, conformal threshold) and refresh the checksums."""
    directory = Path(directory)
    verify(directory)
    (directory / "calibration.json").write_text(json.dumps(calibration, indent=2))
    _write_checksums(directory)


def verify(directory: str | Path) -> dict:
    """Check every file against checksums.json; return the parsed config.json."""
    directory = Path(directory)
    if not (directory / "config.json").is_file():
        raise CheckpointError("not a medmm checkpoint (no config.json)", path=directory)
    sums_path = directory / "checksums.json"
    if not sums_path.is_file():
        raise CheckpointError("checksums.json is missing", path=directory)
    try:
        sums = json.loads(sums_path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError("checksums.json is not valid JSON", path=sums_path) from exc
    for rel, digest in sums.items():
        f = directory / rel
        if not f.is_file():
            raise CheckpointError("file listed in checksums.json is missing", path=f)
        if _sha256(f) != digest:
            raise CheckpointError("file does not match its checksum (modified or corrupted)", path=f)
    for f in directory.rglob("*"):
        if f.is_file() and f.name != "checksums.json" and str(f.relative_to(directory)) not in sums:
            raise CheckpointError("file not listed in checksums.json", path=f)
    try:
        meta = json.loads((directory / "config.json").read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError("config.json is not valid JSON", path=directory / "config.json") from exc
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"unknown checkpoint format (expected {FORMAT})", path=directory / "config.json")
    return meta


def load_checkpoint(directory: str | Path, *, device: str | torch.device = "cpu", finetune: str | None = None):
    """Rebuild the model saved in `directory` on `device` (a GPU checkpoint loads on the CPU)."""
    from medmm.model import ModelConfig, build_model

    directory = Path(directory)
    meta = verify(directory)
    try:
        config = from_dict(ModelConfig, meta["config"], "config")
    except (ConfigError, KeyError) as exc:
        raise CheckpointError(f"config.json does not describe a medmm model ({exc})", path=directory / "config.json") from exc
    if finetune is not None:
        import dataclasses

        config = dataclasses.replace(config, backbone=dataclasses.replace(config.backbone, finetune=finetune))
    lm_dir = directory / "lm" if (directory / "lm").is_dir() else None
    model = build_model(config, lm_dir=lm_dir, device=device)
    if model.backbone_info.model_type != meta.get("model_type"):
        raise CheckpointError(
            f"architecture mismatch: checkpoint is {meta.get('model_type')}, built {model.backbone_info.model_type}", path=directory
        )
    try:
        tensors = load_file(str(directory / "model.safetensors"), device=str(device))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError("model.safetensors cannot be read", path=directory / "model.safetensors") from exc
    expected = set(stored_parameter_names(model))
    missing, unexpected = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
    if missing or unexpected:
        raise CheckpointError(
            f"weights do not fit this architecture: {len(missing)} missing (e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]})",
            path=directory / "model.safetensors",
        )
    state = model.state_dict()
    for name, value in tensors.items():
        if state[name].shape != value.shape:
            raise CheckpointError(f"shape mismatch for {name}: {tuple(value.shape)} vs {tuple(state[name].shape)}", path=directory / "model.safetensors")
    model.load_state_dict(tensors, strict=False)
    model.eval()
    calibration = None
    if (directory / "calibration.json").is_file():
        calibration = json.loads((directory / "calibration.json").read_text())
    model.calibration = calibration
    model.checkpoint_meta = meta
    return model
