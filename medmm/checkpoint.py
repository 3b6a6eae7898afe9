"""Checkpoints: safetensors for every weight, JSON for everything else. Nothing is unpickled.

Layout of a checkpoint folder (what `--model DIR` accepts everywhere)::

    config.json          ModelConfig, medmm version, architecture, label map
    model.safetensors    encoders, resamplers, fusion, head, and LoRA adapters (no base LM weights)
    lm/                  the base LM as a Hugging Face folder (config, model.safetensors, tokenizer)
                         when the backbone is the embedded default, was fully fine-tuned, or
                         `lm_source` was given (copied from there; a 4-bit base can only be
                         copied); otherwise the base loads again from config.json's backbone.source
                         (a GGUF source's SHA-256 is kept as backbone_source_sha256 and checked)
    calibration.json     optional: temperature and conformal threshold (written by evaluate)
    checksums.json       SHA-256 of every file above; loading refuses a file that does not match

A frozen default notes encoder is not stored: it is the pretrained package model. Its SHA-256
(over names and weights) is kept in config.json, so loading with different notes weights
fails instead of silently changing every prediction.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

import medmm
from medmm.config import from_dict, to_dict
from medmm.errors import CheckpointError, ConfigError
from medmm.fusion.layers import base_model
from medmm.tasks import DEFAULT_TASK, LabelWords, Task, load_task, shipped_tasks, task_from_dict, task_to_dict

FORMAT = "medmm-checkpoint/1"


def _skips_notes(model) -> bool:
    """Whether the notes encoder's weights stay out of the checkpoint (frozen, default model)."""
    return (
        "notes" in getattr(model, "encoders", {})
        and model.config.notes.frozen
        and model.config.notes.model_path is None
    )


def stored_parameter_names(model) -> list[str]:
    """Names of the state-dict entries a checkpoint stores for `model` (everything but the base LM)."""
    names = []
    skip_notes = _skips_notes(model)
    for name in model.state_dict():
        if name.startswith("lm.") and "lora_" not in name:
            continue
        if skip_notes and name.startswith("encoders.notes.backbone."):
            continue
        names.append(name)
    return names


