"""Training on a task other than the default: the recipe's `task` sets the head's outputs, the
vitals channels and the grid, and the checkpoint it writes carries the task."""

from __future__ import annotations

import json

import yaml

from medmm.tasks import load_task, task_from_dict

TASK = {
    "name": "chest-two-hourly",
    "index": {"kind": "manifest_column", "column": "study_time"},
    "notes": {"days": 365},
    "vitals": {"hours": 24, "step_minutes": 120},
    "labels": [
        {"name": "lung_infection", "display": "Lung infection", "snomed": ["233604007"], "icd10": ["J18"]},
        {"name": "cardiac_failure", "display": "Cardiac failure", "icd10": ["I50"]},
    ],
    "channels": [
        {"name": "resp_rate", "display": "Respiratory rate", "loinc": ["9279-1"], "unit": "/min", "low": 4, "high": 80},
        {"name": "spo2", "display": "Oxygen saturation", "loinc": ["59408-5"], "unit": "%", "low": 50, "high": 100},
    ],
}


def test_align_trains_on_the_recipes_task_and_stores_it(recipe_config, tmp_path):
    from medmm.predict import Predictor
    from training import align

    path = tmp_path / "task.yaml"
    path.write_text(yaml.safe_dump(TASK))
    align.run(recipe_config(tmp_path / "run", f"task={path}", "train.max_steps=2", "train.epochs=1"))
    meta = json.loads((tmp_path / "run" / "best" / "config.json").read_text())
    assert meta["labels"] == ["lung_infection", "cardiac_failure"]
    assert meta["config"]["vitals"]["num_channels"] == 2
    assert (meta["config"]["preprocess"]["window_hours"], meta["config"]["preprocess"]["step_minutes"]) == (24.0, 120.0)
    assert task_from_dict(meta["task"], source=str(path)) == load_task(path)
    predictor = Predictor.from_checkpoint(tmp_path / "run" / "best")
    assert predictor.model.head[-1].out_features == 2
    assert predictor.preprocessor.channels == ("resp_rate", "spo2")
