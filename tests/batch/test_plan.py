"""Study protocol parsing and the cohort filter, checked against the manifest read with pandas."""

from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd
import pytest

from medmm.batch.plan import (
    CohortFilter,
    RunOptions,
    StudyProtocol,
    load_protocol,
    plan_batches,
    select_cases,
    with_overrides,
)
from medmm.errors import ConfigError
from medmm.io.cohort import Cohort


def _manifest(root) -> pd.DataFrame:
    return pd.read_csv(root / "manifest.csv", dtype=str, keep_default_na=False)


def test_protocol_yaml_with_unquoted_dates_and_every_section(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(
        "name: female adults\nmodel: m\ncohort: c\n"
        "filter:\n  splits: [test, val]\n  sex: [female]\n  min_age: 18\n  from_time: 2020-01-01\n"
        "  to_time: 2031-06-01T12:00:00Z\n  require: [image, notes]\n"
        "outputs:\n  impression: false\n  max_new_tokens: 4\n  inputs: lenient\n"
        "run:\n  batch_size: 4\n  part_size: 12\n"
    )
    p = load_protocol(path)
    assert p.name == "female adults" and p.model == "m" and p.cohort == "c"
    assert p.filter.splits == ("test", "val") and p.filter.sex == ("female",) and p.filter.min_age == 18.0
    assert p.filter.require == ("image", "notes")
    assert p.filter.time_range == (
        datetime(2020, 1, 1, tzinfo=timezone.utc),
        datetime(2031, 6, 1, 12, tzinfo=timezone.utc),
    )
    assert not p.outputs.impression and p.outputs.max_new_tokens == 4 and p.outputs.inputs == "lenient"
    assert p.outputs.fhir and p.run == RunOptions(batch_size=4, part_size=12, torch_threads=1)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("filter:\n  sexx: [female]\n", "filter"),
        ("run:\n  batch_size: 4\n  part_size: 10\n", "run.part_size"),
        ("filter:\n  require: [xray]\n", "filter.require"),
        ("filter:\n  min_age: 70\n  max_age: 20\n", "filter.min_age"),
        ("filter:\n  from_time: 2024-01-01\n  to_time: 2020-01-01\n", "filter.from_time"),
        ("filter:\n  from_time: yesterday\n", "filter.from_time"),
        ("outputs:\n  inputs: sloppy\n", "outputs.inputs"),
        ("run:\n  batch_size: 0\n", "run.batch_size"),
        ("outputs:\n  impression: maybe\n", "outputs.impression"),
    ],
)
def test_protocol_errors_name_the_key_and_the_file(tmp_path, text, where):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_protocol(path)
    assert info.value.where == where and info.value.path == str(path)


def test_resolved_section_of_a_previous_run_is_not_configuration(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text("name: x\nresolved:\n  run_id: abc\n  cases: 3\n")
    assert load_protocol(path) == StudyProtocol(name="x")


def test_filter_by_split_sex_and_age_matches_pandas(small_cohort):
    cohort = Cohort.open(small_cohort)
    m = _manifest(small_cohort)
    age = pd.to_numeric(m["age_years"])
    expected = m[m["split"].isin(["train", "test"]) & (m["sex"] == "female") & (age >= 30) & (age <= 80)]
    selection = select_cases(cohort, CohortFilter(splits=("train", "test"), sex=("female",), min_age=30, max_age=80))
    assert [c.patient_id for c in selection.cases] == expected["patient_id"].tolist()
    assert selection.excluded_total == len(m) - len(expected)
    first = selection.cases[0]
    assert (small_cohort / first.folder).is_dir() and first.split in ("train", "test")


def test_filter_by_study_time_is_half_open_and_keeps_manifest_order(small_cohort):
    cohort = Cohort.open(small_cohort)
    m = _manifest(small_cohort)
    times = pd.to_datetime(m["study_time"], utc=True).sort_values()
    start, end = times.iloc[3], times.iloc[10]  # the 4th earliest is in, the 11th is out
    expected = m[
        (pd.to_datetime(m["study_time"], utc=True) >= start) & (pd.to_datetime(m["study_time"], utc=True) < end)
    ]
    flt = CohortFilter(from_time=start.isoformat(), to_time=end.isoformat())
    selection = select_cases(cohort, flt)
    assert [c.patient_id for c in selection.cases] == expected["patient_id"].tolist()
    assert dict(selection.excluded) == {"study_time": len(m) - len(expected)}


def test_require_uses_the_manifest_flags_then_limit_and_patients(small_cohort):
    cohort = Cohort.open(small_cohort)
    m = _manifest(small_cohort)
    with_both = m[(m["has_image"] == "1") & (m["has_vitals"] == "1")]["patient_id"].tolist()
    selection = select_cases(cohort, CohortFilter(require=("image", "vitals")))
    assert [c.patient_id for c in selection.cases] == with_both
    limited = select_cases(cohort, CohortFilter(require=("image", "vitals"), limit=2))
    assert [c.patient_id for c in limited.cases] == with_both[:2]
    chosen = [m["patient_id"].iloc[5], m["patient_id"].iloc[1]]
    picked = select_cases(cohort, CohortFilter(patients=tuple(chosen)))
    assert [c.patient_id for c in picked.cases] == [m["patient_id"].iloc[1], m["patient_id"].iloc[5]]


def test_race_and_ethnicity_filters(small_cohort):
    cohort = Cohort.open(small_cohort)
    m = _manifest(small_cohort)
    race, ethnicity = m["race"].iloc[0], m["ethnicity"].iloc[0]
    expected = m[(m["race"] == race) & (m["ethnicity"] == ethnicity)]["patient_id"].tolist()
    selection = select_cases(cohort, CohortFilter(race=(race,), ethnicity=(ethnicity,)))
    assert [c.patient_id for c in selection.cases] == expected


def test_a_filter_on_a_missing_column_or_selecting_nothing_is_an_error(small_cohort, tmp_path):
    cohort = Cohort.open(small_cohort)
    with pytest.raises(ConfigError, match="selects no case"):
        select_cases(cohort, CohortFilter(splits=("holdout",)))
    root = tmp_path / "bare"
    root.mkdir()
    for name in ("a", "b"):
        (root / name).mkdir()
    with pytest.raises(ConfigError, match="column sex"):
        select_cases(Cohort.open(root), CohortFilter(sex=("female",)))


def test_batches_are_fixed_slices_of_the_selection(small_cohort):
    cases = select_cases(Cohort.open(small_cohort), CohortFilter()).cases
    batches = plan_batches(cases, 5)
    assert [b.index for b in batches] == [0, 1, 2, 3]
    assert [len(b.cases) for b in batches] == [5, 5, 5, 1]
    assert tuple(c for b in batches for c in b.cases) == cases


def test_command_line_folders_override_the_protocol_and_are_required(tmp_path):
    p = StudyProtocol(model="from-protocol", cohort="c")
    resolved = with_overrides(p, model=tmp_path / "m", cohort=None)
    assert resolved.model == str((tmp_path / "m").resolve()) and resolved.cohort == str(
        (tmp_path.cwd() / "c").resolve()
    )
    with pytest.raises(ConfigError, match="no model"):
        with_overrides(StudyProtocol(), model=None, cohort="c")
