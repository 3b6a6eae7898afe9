"""A task's own vital-sign channels (LOINC codes medmm does not know by default) are read from FHIR
Observations and vitals tables, placed on the grid in the task's order, and reach the preprocessed
tensors; without the task they are not vital signs at all. Values are checked against the inputs
written here."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from medmm.io import load_study
from medmm.io.vitals import read_vitals_table
from medmm.tasks import DEFAULT_TASK, load_task, task_from_dict, task_to_dict
from medmm.transforms.study import PreprocessConfig, StudyPreprocessor, channel_reference
from tests.test_model import note_tokenizer

UTC = timezone.utc
STUDY = datetime(2024, 5, 2, 12, 0, tzinfo=UTC)
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
PAIN = {"name": "pain", "display": "Pain severity", "loinc": ["72514-3"], "unit": "{score}", "low": 0, "high": 10}
GLUCOSE = {
    "name": "glucose",
    "display": "Glucose",
    "loinc": ["2339-0", "2345-7"],
    "unit": "mg/dL",
    "low": 10,
    "high": 1500,
}
HEART_RATE = {
    "name": "heart_rate",
    "display": "Heart rate",
    "loinc": ["8867-4"],
    "unit": "/min",
    "low": 20,
    "high": 300,
}


@pytest.fixture(scope="module")
def task():
    data = task_to_dict(load_task(DEFAULT_TASK))
    data.update(name="with-pain", channels=[GLUCOSE, PAIN, HEART_RATE])  # glucose first: the task's order, not medmm's
    return task_from_dict(data, "test")


def observation(i: int, code: str, hours_before: float, value: float, unit: str) -> dict:
    when = STUDY - timedelta(hours=hours_before)
    return {
        "resourceType": "Observation",
        "id": f"o{i}",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": when.isoformat(),
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
    }


@pytest.fixture()
def folder(tmp_path):
    """A patient with pain scores and glucose in FHIR, heart rate and one more pain score in a CSV."""
    entries = [{"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1970-01-01"}]
    rows = [
        ("72514-3", 3.5, 4.0, "{score}"),  # step 44 (the hour 4 h before the study)
        ("72514-3", 3.5, 6.0, "{score}"),  # same step: mean 5
        ("72514-3", 7.0, 30.0, "{score}"),  # implausible (above 10)
        ("2339-0", 1.5, 110.0, "mg/dL"),  # step 46
        ("2345-7", 10.5, 90.0, "mg/dL"),  # step 37, the second code of the channel
        ("2339-0", 20.5, 6.2, "mmol/L"),  # a unit the channel's definition does not give: dropped
    ]
    for i, (code, before, value, unit) in enumerate(rows):
        entries.append(observation(i, code, before, value, unit))
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in entries]}
    (tmp_path / "record.json").write_text(json.dumps(bundle))
    lines = [
        "time,code,value,unit",
        f"{(STUDY - timedelta(hours=2.5)).isoformat()},8867-4,80,/min",
        f"{(STUDY - timedelta(hours=2.4)).isoformat()},pain,2,{{score}}",
    ]
    (tmp_path / "vitals.csv").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_the_tasks_channels_are_read_and_gridded_in_its_order(folder, task):
    study = load_study(folder, study_time=STUDY, window_hours=48.0, step_minutes=60.0, vital_signs=task.channels)
    v = study.vitals
    assert v.channels == ("glucose", "pain", "heart_rate") and v.units == ("mg/dL", "{score}", "/min")
    expected = np.full((48, 3), np.nan)
    expected[48 - 4, 1] = (4.0 + 6.0) / 2  # two pain scores 3.5 h before the study: the hour [-4 h, -3 h)
    expected[48 - 3, 1] = 2.0  # from the CSV, by channel name
    expected[48 - 2, 0] = 110.0
    expected[48 - 11, 0] = 90.0
    expected[48 - 3, 2] = 80.0
    np.testing.assert_array_equal(v.mask, ~np.isnan(expected))
    np.testing.assert_allclose(v.values[v.mask], expected[~np.isnan(expected)])
    reasons = {(d.channel, d.reason.split(":")[0].split(" (")[0]) for d in v.dropped}
    assert ("pain", "implausible") in reasons
    assert any(d.channel == "glucose" and "mmol/L" in d.reason for d in v.dropped)


def test_without_the_task_they_are_not_vital_signs(folder):
    study = load_study(folder, study_time=STUDY, window_hours=48.0, step_minutes=60.0)
    assert "pain" not in study.vitals.channels and "glucose" not in study.vitals.channels
    assert int(study.vitals.mask.sum()) == 1  # the heart rate alone
    skipped = [w for w in study.warnings if "vitals.csv" in w.source and "unknown vital-sign code" in w.message]
    assert len(skipped) == 1  # the CSV's pain row is reported, not silently dropped


def test_a_wide_table_names_a_task_channel_by_loinc_with_its_unit(tmp_path, task):
    path = tmp_path / "wide.csv"
    path.write_text(f"time,72514-3 [{{score}}],2339-0 [mg/dL]\n{STUDY.isoformat()},4,95\n")
    table = read_vitals_table(path, task.channels)
    assert sorted((r.channel, r.value, r.unit) for r in table.readings) == [
        ("glucose", 95.0, "mg/dL"),
        ("pain", 4.0, "{score}"),
    ]
    assert not table.issues


def test_the_preprocessor_reads_the_tasks_channels(folder, task):
    pre = StudyPreprocessor(PreprocessConfig(), note_tokenizer(), task=task)
    study = load_study(folder, study_time=STUDY, **pre.grid_kwargs)
    out = pre(study)
    observed = out["vitals_observed"].numpy()
    assert observed.shape == (48, 3) and observed[44, 1] and observed[46, 0] and observed[45, 2]
    mean, sd = channel_reference(task)["pain"]
    assert float(out["vitals"][44, 1]) == pytest.approx((5.0 - mean) / sd, rel=1e-5)
