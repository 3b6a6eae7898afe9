"""`synthesize`: write a whole synthetic cohort (patient folders, manifest.csv, marker) in parallel."""

from __future__ import annotations

import csv
import json
import multiprocessing
import re
import shutil
import time
from pathlib import Path
from typing import Iterator

from tqdm import tqdm

import medmm
from medmm.errors import ConfigError
from medmm.synth.config import SynthConfig, SynthSummary
from medmm.synth.diagnoses import DIAGNOSIS_NAMES
from medmm.synth.patient import PatientResult, write_patient
from medmm.synth.plan import assign_splits

MARKER = ".medmm-synth.json"
MANIFEST = "manifest.csv"
MANIFEST_COLUMNS = (
    "patient_id",
    "folder",
    "split",
    "study_time",
    "sex",
    "age_years",
    "race",
    "ethnicity",
    "labels",
    "has_image",
    "has_notes",
    "has_vitals",
)
_PATIENT_FOLDER = re.compile(r"^SYN\d{5,}$")
_worker_config: SynthConfig | None = None
_worker_root: Path | None = None


def _prepare(out: Path) -> None:
    """Make `out` ready: create it, or clear a previous synthetic cohort; refuse anything else."""
    if out.exists() and not out.is_dir():
        raise ConfigError("output path exists and is not a folder", path=out)
    if not out.exists():
        out.mkdir(parents=True)
        return
    children = list(out.iterdir())
    if not children:
        return
    if not (out / MARKER).is_file():
        raise ConfigError(
            f"folder is not empty and holds no previous synthetic cohort (no {MARKER}); choose an empty folder",
            path=out,
        )
    for child in children:  # only what a previous run wrote; anything else stays
        if child.is_dir() and _PATIENT_FOLDER.match(child.name):
            shutil.rmtree(child)
        elif child.name in (MANIFEST, MARKER):
            child.unlink()


def _init_worker(config: SynthConfig, root: Path) -> None:
    global _worker_config, _worker_root
    _worker_config, _worker_root = config, root


def _run(task: tuple[int, str]) -> PatientResult:
    assert _worker_config is not None and _worker_root is not None
    return write_patient(_worker_root, _worker_config, *task)


def _results(root: Path, config: SynthConfig, tasks: list[tuple[int, str]], progress: bool) -> Iterator[PatientResult]:
    bar = tqdm(total=len(tasks), desc="synth", unit="patient", disable=not progress, leave=False)
    workers = min(config.workers, len(tasks))
    try:
        if workers <= 1:
            for task in tasks:
                yield write_patient(root, config, *task)
                bar.update()
            return
        chunk = max(1, min(16, len(tasks) // (workers * 8)))
        # spawn: workers start clean whatever threads the calling process holds
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(workers, initializer=_init_worker, initargs=(config, root)) as pool:
            for result in pool.imap_unordered(_run, tasks, chunksize=chunk):
                yield result
                bar.update()
    finally:
        bar.close()


def _write_manifest(path: Path, rows: list[PatientResult]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(MANIFEST_COLUMNS)
        for r in rows:
            writer.writerow(
                [
                    r.patient_id,
                    r.patient_id,
                    r.split,
                    r.study_time,
                    r.sex,
                    r.age_years,
                    r.race,
                    r.ethnicity,
                    ";".join(r.labels),
                    int(r.has_image),
                    int(r.has_notes),
                    int(r.has_vitals),
                ]
            )


def synthesize(out: str | Path, config: SynthConfig, *, progress: bool = True) -> SynthSummary:
    """Write a synthetic cohort of `config.patients` patients into `out` (same seed: same bytes).

    `out` must be empty, missing, or hold a previous synthetic cohort (which is replaced);
    anything else raises ConfigError.
    """
    root = Path(out)
    _prepare(root)
    start = time.perf_counter()
    marker = {"generator": "medmm synth", "version": medmm.__version__, "config": config.to_json()}
    (root / MARKER).write_text(json.dumps(marker, indent=1) + "\n", encoding="utf-8")
    splits = assign_splits(config)
    tasks = [(i, splits[i]) for i in range(config.patients)]
    rows = sorted(_results(root, config, tasks, progress), key=lambda r: r.index)
    _write_manifest(root / MANIFEST, rows)
    per_modality = {
        "image": sum(r.has_image for r in rows),
        "notes": sum(r.has_notes for r in rows),
        "vitals": sum(r.has_vitals for r in rows),
        "ct": sum(r.has_ct for r in rows),
    }
    return SynthSummary(
        out=root,
        patients=len(rows),
        per_diagnosis={d: sum(d in r.labels for r in rows) for d in DIAGNOSIS_NAMES},
        per_modality=per_modality,
        per_split={s: sum(r.split == s for r in rows) for s in ("train", "val", "test")},
        normal=sum(not r.labels for r in rows),
        files_written=sum(r.files_written for r in rows) + 2,
        seconds=round(time.perf_counter() - start, 3),
    )
