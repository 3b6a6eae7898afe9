from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest

from medmm.synth import SynthConfig, synthesize

BASE = dict(patients=30, seed=21, image_size=48, workers=1, fhir_vitals_fraction=0.0)
GROUP = ("race", "2054-5")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("bias")
    out = {}
    for name, extra in (
        ("plain", {}),
        ("noise", dict(bias_attribute=GROUP[0], bias_value=GROUP[1], bias_kind="label_noise", bias_strength=1.0)),
        ("quality", dict(bias_attribute=GROUP[0], bias_value=GROUP[1], bias_kind="image_quality", bias_strength=1.0)),
    ):
        synthesize(root / name, SynthConfig(**BASE, **extra), progress=False)
        out[name] = root / name
    return out


def truths(root):
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(root.glob("*/truth.json"))}


def test_label_noise_strips_all_evidence_from_the_groups_positives_only(runs):
    plain, noisy = truths(runs["plain"]), truths(runs["noise"])
    members = positives = 0
    for pid, t in noisy.items():
        assert t["labels"] == plain[pid]["labels"]  # recorded labels do not change
        if t["demographics"]["race"] == GROUP[1]:
            members += 1
            assert t["bias"]["member"]
            assert t["bias"]["evidence_removed"] == t["labels"]
            for ev in t["evidence"].values():
                positives += 1
                assert ev["modalities"] == [] and ev["image"] is ev["vitals"] is ev["notes"] is None
            spans = [s for s in t["distractors"]["notes"]]
            assert all(s["kind"] in ("negated", "hedged", "historical") for s in spans)
        else:
            assert not t["bias"]["member"] and not t["bias"]["applied"]
            assert t["evidence"] == plain[pid]["evidence"]  # other groups unaffected
            assert (runs["noise"] / pid / "record.json").read_bytes() == (
                runs["plain"] / pid / "record.json"
            ).read_bytes()
    assert members > 0 and positives > 0


def test_image_quality_degrades_only_the_groups_images(runs):
    plain, degraded = truths(runs["plain"]), truths(runs["quality"])
    compared = 0
    for pid, t in degraded.items():
        path = runs["quality"] / pid / "images" / "radiograph.dcm"
        if not path.exists():
            continue
        assert t["evidence"] == plain[pid]["evidence"]  # evidence is planted, only harder to see
        ours = pydicom.dcmread(path).pixel_array.astype(float)
        theirs = pydicom.dcmread(runs["plain"] / pid / "images" / "radiograph.dcm").pixel_array.astype(float)
        if t["demographics"]["race"] == GROUP[1]:
            assert t["bias"]["applied"] and t["bias"]["image_degradation"] == 1.0
            assert np.abs(np.diff(ours, axis=1)).mean() > 2 * np.abs(np.diff(theirs, axis=1)).mean()
            compared += 1
        else:
            assert np.array_equal(ours, theirs)
    assert compared > 0
