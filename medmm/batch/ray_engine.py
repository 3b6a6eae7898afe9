"""Ray engine: the same planned batches on Ray Data, each model held by an actor.

Every dataset row is one planned batch (its cases as JSON); `map_batches` hands one row at a
time to an actor pool of `workers` actors (one CPU each), each of which loaded the checkpoint
once. Results travel back as exact JSON (floats round-trip), so the driver writes, commits
and audits exactly what the local engine would. Connects to the cluster named by
RAY_ADDRESS, or to a Ray already initialised in this process, else starts a local one with
`workers` CPUs (and stops it at the end). The checkpoint and cohort folders must be readable
at the same paths on every node.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime
from pathlib import Path
from typing import Iterator, Sequence

from medmm.batch.cases import CaseOptions, CaseResult, CaseRunner
from medmm.batch.plan import CaseTask, PlannedBatch
from medmm.errors import ConfigError


def _task_json(task: CaseTask) -> dict:
    return {
        "patient_id": task.patient_id,
        "folder": task.folder,
        "split": task.split,
        "study_time": None if task.study_time is None else task.study_time.isoformat(),
        "sample_id": task.sample_id,
    }


def _task(data: dict) -> CaseTask:
    when = data["study_time"]
    return CaseTask(
        data["patient_id"],
        data["folder"],
        data["split"],
        None if when is None else datetime.fromisoformat(when),
        data.get("sample_id"),
    )


class BatchActor:
    """A Ray Data actor: loads the checkpoint once, then runs one planned batch per call."""

    def __init__(self, model_dir: str, options: str, require: list[str]):
        self.runner = CaseRunner(model_dir, CaseOptions.from_json(options), tuple(require))

    def __call__(self, rows: dict) -> dict:
        out_batches, out_results = [], []
        for index, payload in zip(rows["batch"], rows["cases"]):
            batch = PlannedBatch(int(index), tuple(_task(t) for t in json.loads(payload)))
            out_batches.append(int(index))
            out_results.append(json.dumps([r.to_json() for r in self.runner.run(batch)]))
        return {"batch": out_batches, "results": out_results}


def run_ray(
    batches: Sequence[PlannedBatch],
    model_dir: str | Path,
    options: CaseOptions,
    *,
    workers: int = 1,
    require: Sequence[str] = (),
) -> Iterator[tuple[int, list[CaseResult]]]:
    """Yield (batch index, its results) for every batch, in the order they finish."""
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise ConfigError("the Ray engine needs the ray[data] package", where="--engine ray") from exc
    if not batches:
        return
    started = False
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        kwargs = {} if address else {"num_cpus": workers}
        ray.init(
            address=address or None,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
            **kwargs,
        )
        started = True
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        items = [{"batch": b.index, "cases": json.dumps([_task_json(t) for t in b.cases])} for b in batches]
        dataset = ray.data.from_items(items, override_num_blocks=min(len(items), max(workers * 4, 1)))
        results = dataset.map_batches(
            BatchActor,
            fn_constructor_kwargs={"model_dir": str(model_dir), "options": options.to_json(), "require": list(require)},
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=1,
        )
        for row in results.iter_rows():
            yield int(row["batch"]), [CaseResult.from_json(r) for r in json.loads(row["results"])]
    finally:
        if started:
            ray.shutdown()
