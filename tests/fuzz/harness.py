"""Run fuzz cases through ``medmm.io`` in worker processes, each input under a time limit and a
memory bound, and sum up what happened.

Each worker builds its cases itself (case ``i`` of seed ``s`` is the same everywhere) and reads
them with the readers of their kind and with ``load_study``; a FHIR or vitals case is also read
beside intact files in one patient folder (:mod:`tests.fuzz.neighbours`). Outcomes:

- ``loaded``: every reader returned;
- ``rejected``: a reader raised a MedmmError subtype (the expected way to refuse bad input);
- ``crash``: any other exception escaped a reader;
- ``memory``: a MemoryError, raised or hidden inside a MedmmError (the address space is bounded);
- ``hang``: no answer within the time limit (the worker is killed and replaced);
- ``died``: the worker process ended (a crash in native code, or the kernel killed it);
- ``lost``: an intact file beside the case lost what it holds (a note, a grid cell), or the
  folder was refused as a whole.

The last five are failures. A worker first reads every seed once (imports, codec plugins and
thread pools in place), then bounds its address space with RLIMIT_AS to what it holds plus
``memory_mib``, so that one input cannot take more than that.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import shutil
import tempfile
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import medmm
from medmm.errors import MedmmError
from medmm.io import load_study
from medmm.io.dicom import read_dicom
from medmm.io.dicom_file import decode_file
from medmm.io.fhir import read_fhir
from medmm.io.vitals import read_vitals_table
from tests.fuzz.mutators import Case, make_case
from tests.fuzz.neighbours import NEIGHBOUR_KINDS, lost_beside
from tests.fuzz.seeds import DICOM, FHIR, NDJSON, PARQUET, VITALS, ZIP, all_seeds

FAILURES = ("crash", "memory", "hang", "died", "lost")
_PACKAGE = Path(medmm.__file__).resolve().parent
_START_TIMEOUT_S = 300.0
_MIB = 1024 * 1024


@dataclass(frozen=True)
class Result:
    """What one input did: its outcome, the error kinds or crash site, and its reading time."""

    index: int
    kind: str
    label: str
    outcome: str  # loaded | rejected | crash | memory | hang | died | lost
    detail: str
    seconds: float
    peak_mib: float | None = None  # the worker's peak resident memory while reading this input

    @property
    def failed(self) -> bool:
        return self.outcome in FAILURES


def _readers(kind: str) -> list[tuple[str, Callable[[Case, Path], Any]]]:
    """The readers an input of `kind` goes through: its own reader(s), then load_study on the file."""
    direct = {
        DICOM: [("decode_file", lambda case, path: decode_file(case.name, case.data)), ("read_dicom", _on(read_dicom))],
        ZIP: [("read_dicom", _on(read_dicom))],
        FHIR: [("read_fhir", _on(read_fhir))],
        NDJSON: [("read_fhir", _on(read_fhir))],
        VITALS: [("read_vitals_table", _on(read_vitals_table))],
        PARQUET: [("read_vitals_table", _on(read_vitals_table))],
    }[kind]
    return direct + [("load_study", _on(load_study))]


def _on(reader: Callable[[Path], Any]) -> Callable[[Case, Path], Any]:
    return lambda case, path: reader(path)


class Lost(Exception):
    """An intact file beside a fuzz case lost what it holds (the message says what)."""


def ingest(case: Case, folder: Path) -> str:
    """Read `case` (written into `folder`) with each reader of its kind; return the outcome.

    MedmmError subtypes are the expected refusals; anything else propagates to the worker. A
    MedmmError that hides a MemoryError is raised as a MemoryError. A FHIR or vitals case that
    makes intact files beside it lose anything raises Lost.
    """
    path = folder / case.name
    path.write_bytes(case.data)
    refused = []
    try:
        for name, read in _readers(case.kind):
            try:
                read(case, path)
            except MedmmError as err:
                if _hides_memory_error(err):
                    raise MemoryError(f"{name} turned a MemoryError into {type(err).__name__}") from err
                refused.append(f"{name}: {type(err).__name__}")
    finally:
        path.unlink(missing_ok=True)
    if case.kind in NEIGHBOUR_KINDS:
        try:
            lost = lost_beside(case, folder)
        except MedmmError as err:
            if _hides_memory_error(err):
                raise MemoryError(f"load_study turned a MemoryError into {type(err).__name__}") from err
            lost = f"load_study refused the folder ({type(err).__name__}: {err.detail})"
        if lost:
            raise Lost(lost)
    return "; ".join(refused)


def _hides_memory_error(err: BaseException) -> bool:
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, MemoryError):
            return True
        err = err.__cause__ or err.__context__
    return False


def crash_site(exc: BaseException) -> str:
    """'KeyError at medmm/io/x.py:12 via pandas/core/y.py:34': the last medmm frame and the raising one."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if Path(f.filename).is_relative_to(_PACKAGE)]
    last = frames[-1] if frames else None

    def short(frame: traceback.FrameSummary) -> str:
        path = Path(frame.filename)
        shown = path.relative_to(_PACKAGE.parent) if path.is_relative_to(_PACKAGE) else Path(*path.parts[-3:])
        return f"{shown.as_posix()}:{frame.lineno}"

    where = f" at {short(ours[-1])}" if ours else ""
    deeper = f" via {short(last)}" if last is not None and (not ours or last is not ours[-1]) else ""
    return f"{type(exc).__name__}{where}{deeper}"


