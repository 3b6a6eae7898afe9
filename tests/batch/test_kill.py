"""Crash safety: a 300-case study SIGKILLed at random points five times, then resumed, equals an uninterrupted run."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from medmm.batch.results import load_results
from medmm.batch.run import run_batch
from medmm.batch.store import TIMING_COLUMNS
from medmm.trail import AuditStore

RUN = "import sys; from medmm.batch.run import run_batch; run_batch(sys.argv[1], sys.argv[2], sys.argv[3], protocol=sys.argv[4], progress=False)"
PROTOCOL = {
    "name": "kill test",
    "outputs": {"impression": True, "max_new_tokens": 2},
    "run": {"batch_size": 4, "part_size": 12},
}


def _commits(out: Path) -> int:
    journal = out / "store" / "commits.jsonl"
    return journal.read_bytes().count(b"\n") if journal.exists() else 0


def _kill_at_random_point(args: list[str], out: Path, rng: random.Random, log: Path) -> int:
    """Start the study in a child process, let it commit one or two parts, then SIGKILL it at a random moment.

    The delay after the last observed commit is drawn within about one part's time (measured),
    so the kill lands anywhere in a part: computing, writing its files, or appending its line.
    """
    before = _commits(out)
    target = before + rng.randint(1, 2)
    with open(log, "ab") as err:
        child = subprocess.Popen([sys.executable, "-c", RUN, *args], stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 600
    seen, stamps = before, []
    while seen < target:
        assert child.poll() is None, f"the study process ended before it was killed (see {log})"
        assert time.monotonic() < deadline, "the study process made no progress"
        time.sleep(0.01)
        now = _commits(out)
        if now > seen:
            seen = now
            stamps.append(time.monotonic())
    part_time = stamps[-1] - stamps[-2] if len(stamps) > 1 else 0.5
    time.sleep(rng.uniform(0.0, 1.2 * part_time))
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    return _commits(out)


@pytest.mark.slow
def test_five_kills_and_a_resume_give_exactly_the_uninterrupted_output(tiny_checkpoint, cohort300, tmp_path):
    protocol = tmp_path / "protocol.yaml"
    protocol.write_text(yaml.safe_dump(PROTOCOL))
    killed = tmp_path / "killed"
    rng = random.Random(20240601)
    progress = []
    for _ in range(5):
        progress.append(
            _kill_at_random_point(
                [str(tiny_checkpoint), str(cohort300), str(killed), str(protocol)], killed, rng, tmp_path / "child.log"
            )
        )
        assert not (killed / "results.parquet").exists()  # never finished, never merged
    assert progress == sorted(progress) and progress[-1] < 25  # 25 parts in all: some work was left to resume

    resumed = run_batch(tiny_checkpoint, cohort300, killed, protocol=protocol, progress=False)
    run_batch(
        tiny_checkpoint, cohort300, tmp_path / "baseline", protocol=protocol, progress=False
    )  # the same study, never killed
    assert resumed.resumed == 12 * progress[-1] and resumed.processed == 300 - resumed.resumed
    assert (resumed.cases, resumed.done + resumed.failed) == (300, 300)

    a = load_results(killed).drop(columns=list(TIMING_COLUMNS))
    b = load_results(tmp_path / "baseline").drop(columns=list(TIMING_COLUMNS))
    manifest = pd.read_csv(cohort300 / "manifest.csv", dtype=str, keep_default_na=False)
    assert len(a) == 300 and a["patient_id"].is_unique and a["patient_id"].tolist() == manifest["patient_id"].tolist()
    pd.testing.assert_frame_equal(a.sort_values("patient_id"), b.sort_values("patient_id"), check_exact=True)
    assert (killed / "fhir" / "RiskAssessment.ndjson").read_bytes() == (
        tmp_path / "baseline" / "fhir" / "RiskAssessment.ndjson"
    ).read_bytes()
    events = AuditStore(killed / "audit.sqlite").events(run_id=resumed.run_id)
    assert len(events) == resumed.done and len({e.subject_hash for e in events}) == resumed.done
