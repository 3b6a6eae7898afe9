"""The result store: atomic parts, the commit journal (torn lines, uncommitted parts), study identity, merging."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pyarrow.parquet as pq
import pytest

from medmm.batch.cases import CaseInput, CaseResult
from medmm.batch.store import TIMING_COLUMNS, ResultStore, result_row
from medmm.errors import ConfigError
from medmm.records import Claim, DiagnosisScore, InputUse, Prediction

NAMES = ("pneumonia", "sepsis")
T0 = datetime(2024, 3, 1, 8, 30, tzinfo=timezone.utc)


def _prediction(pid: str, p_pneumonia: float, p_sepsis: float) -> Prediction:
    scores = sorted(
        [
            DiagnosisScore("pneumonia", "Pneumonia", p_pneumonia, p_pneumonia >= 0.5),
            DiagnosisScore("sepsis", "Sepsis", p_sepsis, p_sepsis >= 0.5),
        ],
        key=lambda s: -s.probability,
    )
    return Prediction(
        study_id=pid,
        scores=tuple(scores),
        conformal_set=tuple(s.name for s in scores if s.in_set),
        coverage_target=0.9,
        impression="sepsis (tachycardia).",
        present=("image", "notes"),
        missing=("vitals",),
        model_id="abc123",
        model_version="0.1.0",
        calibrated=True,
        seconds=0.25,
        warnings=("vitals: none in the window",),
        inputs=(
            InputUse("image", "images/a.dcm (series 1.2)", True, "DX CHEST PA"),
            InputUse("notes", "DocumentReference/x", False, "no text"),
        ),
        study_time=T0,
        time_source="cohort manifest",
        claims=(
            Claim(
                "tachycardia",
                "vitals",
                "sepsis",
                "supported",
                "max heart rate 118 /min at 2024-03-01 07:00 UTC (tachycardia: > 100 /min)",
            ),
        ),
        removed_claims=(
            Claim("rigors", "notes", "sepsis", "contradicted", 'the notes say otherwise: "No rigors." (progress note)'),
        ),
    )


def _done(pid: str, batch: int, p1: float = 0.1 + 1e-13, p2: float = 0.7) -> CaseResult:
    return CaseResult(
        patient_id=pid,
        batch=batch,
        status="done",
        split="test",
        study_time=T0,
        labels=("sepsis",),
        prediction=_prediction(pid, p1, p2),
        error_type=None,
        error_message=None,
        inputs=(CaseInput("images/a.dcm", "dicom", "ab" * 32, 1234),),
        load_seconds=0.5,
        predicted_at=T0,
    )


def _failed(pid: str, batch: int) -> CaseResult:
    return CaseResult(
        patient_id=pid,
        batch=batch,
        status="failed",
        split="val",
        study_time=None,
        labels=None,
        prediction=None,
        error_type="DicomError",
        error_message="x/images/a.dcm: no usable DICOM object",
        inputs=(),
        load_seconds=0.1,
        predicted_at=T0,
    )


def _open(out, run_id="run1"):
    """Open a store and release its lock at once (these tests reopen the same folder)."""
    store = ResultStore.open(
        out,
        run_id=run_id,
        study_yaml=f"resolved:\n  run_id: {run_id}\n",
        names=NAMES,
        model_id="abc123",
        model_version="0.1.0",
    )
    store.close()
    return store


def test_case_result_json_round_trip_is_exact():
    for result in (_done("P1", 0, p1=0.1 + 2**-40), _failed("P2", 1)):
        assert CaseResult.from_json(result.to_json()) == result
    back = CaseResult.from_json(_done("P3", 0).to_json()).prediction
    assert isinstance(back.claims[0], Claim) and back.removed_claims[0].verdict == "contradicted"


def test_result_row_orders_probabilities_by_name_and_one_hot_labels():
    row = result_row(_done("P1", 0, p1=0.2, p2=0.9), NAMES, "abc123", "0.1.0")
    assert row["prob_pneumonia"] == 0.2 and row["prob_sepsis"] == 0.9
    assert row["label_pneumonia"] == 0 and row["label_sepsis"] == 1 and row["labels_known"] is True
    assert row["conformal_set"] == ["sepsis"] and row["seconds_predict"] == 0.25
    assert row["used"] == ["image images/a.dcm (series 1.2): DX CHEST PA"] and row["not_used"] == [
        "notes DocumentReference/x: no text"
    ]
    assert row["answered"] is True and row["refusal"] is None and row["time_source"] == "cohort manifest"
    assert row["impression"] == "sepsis (tachycardia)."
    assert row["claims"] == [
        "tachycardia (vitals, sepsis): supported: max heart rate 118 /min at 2024-03-01 07:00 UTC (tachycardia: > 100 /min)"
    ]
    assert row["removed_claims"] == [
        'rigors (notes, sepsis): contradicted: the notes say otherwise: "No rigors." (progress note)'
    ]
    failed = result_row(_failed("P2", 1), NAMES, "abc123", "0.1.0")
    assert failed["prob_sepsis"] is None and failed["label_sepsis"] is None and failed["model_id"] == "abc123"
    assert set(TIMING_COLUMNS) <= set(row)


def test_parts_commit_and_merge_in_plan_order(tmp_path):
    store = _open(tmp_path / "out")
    second = [_done("P3", 1), _failed("P4", 1)]
    first = [_done("P1", 0, p1=0.3), _done("P2", 0, p1=0.4)]
    fhir = {"RiskAssessment": ['{"a": 1}'], "DiagnosticReport": [], "Provenance": ['{"b": 2}']}
    store.commit(store.write_part(1, second, fhir))
    store.commit(store.write_part(0, first, fhir))
    assert store.totals() == (3, 1, {"DicomError": 1})
    path = store.finalize({0: ["P1", "P2"], 1: ["P3", "P4"]}, fhir=True)
    table = pq.read_table(path).to_pandas()
    assert table["patient_id"].tolist() == ["P1", "P2", "P3", "P4"]
    assert table["prob_pneumonia"].tolist()[:3] == [0.3, 0.4, 0.1 + 1e-13]
    assert table["status"].tolist() == ["done", "done", "done", "failed"]
    assert (tmp_path / "out" / "fhir" / "RiskAssessment.ndjson").read_text() == '{"a": 1}\n{"a": 1}\n'
    assert (tmp_path / "out" / "fhir" / "DiagnosticReport.ndjson").read_text() == ""


def test_reopening_sees_only_committed_parts_and_cuts_a_torn_journal_line(tmp_path):
    out = tmp_path / "out"
    store = _open(out)
    store.commit(store.write_part(0, [_done("P1", 0)], {}))
    store.write_part(1, [_done("P2", 1)], {})  # written, never committed (a kill before the journal line)
    journal = out / "store" / "commits.jsonl"
    whole = journal.read_bytes()
    journal.write_bytes(whole + b'{"part": 2, "rows": 1, "do')  # a kill in the middle of an append
    (out / "store" / "part-000003.parquet.tmp-999").write_bytes(b"half")
    reopened = _open(out)
    assert sorted(reopened.committed) == [0]
    assert journal.read_bytes() == whole
    assert not (out / "store" / "part-000003.parquet.tmp-999").exists()
    reopened.commit(reopened.write_part(1, [_done("P2", 1, p1=0.6)], {}))
    again = _open(out)
    assert sorted(again.committed) == [0, 1]
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    assert [line["part"] for line in lines] == [0, 1]


def test_a_corrupt_journal_line_before_the_last_is_refused(tmp_path):
    out = tmp_path / "out"
    store = _open(out)
    store.commit(store.write_part(0, [_done("P1", 0)], {}))
    journal = out / "store" / "commits.jsonl"
    journal.write_bytes(b"garbage\n" + journal.read_bytes())
    with pytest.raises(ConfigError, match="corrupt"):
        _open(out)


def test_another_study_or_a_foreign_folder_is_refused(tmp_path):
    _open(tmp_path / "out", "run1")
    with pytest.raises(ConfigError, match="another study") as info:
        _open(tmp_path / "out", "run2")
    assert info.value.where == "resolved.run_id"
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        _open(foreign)


def test_merging_checks_checksums_and_planned_cases(tmp_path):
    store = _open(tmp_path / "out")
    store.commit(store.write_part(0, [_done("P1", 0), _done("P2", 0)], {}))
    with pytest.raises(ConfigError, match="planned cases"):
        store.finalize({0: ["P2", "P1"]}, fhir=False)
    with pytest.raises(ConfigError, match="not committed"):
        store.finalize({0: ["P1", "P2"], 1: ["P3"]}, fhir=False)
    part = tmp_path / "out" / "store" / "part-000000.parquet"
    part.write_bytes(part.read_bytes()[:-8] + b"tampered")
    with pytest.raises(ConfigError, match="checksum"):
        store.finalize({0: ["P1", "P2"]}, fhir=False)


def test_a_second_run_cannot_write_while_the_first_holds_the_store(tmp_path):
    def hold():
        return ResultStore.open(
            tmp_path / "out",
            run_id="r",
            study_yaml="resolved:\n  run_id: r\n",
            names=NAMES,
            model_id="m",
            model_version="v",
        )

    first = hold()
    with pytest.raises(ConfigError, match="another run"):
        hold()
    first.close()
    hold().close()
