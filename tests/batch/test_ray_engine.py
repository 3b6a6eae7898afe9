"""The Ray engine on a local Ray (2 CPUs): the same study gives exactly the local engine's results."""

from __future__ import annotations

import pytest

from medmm.batch.plan import CohortFilter, Outputs, RunOptions, StudyProtocol
from medmm.batch.results import load_results
from medmm.batch.run import run_batch
from medmm.batch.store import TIMING_COLUMNS

ray = pytest.importorskip("ray", reason="the Ray engine needs the optional ray[data] package")


@pytest.mark.slow
def test_local_and_ray_engines_give_identical_results(tiny_checkpoint, cohort300, tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    protocol = StudyProtocol(
        filter=CohortFilter(splits=("test",)),
        outputs=Outputs(max_new_tokens=3),
        run=RunOptions(batch_size=4, part_size=8),
    )
    local = run_batch(tiny_checkpoint, cohort300, tmp_path / "local", protocol=protocol, progress=False)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        distributed = run_batch(
            tiny_checkpoint, cohort300, tmp_path / "ray", engine="ray", workers=2, protocol=protocol, progress=False
        )
        assert ray.is_initialized()  # a Ray the caller started is left running
    finally:
        ray.shutdown()
    assert distributed.run_id == local.run_id and distributed.cases == local.cases > 20
    a = load_results(tmp_path / "local").drop(columns=list(TIMING_COLUMNS))
    b = load_results(tmp_path / "ray").drop(columns=list(TIMING_COLUMNS))
    probs = [c for c in a.columns if c.startswith("prob_")]
    assert a[probs].notna().all().all()
    assert a[probs].equals(b[probs])  # exactly equal floats
    assert a.equals(b)
    assert (tmp_path / "local" / "fhir" / "RiskAssessment.ndjson").read_bytes() == (
        tmp_path / "ray" / "fhir" / "RiskAssessment.ndjson"
    ).read_bytes()
