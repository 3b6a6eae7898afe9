"""Samples of a Synthea population checked against values worked out here from the raw JSON.

The expected values are computed with plain code over the Bundles (no medmm.population call),
so a mistake in the module's windows, dedup, unit handling or labels shows up as a mismatch.
"""

import base64
import json
import math
from collections import defaultdict
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from medmm.population import PopulationReport, iter_bulk_export, iter_bundle_folder
from medmm.population.samples import population_samples
from medmm.tasks import load_task, task_from_dict

pytestmark = pytest.mark.slow  # generates a population (about 10 s) and reads it several times

ARI_SNOMED = {
    "10509002": "acute_bronchitis",
    "233604007": "pneumonia",
    "444814009": "viral_sinusitis",
    "195662009": "acute_viral_pharyngitis",
}
CHANNEL_OF = {
    "8867-4": "heart_rate",
    "9279-1": "resp_rate",
    "59408-5": "spo2",
    "2708-6": "spo2",
    "8310-5": "temperature",
    "8480-6": "sbp",
    "8462-4": "dbp",
    "29463-7": "weight",
}
CHANNELS = ["heart_rate", "resp_rate", "spo2", "temperature", "sbp", "dbp", "weight"]
RANGES = {
    "heart_rate": (20, 300),
    "resp_rate": (4, 80),
    "spo2": (50, 100),
    "temperature": (30, 45),
    "sbp": (40, 300),
    "dbp": (20, 200),
    "weight": (0.3, 400),
}


def t(text):
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def raw_patients(folder):
    """Per patient: its resources by type, with urn:uuid references turned into bare ids."""
    out = {}
    for path in sorted(folder.glob("*.json")):
        if path.name.startswith(("hospitalInformation", "practitionerInformation")):
            continue
        bundle = json.loads(path.read_text())
        by_type = defaultdict(list)
        for entry in bundle["entry"]:
            by_type[entry["resource"]["resourceType"]].append(entry["resource"])
        out[by_type["Patient"][0]["id"]] = by_type
    return out


def ref_id(ref):
    return ref["reference"].split(":")[-1].split("/")[-1] if ref else None


def expected_readings(res):
    """(time, channel, value, encounter id) of every vital reading, worked out directly."""
    seen, panels, out = set(), set(), []
    observations = []
    for obs in sorted(res["Observation"], key=lambda o: o["id"]):
        has_value = "valueQuantity" in obs or any("valueQuantity" in c for c in obs.get("component", []))
        if not has_value and not any(k.startswith("value") for k in obs):
            continue
        key = (
            tuple(sorted((c.get("system"), c["code"]) for c in obs["code"]["coding"])),
            t(obs["effectiveDateTime"]),
            ref_id(obs.get("encounter")),
        )
        if key in seen:
            continue
        seen.add(key)
        observations.append(obs)
        if any(c["code"] == "85354-9" for c in obs["code"]["coding"]):
            panels.add(key[1:])
    for obs in observations:
        when, enc = t(obs["effectiveDateTime"]), ref_id(obs.get("encounter"))
        codes = [c["code"] for c in obs["code"]["coding"]]
        if any(c in ("8480-6", "8462-4") for c in codes) and (when, enc) in panels:
            continue
        parts = [(codes, obs)] + [
            ([c["code"] for c in comp["code"]["coding"]], comp) for comp in obs.get("component", [])
        ]
        for part_codes, holder in parts:
            channel = next((CHANNEL_OF[c] for c in part_codes if c in CHANNEL_OF), None)
            if channel is None or "valueQuantity" not in holder:
                continue
            value = float(holder["valueQuantity"]["value"])
            unit = holder["valueQuantity"].get("code")
            if unit == "[degF]":
                value = (value - 32) * 5 / 9
            elif unit == "[lb_av]":
                value *= 0.45359237
            low, high = RANGES[channel]
            if low <= value <= high:
                out.append((when, channel, value, enc))
    return out


def note_texts(res):
    texts = {}
    for doc in res["DocumentReference"]:
        text = base64.b64decode(doc["content"][0]["attachment"]["data"]).decode("utf-8")
        texts.setdefault(text, t(doc["date"]))
    for rep in res["DiagnosticReport"]:
        for form in rep.get("presentedForm", []):
            text = base64.b64decode(form["data"]).decode("utf-8")
            texts.setdefault(text, t(rep["effectiveDateTime"]))
    return texts


@pytest.fixture(scope="module")
def raw(synthea_bundles):
    return raw_patients(synthea_bundles)


@pytest.fixture(scope="module")
def ari_samples(synthea_bundles):
    report = PopulationReport()
    samples = list(
        population_samples(
            load_task("acute-respiratory-infection"), iter_bundle_folder(synthea_bundles, report), report
        )
    )
    return samples, report


def test_index_times_are_every_ambulatory_or_emergency_encounter(ari_samples, raw):
    samples, _ = ari_samples
    expected = sorted(
        (pid, t(e["period"]["start"]))
        for pid, res in raw.items()
        for e in res["Encounter"]
        if e["class"]["code"] in ("AMB", "EMER")
    )
    assert sorted((s.patient_id, s.index_time) for s in samples) == expected
    assert len(expected) > 20


def test_labels_match_conditions_diagnosed_that_day(ari_samples, raw):
    samples, _ = ari_samples
    positives = 0
    for s in samples:
        encounter = s.index_source.split("/")[-1]
        expected = {name: False for name in ARI_SNOMED.values()}
        for cond in raw[s.patient_id]["Condition"]:
            name = ARI_SNOMED.get(cond["code"]["coding"][0]["code"])
            if name is None or cond.get("verificationStatus", {}).get("coding", [{}])[0].get("code") in (
                "refuted",
                "entered-in-error",
            ):
                continue
            onset = t(cond.get("onsetDateTime") or cond["recordedDate"])
            if onset.date() == s.index_time.date() or ref_id(cond.get("encounter")) == encounter:
                expected[name] = True
        assert dict(s.labels) == expected, s.sample_id
        positives += sum(expected.values())
    assert positives >= 5  # the population holds acute infections to find


