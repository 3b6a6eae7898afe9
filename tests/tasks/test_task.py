"""Tasks: shipped YAML files, value-set matching, horizons, and errors naming file and field."""

from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from medmm.codes import ICD10, SNOMED, VITAL_SIGNS
from medmm.errors import ConfigError
from medmm.synth.diagnoses import DIAGNOSES, diagnosis_for_code
from medmm.tasks import Horizon, LabelSpec, load_task, shipped_tasks, task_from_dict, task_to_dict
from medmm.tasks.task import age_band_label

UTC = timezone.utc


def test_shipped_tasks_load_by_short_name_and_by_path():
    assert set(shipped_tasks()) >= {"synthetic-cxr", "acute-respiratory-infection"}
    by_name = load_task("synthetic-cxr")
    by_path = load_task(Path(by_name.source))
    assert by_name == by_path


def test_synthetic_cxr_matches_the_existing_vocabulary():
    task = load_task("synthetic-cxr")
    assert task.label_names == tuple(d.name for d in DIAGNOSES)
    assert [s.snomed for s in task.labels] == [(d.snomed,) for d in DIAGNOSES]
    assert task.channels == VITAL_SIGNS  # the seven channels, codes, units and ranges exactly
    assert (task.vitals.hours, task.vitals.step_minutes, task.vitals.per_encounter) == (48.0, 60.0, False)
    assert (task.index.kind, task.index.column) == ("manifest_column", "study_time")
    # Every code the existing mapping knows lands on the same label, and unrelated codes on none.
    codes = [(SNOMED, d.snomed) for d in DIAGNOSES] + [(ICD10, d.icd10) for d in DIAGNOSES]
    codes += [(ICD10, "J18.1"), (ICD10, "I50.22"), (ICD10, "J45.909"), (SNOMED, "10509002")]
    for system, code in codes:
        expected = diagnosis_for_code(system, code)
        found = [spec.name for spec in task.labels if spec.matches(system, code)]
        assert found == ([expected.name] if expected else []), (system, code)
    # Beyond the existing mapping: ICD codes written without the dot match their category too.
    assert [spec.name for spec in task.labels if spec.matches(ICD10, "J181")] == ["pneumonia"]


def test_acute_respiratory_infection_task():
    task = load_task("acute-respiratory-infection")
    assert (task.index.kind, task.index.classes) == ("encounter", ("AMB", "EMER"))
    assert task.vitals.per_encounter and task.vitals.days == 365 and task.notes.days == 365
    snomed = {spec.name: spec.snomed for spec in task.labels}
    assert snomed == {
        "acute_bronchitis": ("10509002",),
        "pneumonia": ("233604007",),
        "viral_sinusitis": ("444814009",),
        "acute_viral_pharyngitis": ("195662009",),
    }
    assert task.audit_attributes == ("sex", "age_band", "race", "ethnicity")


def test_icd_category_matches_children_with_and_without_dot():
    spec = LabelSpec("pneumonia", "Pneumonia", icd10=("J18",))
    assert spec.matches(ICD10, "J18") and spec.matches(ICD10, "J18.9") and spec.matches(ICD10, "j189")
    assert not spec.matches(ICD10, "J17.0") and not spec.matches(ICD10, "J1")
    assert not spec.matches(SNOMED, "J18.9")  # an ICD code under another system does not count
    exact = LabelSpec("p", "P", icd10=("J18.9",))
    assert exact.matches(ICD10, "J189") and not exact.matches(ICD10, "J18.1")


def test_horizon_bounds_and_calendar_days():
    index = datetime(2020, 3, 10, 23, 0, tzinfo=UTC)
    same_day = Horizon(before_days=0, after_days=0, calendar_days=True)
    assert same_day.holds(datetime(2020, 3, 10, 0, 5, tzinfo=UTC), index)
    assert not same_day.holds(datetime(2020, 3, 11, 0, 5, tzinfo=UTC), index)
    window = Horizon(before_days=1, after_days=0)
    assert window.holds(datetime(2020, 3, 9, 23, 0, tzinfo=UTC), index)
    assert not window.holds(datetime(2020, 3, 9, 22, 59, tzinfo=UTC), index)
    assert not window.holds(datetime(2020, 3, 10, 23, 1, tzinfo=UTC), index)
    assert Horizon().holds(datetime(1900, 1, 1, tzinfo=UTC), index)


