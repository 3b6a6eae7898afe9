from __future__ import annotations

import pytest

from medmm.errors import ConfigError
from medmm.synth import SynthConfig
from medmm.synth.config import DEFAULT_PREVALENCE, label_set_probabilities
from medmm.synth.diagnoses import DIAGNOSIS_NAMES


def test_defaults_follow_the_brief():
    c = SynthConfig(workers=1)
    assert (c.patients, c.seed, c.image_size, c.ct_fraction) == (600, 0, 256, 0.0)
    assert (c.missing_image, c.missing_notes, c.missing_vitals) == (0.1, 0.1, 0.1)
    assert (c.monochrome1_fraction, c.compressed_fraction, c.fhir_vitals_fraction) == (0.3, 0.3, 0.2)
    assert (c.train_fraction, c.val_fraction, c.test_fraction) == (0.7, 0.15, 0.15)
    assert c.bias_strength == 0.0 and not c.bias_active
    assert set(c.prevalence) == set(DIAGNOSIS_NAMES)


def test_label_sets_reproduce_each_marginal_prevalence():
    c = SynthConfig(workers=1)
    sets = label_set_probabilities(c)
    for d in DIAGNOSIS_NAMES:
        assert sum(p for s, p in sets.items() if d in s) == pytest.approx(DEFAULT_PREVALENCE[d])
    # pairs take 40% of the rarer member: pneumonia+sepsis 0.4*0.15, heart_failure+effusion 0.4*0.15
    assert sets[("pneumonia", "sepsis")] == pytest.approx(0.06)
    assert sets[("heart_failure", "pleural_effusion")] == pytest.approx(0.06)
    normal = 1 - sum(sets.values())
    assert 0.30 <= normal <= 0.40  # 1 - (0.78 - 0.12) = 0.34


def test_to_json_leaves_out_workers_only():
    a, b = SynthConfig(workers=1), SynthConfig(workers=3)
    assert a.to_json() == b.to_json()
    assert "workers" not in a.to_json() and a.to_json()["seed"] == 0


@pytest.mark.parametrize(
    "kwargs, where",
    [
        ({"patients": 0}, "patients"),
        ({"image_size": 16}, "image_size"),
        ({"missing_image": 1.5}, "missing_image"),
        ({"prevalence": {"flu": 0.1}}, "prevalence"),
        ({"prevalence": {d: 0.5 for d in DIAGNOSIS_NAMES}}, "prevalence"),
        ({"train_fraction": 0.9}, "split fractions"),
        ({"bias_kind": "shuffle"}, "bias_kind"),
        ({"bias_strength": 0.5}, "bias_attribute"),
        ({"bias_attribute": "zip", "bias_value": "1"}, "bias_attribute"),
        ({"bias_attribute": "race", "bias_value": "9999-9"}, "bias_value"),
        ({"workers": 0}, "workers"),
    ],
)
def test_invalid_settings_raise_config_error_naming_the_field(kwargs, where):
    with pytest.raises(ConfigError) as err:
        SynthConfig(**{"workers": 1, **kwargs})
    assert err.value.where == where


def test_missing_prevalence_entries_default_to_zero():
    c = SynthConfig(workers=1, prevalence={"pneumonia": 0.5})
    assert c.prevalence["sepsis"] == 0.0 and c.prevalence["pneumonia"] == 0.5
