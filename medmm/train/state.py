"""Saving and restoring a training run's state for resume: safetensors and JSON, no pickles.

The state holds the model's trainable tensors (and buffers such as batch-norm statistics),
the optimizer's per-parameter tensors, the scheduler and the random generators, so a resumed
run continues from the saved step exactly as if it had never stopped.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from medmm.checkpoint import stored_parameter_names
from medmm.errors import CheckpointError


def state_tensor_names(model) -> list[str]:
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    stored = set(stored_parameter_names(model))
    return sorted(n for n in model.state_dict() if n in stored or n in trainable)


def save_state(
    directory: str | Path, model, optimizer, scheduler, progress: dict, rngs: dict[str, random.Random] | None = None
) -> None:
    """Write the run state to `directory` atomically (a temp folder renamed into place)."""
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    state = model.state_dict()
    save_file(
        {n: state[n].detach().cpu().contiguous() for n in state_tensor_names(model)}, str(tmp / "model.safetensors")
    )
    opt = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, per_param in opt["state"].items():
        for key, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{key}"] = value
    save_file(tensors or {"_empty": torch.zeros(1)}, str(tmp / "optimizer.safetensors"))
    meta = {
        "progress": progress,
        "optimizer_groups": opt["param_groups"],
        "optimizer_scalars": scalars,
        "scheduler": {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"},
        "python_random": _jsonable_state(random.getstate()),
        "numpy_random": _jsonable_state(np.random.get_state()),
        "rngs": {k: _jsonable_state(r.getstate()) for k, r in (rngs or {}).items()},
    }
    save_file({"torch_rng": torch.get_rng_state()}, str(tmp / "rng.safetensors"))
    (tmp / "state.json").write_text(json.dumps(meta))
    shutil.rmtree(directory, ignore_errors=True)
    tmp.rename(directory)


def load_state(
    directory: str | Path, model, optimizer, scheduler, rngs: dict[str, random.Random] | None = None
) -> dict:
    """Restore what save_state wrote; returns the saved progress dict."""
    directory = Path(directory)
    if not (directory / "state.json").is_file():
        raise CheckpointError("no resumable state here (state.json missing)", path=directory)
    meta = json.loads((directory / "state.json").read_text())
    tensors = load_file(str(directory / "model.safetensors"))
    expected = set(state_tensor_names(model))
    if set(tensors) != expected:
        raise CheckpointError(
            "saved state does not fit this model (different trainable parameters)", path=directory / "model.safetensors"
        )
    state = model.state_dict()
    for name, value in tensors.items():
        if value.shape != state[name].shape:
            raise CheckpointError(
                f"saved state does not fit this model: {name} is {tuple(value.shape)}, expected {tuple(state[name].shape)}",
                path=directory / "model.safetensors",
            )
    model.load_state_dict(tensors, strict=False)
    flat = load_file(str(directory / "optimizer.safetensors"))
    per_param: dict[int, dict] = {}
    for key, value in flat.items():
        if key == "_empty":
            continue
        index, name = key.split(".", 1)
        per_param.setdefault(int(index), {})[name] = value
    for key, value in meta["optimizer_scalars"].items():
        index, name = key.split(".", 1)
        per_param.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": per_param, "param_groups": meta["optimizer_groups"]})
    scheduler.load_state_dict({**scheduler.state_dict(), **meta["scheduler"]})
    random.setstate(_tuple_state(meta["python_random"]))
    np.random.set_state(_tuple_state(meta["numpy_random"]))
    torch.set_rng_state(load_file(str(directory / "rng.safetensors"))["torch_rng"])
    for key, r in (rngs or {}).items():
        if key in meta["rngs"]:
            r.setstate(_tuple_state(meta["rngs"][key]))
    return meta["progress"]


def _jsonable_state(state):
    if isinstance(state, np.ndarray):
        return {"__ndarray__": state.tolist(), "dtype": str(state.dtype)}
    if isinstance(state, (tuple, list)):
        return [_jsonable_state(s) for s in state]
    return state


def _tuple_state(state):
    if isinstance(state, dict) and "__ndarray__" in state:
        return np.array(state["__ndarray__"], dtype=state["dtype"])
    if isinstance(state, list):
        return tuple(_tuple_state(s) for s in state)
    return state


class JsonlLogger:
    """Metrics to a JSONL file, and to TensorBoard when it is installed.

    A run that starts (or resumes) at `start_step` first drops the rows an earlier run wrote
    after that step, so the file always describes one run, step by step, without repeats.
    """

    def __init__(self, path: str | Path, tensorboard_dir: str | Path | None = None, *, start_step: int = 0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_file():
            rows = [line for line in self.path.read_text().splitlines() if line.strip()]
            kept = [line for line in rows if json.loads(line).get("step", 0) <= start_step]
            self.path.write_text("".join(line + "\n" for line in kept))
        self.writer = None
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(tensorboard_dir), purge_step=start_step + 1 if start_step else None)
            except ImportError:
                self.writer = None

    def log(self, step: int, **metrics) -> None:
        record = {
            "step": step,
            **{
                k: (float(v) if isinstance(v, (int, float, np.floating, torch.Tensor)) else v)
                for k, v in metrics.items()
            },
        }
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for k, v in record.items():
                if k != "step" and isinstance(v, float):
                    self.writer.add_scalar(k, v, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
