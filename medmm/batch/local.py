"""Local engine: one model in this process; `workers` threads read the next cases while it predicts.

Batches are predicted in plan order. Reading (DICOM decoding, FHIR parsing, hashing) runs
ahead in a bounded thread pool, so at most a few batches of studies are held in memory
whatever the size of the cohort.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, Sequence

from medmm.batch.cases import CaseOptions, CaseResult, CaseRunner
from medmm.batch.plan import PlannedBatch


def run_local(
    batches: Sequence[PlannedBatch],
    model_dir: str | Path,
    options: CaseOptions,
    *,
    workers: int = 1,
    require: Sequence[str] = (),
) -> Iterator[tuple[int, list[CaseResult]]]:
    """Yield (batch index, its results) for every batch, in order."""
    import torch

    threads = torch.get_num_threads()
    runner = CaseRunner(model_dir, options, require)
    ahead = max(2, workers)  # batches being read while one is predicted
    try:
        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="medmm-read") as pool:
            pending: deque = deque()
            upcoming = iter(batches)

            def submit() -> None:
                batch = next(upcoming, None)
                if batch is not None:
                    pending.append((batch, [pool.submit(runner.load, task) for task in batch.cases]))

            for _ in range(ahead):
                submit()
            while pending:
                batch, futures = pending.popleft()
                submit()
                loaded = [f.result() for f in futures]
                yield batch.index, runner.run(batch, loaded)
    finally:
        torch.set_num_threads(threads)