def test_age_bands():
    task = load_task("synthetic-cxr")
    assert [task.age_band(a) for a in (0, 17.9, 18, 39.99, 40, 64.5, 65, 79.5, 80, 101, None)] == [
        "0-17",
        "0-17",
        "18-39",
        "18-39",
        "40-64",
        "40-64",
        "65-79",
        "65-79",
        "80+",
        "80+",
        None,
    ]


@pytest.mark.parametrize("age", [None, float("nan"), float("inf"), -3, "n/a", ""])
def test_an_unknown_or_impossible_age_has_no_band(age):
    assert age_band_label(age, (18, 40)) is None


def test_age_bands_of_a_task():
    assert [age_band_label(a, (50.0, 70.0)) for a in (0, 49.9, 50, "69.5", 70)] == [
        "0-49",
        "0-49",
        "50-69",
        "50-69",
        "70+",
    ]


def _write(tmp_path, data) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def _valid() -> dict:
    return yaml.safe_load(Path(load_task("acute-respiratory-infection").source).read_text())


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda d: d["index"].update(kind="visit"), "index.kind"),
        (lambda d: d["labels"][1].update(icd10=["18"]), "labels[1].icd10[0]"),
        (lambda d: d["labels"][2].update(snomed=["sinusitis"]), "labels[2].snomed[0]"),
        (lambda d: d["labels"][0].pop("name"), "labels[0].name"),
        (lambda d: d["labels"].append(dict(d["labels"][0])), "labels"),
        (lambda d: d["vitals"].update(hours=48), "vitals"),
        (lambda d: d.update(vitals={"hours": 48, "step_minutes": 7}), "vitals.step_minutes"),
        (lambda d: d.update(vitals={"hours": "two days", "step_minutes": 60}), "vitals.hours"),
        (lambda d: d.update(notes={"days": -3}), "notes.days"),
        (lambda d: d.update(horizon={"before_days": 0, "after": 1}), "horizon"),
        (lambda d: d.update(inactive_conditions="sometimes"), "inactive_conditions"),
        (lambda d: d.update(audit_attributes=["sex", "income"]), "audit_attributes[1]"),
        (
            lambda d: d.update(channels=[{"name": "hr", "loinc": ["8867-4"], "unit": "bpm", "low": 1, "high": 2}]),
            "channels[0].unit",
        ),
        (
            lambda d: d.update(
                channels=[{"name": "hr", "loinc": ["8867-4"], "unit": "beats per min", "low": 1, "high": 2}]
            ),
            "channels[0].unit",
        ),
        (
            lambda d: d.update(channels=[{"name": "hr", "loinc": ["8867-4"], "unit": "/min", "low": 9, "high": 2}]),
            "channels[0].high",
        ),
        (lambda d: d.update(index={"kind": "manifest_column"}), "index.column"),
        (lambda d: d.update(lables=[]), "task"),
    ],
)
def test_bad_yaml_names_file_and_field(tmp_path, change, field):
    data = _valid()
    change(data)
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_task(path)
    assert info.value.path == str(path)
    assert info.value.where == field
    assert str(path) in str(info.value) and field in str(info.value)


def test_unreadable_yaml_and_unknown_names(tmp_path):
    path = _write(tmp_path, "index: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_task(path)
    assert info.value.path == str(path) and "YAML" in str(info.value)
    with pytest.raises(ConfigError, match="no shipped task"):
        load_task("no-such-task")
    with pytest.raises(ConfigError, match="not found"):
        load_task(tmp_path / "missing.yaml")


def test_default_channels_and_audit_attributes(tmp_path):
    data = _valid()
    del data["audit_attributes"]
    data.pop("channels", None)
    task = load_task(_write(tmp_path, data))
    assert task.channels == VITAL_SIGNS
    assert task.audit_attributes == ("sex", "age_band", "race", "ethnicity")


@pytest.mark.parametrize("name", shipped_tasks())
def test_a_shipped_task_survives_task_to_dict(name):
    task = load_task(name)
    assert task_from_dict(task_to_dict(task), source=task.source) == task


def test_a_minimal_task_survives_task_to_dict():
    data = {"name": "t", "index": {"kind": "last_encounter"}, "labels": [{"name": "a", "icd10": ["J18"]}]}
    task = task_from_dict(data, source="t.yaml")
    assert task.images.days is None and task.notes.days is None and task.vitals.hours is None
    assert task_from_dict(task_to_dict(task), source="t.yaml") == task