# ---------------------------------------------------------------------------------------------
# worker process


def _status_kib(field_name: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets the peak resident set size (VmHWM)
    except OSError:
        pass


def _worker(conn: Connection, target: Callable[[Case, Path], str], memory_mib: int, warm_up: bool) -> None:
    """Read cases sent as (seed, index) and answer with Results, until sent None."""
    warnings.simplefilter("ignore")
    folder = Path(tempfile.mkdtemp(prefix="medmm-fuzz-"))
    try:
        for seed in all_seeds() if warm_up else ():  # imports, codec plugins, thread pools, before the bound
            try:
                ingest(Case(-1, seed.kind, seed.name, seed.data, seed.name), folder)
            except Exception:
                pass
        size_kib = _status_kib("VmSize")
        if memory_mib > 0 and size_kib is not None:
            limit = size_kib * 1024 + memory_mib * _MIB
            resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
        conn.send("ready")
        while (message := conn.recv()) is not None:
            seed_value, index = message
            case = make_case(seed_value, index)
            _reset_peak()
            start = time.perf_counter()
            try:
                detail = target(case, folder)
                outcome = "rejected" if detail else "loaded"
            except MemoryError as exc:
                outcome, detail = "memory", crash_site(exc) + f": {exc}"
            except Lost as exc:
                outcome, detail = "lost", str(exc)
            except Exception as exc:
                outcome, detail = "crash", crash_site(exc)
            seconds = time.perf_counter() - start
            peak = _status_kib("VmHWM")
            conn.send(Result(index, case.kind, case.label, outcome, detail, seconds, peak / 1024 if peak else None))
    except (EOFError, KeyboardInterrupt):
        pass
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class _Worker:
    process: Any
    conn: Connection
    busy: tuple[int, float] | None = None  # (case index, deadline)


class FuzzRunner:
    """A pool of worker processes that read fuzz cases under a per-input time and memory limit."""

    def __init__(
        self,
        *,
        workers: int = 2,
        timeout_s: float = 10.0,
        memory_mib: int = 2048,
        target: Callable[[Case, Path], str] = ingest,
        warm_up: bool = True,
    ) -> None:
        """`target` reads one case (a module-level function: workers import it); `memory_mib` is the
        address space a worker may add after warming up (0: unbounded)."""
        self.timeout_s, self.memory_mib, self.target, self.warm_up = timeout_s, memory_mib, target, warm_up
        self._context = multiprocessing.get_context("spawn")  # a clean interpreter, nothing inherited
        self._workers = [self._start() for _ in range(max(1, workers))]
        self.restarts = 0

    def _start(self) -> _Worker:
        parent, child = self._context.Pipe()
        args = (child, self.target, self.memory_mib, self.warm_up)
        process = self._context.Process(target=_worker, args=args, daemon=True)
        process.start()
        child.close()
        if not parent.poll(_START_TIMEOUT_S) or parent.recv() != "ready":
            process.kill()
            raise RuntimeError("fuzz worker did not start")
        return _Worker(process, parent)

    def _replace(self, worker: _Worker) -> None:
        """Kill `worker` (if still running) and start a fresh one in its place."""
        worker.process.kill()
        worker.process.join()
        worker.conn.close()
        self._workers[self._workers.index(worker)] = self._start()
        self.restarts += 1

    def run(self, seed: int, *, count: int | None = None, seconds: float | None = None) -> Iterator[Result]:
        """Results of cases 0, 1, ... of `seed`: `count` of them, or as many as start within `seconds`."""
        if count is None and seconds is None:
            raise ValueError("give count or seconds")
        stop_at = None if seconds is None else time.monotonic() + seconds
        next_index = 0

        def more() -> bool:
            return (count is None or next_index < count) and (stop_at is None or time.monotonic() < stop_at)

        while True:
            for worker in self._workers:
                if worker.busy is None and more():
                    worker.conn.send((seed, next_index))
                    worker.busy = (next_index, time.monotonic() + self.timeout_s)
                    next_index += 1
            busy = [w for w in self._workers if w.busy is not None]
            if not busy:
                return
            soonest = min(w.busy[1] for w in busy)
            ready = wait([w.conn for w in busy], timeout=max(0.0, soonest - time.monotonic()))
            for worker in busy:
                index, deadline = worker.busy
                if worker.conn in ready:
                    try:
                        result = worker.conn.recv()
                        worker.busy = None
                    except (EOFError, OSError):  # the process ended without answering
                        worker.process.join(timeout=5)
                        code = worker.process.exitcode
                        self._replace(worker)
                        result = self._lost(seed, index, "died", f"worker ended with exit code {code}")
                    yield result
                elif time.monotonic() >= deadline:
                    self._replace(worker)
                    yield self._lost(seed, index, "hang", f"no answer in {self.timeout_s:g} s")

    def _lost(self, seed: int, index: int, outcome: str, detail: str) -> Result:
        case = make_case(seed, index)
        return Result(index, case.kind, case.label, outcome, detail, self.timeout_s if outcome == "hang" else 0.0)

    def close(self) -> None:
        for worker in self._workers:
            try:
                worker.conn.send(None)
            except OSError:
                pass
        for worker in self._workers:
            worker.process.join(timeout=10)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.conn.close()

    def __enter__(self) -> FuzzRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------
# figures


@dataclass
class Summary:
    """The figures of a fuzz run."""

    seed: int
    inputs: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    by_kind: dict[str, Counter[str]] = field(default_factory=dict)
    longest_s: float = 0.0
    longest: str = ""
    peak_mib: float = 0.0
    wall_s: float = 0.0
    restarts: int = 0
    failures: list[Result] = field(default_factory=list)

    def add(self, result: Result) -> None:
        self.inputs += 1
        self.outcomes[result.outcome] += 1
        self.by_kind.setdefault(result.kind, Counter())[result.outcome] += 1
        if result.seconds > self.longest_s:
            self.longest_s, self.longest = result.seconds, f"case {result.index} ({result.label})"
        self.peak_mib = max(self.peak_mib, result.peak_mib or 0.0)
        if result.failed:
            self.failures.append(result)

    @property
    def failed(self) -> int:
        return sum(self.outcomes[o] for o in FAILURES)

    def as_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "inputs": self.inputs,
            "outcomes": {o: self.outcomes[o] for o in ("loaded", "rejected", *FAILURES)},
            "by_kind": {k: dict(v) for k, v in sorted(self.by_kind.items())},
            "longest_input_s": round(self.longest_s, 4),
            "longest_input": self.longest,
            "worker_peak_rss_mib": round(self.peak_mib, 1),
            "wall_s": round(self.wall_s, 2),
            "inputs_per_s": round(self.inputs / self.wall_s, 1) if self.wall_s else None,
            "worker_restarts": self.restarts,
            "failures": [f"case {r.index} [{r.kind}] {r.label}: {r.outcome}: {r.detail}" for r in self.failures],
        }

    def lines(self) -> list[str]:
        """The figures as printable lines."""
        d = self.as_dict()
        out = [
            f"fuzz seed {self.seed}: {self.inputs} inputs in {d['wall_s']} s ({d['inputs_per_s']} inputs/s)",
            "outcomes: " + ", ".join(f"{k} {v}" for k, v in d["outcomes"].items()),
        ]
        out += [f"  {kind}: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())) for kind, c in d["by_kind"].items()]
        out.append(f"longest single input: {d['longest_input_s']} s, {self.longest}")
        out.append(f"worker peak resident memory: {d['worker_peak_rss_mib']} MiB; worker restarts: {self.restarts}")
        out += [f"FAILURE {line}" for line in d["failures"]]
        return out


def run_pass(
    seed: int,
    *,
    count: int | None = None,
    seconds: float | None = None,
    workers: int = 2,
    timeout_s: float = 10.0,
    memory_mib: int = 2048,
    save_dir: Path | None = None,
) -> Summary:
    """Run a fuzz pass and sum it up; failing inputs are written to `save_dir` when given."""
    summary = Summary(seed)
    start = time.monotonic()
    with FuzzRunner(workers=workers, timeout_s=timeout_s, memory_mib=memory_mib) as runner:
        for result in runner.run(seed, count=count, seconds=seconds):
            summary.add(result)
            if result.failed and save_dir is not None:
                case = make_case(seed, result.index)
                save_dir.mkdir(parents=True, exist_ok=True)
                (save_dir / case.name).write_bytes(case.data)
        summary.restarts = runner.restarts
    summary.wall_s = time.monotonic() - start
    return summary


def cpu_workers() -> int:
    """Workers to use: one per core the process may run on (at least one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)
