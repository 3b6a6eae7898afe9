"""`build_cohort` on a Synthea population, checked against values worked out from the raw JSON.

The expected samples (index times, labels, notes, vital readings) are computed with plain code
over the Bundles, then compared with the manifest, with each folder as the cohort reader and
load_study read it, and with the report.
"""

import csv
import json
from collections import Counter, defaultdict
from datetime import datetime, timedelta

import numpy as np
import pytest

from medmm.errors import CohortError, FhirError
from medmm.io.cohort import Cohort
from medmm.io.study import load_study
from medmm.io.vitals import read_vitals_table
from medmm.population import PopulationReport, iter_bundle_folder
from medmm.population.build import REPORT_JSON, REPORT_MD, build_cohort
from medmm.population.samples import population_samples
from medmm.tasks import load_task
from tests.population.test_samples_synthea import (
    ARI_SNOMED,
    CHANNELS,
    expected_readings,
    note_texts,
    raw_patients,
    ref_id,
    t,
)

pytestmark = pytest.mark.slow  # generates a population and builds cohorts from it

ARI = "acute-respiratory-infection"
CXR_SNOMED = {
    "233604007": "pneumonia",
    "84114007": "heart_failure",
    "60046008": "pleural_effusion",
    "36118008": "pneumothorax",
    "91302008": "sepsis",
}
YEAR = timedelta(days=365)


