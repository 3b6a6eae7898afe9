"""The result store of a batch study: Parquet parts, FHIR NDJSON parts and a commit journal.

Layout under the output folder::

    study.yaml                       the resolved protocol (what makes the study rerunnable)
    store/part-000003.parquet        one row per case of part 3 (a fixed slice of the selection)
    store/part-000003.<Type>.ndjson  its FHIR resources, one file per resource type
    store/commits.jsonl              one line per committed part: the only record of what is done
    results.parquet, fhir/<Type>.ndjson, summary.json   written when every part is committed

A part's files are written aside and renamed into place (never seen half-written), then the
part is committed by appending one fsynced line to the journal. A part whose files exist but
that has no commit line is not done: it is computed again and its files replaced. A torn last
journal line (a kill during the append) is cut off when the store is reopened. So after any
crash every case ends up in the final output exactly once.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from medmm.batch.cases import CaseResult
from medmm.errors import ConfigError
from medmm.records import Claim
from medmm.trail import file_digest

STORE_FORMAT = "medmm-batch-store/1"
FHIR_TYPES = ("RiskAssessment", "DiagnosticReport", "Provenance")
TIMING_COLUMNS = ("seconds_load", "seconds_predict", "predicted_at")
RESULTS = "results.parquet"
STUDY = "study.yaml"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write `path` through a temporary file renamed into place, both fsynced."""
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    write(tmp)
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def atomic_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _sha256(path: Path) -> str:
    return file_digest(path).sha256


def result_schema(names: Sequence[str]) -> pa.Schema:
    """Columns of results.parquet for a model predicting `names` (prob_<name>, label_<name> per diagnosis)."""
    strings = pa.list_(pa.string())
    inputs = pa.list_(
        pa.struct([("path", pa.string()), ("kind", pa.string()), ("sha256", pa.string()), ("size", pa.int64())])
    )
    return pa.schema(
        [
            ("patient_id", pa.string()),
            ("sample_id", pa.string()),
            ("status", pa.string()),
            ("split", pa.string()),
            ("study_time", pa.timestamp("us", tz="UTC")),
        ]
        + [(f"prob_{n}", pa.float64()) for n in names]
        + [(f"label_{n}", pa.int8()) for n in names]
        + [
            ("labels_known", pa.bool_()),
            ("conformal_set", strings),
            ("coverage_target", pa.float64()),
            ("calibrated", pa.bool_()),
            ("impression", pa.string()),
            ("claims", strings),
            ("removed_claims", strings),
            ("answered", pa.bool_()),
            ("refusal", pa.string()),
            ("time_source", pa.string()),
            ("used", strings),
            ("not_used", strings),
            ("present", strings),
            ("missing", strings),
            ("warnings", strings),
            ("model_id", pa.string()),
            ("model_version", pa.string()),
            ("error_type", pa.string()),
            ("error_message", pa.string()),
            ("inputs", inputs),
            ("explanation", pa.string()),
            ("batch", pa.int32()),
            ("seconds_load", pa.float64()),
            ("seconds_predict", pa.float64()),
            ("predicted_at", pa.timestamp("us", tz="UTC")),
        ]
    )


def case_keys(table: pa.Table) -> list[str]:
    """Each row's case key: its sample id, else its patient id (parts written before samples have no sample id column)."""
    patients = table.column("patient_id").to_pylist()
    samples = table.column("sample_id").to_pylist() if "sample_id" in table.column_names else [None] * len(patients)
    return [s if s is not None else p for p, s in zip(patients, samples)]


def claim_line(claim: Claim) -> str:
    """A claim as one line: "fever (vitals, sepsis): supported: max temperature 38.6 Cel at ..."."""
    about = f"{claim.kind}, {claim.diagnosis}" if claim.diagnosis else claim.kind
    return f"{claim.text} ({about}): {claim.verdict}: {claim.reason}"


