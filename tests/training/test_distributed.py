"""The align recipe as two DDP processes on the CPU (gloo), started by `accelerate launch`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from medmm.checkpoint import load_checkpoint, verify

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_two_process_align_run_completes(tmp_path, tiny_yaml, cohort):
    out, cache = tmp_path / "ddp", tmp_path / "cache"  # a fresh cache: both processes start with nothing on disk
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        # `--cpu` would start one process (accelerate's CPU launcher needs mpirun for more);
        # this launcher runs torch.distributed and the recipe's cpu=true picks gloo on the CPU.
        "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
        "-m", "training.align", "--config", str(tiny_yaml),
        f"out={out}", f"cache_dir={cache}", "cpu=true", "train.max_steps=null",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]

    # each process took half of the 5 batches per epoch (the odd one dropped): 2 optimizer steps
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["epoch"]) for r in rows] == [(2, 1), (4, 2)]
    assert rows[-1]["lr"] == 0.0  # the schedule counts both processes' steps and ends on the last one

    # one writer: the final summary is printed once, the best checkpoint saved once per improvement
    summaries = [json.loads(line) for line in done.stdout.splitlines() if line.startswith('{"recipe"')]
    assert len(summaries) == 1 and (summaries[0]["epoch"], summaries[0]["step"]) == (2, 4)
    improvements, best = 0, -1.0
    for r in rows:
        if r["val_macro_auroc"] > best or improvements == 0:
            improvements, best = improvements + 1, max(best, r["val_macro_auroc"])
    assert done.stderr.count("best checkpoint saved") == improvements
    assert sorted(p.name for p in out.iterdir()) == ["best", "config.yaml", "last", "metrics.jsonl"]
    assert verify(out / "best")["epoch"] == summaries[0]["best_epoch"]
    cases = [p for p in cache.glob("*.safetensors") if not p.name.startswith("notes-")]
    assert len(cases) == 24 and not list(cache.glob("*.tmp"))  # train + val, each once
    assert len(list(cache.glob("notes-*.safetensors"))) == 1  # the note embeddings, written by the main process only
    model = load_checkpoint(out / "best")
    assert model.config.backbone.finetune.method == "frozen"