def notes_fingerprint(model) -> str | None:
    """SHA-256 over the names and weights of a notes encoder the checkpoint does not store, else None."""
    if not _skips_notes(model):
        return None
    h = hashlib.sha256()
    for name, tensor in sorted(model.encoders["notes"].backbone.state_dict().items()):
        h.update(name.encode())
        h.update(str(tensor.dtype).encode())
        h.update(tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _is_checkpoint(directory: Path) -> bool:
    try:
        return json.loads((directory / "config.json").read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _base_lm_state(lm: nn.Module) -> dict[str, torch.Tensor]:
    """The base LM's own state dict: LoRA entries dropped, peft's `.base_layer` names restored."""
    state = base_model(lm).state_dict()
    return {name.replace(".base_layer", ""): t for name, t in state.items() if "lora_" not in name}


def save_checkpoint(
    model, directory: str | Path, *, lm_source: str | Path | None = None, extra: dict | None = None
) -> Path:
    """Write `model` to `directory` (created; replaced atomically if it is an earlier checkpoint).

    The base LM goes to lm/: copied from `lm_source` (a Hugging Face folder of the weights the
    model was built from) when the LM did not train, else saved from the model itself. A
    non-empty folder that is not a medmm checkpoint is never replaced.
    """
    directory = Path(directory)
    if directory.exists() and (not directory.is_dir() or (any(directory.iterdir()) and not _is_checkpoint(directory))):
        raise CheckpointError("refusing to replace something that is not a medmm checkpoint", path=directory)
    cfg = model.config
    quantized = bool(getattr(model.backbone_info, "quantized", False))
    lm_from_model = cfg.backbone.finetune.method == "full" or (lm_source is None and cfg.backbone.source == "embedded")
    if lm_from_model and quantized:
        raise CheckpointError(
            "a 4-bit base cannot be saved as weights; pass lm_source (the folder it was loaded from)", path=directory
        )
    if lm_source is not None and not lm_from_model and not (Path(lm_source) / "config.json").is_file():
        raise CheckpointError(
            "lm_source must be a Hugging Face model folder (config.json, weights, tokenizer)", path=lm_source
        )
    tmp = directory.with_name(directory.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    state = model.state_dict()
    tensors = {name: state[name].detach().to("cpu").contiguous() for name in stored_parameter_names(model)}
    save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": FORMAT})
    if lm_from_model:
        base_model(model.lm).save_pretrained(tmp / "lm", state_dict=_base_lm_state(model.lm), safe_serialization=True)
        model.tokenizer.save_pretrained(tmp / "lm")
    elif lm_source is not None:
        shutil.copytree(lm_source, tmp / "lm")
    source_sha256 = getattr(model.backbone_info, "source_sha256", None)
    meta = {
        "format": FORMAT,
        "medmm_version": medmm.__version__,
        "model_type": model.backbone_info.model_type,
        "labels": list(cfg.diagnoses),
        "task": task_to_dict(model.task) if getattr(model, "task", None) is not None else None,
        "notes_encoder_sha256": notes_fingerprint(model),
        **({"backbone_source_sha256": source_sha256} if source_sha256 and not (tmp / "lm").is_dir() else {}),
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
    sums = {p.relative_to(directory).as_posix(): _sha256(p) for p in files}
    (directory / "checksums.json").write_text(json.dumps(sums, indent=2, sort_keys=True))


def checkpoint_id(directory: str | Path) -> str:
    """The model id: the first 16 hex digits of the SHA-256 of checksums.json (which pins every file, calibration included)."""
    return hashlib.sha256((Path(directory) / "checksums.json").read_bytes()).hexdigest()[:16]


def update_calibration(directory: str | Path, calibration: dict) -> None:
    """Add or replace calibration.json (temperature, conformal threshold) and refresh the checksums."""
    directory = Path(directory)
    verify(directory)
    (directory / "calibration.json").write_text(json.dumps(calibration, indent=2))
    _write_checksums(directory)


def _read_json(path: Path, what: str):
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{what} is not valid JSON", path=path) from exc


def verify(directory: str | Path) -> dict:
    """Check every file against checksums.json; return the parsed config.json."""
    directory = Path(directory)
    if not (directory / "config.json").is_file():
        raise CheckpointError("not a medmm checkpoint (no config.json)", path=directory)
    sums_path = directory / "checksums.json"
    if not sums_path.is_file():
        raise CheckpointError("checksums.json is missing", path=directory)
    sums = _read_json(sums_path, "checksums.json")
    if not isinstance(sums, dict) or not all(isinstance(v, str) for v in sums.values()):
        raise CheckpointError("checksums.json must map file names to SHA-256 digests", path=sums_path)
    root = directory.resolve()
    for rel, digest in sums.items():
        f = directory / rel
        if root not in f.resolve().parents:
            raise CheckpointError(f"checksums.json entry {rel!r} points outside the checkpoint", path=sums_path)
        if not f.is_file():
            raise CheckpointError("file listed in checksums.json is missing", path=f)
        if _sha256(f) != digest:
            raise CheckpointError("file does not match its checksum (modified or corrupted)", path=f)
    for f in directory.rglob("*"):
        if f.is_file() and f.name != "checksums.json" and f.relative_to(directory).as_posix() not in sums:
            raise CheckpointError("file not listed in checksums.json", path=f)
    meta = _read_json(directory / "config.json", "config.json")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"unknown checkpoint format (expected {FORMAT})", path=directory / "config.json")
    return meta


def _lm_model_type(folder: Path) -> str | None:
    config = folder / "config.json"
    if not config.is_file():
        return None
    data = _read_json(config, "the LM's config.json")
    return data.get("model_type") if isinstance(data, dict) else None


def stored_task(meta: dict, config_path: str | Path) -> Task:
    """The task in a checkpoint's config.json (`meta`); the default task for one written before tasks were stored."""
    if meta.get("task") is None:
        return load_task(DEFAULT_TASK)
    try:
        task = task_from_dict(meta["task"], source=f"{config_path}: task")
    except ConfigError as exc:
        raise CheckpointError(f"config.json's task cannot be read ({exc})", path=config_path) from exc
    return with_shipped_words(task)


def with_shipped_words(task: Task) -> Task:
    """A task stored before labels had words (LabelWords), given the words of the shipped task of the same
    name when its labels are the same (names and value sets); any other task as it is."""
    if any(spec.words != LabelWords() for spec in task.labels) or task.name not in shipped_tasks():
        return task
    shipped = load_task(task.name)
    same = [(s.name, s.snomed, s.icd10) for s in shipped.labels] == [(s.name, s.snomed, s.icd10) for s in task.labels]
    if not same:
        return task
    labels = tuple(dataclasses.replace(mine, words=theirs.words) for mine, theirs in zip(task.labels, shipped.labels))
    return dataclasses.replace(task, labels=labels)


def load_checkpoint(
    directory: str | Path,
    *,
    device: str | torch.device = "cpu",
    finetune: str | None = None,
    text_backbone: nn.Module | None = None,
):
    """Rebuild the model saved in `directory` on `device` (a GPU checkpoint loads on the CPU).

    `finetune` overrides how the LM trains from here on; `text_backbone` supplies the notes
    encoder module instead of loading the configured one (weights the checkpoint stores are
    loaded into it; a frozen default must have the same weights as at saving).
    """
    from medmm.model import ModelConfig, build_model

    directory = Path(directory)
    meta = verify(directory)
    config_path = directory / "config.json"
    try:
        config = from_dict(ModelConfig, meta["config"], "config")
    except (ConfigError, KeyError) as exc:
        raise CheckpointError(f"config.json does not describe a medmm model ({exc})", path=config_path) from exc
    if finetune is not None:
        try:
            method = dataclasses.replace(config.backbone.finetune, method=finetune)
            config = dataclasses.replace(config, backbone=dataclasses.replace(config.backbone, finetune=method))
        except ConfigError as exc:
            raise CheckpointError(f"cannot load with finetune={finetune!r} ({exc})", path=directory) from exc
    lm_dir = directory / "lm" if (directory / "lm").is_dir() else None
    declared = meta.get("model_type")
    found = _lm_model_type(lm_dir) if lm_dir is not None else None
    if found is not None and found != declared:
        raise CheckpointError(f"architecture mismatch: config.json says {declared}, lm/ holds {found}", path=directory)
    task = stored_task(meta, config_path)
    try:
        model = build_model(config, lm_dir=lm_dir, device=device, text_backbone=text_backbone, task=task)
    except ConfigError as exc:
        raise CheckpointError(f"config.json does not fit the stored model ({exc})", path=config_path) from exc
    expected_source = meta.get("backbone_source_sha256")
    if lm_dir is None and expected_source is not None and model.backbone_info.source_sha256 != expected_source:
        raise CheckpointError(
            f"the backbone file {config.backbone.source!r} is not the one the checkpoint was made on "
            f"(SHA-256 {model.backbone_info.source_sha256}, expected {expected_source})",
            path=config_path,
        )
    if model.backbone_info.model_type != declared:
        raise CheckpointError(
            f"architecture mismatch: checkpoint is {declared}, built {model.backbone_info.model_type}", path=directory
        )
    expected_notes = meta.get("notes_encoder_sha256")
    if expected_notes is not None and notes_fingerprint(model) != expected_notes:
        raise CheckpointError(
            "the notes encoder's weights differ from those the checkpoint was saved with", path=config_path
        )
    _load_weights(model, directory / "model.safetensors", device)
    model.eval()
    calibration = None
    if (directory / "calibration.json").is_file():
        calibration = _read_json(directory / "calibration.json", "calibration.json")
        if not isinstance(calibration, dict):
            raise CheckpointError("calibration.json must be a JSON object", path=directory / "calibration.json")
    model.calibration = calibration
    model.checkpoint_meta = meta
    return model


def _load_weights(model, path: Path, device: str | torch.device) -> None:
    """Load model.safetensors into `model`; names, shapes and kinds must fit exactly."""
    try:
        tensors = load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError("model.safetensors cannot be read", path=path) from exc
    expected = set(stored_parameter_names(model))
    missing, unexpected = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
    if missing or unexpected:
        raise CheckpointError(
            f"weights do not fit this architecture: {len(missing)} missing (e.g. {missing[:2]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:2]})",
            path=path,
        )
    state = model.state_dict()
    for name, value in tensors.items():
        if state[name].shape != value.shape:
            raise CheckpointError(
                f"shape mismatch: stored {tuple(value.shape)}, model has {tuple(state[name].shape)}",
                path=path,
                where=name,
            )
        if state[name].is_floating_point() != value.is_floating_point():
            raise CheckpointError(
                f"dtype mismatch: stored {value.dtype}, model has {state[name].dtype}", path=path, where=name
            )
    model.load_state_dict(tensors, strict=False)