def result_row(r: CaseResult, names: Sequence[str], model_id: str, model_version: str) -> dict:
    """One results.parquet row (probabilities in `names` order; labels one-hot when known)."""
    p = r.prediction
    probs = {s.name: s.probability for s in p.scores} if p else {}
    known = r.labels is not None
    row = {
        "patient_id": r.patient_id,
        "sample_id": r.sample_id,
        "status": r.status,
        "split": r.split,
        "study_time": r.study_time,
        **{f"prob_{n}": probs.get(n) for n in names},
        **{f"label_{n}": (int(n in r.labels) if known else None) for n in names},
        "labels_known": known if r.status == "done" else None,
        "conformal_set": list(p.conformal_set) if p else None,
        "coverage_target": p.coverage_target if p else None,
        "calibrated": p.calibrated if p else None,
        "impression": p.impression if p else None,
        "claims": [claim_line(c) for c in p.claims] if p else None,
        "removed_claims": [claim_line(c) for c in p.removed_claims] if p else None,
        "answered": p.answered if p else None,
        "refusal": (p.refusal or None) if p else None,
        "time_source": p.time_source if p else None,
        "used": [f"{u.modality} {u.source}: {u.reason}" for u in p.inputs if u.used] if p else None,
        "not_used": [f"{u.modality} {u.source}: {u.reason}" for u in p.inputs if not u.used] if p else None,
        "present": list(p.present) if p else None,
        "missing": list(p.missing) if p else None,
        "warnings": list(p.warnings) if p else None,
        "model_id": p.model_id if p else model_id,
        "model_version": p.model_version if p else model_version,
        "error_type": r.error_type,
        "error_message": r.error_message,
        "inputs": [{"path": i.path, "kind": i.kind, "sha256": i.sha256, "size": i.size} for i in r.inputs],
        "explanation": r.explanation,
        "batch": r.batch,
        "seconds_load": r.load_seconds,
        "seconds_predict": p.seconds if p else None,
        "predicted_at": r.predicted_at,
    }
    return row


@dataclass(frozen=True)
class Commit:
    """One committed part, as its journal line says."""

    part: int
    rows: int
    done: int
    failed: int
    failed_by: Mapping[str, int]
    files: Mapping[str, str]  # file name -> SHA-256

    def line(self) -> str:
        return json.dumps(
            {
                "part": self.part,
                "rows": self.rows,
                "done": self.done,
                "failed": self.failed,
                "failed_by": dict(self.failed_by),
                "files": dict(self.files),
            },
            sort_keys=True,
        )


