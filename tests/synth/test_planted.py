"""Reading planted ground truth into the study's own terms (pixel masks, absolute times, note indices)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from medmm.errors import CohortError
from medmm.records import ClinicalNote, Study
from medmm.synth.planted import read_ground_truth

T0 = datetime(2024, 5, 2, 8, 0, tzinfo=timezone.utc)


def _truth(tmp_path, **changes):
    lesion = np.zeros((6, 8), dtype=bool)
    lesion[1:3, 2:5] = True
    np.savez(tmp_path / "truth-lesions.npz", pneumonia=lesion, lungs=~lesion)
    data = {
        "labels": ["pneumonia"],
        "evidence": {
            "pneumonia": {
                "modalities": ["image", "vitals", "notes"],
                "image": {"mask_file": "truth-lesions.npz", "mask_key": "pneumonia"},
                "vitals": {"start_hour": 30.5, "end_hour": 48.0, "channels": ["heart_rate", "spo2"]},
                "notes": {
                    "spans": [
                        {"note": 0, "start": 4, "end": 9, "text": "cough"},
                        {"note": 2, "start": 0, "end": 3, "text": "x"},
                    ]
                },
            }
        },
        "distractors": {
            "notes": [
                {"note": 1, "start": 0, "end": 12, "text": "denies fever", "kind": "negated", "diagnosis": "sepsis"}
            ]
        },
        "notes": [
            {"index": 0, "reference": "DocumentReference/a"},
            {"index": 1, "reference": "DocumentReference/b"},
            {"index": 2, "reference": "DocumentReference/zzz"},
        ],
        "vitals": {"grid_start": (T0 - timedelta(hours=48)).isoformat()},
    }
    data.update(changes)
    (tmp_path / "truth.json").write_text(json.dumps(data))
    return lesion


def _study():
    # the study lists the notes in the other order: matching goes through the references
    notes = (
        ClinicalNote("denies fever.", source_id="DocumentReference/b"),
        ClinicalNote("dry cough", source_id="DocumentReference/a"),
    )
    return Study(study_id="p", notes=notes, time=T0)


def test_truth_in_the_study_terms(tmp_path):
    lesion = _truth(tmp_path)
    truth = read_ground_truth(tmp_path, _study())
    assert truth.labels == ("pneumonia",)
    ev = truth.evidence["pneumonia"]
    np.testing.assert_array_equal(ev.lesion, lesion)
    assert ev.window.start == T0 - timedelta(hours=17.5) and ev.window.end == T0
    assert ev.window.channels == ("heart_rate", "spo2")
    assert [(s.note, s.start, s.end, s.kind) for s in ev.spans] == [(1, 4, 9, "evidence")]
    assert [(s.note, s.diagnosis, s.kind) for s in truth.distractors] == [(0, "sepsis", "negated")]
    assert truth.unmatched_spans == 1  # the span in a note the study does not have


def test_no_truth_file_means_real_data(tmp_path):
    assert read_ground_truth(tmp_path, _study()) is None


@pytest.mark.parametrize(
    "changes",
    [
        {"labels": None},
        {"evidence": {"pneumonia": {"image": {"mask_file": "truth-lesions.npz", "mask_key": "nothing"}}}},
        {"evidence": {"pneumonia": {"image": {"mask_file": "absent.npz", "mask_key": "pneumonia"}}}},
        {"vitals": None},
    ],
)
def test_malformed_truth_is_a_cohort_error(tmp_path, changes):
    _truth(tmp_path, **changes)
    with pytest.raises(CohortError) as err:
        read_ground_truth(tmp_path, _study())
    assert "truth" in str(err.value) or "npz" in str(err.value)
    assert "cough" not in str(err.value)
