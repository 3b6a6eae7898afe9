"""The study preprocessor: labels from the task's value sets, channels in the task's order, and a
per-encounter grid placed on the model's grid."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import numpy as np

from medmm.records import Label, Study, VitalSeries
from medmm.scope import InputScope, select_inputs
from medmm.tasks import load_task
from medmm.transforms.study import PreprocessConfig, StudyPreprocessor
from tests.test_model import note_tokenizer

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def encounter_series(values: np.ndarray, channels: tuple[str, ...]) -> VitalSeries:
    times = tuple(T0 + timedelta(days=30 * i) for i in range(values.shape[0]))
    return VitalSeries(
        T0, 0.0, channels, ("/min",) * len(channels), values.astype(np.float32), ~np.isnan(values), (), times
    )


def test_a_shorter_per_encounter_grid_fills_the_latest_rows():
    task = load_task("acute-respiratory-infection")
    pre = StudyPreprocessor(PreprocessConfig(window_hours=365 * 24, encounter_steps=4), note_tokenizer(), task=task)
    values = np.array([[70.0, np.nan], [90.0, 20.0]])
    study = Study("s", vitals=encounter_series(values, ("heart_rate", "resp_rate")), time=T0 + timedelta(days=90))
    item = pre(study)
    observed = item["vitals_observed"].numpy()
    hr, rr = task.channel_names.index("heart_rate"), task.channel_names.index("resp_rate")
    assert observed.shape == (4, len(task.channels)) and not observed[:2].any()
    assert observed[2, hr] and observed[3, hr] and observed[3, rr] and not observed[2, rr]
    assert observed.sum() == 3 and bool(item["vitals_present"])
    # the last reading of each channel, for the LM's record line, in the task's channel order
    assert item["meta"]["vitals_last"] == {"heart_rate": [90.0, "/min"], "resp_rate": [20.0, "/min"]}
    assert list(item["meta"]["vitals_last"]) == [c for c in task.channel_names if c in ("heart_rate", "resp_rate")]
    longer = Study("s", vitals=encounter_series(np.full((5, 1), 80.0), ("heart_rate",)), time=T0 + timedelta(days=200))
    assert pre(longer)["meta"]["vitals_last"] == {}  # not on the model's grid: not in the record either
    assert not bool(
        pre(longer)["vitals_present"]
    )  # more encounters than the model reads: not placed (select_inputs says why)
    _, uses = select_inputs(longer, InputScope(), ("vitals",), 4)
    assert [u.used for u in uses if u.modality == "vitals"] == [False]
    _, uses = select_inputs(study, InputScope(), ("vitals",), 4)
    assert [u.used for u in uses if u.modality == "vitals"] == [True]


def test_labels_follow_the_tasks_value_sets_and_inactive_rule():
    task = load_task("acute-respiratory-infection")
    labels = (
        Label("J20.9", "http://hl7.org/fhir/sid/icd-10-cm"),  # ICD category J20 -> acute_bronchitis
        Label(
            "x", "http://example.org", codings=(("http://example.org", "x"), ("http://snomed.info/sct", "444814009"))
        ),  # any coding
        Label("195662009", "http://snomed.info/sct", status="resolved"),  # pharyngitis, resolved
    )
    study = Study("s", labels=labels, time=T0)
    pre = StudyPreprocessor(PreprocessConfig(), note_tokenizer(), task=task)
    got = dict(zip(task.label_names, pre(study)["labels"].tolist()))
    assert got == {"acute_bronchitis": 1.0, "pneumonia": 0.0, "viral_sinusitis": 1.0, "acute_viral_pharyngitis": 1.0}
    ignoring = dataclasses.replace(task, inactive_conditions="ignore")
    got = dict(
        zip(
            task.label_names,
            StudyPreprocessor(PreprocessConfig(), note_tokenizer(), task=ignoring)(study)["labels"].tolist(),
        )
    )
    assert got["acute_viral_pharyngitis"] == 0.0 and got["acute_bronchitis"] == 1.0
