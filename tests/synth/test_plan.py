from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from medmm.codes import ETHNICITIES, RACES
from medmm.synth import SynthConfig
from medmm.synth.diagnoses import DIAGNOSIS_NAMES
from medmm.synth.plan import CAPABLE, assign_splits, deal, draw_plan, stratum_of


def plans(config: SynthConfig):
    splits = assign_splits(config)
    return [draw_plan(config, i, splits[i]) for i in range(config.patients)]


def test_splits_have_exact_counts_and_depend_on_the_seed_only():
    c = SynthConfig(patients=200, seed=4, workers=1)
    s = assign_splits(c)
    assert Counter(s) == {"train": 140, "val": 30, "test": 30}
    assert s == assign_splits(SynthConfig(patients=200, seed=4, workers=2))
    assert s != assign_splits(SynthConfig(patients=200, seed=5, workers=1))


def test_deal_holds_exact_counts_and_every_prefix_in_proportion():
    counts = {"train": 450, "val": 135, "test": 315}
    dealt = deal(counts, 900)
    assert Counter(dealt) == counts
    for k in range(1, 901):
        prefix = Counter(dealt[:k])
        for name, count in counts.items():
            assert abs(prefix[name] - k * count / 900) <= 1, (k, name)
    # any run of places: within two of its share
    run = Counter(dealt[137 : 137 + 90])
    assert abs(run["test"] - 90 * 315 / 900) <= 2


def test_splits_are_stratified_by_the_audited_attributes():
    c = SynthConfig(patients=600, seed=1, train_fraction=0.5, val_fraction=0.15, test_fraction=0.35, workers=1)
    splits = assign_splits(c)
    ps = [draw_plan(c, i, splits[i]) for i in range(c.patients)]
    for i in range(0, 600, 37):  # the stratum is read from the very draws of the plan
        assert stratum_of(c, i)[:3] == (ps[i].race, ps[i].sex, ps[i].ethnicity)
    for race in RACES:
        members = [p for p in ps if p.race == race]
        test = sum(p.split == "test" for p in members)
        assert abs(test - 0.35 * len(members)) <= 2, (race, len(members), test)
        for sex in ("female", "male"):
            both = [p for p in members if p.sex == sex]
            assert abs(sum(p.split == "test" for p in both) - 0.35 * len(both)) <= 2, (race, sex)


def test_missing_rates_are_roughly_respected_on_200_patients():
    c = SynthConfig(patients=200, seed=2, missing_image=0.3, missing_notes=0.1, missing_vitals=0.2, workers=1)
    ps = plans(c)
    for modality, rate in (("image", 0.3), ("notes", 0.1), ("vitals", 0.2)):
        observed = sum(not p.has(modality) for p in ps) / len(ps)
        # binomial sd at n=200 is at most 0.033; allow about three
        assert abs(observed - rate) < 0.1, (modality, observed)
    assert all(p.present for p in ps)


def test_never_all_three_missing_even_at_high_rates():
    c = SynthConfig(patients=200, seed=3, missing_image=0.9, missing_notes=0.9, missing_vitals=0.9, workers=1)
    assert all(len(p.present) >= 1 for p in plans(c))


def test_evidence_lives_only_in_capable_present_modalities_and_at_least_one():
    c = SynthConfig(patients=400, seed=5, workers=1)
    per_modality = Counter()
    capable_count = Counter()
    for p in plans(c):
        assert set(p.evidence) == set(p.labels)
        for d in p.labels:
            mods = p.evidence[d]
            assert set(mods) <= set(CAPABLE[d]) & set(p.present)
            if set(CAPABLE[d]) & set(p.present):
                assert mods, (p.patient_id, d)
            for m in set(CAPABLE[d]) & set(p.present):
                capable_count[m] += 1
                per_modality[m] += m in mods
        assert all(0.5 <= s <= 1.0 for s in p.strength.values())
    for m in ("image", "notes", "vitals"):
        rate = per_modality[m] / capable_count[m]
        assert 0.65 <= rate <= 0.85, (m, rate)  # 0.7 plus the at-least-one rescue


def test_label_mix_and_demographics():
    c = SynthConfig(patients=600, seed=0, workers=1)
    ps = plans(c)
    n_labels = Counter(len(p.labels) for p in ps)
    assert 0.28 <= n_labels[0] / 600 <= 0.42
    assert n_labels[2] > 0 and max(n_labels) <= 2
    for p in ps:
        if len(p.labels) == 2:
            assert set(p.labels) in ({"pneumonia", "sepsis"}, {"heart_failure", "pleural_effusion"})
    races = Counter(p.race for p in ps)
    assert set(races) == set(RACES) and min(races.values()) >= 40  # enough for subgroup audits
    assert set(Counter(p.ethnicity for p in ps)) == set(ETHNICITIES)
    assert {p.sex for p in ps} == {"female", "male"}
    ages = np.array([p.age_years for p in ps])
    assert ages.min() >= 18 and ages.max() <= 95
    for p in ps:  # age is the completed years between the birth date and the study date
        day = p.study_time.date()
        years = day.year - p.birth_date.year - ((day.month, day.day) < (p.birth_date.month, p.birth_date.day))
        assert years == p.age_years


@pytest.fixture(scope="module")
def many():
    """Plans of 1500 patients with default settings."""
    return plans(SynthConfig(patients=1500, seed=8, workers=1))


def test_labels_do_not_depend_on_race_without_a_bias_knob(many):
    ps = many
    overall = np.mean([bool(p.labels) for p in ps])
    for race in RACES:
        group = [bool(p.labels) for p in ps if p.race == race]
        sd = np.sqrt(overall * (1 - overall) / len(group))
        assert abs(np.mean(group) - overall) < 4 * sd


def test_label_noise_bias_removes_evidence_only_for_the_group():
    base = SynthConfig(patients=300, seed=6, workers=1)
    biased = SynthConfig(patients=300, seed=6, workers=1, bias_attribute="race", bias_value="2054-5", bias_strength=1.0)
    for p0, p1 in zip(plans(base), plans(biased)):
        assert p0.labels == p1.labels and p0.present == p1.present
        if p1.race == "2054-5":
            assert p1.bias_member and p1.evidence_removed == p1.labels
            assert all(p1.evidence[d] == () for d in p1.labels)
        else:
            assert not p1.bias_member and p1.evidence == p0.evidence and p1.evidence_removed == ()


def test_label_noise_rate_follows_the_strength():
    c = SynthConfig(patients=800, seed=7, workers=1, bias_attribute="sex", bias_value="female", bias_strength=0.5)
    removed = total = 0
    for p in plans(c):
        if p.bias_member:
            total += len(p.labels)
            removed += len(p.evidence_removed)
    assert total > 100 and 0.4 <= removed / total <= 0.6


def test_image_quality_bias_marks_only_the_group():
    c = SynthConfig(
        patients=200,
        seed=6,
        workers=1,
        bias_attribute="ethnicity",
        bias_value="2135-2",
        bias_kind="image_quality",
        bias_strength=0.8,
    )
    for p in plans(c):
        assert p.image_degradation == (0.8 if p.ethnicity == "2135-2" else 0.0)
        assert p.evidence_removed == ()


@pytest.mark.parametrize("name", DIAGNOSIS_NAMES)
def test_prevalence_is_roughly_the_configured_one(name, many):
    rate = np.mean([name in p.labels for p in many])
    p = SynthConfig(workers=1).prevalence[name]
    assert abs(rate - p) < 4 * np.sqrt(p * (1 - p) / 1500)