def test_notes_in_the_year_before_each_index(ari_samples, raw):
    samples, _ = ari_samples
    for s in samples:
        texts = note_texts(raw[s.patient_id])
        expected = sorted(
            text for text, when in texts.items() if s.index_time - timedelta(days=365) <= when < s.index_time
        )
        assert sorted(n.text for n in s.notes) == expected, s.sample_id
        assert all(n.time < s.index_time for n in s.notes)  # nothing at the index leaks in
    assert any(s.notes for s in samples)


def test_vitals_one_step_per_earlier_encounter(ari_samples, raw):
    samples, _ = ari_samples
    observed = 0
    for s in samples:
        res = raw[s.patient_id]
        steps = sorted(
            (t(e["period"]["start"]), e["id"])
            for e in res["Encounter"]
            if s.index_time - timedelta(days=365) <= t(e["period"]["start"]) < s.index_time
        )
        assert [tm for tm, _ in steps] == list(s.vitals.step_times)
        position = {eid: i for i, (_, eid) in enumerate(steps)}
        sums = defaultdict(list)
        for when, channel, value, enc in expected_readings(res):
            if enc in position and s.index_time - timedelta(days=365) <= when < s.index_time:
                sums[(position[enc], channel)].append(value)
        expected = np.full((len(steps), len(CHANNELS)), np.nan)
        for (i, channel), values in sums.items():
            expected[i, CHANNELS.index(channel)] = sum(values) / len(values)
        np.testing.assert_allclose(s.vitals.values, expected, rtol=1e-5, err_msg=s.sample_id)
        assert (s.vitals.mask == ~np.isnan(expected)).all()
        observed += int(s.vitals.mask.sum())
    assert observed > 50


def test_hourly_grid_including_the_index(synthea_bundles, raw):
    """A 24 h grid of 60 min steps that includes the index: the encounter's own vitals land in the last step."""
    task = task_from_dict(
        {
            "name": "last-visit",
            "index": {"kind": "last_encounter", "classes": ["AMB"]},
            "vitals": {"hours": 24, "step_minutes": 60, "include_index": True},
            "labels": [{"name": "pneumonia", "snomed": ["233604007"]}],
        }
    )
    report = PopulationReport()
    samples = list(population_samples(task, iter_bundle_folder(synthea_bundles, report), report))
    assert len(samples) == len(raw)
    for s in samples:
        res = raw[s.patient_id]
        last = max(t(e["period"]["start"]) for e in res["Encounter"] if e["class"]["code"] == "AMB")
        assert s.index_time == last
        start = last - timedelta(hours=24)
        buckets = defaultdict(list)
        for when, channel, value, _ in expected_readings(res):
            if start < when <= last:
                buckets[(math.ceil((when - start) / timedelta(hours=1)) - 1, channel)].append(value)
        expected = np.full((24, len(CHANNELS)), np.nan)
        for (i, channel), values in buckets.items():
            expected[i, CHANNELS.index(channel)] = sum(values) / len(values)
        np.testing.assert_allclose(s.vitals.values, expected, rtol=1e-5, err_msg=s.sample_id)
        assert s.vitals.step_times[0] == start and len(s.vitals.step_times) == 24
    assert any(s.vitals.mask[-1].any() for s in samples)


def test_demographics_and_audit(ari_samples, raw):
    samples, _ = ari_samples
    for s in samples[:: max(1, len(samples) // 25)]:
        patient = raw[s.patient_id]["Patient"][0]
        assert s.demographics.sex == patient["gender"]
        born = datetime.fromisoformat(patient["birthDate"]).date()
        assert abs(s.demographics.age_years - (s.index_time.date() - born).days / 365.25) < 0.01
        race = next(e for e in patient["extension"] if e["url"].endswith("us-core-race"))
        assert s.audit["race"] == race["extension"][0]["valueCoding"]["code"]
        assert set(s.audit) == {"sex", "age_band", "race", "ethnicity"}


def test_hygiene_counts_reported(ari_samples, raw):
    _, report = ari_samples
    assert report.counts["observation: duplicate (same code, time and encounter); kept once"] > 0
    assert report.counts["blood pressure: separate systolic/diastolic at a panel's time; the panel's value used"] > 0
    assert report.counts["observation: no value and no dataAbsentReason; not used"] > 0
    assert report.counts["vitals: readings outside the window (summed over samples)"] > 0


def test_bundles_and_bulk_export_give_identical_samples(synthea_bundles, synthea_bulk):
    assert len(list(synthea_bulk.glob("Observation.*.ndjson"))) > 1  # references cross files
    task = load_task("acute-respiratory-infection")
    from_bundles = list(population_samples(task, iter_bundle_folder(synthea_bundles), PopulationReport()))
    from_bulk = list(population_samples(task, iter_bulk_export(synthea_bulk), PopulationReport()))
    assert [s.sample_id for s in from_bundles] == [s.sample_id for s in from_bulk]
    for a, b in zip(from_bundles, from_bulk):
        assert (a.labels, a.notes, a.images, a.demographics, a.audit) == (
            b.labels,
            b.notes,
            b.images,
            b.demographics,
            b.audit,
        )
        assert a.vitals.step_times == b.vitals.step_times
        np.testing.assert_array_equal(a.vitals.values, b.vitals.values)
