from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from medmm.codes import VITAL_SIGNS, vital_for_code
from medmm.synth import SynthConfig
from medmm.synth.patient import write_vitals_csv
from medmm.synth.plan import draw_plan
from medmm.synth.vitals_gen import generate_vitals

CONFIG = SynthConfig(patients=100, seed=2, workers=1)


def plan_with(index: int, labels: tuple[str, ...], strength: float = 1.0, vitals: bool = True):
    base = draw_plan(CONFIG, index, "train")
    return replace(
        base,
        labels=labels,
        present=("image", "notes", "vitals"),
        evidence={d: ("vitals",) if vitals else ("notes",) for d in labels},
        strength={d: strength for d in labels},
        evidence_removed=(),
    )


def table(plan, seed: int) -> tuple[pd.DataFrame, object]:
    draft = generate_vitals(np.random.default_rng(seed), plan)
    hours = [(t - (plan.study_time - timedelta(hours=48))).total_seconds() / 3600 for t in draft.times]
    df = pd.DataFrame({"hour": hours, "channel": draft.channels, "value": draft.values})
    return df, draft


def mean_in(df: pd.DataFrame, channel: str, lo: float, hi: float) -> float:
    sel = df[(df.channel == channel) & (df.hour >= lo) & (df.hour < hi)]
    return float(sel.value.mean())


@pytest.mark.parametrize("seed", range(20))
def test_readings_sit_mid_step_and_stay_plausible(seed):
    df, _ = table(plan_with(seed, ("sepsis", "pneumonia")), seed)
    assert set(np.round((df.hour % 1), 6)) == {0.5}
    assert df.hour.min() >= 0 and df.hour.max() < 48
    for v in VITAL_SIGNS:
        vals = df[df.channel == v.name].value
        assert ((vals >= v.low) & (vals <= v.high)).all(), v.name
        assert (vals.round(1) == vals).all()
    weights = df[df.channel == "weight"]
    assert list(weights.hour) == [6.5, 30.5]  # once a day


def test_sepsis_window_shows_sirs_and_hypotension():
    for seed in range(10):
        plan = plan_with(seed, ("sepsis",))
        df, draft = table(plan, seed)
        w = draft.windows["sepsis"]
        assert w.end_hour == 48 and 20 <= w.start_hour <= 38
        late = w.start_hour + 6  # after the ramp
        before = (0, w.start_hour)
        assert mean_in(df, "heart_rate", late, 48) > mean_in(df, "heart_rate", *before) + 15
        assert mean_in(df, "resp_rate", late, 48) > mean_in(df, "resp_rate", *before) + 4
        assert mean_in(df, "sbp", late, 48) < mean_in(df, "sbp", *before) - 10


def test_pneumothorax_is_a_sudden_late_desaturation():
    for seed in range(10):
        df, draft = table(plan_with(seed, ("pneumothorax",)), seed)
        w = draft.windows["pneumothorax"]
        assert 36 <= w.start_hour <= 45 and w.end_hour - w.start_hour <= 12
        assert mean_in(df, "spo2", w.start_hour + 1, 48) < mean_in(df, "spo2", 0, w.start_hour) - 4
        assert mean_in(df, "heart_rate", w.start_hour + 1, 48) > mean_in(df, "heart_rate", 0, w.start_hour) + 10


def test_heart_failure_gains_weight_between_daily_weights():
    for seed in range(10):
        df, draft = table(plan_with(seed, ("heart_failure",)), seed)
        w = df[df.channel == "weight"].value.to_numpy()
        assert w[1] - w[0] > 0.4  # at least 0.75 kg planted at full strength, 0.2 kg reading noise
        assert "weight" in draft.windows["heart_failure"].channels


def test_pneumonia_fever_and_no_signal_without_vitals_evidence():
    for seed in range(10):
        df, draft = table(plan_with(seed, ("pneumonia",)), seed)
        w = draft.windows["pneumonia"]
        assert mean_in(df, "temperature", w.start_hour + 6, 48) > 37.8
        quiet_df, quiet = table(plan_with(seed, ("pneumonia",), vitals=False), seed)
        assert dict(quiet.windows) == {}
        assert mean_in(quiet_df, "temperature", 30, 48) < 37.6


def test_gaps_leave_some_hours_unobserved():
    counts = []
    for seed in range(20):
        df, _ = table(plan_with(seed, ()), seed)
        counts.append(df[df.channel == "heart_rate"].shape[0])
    assert min(counts) < 48 and max(counts) <= 48 and np.mean(counts) > 38


def test_vitals_csv_parses_with_pandas_in_loinc_and_ucum(tmp_path):
    plan = plan_with(3, ("sepsis",))
    draft = generate_vitals(np.random.default_rng(3), plan)
    path = tmp_path / "vitals.csv"
    write_vitals_csv(path, draft)
    df = pd.read_csv(path, dtype={"code": str})
    assert list(df.columns) == ["time", "code", "value", "unit"]
    times = pd.to_datetime(df.time)
    assert str(times.dt.tz) == "UTC"
    assert len(df) == len(draft.values)
    for code, unit, value in zip(df.code, df.unit, df.value):
        vital = vital_for_code(code)
        assert vital is not None and vital.unit == unit and vital.low <= value <= vital.high
