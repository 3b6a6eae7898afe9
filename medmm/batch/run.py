"""`medmm batch`: run a study protocol over a cohort, resumably, on the local or the Ray engine.

The cohort is streamed in fixed batches; results are committed part by part (see store.py),
each predicted case gets its FHIR resources and its audit record, and a failed case is
recorded with its error type and message while the study goes on. Running the same command
again after a crash or a kill continues with the parts not yet committed. At the end the
parts are merged into results.parquet and fhir/*.ndjson, and summary.json is written.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import time
from contextlib import closing
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Mapping

import yaml
from tqdm.auto import tqdm

import medmm
from medmm.batch.cases import CaseOptions, CaseResult
from medmm.batch.fhir_out import case_resources
from medmm.batch.plan import (
    PlannedBatch,
    Selection,
    StudyProtocol,
    load_protocol,
    plan_batches,
    select_cases,
    with_overrides,
)
from medmm.batch.store import FHIR_TYPES, ResultStore, atomic_text
from medmm.checkpoint import stored_task
from medmm.config import to_dict
from medmm.errors import CheckpointError, ConfigError
from medmm.io.cohort import Cohort
from medmm.tasks import Task, task_to_dict
from medmm.trail import AuditStore, ModelFingerprint, default_path, model_fingerprint

ENGINES = ("local", "ray")


@dataclass(frozen=True)
class ModelInfo:
    """What the driver needs to know of a checkpoint without loading it."""

    model_id: str
    fingerprint: ModelFingerprint
    labels: tuple[str, ...]
    temperature: float  # from calibration.json (1.0 without), to recover raw logits for evaluation
    task: Task  # the labels' display names and codes (the default task for a checkpoint that stores none)


@dataclass(frozen=True)
class BatchSummary:
    """How a `medmm batch` run went."""

    out_dir: Path
    run_id: str
    engine: str
    workers: int
    cases: int  # selected by the protocol
    excluded: int  # manifest rows the filter left out
    done: int  # cases predicted, over every run of this study
    failed: int  # cases recorded as failed, over every run
    failed_by_type: Mapping[str, int]
    resumed: int  # cases already committed when this run started
    processed: int  # cases this run computed
    seconds: float  # this run's wall time
    results: Path

    @property
    def throughput(self) -> float:
        """Cases per second computed by this run."""
        return self.processed / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict:
        data = asdict(self)
        data.update(
            out_dir=str(self.out_dir),
            results=str(self.results),
            failed_by_type=dict(self.failed_by_type),
            throughput=self.throughput,
        )
        return data

    def __str__(self) -> str:
        failed = ", ".join(f"{k} {v}" for k, v in sorted(self.failed_by_type.items())) or "none"
        return (
            f"study {self.run_id}: {self.cases} cases ({self.excluded} excluded by the filter)\n"
            f"done: {self.done}   failed: {self.failed} ({failed})\n"
            f"this run: {self.processed} cases in {self.seconds:.1f} s ({self.throughput:.2f} cases/s, "
            f"engine {self.engine}, {self.workers} worker(s)); {self.resumed} were already done\n"
            f"results: {self.results}"
        )


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def model_info(model_dir: str | Path) -> ModelInfo:
    """Id, checksums, diagnoses and temperature of a checkpoint folder (its files are verified by the workers)."""
    model_dir = Path(model_dir)
    fingerprint = model_fingerprint(model_dir)
    try:
        meta = json.loads((model_dir / "config.json").read_text())
        labels = tuple(meta["labels"])
        calibration = (
            json.loads((model_dir / "calibration.json").read_text())
            if (model_dir / "calibration.json").is_file()
            else {}
        )
        temperature = float(calibration.get("temperature") or 1.0)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError("config.json or calibration.json is unreadable", path=model_dir) from exc
    task = stored_task(meta, model_dir / "config.json")
    model_id = _sha256_bytes((model_dir / "checksums.json").read_bytes())[:16]  # as Predictor.from_checkpoint
    return ModelInfo(model_id, fingerprint, labels, temperature, task)


def _manifest_sha256(cohort: Cohort) -> str:
    for name in ("manifest.csv", "manifest.parquet"):
        if (cohort.root / name).is_file():
            return _sha256_bytes((cohort.root / name).read_bytes())
    return _sha256_bytes("\n".join(e.folder.name for e in cohort.entries).encode())


def resolve_study(protocol: StudyProtocol, model: ModelInfo, cohort: Cohort, selection: Selection) -> tuple[str, str]:
    """(run id, study.yaml text): the protocol with every default filled, plus what pins its inputs.

    The run id covers the protocol (not where the folders are), the checkpoint's checksums, the
    manifest and the selected cases, so resuming into a folder of another study is refused.
    """
    settings = to_dict(protocol)
    identity = {
        k: v for k, v in settings.items() if k not in ("model", "cohort", "model_id")
    }  # pinned below by checksums
    cases_sha = _sha256_bytes("\n".join(c.key for c in selection.cases).encode())
    pins = {
        "model_id": model.model_id,
        "model_checksum": model.fingerprint.model_checksum,
        "config_checksum": model.fingerprint.config_checksum,
        "cohort_manifest_sha256": _manifest_sha256(cohort),
        "cases_sha256": cases_sha,
    }
    run_id = _sha256_bytes(json.dumps({"protocol": identity, **pins}, sort_keys=True).encode())[:16]
    resolved = {
        "run_id": run_id,
        **pins,
        "labels": list(model.labels),
        "task": task_to_dict(model.task),  # what the labels mean, and the strata a study's audit groups by
        "temperature": model.temperature,
        "medmm_version": medmm.__version__,
        "cases": len(selection.cases),
        "excluded": dict(selection.excluded),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    header = "# medmm batch study: rerun it exactly with `medmm batch --protocol study.yaml --out NEW_FOLDER`\n"
    return run_id, header + yaml.safe_dump(
        {**settings, "model_id": model.model_id, "resolved": resolved}, sort_keys=False
    )


def _engine(name: str):
    if name == "local":
        from medmm.batch.local import run_local

        return run_local
    from medmm.batch.ray_engine import run_ray

    return run_ray


def run_batch(
    model_dir: str | Path | None,
    cohort_dir: str | Path | None,
    out_dir: str | Path,
    *,
    engine: str = "local",
    workers: int = 1,
    protocol: str | Path | StudyProtocol | None = None,
    progress: bool = True,
    audit: str | Path | None = None,
    user: str | None = None,
) -> BatchSummary:
    """Run (or resume) the study: `model_dir` and `cohort_dir` override the protocol's; see the module doc.

    `audit` is the audit store (default: $MEDMM_AUDIT_STORE, else OUT/audit.sqlite); `user` the
    operator recorded in it (default: the login name).
    """
    start = time.perf_counter()
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r} (expected {' or '.join(ENGINES)})", where="--engine")
    if not isinstance(workers, int) or workers < 1:
        raise ConfigError("expected a positive integer", where="--workers")
    if protocol is None:
        proto = StudyProtocol()
    else:
        proto = protocol if isinstance(protocol, StudyProtocol) else load_protocol(protocol)
    proto = with_overrides(proto, model=model_dir, cohort=cohort_dir)
    model = model_info(proto.model)
    if proto.model_id is not None and proto.model_id != model.model_id:
        raise ConfigError(
            "the checkpoint is not the one the protocol names (model_id differs)", path=proto.model, where="model_id"
        )
    cohort = Cohort.open(proto.cohort)  # a built cohort's cases are its samples
    selection = select_cases(cohort, proto.filter)
    run_id, study_yaml = resolve_study(proto, model, cohort, selection)
    out = Path(out_dir)
    store = ResultStore.open(
        out,
        run_id=run_id,
        study_yaml=study_yaml,
        names=model.labels,
        model_id=model.model_id,
        model_version=medmm.__version__,
    )
    try:
        return _run(store, proto, model, selection, run_id, engine, workers, progress, audit, user, start)
    finally:
        store.close()


def _run(
    store: ResultStore,
    proto: StudyProtocol,
    model: ModelInfo,
    selection: Selection,
    run_id: str,
    engine: str,
    workers: int,
    progress: bool,
    audit: str | Path | None,
    user: str | None,
    start: float,
) -> BatchSummary:
    out = store.out
    trail = AuditStore(default_path(out / "audit.sqlite") if audit is None else audit)
    operator = user or _login()

    per_part = proto.run.part_size // proto.run.batch_size
    batches = plan_batches(selection.cases, proto.run.batch_size)
    parts: dict[int, list[PlannedBatch]] = {}
    for b in batches:
        parts.setdefault(b.index // per_part, []).append(b)
    pending = [b for b in batches if b.index // per_part not in store.committed]
    resumed = len(selection.cases) - sum(len(b.cases) for b in pending)
    options = CaseOptions(str(Path(proto.cohort)), proto.outputs, proto.run.torch_threads, str(out.resolve()))

    bar = tqdm(
        total=len(selection.cases), initial=resumed, desc="batch", unit="case", disable=not progress, dynamic_ncols=True
    )
    processed = 0
    try:
        if pending:
            results = _engine(engine)(pending, proto.model, options, workers=workers, require=proto.filter.require)
            with closing(results):  # stops the engine's readers or Ray even when a write below fails
                for part, part_results in _whole_parts(results, parts, per_part):
                    commit = store.write_part(
                        part, part_results, _fhir_lines(part_results, run_id, model.task) if proto.outputs.fhir else {}
                    )
                    predicted = [
                        (r.prediction, [i.digest() for i in r.inputs]) for r in part_results if r.prediction is not None
                    ]
                    trail.record_many(predicted, model_dir=proto.model, run_id=run_id, user=operator, source="batch")
                    store.commit(commit)
                    processed += len(part_results)
                    bar.update(len(part_results))
                    bar.set_postfix(failed=store.totals()[1], refresh=False)
    finally:
        bar.close()
    expected = {p: [c.key for b in bs for c in b.cases] for p, bs in parts.items()}
    results_path = store.finalize(expected, fhir=proto.outputs.fhir)
    done, failed, failed_by = store.totals()
    summary = BatchSummary(
        out_dir=out,
        run_id=run_id,
        engine=engine,
        workers=workers,
        cases=len(selection.cases),
        excluded=selection.excluded_total,
        done=done,
        failed=failed,
        failed_by_type=failed_by,
        resumed=resumed,
        processed=processed,
        seconds=time.perf_counter() - start,
        results=results_path,
    )
    atomic_text(out / "summary.json", json.dumps(summary.to_json(), indent=2) + "\n")
    return summary


def _whole_parts(
    results: Iterator[tuple[int, list[CaseResult]]], parts: Mapping[int, list[PlannedBatch]], per_part: int
) -> Iterator[tuple[int, list[CaseResult]]]:
    """Group batch results (arriving in any order) into whole parts, each in plan order."""
    waiting: dict[int, dict[int, list[CaseResult]]] = {}
    for index, batch_results in results:
        part = index // per_part
        planned = next(b for b in parts[part] if b.index == index)
        if [r.key for r in batch_results] != [c.key for c in planned.cases]:
            raise ConfigError("an engine returned results that do not match the planned batch", where=f"batch {index}")
        waiting.setdefault(part, {})[index] = batch_results
        if len(waiting[part]) == len(parts[part]):
            got = waiting.pop(part)
            yield part, [r for b in parts[part] for r in got[b.index]]


def _fhir_lines(results: list[CaseResult], run_id: str, task: Task) -> dict[str, list[str]]:
    lines: dict[str, list[str]] = {kind: [] for kind in FHIR_TYPES}
    for r in results:
        for kind, line in case_resources(r, run_id, task).items():
            lines[kind].append(line)
    return lines


def _login() -> str | None:
    try:
        return getpass.getuser() or None
    except (KeyError, OSError):
        return None
