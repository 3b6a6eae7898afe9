from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medmm.codes import vital_for_code
from medmm.errors import ConfigError
from medmm.synth import MARKER, SynthConfig, synthesize
from medmm.synth.cohort import MANIFEST_COLUMNS
from tests.synth.conftest import SMALL


def digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.slow
def test_same_seed_gives_identical_bytes_whatever_the_worker_count(cohort, tmp_path):
    again = tmp_path / "again"
    synthesize(again, replace(SMALL, workers=1), progress=False)
    first, second = digests(cohort), digests(again)
    assert first.keys() == second.keys()
    assert first == second
    kinds = {Path(k).suffix for k in first}
    assert {".dcm", ".json", ".csv", ".npz"} <= kinds


def test_different_seed_gives_different_files(cohort, tmp_path):
    other = tmp_path / "other"
    synthesize(other, replace(SMALL, patients=4, seed=12, workers=1), progress=False)
    a, b = digests(cohort), digests(other)
    for name in ("SYN00000/record.json", "SYN00000/truth.json", "manifest.csv"):
        assert a[name] != b[name]
    dcm_a = {k: v for k, v in a.items() if k.startswith("SYN0000") and k.endswith("radiograph.dcm")}
    dcm_b = {k: v for k, v in b.items() if k.endswith("radiograph.dcm")}
    assert dcm_b and not set(dcm_a.values()) & set(dcm_b.values())


def test_manifest_follows_the_layout(cohort, manifest):
    assert tuple(manifest.columns) == MANIFEST_COLUMNS
    assert len(manifest) == SMALL.patients and manifest.patient_id.is_unique
    assert manifest.split.value_counts().to_dict() == {"train": 17, "val": 4, "test": 3}
    for row in manifest.itertuples():
        folder = cohort / row.folder
        truth = json.loads((folder / "truth.json").read_text())
        assert truth["patient_id"] == row.patient_id and truth["split"] == row.split
        assert truth["study_time"] == row.study_time and row.study_time.endswith("+00:00")
        assert ";".join(truth["labels"]) == row.labels
        assert truth["demographics"]["sex"] == row.sex and str(truth["demographics"]["age_years"]) == row.age_years
        assert (row.race, row.ethnicity) == (truth["demographics"]["race"], truth["demographics"]["ethnicity"])
        has_image = any(folder.glob("images/*.dcm"))
        assert row.has_image == str(int(has_image)) == str(int(truth["modalities"]["image"]))
        has_vitals = (folder / "vitals.csv").exists() or (truth["vitals"] or {}).get("source") == "fhir"
        assert row.has_vitals == str(int(has_vitals))
        assert row.has_notes == str(int(bool(truth["notes"])))
        assert (row.has_image, row.has_notes, row.has_vitals) != ("0", "0", "0")


def test_marker_records_the_config(cohort):
    marker = json.loads((cohort / MARKER).read_text())
    assert marker["generator"] == "medmm synth"
    assert marker["config"] == json.loads(json.dumps(SMALL.to_json()))


def test_truth_masks_load_without_pickle_and_match_the_truth_boxes(cohort, manifest):
    checked = 0
    for pid in manifest.patient_id:
        truth = json.loads((cohort / pid / "truth.json").read_text())
        for d, ev in truth["evidence"].items():
            if not ev["image"]:
                continue
            with np.load(cohort / pid / ev["image"]["mask_file"], allow_pickle=False) as z:
                mask, lungs = z[ev["image"]["mask_key"]], z["lungs"]
            rows, cols = np.nonzero(mask)
            box = ev["image"]["bbox"]
            assert (rows.min(), cols.min(), rows.max(), cols.max()) == (
                box["row_min"],
                box["col_min"],
                box["row_max"],
                box["col_max"],
            )
            if d != "heart_failure":
                assert not (mask & ~lungs).any()
            checked += 1
    assert checked > 0


def test_vitals_windows_and_note_spans_in_the_written_files(cohort, manifest):
    spans_checked = 0
    for pid in manifest.patient_id:
        folder = cohort / pid
        truth = json.loads((folder / "truth.json").read_text())
        bundle = json.loads((folder / "record.json").read_text())
        by_ref = {f"{e['resource']['resourceType']}/{e['resource']['id']}": e["resource"] for e in bundle["entry"]}
        texts = []
        for note in truth["notes"]:
            res = by_ref[note["reference"]]
            att = (
                res["presentedForm"][0]
                if res["resourceType"] == "DiagnosticReport"
                else res["content"][0]["attachment"]
            )
            texts.append(base64.b64decode(att["data"]).decode("utf-8"))
        spans = [s for ev in truth["evidence"].values() if ev["notes"] for s in ev["notes"]["spans"]]
        for s in spans + truth["distractors"]["notes"]:
            assert texts[s["note"]][s["start"] : s["end"]] == s["text"]
            spans_checked += 1
        for ev in truth["evidence"].values():
            if ev["vitals"]:
                assert 0 <= ev["vitals"]["start_hour"] < ev["vitals"]["end_hour"] <= 48
    assert spans_checked > 0


def test_refuses_a_foreign_non_empty_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("not ours")
    with pytest.raises(ConfigError) as err:
        synthesize(tmp_path, SynthConfig(patients=1, image_size=32, workers=1), progress=False)
    assert MARKER in str(err.value) and (tmp_path / "keep.txt").read_text() == "not ours"
    file_path = tmp_path / "keep.txt"
    with pytest.raises(ConfigError):
        synthesize(file_path, SynthConfig(patients=1, image_size=32, workers=1), progress=False)


def test_replaces_a_previous_synthetic_cohort(tmp_path):
    root = tmp_path / "c"
    synthesize(root, SynthConfig(patients=3, image_size=32, seed=1, workers=1), progress=False)
    (root / "notes-of-mine.txt").write_text("kept")
    summary = synthesize(root, SynthConfig(patients=2, image_size=32, seed=2, workers=1), progress=False)
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["SYN00000", "SYN00001"]
    assert (root / "notes-of-mine.txt").read_text() == "kept"
    assert len(pd.read_csv(root / "manifest.csv")) == 2 == summary.patients


def test_summary_counts_match_the_manifest(cohort_run, manifest):
    root, summary = cohort_run
    labels = [set(filter(None, x.split(";"))) for x in manifest.labels]
    for d, n in summary.per_diagnosis.items():
        assert n == sum(d in s for s in labels)
    assert summary.normal == sum(not s for s in labels)
    assert summary.per_modality["image"] == (manifest.has_image == "1").sum()
    assert summary.per_split == manifest.split.value_counts().reindex(["train", "val", "test"]).to_dict()
    written = sum(1 for p in root.rglob("*") if p.is_file())
    assert summary.files_written == written
    assert "patients: 24" in str(summary)


def test_every_vitals_csv_parses_and_stays_in_plausible_ranges(cohort):
    files = sorted(cohort.glob("*/vitals.csv"))
    assert files
    for path in files:
        df = pd.read_csv(path, dtype={"code": str})
        assert list(df.columns) == ["time", "code", "value", "unit"]
        assert pd.to_datetime(df.time).dt.tz is not None
        for code, value, unit in zip(df.code, df.value, df.unit):
            vital = vital_for_code(code)
            assert vital is not None and unit == vital.unit and vital.low <= value <= vital.high