@dataclass
class ResultStore:
    """Parts of one study under `out`, and which of them are committed."""

    out: Path
    names: tuple[str, ...]
    model_id: str
    model_version: str
    committed: dict[int, Commit] = field(default_factory=dict)
    _lock_fd: int | None = field(default=None, repr=False)

    @property
    def folder(self) -> Path:
        return self.out / "store"

    @property
    def journal(self) -> Path:
        return self.folder / "commits.jsonl"

    @classmethod
    def open(
        cls, out: str | Path, *, run_id: str, study_yaml: str, names: Sequence[str], model_id: str, model_version: str
    ) -> "ResultStore":
        """Open (or start) the store of study `run_id`; an output folder of another study is refused."""
        out = Path(out)
        study = out / STUDY
        if study.is_file():
            recorded = _recorded_run_id(study)
            if recorded != run_id:
                raise ConfigError(
                    "the output folder holds another study (different protocol, model or cohort); choose a new --out",
                    path=study,
                    where="resolved.run_id",
                )
        elif out.exists() and (not out.is_dir() or any(not p.name.startswith(f"{STUDY}.tmp-") for p in out.iterdir())):
            raise ConfigError(
                f"output folder is not empty and holds no {STUDY}; choose an empty or new folder", path=out
            )
        out.mkdir(parents=True, exist_ok=True)
        if not study.is_file():  # first, so that a folder with anything else in it always has its study.yaml
            for stale in out.glob(f"{STUDY}.tmp-*"):
                stale.unlink()
            atomic_text(study, study_yaml)
        store = cls(out, tuple(names), model_id, model_version)
        store.folder.mkdir(exist_ok=True)
        store._lock()
        for stale in store.folder.glob("*.tmp-*"):  # left by a kill during a write
            stale.unlink()
        store.committed = store._read_journal()
        return store

    def _lock(self) -> None:
        """Hold an exclusive lock on the store while this run lives (the kernel drops it if the process dies)."""
        fd = os.open(self.folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConfigError("another run of this study is writing to the output folder", path=self.out) from None
        self._lock_fd = fd

    def close(self) -> None:
        """Release the store's lock (a later run may resume it)."""
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)

    def _read_journal(self) -> dict[int, Commit]:
        if not self.journal.exists():
            return {}
        data = self.journal.read_bytes()
        commits: dict[int, Commit] = {}
        good_end = 0
        for raw in data.splitlines(keepends=True):
            try:
                if not raw.endswith(b"\n"):
                    raise ValueError("torn line")
                line = json.loads(raw)
                commit = Commit(
                    int(line["part"]),
                    int(line["rows"]),
                    int(line["done"]),
                    int(line["failed"]),
                    dict(line["failed_by"]),
                    dict(line["files"]),
                )
            except (ValueError, KeyError, TypeError):
                if good_end + len(raw) < len(data):
                    raise ConfigError(
                        "commit journal is corrupt before its last line", path=self.journal, where=f"byte {good_end}"
                    ) from None
                break
            good_end += len(raw)
            missing = [f for f in commit.files if not (self.folder / f).is_file()]
            if missing:
                raise ConfigError(
                    f"a committed part's file is missing ({missing[0]})", path=self.folder, where=f"part {commit.part}"
                )
            commits[commit.part] = commit
        if good_end < len(data):  # a kill during the append: cut the torn line off
            with open(self.journal, "rb+") as fh:
                fh.truncate(good_end)
                os.fsync(fh.fileno())
        return commits

    def part_name(self, part: int) -> str:
        return f"part-{part:06d}"

    def write_part(self, part: int, results: Sequence[CaseResult], fhir: Mapping[str, Sequence[str]]) -> Commit:
        """Write a part's Parquet and NDJSON files (atomically); returns its commit, not yet journaled."""
        base = self.part_name(part)
        schema = result_schema(self.names)
        table = pa.Table.from_pylist(
            [result_row(r, self.names, self.model_id, self.model_version) for r in results], schema=schema
        )
        files = {}
        path = self.folder / f"{base}.parquet"
        atomic_write(path, lambda tmp: pq.write_table(table, tmp))
        files[path.name] = _sha256(path)
        for kind, lines in fhir.items():
            path = self.folder / f"{base}.{kind}.ndjson"
            atomic_text(path, "".join(line + "\n" for line in lines))
            files[path.name] = _sha256(path)
        failed_by: dict[str, int] = {}
        for r in results:
            if r.status == "failed":
                failed_by[r.error_type or "unknown"] = failed_by.get(r.error_type or "unknown", 0) + 1
        done = sum(r.status == "done" for r in results)
        return Commit(part, len(results), done, len(results) - done, failed_by, files)

    def commit(self, commit: Commit) -> None:
        """Mark a written part as done: one fsynced journal line (the commit point)."""
        with open(self.journal, "a", encoding="utf-8") as fh:
            fh.write(commit.line() + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.committed[commit.part] = commit

    def totals(self) -> tuple[int, int, dict[str, int]]:
        """(done, failed, failed by error type) over the committed parts."""
        failed_by: dict[str, int] = {}
        for c in self.committed.values():
            for kind, n in c.failed_by.items():
                failed_by[kind] = failed_by.get(kind, 0) + n
        return sum(c.done for c in self.committed.values()), sum(c.failed for c in self.committed.values()), failed_by

    def finalize(self, expected: Mapping[int, Sequence[str]], fhir: bool) -> Path:
        """Merge the parts (checked against their checksums and planned cases) into results.parquet and fhir/*.ndjson."""
        missing = sorted(set(expected) - set(self.committed))
        if missing:
            raise ConfigError(
                f"{len(missing)} part(s) are not committed yet", path=self.folder, where=f"part {missing[0]}"
            )
        schema = result_schema(self.names)
        parts = sorted(expected)

        def merge_parquet(tmp: Path) -> None:
            with pq.ParquetWriter(tmp, schema) as writer:
                for part in parts:
                    table = pq.read_table(self._checked(part, f"{self.part_name(part)}.parquet"))
                    if case_keys(table) != list(expected[part]):
                        raise ConfigError(
                            "part does not hold exactly its planned cases", path=self.folder, where=f"part {part}"
                        )
                    if "sample_id" not in table.column_names:  # a part from before samples: one row per patient
                        table = table.add_column(1, "sample_id", pa.nulls(len(table), pa.string()))
                    writer.write_table(table.cast(schema))

        atomic_write(self.out / RESULTS, merge_parquet)
        if fhir:
            (self.out / "fhir").mkdir(exist_ok=True)
            for kind in FHIR_TYPES:
                atomic_write(
                    self.out / "fhir" / f"{kind}.ndjson",
                    lambda tmp, kind=kind: _concat(
                        tmp, (self._checked(p, f"{self.part_name(p)}.{kind}.ndjson") for p in parts)
                    ),
                )
        return self.out / RESULTS

    def _checked(self, part: int, name: str) -> Path:
        path = self.folder / name
        expected = self.committed[part].files.get(name)
        if expected is None or not path.is_file() or _sha256(path) != expected:
            raise ConfigError("a committed part's file does not match its checksum", path=path, where=f"part {part}")
        return path


def _concat(target: Path, sources: Iterable[Path]) -> None:
    with open(target, "wb") as out:
        for source in sources:
            with open(source, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    out.write(chunk)


def _recorded_run_id(study: Path) -> str | None:
    import yaml

    try:
        data = yaml.safe_load(study.read_text(encoding="utf-8"))
        return str(data["resolved"]["run_id"])
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise ConfigError("study.yaml is unreadable or has no resolved.run_id", path=study) from exc