def read_manifest(out):
    with (out / "manifest.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def folder_files(out):
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def skipped(cond):
    status = cond.get("verificationStatus", {}).get("coding", [{}])[0].get("code")
    return status in ("refuted", "entered-in-error")


def expected_ari(raw):
    """Per AMB/EMER encounter: (patient, index, labels, window notes, window readings)."""
    out = []
    for pid, res in raw.items():
        readings = expected_readings(res)
        texts = note_texts(res)
        for enc in res["Encounter"]:
            if enc["class"]["code"] not in ("AMB", "EMER"):
                continue
            index = t(enc["period"]["start"])
            labels = set()
            for cond in res["Condition"]:
                name = ARI_SNOMED.get(cond["code"]["coding"][0]["code"])
                if name is None or skipped(cond):
                    continue
                onset = t(cond.get("onsetDateTime") or cond["recordedDate"])
                if onset.date() == index.date() or ref_id(cond.get("encounter")) == enc["id"]:
                    labels.add(name)
            steps = {e["id"] for e in res["Encounter"] if index - YEAR <= t(e["period"]["start"]) < index}
            vitals = sorted((w, c, v) for w, c, v, e in readings if e in steps and index - YEAR <= w < index)
            notes = sorted(x for x, w in texts.items() if index - YEAR <= w < index)
            out.append((pid, index, tuple(n for n in ARI_SNOMED.values() if n in labels), notes, vitals))
    return out


@pytest.fixture(scope="module")
def raw(synthea_bundles):
    return raw_patients(synthea_bundles)


@pytest.fixture(scope="module")
def ari_out(synthea_bundles, tmp_path_factory):
    out = tmp_path_factory.mktemp("ari") / "cohort"
    built = build_cohort([synthea_bundles], ARI, out, seed=3, progress=False)
    return out, built


def by_sample(rows):
    return sorted(
        (r["patient_id"], datetime.fromisoformat(r["study_time"]), tuple(r["labels"].split(";")) if r["labels"] else ())
        for r in rows
    )


def test_manifest_rows_are_the_samples_worked_out_from_the_raw_json(ari_out, raw):
    out, built = ari_out
    rows = read_manifest(out)
    expected = expected_ari(raw)
    assert by_sample(rows) == sorted((pid, index, labels) for pid, index, labels, _, _ in expected)
    assert built.samples == len(rows) == len(expected) > 20
    have = Counter(
        (r["patient_id"], datetime.fromisoformat(r["study_time"]), r["has_notes"], r["has_vitals"]) for r in rows
    )
    assert have == Counter((pid, index, str(int(bool(n))), str(int(bool(v)))) for pid, index, _, n, v in expected)
    assert {r["has_image"] for r in rows} == {"0"}
    assert len({r["folder"] for r in rows}) == len(rows) == len({r["sample_id"] for r in rows})
    for r in rows:  # no patient identifier in a folder name
        assert r["patient_id"] not in r["folder"] and len(r["folder"]) == 20
        patient = raw[r["patient_id"]]["Patient"][0]
        assert r["sex"] == patient["gender"]
        born = datetime.fromisoformat(patient["birthDate"]).date()
        assert abs(float(r["age_years"]) - (datetime.fromisoformat(r["study_time"]).date() - born).days / 365.25) < 0.01


def test_every_patient_in_exactly_one_split(ari_out, raw):
    out, built = ari_out
    rows = read_manifest(out)
    splits = defaultdict(set)
    for r in rows:
        splits[r["patient_id"]].add(r["split"])
    assert set(splits) == set(raw)
    assert all(len(s) == 1 for s in splits.values())
    assert {s for v in splits.values() for s in v} <= {"train", "val", "test"}
    assert built.per_split == {s: sum(r["split"] == s for r in rows) for s in ("train", "val", "test")}


def test_a_batch_study_runs_every_sample_and_keys_its_outputs_by_sample(ari_out, tmp_path):
    """A built cohort with repeat visits through `medmm batch` unchanged: one result per sample, in manifest
    order, each with its own index time; FHIR resources per sample; evaluation inputs keyed by sample."""
    from medmm.batch.plan import Outputs, RunOptions, StudyProtocol
    from medmm.batch.results import load_results, split_scores
    from medmm.batch.run import run_batch
    from tests.batch.helpers import save_tiny_checkpoint

    out, _ = ari_out
    rows = read_manifest(out)
    assert len({r["patient_id"] for r in rows}) < len(rows)  # the population has repeat visits
    model = save_tiny_checkpoint(tmp_path / "model", task=load_task(out / "task.yaml"))
    protocol = StudyProtocol(
        name="samples", outputs=Outputs(impression=False), run=RunOptions(batch_size=8, part_size=16)
    )
    study = tmp_path / "study"
    run_batch(model, out, study, protocol=protocol, progress=False, user="research-operator")
    results = load_results(study)
    assert results["sample_id"].tolist() == [r["sample_id"] for r in rows]
    assert results["patient_id"].tolist() == [r["patient_id"] for r in rows]
    assert (results["status"] == "done").all()
    names = load_task(out / "task.yaml").label_names
    got = [{n for n in names if row[f"label_{n}"] == 1} for _, row in results.iterrows()]
    assert got == [set(filter(None, r["labels"].split(";"))) for r in rows]  # the task's labels, not the default five
    assert any(got)
    times = [t.isoformat() for t in results["study_time"]]
    assert times == [datetime.fromisoformat(r["study_time"]).isoformat() for r in rows]
    reports = [json.loads(line) for line in (study / "fhir" / "DiagnosticReport.ndjson").read_text().splitlines()]
    assert len({r["id"] for r in reports}) == len(rows)  # one report per sample, none shared by two visits
    assert Counter(r["subject"]["reference"] for r in reports) == Counter(f"Patient/{r['patient_id']}" for r in rows)
    risks = [json.loads(line) for line in (study / "fhir" / "RiskAssessment.ndjson").read_text().splitlines()]
    answered = results[results["answered"].astype(bool)]
    assert len({r["id"] for r in risks}) == len(risks) == len(answered) > 0  # a sample with nothing to read has none
    assert sorted(r["occurrenceDateTime"] for r in risks) == sorted(
        t.isoformat(timespec="milliseconds").replace("+00:00", "Z") for t in answered["study_time"]
    )
    read = set(answered["sample_id"])
    test = [r for r in rows if r["split"] == "test" and r["sample_id"] in read]
    scores = split_scores(study, "test")
    assert list(scores.patient_ids) == [r["patient_id"] for r in test]
    assert scores.unreadable == sum(r["split"] == "test" and r["sample_id"] not in read for r in rows)
    assert scores.attributes["age_band"].tolist() == [
        load_task(out / "task.yaml").age_band(float(r["age_years"])) for r in test
    ]


def test_the_interface_lists_and_opens_each_sample(ari_out, tmp_path):
    """The clinician page's cohort picker offers every sample of a built cohort (patient and index time) and
    opens the one chosen with its own index time."""
    from tests.batch.helpers import save_tiny_checkpoint
    from tests.ui.conftest import make_service

    out, _ = ari_out
    rows = {r["sample_id"]: r for r in read_manifest(out)}
    model = save_tiny_checkpoint(tmp_path / "model", task=load_task(out / "task.yaml"))
    service = make_service(model, tmp_path / "work", out)
    try:
        listed = service.demo_patients()
        assert sorted(key for _, key in listed) == sorted(rows)
        label, key = next((label, key) for label, key in listed if rows[key]["split"] == "test")
        when = datetime.fromisoformat(rows[key]["study_time"])
        assert rows[key]["patient_id"] in label and when.strftime("%Y-%m-%d %H:%M") in label
        case = service.open_demo(key)
        assert case.study.time == when and case.folder == out / rows[key]["folder"]
    finally:
        service.close()


def test_cohort_reader_reads_each_sample_notes_and_vitals(ari_out, raw):
    out, _ = ari_out
    cohort = Cohort.open(out)
    expected = defaultdict(list)
    for pid, index, _, notes, vitals in expected_ari(raw):
        expected[(pid, index)].append((notes, vitals))
    checked_vitals = 0
    for i, entry in enumerate(cohort.entries):
        assert entry.study_time is not None
        study = cohort.load(i)
        notes, vitals = expected[(entry.patient_id, entry.study_time)][0]
        assert sorted(n.text for n in study.notes) == notes, entry.folder
        csv_path = entry.folder / "vitals.csv"
        assert csv_path.exists() == bool(vitals)
        assert not (entry.folder / "images").exists()
        if vitals:
            table = read_vitals_table(csv_path)
            assert not table.issues and not table.dropped
            got = sorted((r.time, r.channel, r.value) for r in table.readings)
            assert [(w, c) for w, c, _ in got] == [(w, c) for w, c, _ in vitals]
            np.testing.assert_allclose([v for *_, v in got], [v for *_, v in vitals], rtol=1e-9)
            # load_study's grid over the whole year holds the same values (hourly means)
            grid = load_study(
                entry.folder,
                study_time=entry.study_time,
                patient_id=entry.patient_id,
                window_hours=365 * 24,
                step_minutes=60,
            ).vitals
            sums = defaultdict(list)
            for w, c, v in vitals:
                sums[((w - grid.start) // timedelta(hours=1), c)].append(v)
            expected_grid = np.full(grid.values.shape, np.nan)
            for (step, c), values in sums.items():
                expected_grid[step, CHANNELS.index(c)] = np.mean(values)
            np.testing.assert_allclose(grid.values, expected_grid, rtol=1e-5)
            checked_vitals += 1
    assert checked_vitals > 10


def test_per_encounter_grid_of_each_sample_from_the_raw_json(ari_out, raw):
    """Loaded with the task's grid (one step per encounter, the latest 16 of the year), each sample's
    vitals are the per-encounter means worked out here from the raw bundles."""
    out, _ = ari_out
    cohort = Cohort.open(out)
    starts = {e["id"]: t(e["period"]["start"]) for res in raw.values() for e in res["Encounter"]}
    expected = {(pid, index): vitals for pid, index, _, _, vitals in expected_ari(raw)}
    readings = {pid: expected_readings(res) for pid, res in raw.items()}
    checked = 0
    for i, entry in enumerate(cohort.entries):
        if not expected[(entry.patient_id, entry.study_time)]:
            continue
        index = entry.study_time
        steps = defaultdict(list)
        for w, c, v, e in readings[entry.patient_id]:
            if e in starts and index - YEAR <= starts[e] < index and index - YEAR <= w < index:
                steps[(starts[e], c)].append(v)
        kept = sorted({when for when, _ in steps})[-16:]
        grid = cohort.load(i, window_hours=365 * 24, step_minutes=60, encounter_steps=16).vitals
        assert grid.per_encounter and grid.times == tuple(kept)
        want = np.full((len(kept), len(CHANNELS)), np.nan)
        for (when, c), values in steps.items():
            if when in kept:
                want[kept.index(when), CHANNELS.index(c)] = np.mean(values)
        np.testing.assert_allclose(grid.values, want, rtol=1e-5)
        checked += 1
    assert checked > 10


def test_report_counts(ari_out, raw, synthea_bundles):
    out, _ = ari_out
    rows = read_manifest(out)
    report = json.loads((out / REPORT_JSON).read_text())
    n = len(rows)
    assert report["patients"] == len(raw) and report["samples"] == n
    expected = expected_ari(raw)
    for name in ARI_SNOMED.values():
        count = sum(name in labels for _, _, labels, _, _ in expected)
        assert report["labels"][name] == {"count": count, "percent": round(100 * count / n, 2)}
    assert report["coverage"]["notes"]["count"] == sum(bool(x[3]) for x in expected)
    assert report["coverage"]["vitals"]["count"] == sum(bool(x[4]) for x in expected)
    assert report["coverage"]["images"]["count"] == 0
    assert report["samples_by_split"] == {s: sum(r["split"] == s for r in rows) for s in ("train", "val", "test")}
    # the exclusions are the population reader's own counts, worked out again here
    population = PopulationReport()
    list(population_samples(load_task(ARI), iter_bundle_folder(synthea_bundles, population), population))
    counted = {e["reason"]: e["count"] for e in report["exclusions"]}
    repeated = counted.pop("index: more than one index at the same time; each kept as its own sample", 0)
    assert counted == dict(population.counts)
    starts = Counter((pid, index) for pid, index, *_ in expected)
    assert repeated == sum(c - 1 for c in starts.values())
    assert len(report["task"]["sha256"]) == 64 and len(report["sources"][0]["sha256"]) == 64
    assert (out / "task.yaml").read_text() == open(load_task(ARI).source).read()
    md = (out / REPORT_MD).read_text()
    assert f"**{n}** samples" in md and "acute_bronchitis" in md


def test_bundles_and_bulk_export_build_the_same_cohort(ari_out, synthea_bulk, tmp_path):
    out, _ = ari_out
    from_bulk = tmp_path / "bulk"
    build_cohort([synthea_bulk], ARI, from_bulk, seed=3, progress=False)
    assert (from_bulk / "manifest.csv").read_bytes() == (out / "manifest.csv").read_bytes()
    a, b = folder_files(out), folder_files(from_bulk)
    bookkeeping = {"cohort_report.json", "cohort_report.md", "build.json"}  # name the source kind and paths
    assert {k: v for k, v in a.items() if k not in bookkeeping} == {k: v for k, v in b.items() if k not in bookkeeping}
    report = json.loads((from_bulk / REPORT_JSON).read_text())
    assert report["sources"][0]["kind"] == "bulk"


def test_repeated_build_is_identical(ari_out, synthea_bundles):
    out, _ = ari_out
    before = folder_files(out)
    (out / "notes.txt").write_text("kept")  # not written by a build: left alone
    build_cohort([synthea_bundles], ARI, out, seed=3, progress=False)
    after = folder_files(out)
    assert after.pop("notes.txt") == b"kept"
    (out / "notes.txt").unlink()
    assert set(after) == set(before)
    assert {k: v for k, v in after.items() if k != "build.json"} == {
        k: v for k, v in before.items() if k != "build.json"
    }
    assert "created" in json.loads(after["build.json"])


def test_another_seed_moves_patients_not_samples(ari_out, synthea_bundles, tmp_path):
    out, _ = ari_out
    other = tmp_path / "seed"
    build_cohort([synthea_bundles], ARI, other, seed=4, splits=(0.4, 0.2, 0.4), progress=False)
    a, b = read_manifest(out), read_manifest(other)
    assert [(r["folder"], r["labels"]) for r in a] == [(r["folder"], r["labels"]) for r in b]
    report = json.loads((other / REPORT_JSON).read_text())
    assert report["seed"] == 4 and report["splits"] == {"train": 0.4, "val": 0.2, "test": 0.4}


def test_synthetic_cxr_task_with_an_index_table(synthea_bundles, raw, tmp_path):
    """Index times from a table (the last encounter's start); one patient left out of the table."""
    ids = sorted(raw)
    table = tmp_path / "index.csv"
    index = {pid: max(t(e["period"]["start"]) for e in raw[pid]["Encounter"]) for pid in ids[1:]}
    table.write_text("patient_id,study_time\n" + "".join(f"{p},{w.isoformat()}\n" for p, w in index.items()))
    out = tmp_path / "cxr"
    build_cohort([synthea_bundles], "synthetic-cxr", out, seed=0, progress=False, index_table=table)
    rows = read_manifest(out)
    assert sorted((r["patient_id"], datetime.fromisoformat(r["study_time"])) for r in rows) == sorted(index.items())
    report = json.loads((out / REPORT_JSON).read_text())
    assert {e["reason"]: e["count"] for e in report["exclusions"]}["exclusion: patient not in the index table"] == 1
    assert report["patients"] == len(ids) and report["samples"] == len(ids) - 1
    cohort = Cohort.open(out)
    for i, entry in enumerate(cohort.entries):
        pid, when = entry.patient_id, entry.study_time
        res = raw[pid]
        labels = sorted(
            {
                CXR_SNOMED[c["code"]["coding"][0]["code"]]
                for c in res["Condition"]
                if c["code"]["coding"][0]["code"] in CXR_SNOMED and not skipped(c)
            }
        )
        row = rows[i]
        assert sorted(row["labels"].split(";") if row["labels"] else []) == labels
        study = cohort.load(i)
        assert list(study.label_names) == labels  # the existing reader derives the same labels
        notes = sorted(x for x, w in note_texts(res).items() if when - YEAR <= w < when)
        assert sorted(n.text for n in study.notes) == notes
        vitals = sorted((w, c, v) for w, c, v, _ in expected_readings(res) if when - timedelta(hours=48) <= w < when)
        assert row["has_vitals"] == str(int(bool(vitals)))
        if vitals:
            got = sorted((r.time, r.channel, r.value) for r in read_vitals_table(entry.folder / "vitals.csv").readings)
            assert [(w, c) for w, c, _ in got] == [(w, c) for w, c, _ in vitals]
            np.testing.assert_allclose([v for *_, v in got], [v for *_, v in vitals], rtol=1e-9)
            assert study.vitals is not None and study.vitals.mask.any()  # the default 48 h grid holds them


def test_bad_source_and_non_empty_out_are_typed_errors(synthea_bundles, tmp_path):
    missing = tmp_path / "no-such-export"
    with pytest.raises(FhirError) as err:
        build_cohort([missing], ARI, tmp_path / "a", progress=False)
    assert str(missing) in str(err.value)
    neither = tmp_path / "neither"
    neither.mkdir()
    (neither / "readme.txt").write_text("not FHIR")
    with pytest.raises(FhirError) as err:
        build_cohort([synthea_bundles, neither], ARI, tmp_path / "b", progress=False)
    assert str(neither) in str(err.value)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "mine.txt").write_text("keep")
    with pytest.raises(CohortError) as err:
        build_cohort([synthea_bundles], ARI, busy, progress=False)
    assert str(busy) in str(err.value)
    assert [p.name for p in busy.iterdir()] == ["mine.txt"]
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_command_line(synthea_bundles, tmp_path, capsys):
    from medmm.cli import main

    out = tmp_path / "cli"
    main(["cohort", "build", "--source", str(synthea_bundles), "--task", ARI, "--out", str(out), "--json"])
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((out / REPORT_JSON).read_text())
    with pytest.raises(SystemExit) as code:
        main(["cohort", "build", "--source", str(tmp_path / "nothing"), "--task", ARI, "--out", str(tmp_path / "x")])
    assert code.value.code == 2
    assert "nothing" in capsys.readouterr().err


def test_evaluation_and_audit_read_every_sample_and_resample_patients(ari_out, tmp_path):
    """A built cohort (several samples per patient) goes through `run_evaluation` and `run_audit` of a
    checkpoint of its task: every readable test sample scored, intervals by patient."""
    from medmm.evaluate.run import run_audit, run_evaluation
    from tests.batch.helpers import save_tiny_checkpoint

    out, _ = ari_out
    model = save_tiny_checkpoint(tmp_path / "model", task=load_task(out / "task.yaml"))
    evaluation = run_evaluation(model, out, tmp_path / "eval", n_boot=50, progress=False, baselines=False)
    rows = [r for r in read_manifest(out) if r["split"] == "test"]
    test = evaluation["splits"]["test"]
    assert test["cases"] == len(rows) and test["patients"] == len({r["patient_id"] for r in rows}) < len(rows)
    assert [d["name"] for d in evaluation["metrics"]["diagnoses"]] == list(load_task(ARI).label_names)
    want = Counter(n for r in rows for n in r["labels"].split(";") if n)
    assert {k: v for k, v in test["positives"].items() if v} == dict(want)
    audit = run_audit(model, out, tmp_path / "audit", n_boot=50, progress=False)
    assert audit["split"]["cases"] == len(rows)
    assert evaluation["cohort"]["samples"] == len(read_manifest(out)) > evaluation["cohort"]["patients"]


def test_the_audit_groups_by_the_models_task(ari_out, tmp_path):
    """A model whose task audits by age band (its own bands) and birth sex: the audit's single attributes are
    those two, and each group's size is the number of test samples in it, counted here from the manifest."""
    from medmm.evaluate.run import run_audit
    from medmm.tasks import task_from_dict, task_to_dict
    from tests.batch.helpers import save_tiny_checkpoint

    out, _ = ari_out
    data = task_to_dict(load_task(out / "task.yaml"))
    data.update(audit_attributes=["age_band", "birth_sex"], age_bands=[30, 60])
    model = save_tiny_checkpoint(tmp_path / "model", task=task_from_dict(data, "test"))
    audit = run_audit(model, out, tmp_path / "audit", n_boot=20, min_group_size=1, progress=False)
    assert audit["model"]["strata"] == {"attributes": ["age_band", "birth_sex"], "age_bands": [30.0, 60.0]}
    rows = [r for r in read_manifest(out) if r["split"] == "test"]
    bands = Counter(
        "0-29" if float(r["age_years"]) < 30 else "30-59" if float(r["age_years"]) < 60 else "60+" for r in rows
    )
    births = Counter(r["birth_sex"] or "unknown" for r in rows)
    assert births and set(births) <= {"F", "M"}  # every test patient has a US Core birth sex
    sizes = {(g["attribute"], g["group"]): g["n"] for g in audit["groups"]}
    assert {a for a, _ in sizes if " x " not in a} == {"age_band", "birth_sex"}
    assert {g: n for (a, g), n in sizes.items() if a == "age_band"} == dict(bands)
    assert {g: n for (a, g), n in sizes.items() if a == "birth_sex"} == dict(births)


def test_predict_with_a_task_reads_a_raw_record_at_its_latest_index(synthea_bundles, raw, tmp_path):
    """`medmm predict --task` on one raw Synthea Bundle: the prediction is made at the patient's latest
    ambulatory or emergency encounter (worked out here from the JSON), with the task's labels."""
    import subprocess
    import sys

    from tests.batch.helpers import save_tiny_checkpoint

    model = save_tiny_checkpoint(tmp_path / "model", task=load_task(ARI))
    bundle = sorted(synthea_bundles.glob("*.json"))[0]
    pid = next(
        e["resource"]["id"]
        for e in json.loads(bundle.read_text())["entry"]
        if e["resource"]["resourceType"] == "Patient"
    )
    latest = max(t(e["period"]["start"]) for e in raw[pid]["Encounter"] if e["class"]["code"] in ("AMB", "EMER"))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "medmm.cli",
            "predict",
            "--model",
            str(model),
            "--task",
            ARI,
            "--json",
            "--no-impression",
            "--trail",
            str(tmp_path / "audit.sqlite"),
            str(bundle),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    line = json.loads(proc.stdout.splitlines()[0])
    assert line["status"] == "ok" and datetime.fromisoformat(line["index_time"]) == latest
    assert [s["name"] for s in sorted(line["scores"], key=lambda s: s["name"])] == sorted(load_task(ARI).label_names)
    wrong = subprocess.run(
        [
            sys.executable,
            "-m",
            "medmm.cli",
            "predict",
            "--model",
            str(model),
            "--task",
            "synthetic-cxr",
            "--trail",
            str(tmp_path / "audit.sqlite"),
            str(bundle),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert wrong.returncode != 0 and "--task" in wrong.stderr + wrong.stdout


def test_a_tasks_own_channels_are_built_read_and_gridded_from_the_raw_json(synthea_bundles, raw, tmp_path):
    """A task with two channels medmm does not know (pain severity 72514-3 in {score}, BMI 39156-5 in
    kg/m2) beside heart rate: the built cohort's vitals.csv carries them, and each sample loaded with the
    task's channels has, per encounter, the means of those Observations worked out here from the JSON."""
    import yaml

    from medmm.tasks import task_to_dict

    data = task_to_dict(load_task(ARI))
    data.update(
        name="ari-pain",
        channels=[
            {"name": "pain", "display": "Pain severity", "loinc": ["72514-3"], "unit": "{score}", "low": 0, "high": 10},
            {
                "name": "heart_rate",
                "display": "Heart rate",
                "loinc": ["8867-4"],
                "unit": "/min",
                "low": 20,
                "high": 300,
            },
            {"name": "bmi", "display": "Body mass index", "loinc": ["39156-5"], "unit": "kg/m2", "low": 10, "high": 80},
        ],
    )
    path = tmp_path / "ari-pain.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    task = load_task(path)
    out = tmp_path / "cohort"
    build_cohort([synthea_bundles], path, out, seed=3, progress=False)
    codes = {"72514-3": "pain", "8867-4": "heart_rate", "39156-5": "bmi"}
    readings, starts = {}, {}
    for pid, res in raw.items():
        seen, mine = set(), []
        for obs in sorted(res["Observation"], key=lambda o: o["id"]):
            code = obs["code"]["coding"][0]["code"]
            key = (code, t(obs["effectiveDateTime"]), ref_id(obs.get("encounter")))
            if code not in codes or "valueQuantity" not in obs or key in seen:
                continue
            seen.add(key)
            mine.append((key[1], codes[code], float(obs["valueQuantity"]["value"]), key[2]))
        readings[pid] = mine
        starts.update({e["id"]: t(e["period"]["start"]) for e in res["Encounter"]})
    cohort = Cohort.open(out)
    grid = {"window_hours": 365 * 24, "step_minutes": 60, "encounter_steps": 16, "vital_signs": task.channels}
    checked = Counter()
    for i, entry in enumerate(cohort.entries):
        index = entry.study_time
        steps = defaultdict(list)
        for w, c, v, e in readings[entry.patient_id]:
            if e in starts and index - YEAR <= starts[e] < index and index - YEAR <= w < index:
                steps[(starts[e], c)].append(v)
        vitals = cohort.load(i, **grid).vitals
        if not steps:
            assert vitals is None or not vitals.mask.any()
            continue
        kept = sorted({when for when, _ in steps})[-16:]
        assert vitals.channels == ("pain", "heart_rate", "bmi") and vitals.units == ("{score}", "/min", "kg/m2")
        assert vitals.times == tuple(kept)
        want = np.full((len(kept), 3), np.nan)
        for (when, c), values in steps.items():
            if when in kept:
                want[kept.index(when), vitals.channels.index(c)] = np.mean(values)
        np.testing.assert_allclose(vitals.values, want, rtol=1e-5)
        checked.update(c for (when, c) in steps if when in kept)
    assert min(checked[c] for c in ("pain", "heart_rate", "bmi")) > 10, checked
