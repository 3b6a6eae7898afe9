"""End-to-end local studies: outputs checked against the Predictor run directly, resume, failures, evaluation feed."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from medmm.batch.plan import CohortFilter, Outputs, RunOptions, StudyProtocol
from medmm.batch.results import load_results, split_scores
from medmm.batch.run import run_batch
from medmm.errors import ConfigError
from medmm.io.cohort import Cohort
from medmm.io.study import load_study
from medmm.predict import Predictor
from medmm.trail import AuditStore
from tests.batch.helpers import sub_cohort


def _manifest(root) -> pd.DataFrame:
    return pd.read_csv(root / "manifest.csv", dtype=str, keep_default_na=False)


def test_results_equal_the_predictor_run_directly_on_the_same_batches(finished_study, tiny_checkpoint, small_cohort):
    out, summary = finished_study
    results = load_results(out)
    m = _manifest(small_cohort)
    assert results["patient_id"].tolist() == m["patient_id"].tolist()
    assert (summary.cases, summary.done, summary.failed, summary.processed) == (16, 16, 0, 16)
    predictor = Predictor.from_checkpoint(tiny_checkpoint)
    pre = predictor.model.config.preprocess
    cohort = Cohort.open(small_cohort)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the study ran (protocol run.torch_threads)
    try:
        expected = []
        for start in range(0, len(cohort), 4):  # the protocol's batch_size
            studies = [
                load_study(
                    e.folder,
                    study_time=e.study_time,
                    patient_id=e.patient_id,
                    window_hours=pre.window_hours,
                    step_minutes=pre.step_minutes,
                )
                for e in cohort.entries[start : start + 4]
            ]
            expected += predictor.predict_many(studies, impression=False)
    finally:
        torch.set_num_threads(threads)
    names = predictor.model.config.diagnoses
    got = results[[f"prob_{n}" for n in names]].to_numpy()
    want = np.array([[p.probability(n) for n in names] for p in expected])
    assert np.array_equal(got, want)
    assert results["model_id"].unique().tolist() == [predictor.model_id]
    assert [list(x) for x in results["present"]] == [list(p.present) for p in expected]
    assert results["impression"].map(lambda s: isinstance(s, str)).all()
    assert (results["seconds_predict"] > 0).all() and results["predicted_at"].notna().all()


def test_labels_inputs_and_study_file_are_recorded(finished_study, small_cohort, tiny_checkpoint):
    out, summary = finished_study
    results = load_results(out)
    m = _manifest(small_cohort).set_index("patient_id")
    for _, row in results.iterrows():
        truth = {x for x in m.loc[row["patient_id"], "labels"].split(";") if x}
        assert {
            n
            for n in ("pneumonia", "heart_failure", "pleural_effusion", "pneumothorax", "sepsis")
            if row[f"label_{n}"] == 1
        } == truth
        for item in row["inputs"]:
            path = small_cohort / row["patient_id"] / item["path"]
            assert (
                hashlib.sha256(path.read_bytes()).hexdigest() == item["sha256"] and item["size"] == path.stat().st_size
            )
    study = yaml.safe_load((out / "study.yaml").read_text())
    assert study["resolved"]["run_id"] == summary.run_id and study["resolved"]["cases"] == 16
    assert (
        study["resolved"]["model_checksum"]
        == hashlib.sha256((tiny_checkpoint / "checksums.json").read_bytes()).hexdigest()
    )
    assert (
        study["run"] == {"batch_size": 4, "part_size": 8, "torch_threads": 1}
        and study["outputs"]["max_new_tokens"] == 3
    )
    assert json.loads((out / "summary.json").read_text())["done"] == 16


def test_the_batch_writes_one_audit_record_per_prediction(finished_study):
    out, summary = finished_study
    events = AuditStore(out / "audit.sqlite").events(run_id=summary.run_id)
    assert len(events) == summary.done
    results = load_results(out)
    by_hash = {}
    store = AuditStore(out / "audit.sqlite")
    for _, row in results.iterrows():
        by_hash[store.subject_hash(row["patient_id"])] = sorted(i["sha256"] for i in row["inputs"])
    assert {e.subject_hash for e in events} == set(by_hash)
    for e in events:
        assert (e.source, e.action, e.user) == ("batch", "predict", "research-operator")
        assert sorted(d.sha256 for d in e.inputs) == by_hash[e.subject_hash]


def test_the_same_command_again_computes_nothing_and_keeps_the_results(
    finished_study, tiny_checkpoint, small_cohort, study_protocol
):
    out, first = finished_study
    before = (out / "results.parquet").read_bytes()
    again = run_batch(tiny_checkpoint, small_cohort, out, protocol=study_protocol, progress=False)
    assert (again.processed, again.resumed, again.done, again.run_id) == (0, 16, 16, first.run_id)
    assert pd.read_parquet(out / "results.parquet").equals(pd.read_parquet(pd.io.common.BytesIO(before)))
    assert len(AuditStore(out / "audit.sqlite").events()) == 16


def test_a_changed_protocol_cannot_resume_into_the_same_folder(
    finished_study, tiny_checkpoint, small_cohort, study_protocol
):
    out, _ = finished_study
    changed = StudyProtocol(name=study_protocol.name, outputs=Outputs(max_new_tokens=4), run=study_protocol.run)
    with pytest.raises(ConfigError, match="another study"):
        run_batch(tiny_checkpoint, small_cohort, out, protocol=changed, progress=False)


def test_a_study_reruns_from_its_saved_study_file(finished_study, tmp_path):
    out, first = finished_study
    again = run_batch(None, None, tmp_path / "rerun", protocol=out / "study.yaml", progress=False)
    assert again.run_id == first.run_id
    a, b = load_results(out), load_results(tmp_path / "rerun")
    columns = [c for c in a.columns if c.startswith("prob_")] + ["patient_id", "impression"]
    assert a[columns].equals(b[columns])


def test_results_feed_evaluation_as_split_scores(finished_study, small_cohort):
    out, _ = finished_study
    results = load_results(out)
    scores = split_scores(out, "train")
    train = results[results["split"] == "train"]
    assert list(scores.patient_ids) == train["patient_id"].tolist()
    names = scores.names
    assert np.allclose(scores.probabilities(), train[[f"prob_{n}" for n in names]].to_numpy(), atol=1e-9)
    assert np.array_equal(scores.labels, train[[f"label_{n}" for n in names]].to_numpy())
    m = _manifest(small_cohort).set_index("patient_id")
    assert scores.attributes["sex"].tolist() == [m.loc[p, "sex"] for p in scores.patient_ids]


def _single_dicom_patients(root) -> list[str]:
    m = _manifest(root)
    return [p for p in m["patient_id"] if len(list((root / p).rglob("*.dcm"))) == 1]


def test_a_case_with_a_corrupt_file_fails_with_its_error_and_the_study_completes(
    tiny_checkpoint, small_cohort, study_protocol, tmp_path
):
    chosen = _single_dicom_patients(small_cohort)[:3]
    others = [p for p in _manifest(small_cohort)["patient_id"] if p not in chosen][:5]
    root = sub_cohort(small_cohort, tmp_path / "cohort", chosen + others)
    bad_dicom, bad_fhir, gone = chosen
    dcm = next((root / bad_dicom).rglob("*.dcm"))
    dcm.write_bytes(dcm.read_bytes()[:300])
    (root / bad_fhir / "record.json").write_text('{"resourceType": "Bundle", "entry": [')
    shutil.rmtree(root / gone)
    summary = run_batch(tiny_checkpoint, root, tmp_path / "out", protocol=study_protocol, progress=False)
    assert (summary.cases, summary.done, summary.failed) == (8, 5, 3)
    assert dict(summary.failed_by_type) == {"DicomError": 1, "FhirError": 1, "CohortError": 1}
    results = load_results(tmp_path / "out").set_index("patient_id")
    assert len(results) == 8
    assert (
        results.loc[bad_dicom, "error_type"] == "DicomError"
        and "no usable DICOM object" in results.loc[bad_dicom, "error_message"]
    )
    assert (
        results.loc[bad_fhir, "error_type"] == "FhirError" and "record.json" in results.loc[bad_fhir, "error_message"]
    )
    assert results.loc[gone, "error_type"] == "CohortError" and "does not exist" in results.loc[gone, "error_message"]
    assert results.loc[bad_dicom, ["prob_pneumonia", "impression"]].isna().all()
    assert (results.loc[others, "status"] == "done").all()
    assert len(AuditStore(tmp_path / "out" / "audit.sqlite").events()) == 5

    lenient = StudyProtocol(outputs=Outputs(max_new_tokens=3, inputs="lenient"), run=study_protocol.run)
    relaxed = run_batch(tiny_checkpoint, root, tmp_path / "lenient", protocol=lenient, progress=False)
    assert dict(relaxed.failed_by_type) == {"CohortError": 1}
    row = load_results(tmp_path / "lenient").set_index("patient_id").loc[bad_dicom]
    assert "image" not in row["present"] and any("DicomError" in w for w in row["warnings"])


def test_required_modalities_exclude_by_manifest_and_fail_when_unreadable(tiny_checkpoint, small_cohort, tmp_path):
    m = _manifest(small_cohort)
    with_image = m[m["has_image"] == "1"]["patient_id"].tolist()
    single = [p for p in _single_dicom_patients(small_cohort) if p in with_image][:1]
    root = sub_cohort(small_cohort, tmp_path / "cohort", m["patient_id"].tolist()[:8] + single)
    for p in single:
        dcm = next((root / p).rglob("*.dcm"))
        dcm.write_bytes(b"\x00" * 200)
    protocol = StudyProtocol(
        filter=CohortFilter(require=("image",)),
        outputs=Outputs(impression=False, inputs="lenient"),
        run=RunOptions(4, 8),
    )
    summary = run_batch(tiny_checkpoint, root, tmp_path / "out", protocol=protocol, progress=False)
    sub = _manifest(root)
    assert summary.cases == int((sub["has_image"] == "1").sum()) and summary.excluded == int(
        (sub["has_image"] != "1").sum()
    )
    results = load_results(tmp_path / "out").set_index("patient_id")
    assert (
        results.loc[single[0], "error_type"] == "InputError"
        and "required modality image" in results.loc[single[0], "error_message"]
    )
    assert results["impression"].dropna().eq("").all()  # impressions off


def test_bad_arguments_are_config_errors(tiny_checkpoint, small_cohort, tmp_path):
    with pytest.raises(ConfigError, match="unknown engine"):
        run_batch(tiny_checkpoint, small_cohort, tmp_path / "o", engine="spark", progress=False)
    with pytest.raises(ConfigError, match="positive"):
        run_batch(tiny_checkpoint, small_cohort, tmp_path / "o", workers=0, progress=False)
    with pytest.raises(ConfigError, match="model_id"):
        run_batch(
            tiny_checkpoint, small_cohort, tmp_path / "o", protocol=StudyProtocol(model_id="0" * 16), progress=False
        )
    assert not os.path.exists(tmp_path / "o")


def test_explanation_views_are_written_per_case_when_asked(tiny_checkpoint, small_cohort, tmp_path):
    m = _manifest(small_cohort)
    chosen = m[(m["has_image"] == "1") & (m["has_notes"] == "1")]["patient_id"].tolist()[:2]
    protocol = StudyProtocol(
        filter=CohortFilter(patients=tuple(chosen)),
        outputs=Outputs(impression=False, explanations=True),
        run=RunOptions(2, 2),
    )
    run_batch(tiny_checkpoint, small_cohort, tmp_path / "out", protocol=protocol, progress=False)
    results = load_results(tmp_path / "out")
    assert results["explanation"].tolist() == [f"explanations/{p}" for p in chosen]
    for _, row in results.iterrows():
        top = max((n for n in row.index if n.startswith("prob_")), key=lambda n: row[n]).removeprefix("prob_")
        views = sorted(p.name for p in (tmp_path / "out" / row["explanation"] / top).iterdir())
        assert any(v.endswith("-image.png") for v in views) and any(v.endswith("-notes.html") for v in views)
