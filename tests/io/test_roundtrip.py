"""Synthetic cohort -> ingest recovers every planted value exactly (checked against the raw files)."""

import base64
import csv
import json
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pydicom
from fhir.resources.R4B.bundle import Bundle

from medmm.codes import VITAL_NAMES, vital_for_code
from medmm.io import load_study
from medmm.io.cohort import Cohort


def _planted_notes(bundle: dict) -> list[str]:
    texts = []
    for entry in bundle["entry"]:
        res = entry["resource"]
        forms = (
            res.get("presentedForm", [])
            if res["resourceType"] == "DiagnosticReport"
            else [c["attachment"] for c in res.get("content", [])]
        )
        texts += [base64.b64decode(f["data"]).decode("utf-8") for f in forms if "data" in f]
    return texts


def test_every_bundle_validates_and_every_dicom_reads(small_cohort):
    bundles = sorted(small_cohort.glob("*/record.json"))
    dicoms = sorted(small_cohort.glob("*/images/**/*.dcm"))
    assert bundles and dicoms
    for path in bundles:
        Bundle.model_validate(json.loads(path.read_text()))
    for path in dicoms:
        ds = pydicom.dcmread(path)
        assert ds.pixel_array.size > 0


def test_ingest_recovers_planted_values(small_cohort):
    cohort = Cohort.open(small_cohort)
    manifest = pd.read_csv(small_cohort / "manifest.csv", dtype=str, keep_default_na=False)
    checked_vitals = checked_notes = checked_images = 0
    for entry, row in zip(cohort.entries, manifest.to_dict("records")):
        study = cohort.load(cohort.patient_ids.index(entry.patient_id))
        truth = json.loads((entry.folder / "truth.json").read_text())
        # labels and demographics
        assert set(study.label_names) == {x for x in row["labels"].split(";") if x}
        assert set(study.label_names) == set(truth["labels"])
        demo = study.demographics
        assert (demo.sex, demo.race, demo.ethnicity) == (row["sex"], row["race"], row["ethnicity"])
        assert demo.birth_date == truth["demographics"]["birth_date"]
        assert int(demo.age_years) == int(row["age_years"])
        assert study.time == datetime.fromisoformat(row["study_time"])
        # notes: the texts planted in the bundle, decoded independently
        bundle = json.loads((entry.folder / "record.json").read_text())
        planted = _planted_notes(bundle)
        assert sorted(n.text for n in study.notes) == sorted(set(planted))
        checked_notes += len(planted)
        # vitals from the CSV: each planted reading sits in its hour step with its exact value
        csv_path = entry.folder / "vitals.csv"
        if csv_path.exists():
            start = study.time - timedelta(hours=48)
            cells: dict = {}
            with open(csv_path) as fh:
                for rec in csv.DictReader(fh):
                    t = datetime.fromisoformat(rec["time"])
                    step = int((t - start).total_seconds() // 3600)
                    channel = vital_for_code(rec["code"]).name
                    cells.setdefault((step, channel), []).append(float(rec["value"]))
            for (step, channel), values in cells.items():
                c = VITAL_NAMES.index(channel)
                assert study.vitals.mask[step, c]
                assert study.vitals.values[step, c] == np.float32(np.mean(values))
            assert int(study.vitals.mask.sum()) == len(cells)
            checked_vitals += len(cells)
        # images: pixels equal pydicom's own decoding (plus the inversion of MONOCHROME1)
        for series in study.images:
            if series.modality not in ("CR", "DX"):
                continue
            ds = pydicom.dcmread(series.source_files[0])
            raw = ds.pixel_array.astype(np.float32)
            assert float(getattr(ds, "RescaleSlope", 1)) == 1 and float(getattr(ds, "RescaleIntercept", 0)) == 0
            if ds.PhotometricInterpretation == "MONOCHROME1":
                assert series.inverted
                np.testing.assert_array_equal(series.pixels, (2**ds.BitsStored - 1) - raw)
            else:
                np.testing.assert_array_equal(series.pixels, raw)
            checked_images += 1
    assert checked_vitals > 0 and checked_notes > 0 and checked_images > 0


def test_ct_volumes_come_back_in_slice_order(small_cohort):
    volumes = 0
    for folder in sorted(p for p in small_cohort.iterdir() if p.is_dir()):
        study = load_study(folder)
        for series in study.images:
            if series.modality != "CT":
                continue
            volumes += 1
            assert series.pixels.ndim == 3
            files = [pydicom.dcmread(f) for f in series.source_files]
            z = [float(ds.ImagePositionPatient[2]) for ds in files]
            assert z == sorted(z) or z == sorted(z, reverse=True)
            for k, ds in enumerate(files):
                hu = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
                np.testing.assert_array_equal(series.pixels[k], hu)
    assert volumes > 0


def test_fhir_borne_vitals_land_on_the_grid(small_cohort):
    cohort = Cohort.open(small_cohort)
    with_obs = []
    for index, entry in enumerate(cohort.entries):
        if (entry.folder / "vitals.csv").exists() or not (entry.folder / "record.json").exists():
            continue
        bundle = json.loads((entry.folder / "record.json").read_text())
        if any(e["resource"]["resourceType"] == "Observation" for e in bundle["entry"]):
            with_obs.append((index, bundle))
    assert with_obs, "the fixture's seed plants FHIR-borne vitals for some patients"
    index, bundle = with_obs[0]
    study = cohort.load(index)
    hr = [
        e["resource"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Observation" and e["resource"]["code"]["coding"][0]["code"] == "8867-4"
    ]
    assert hr
    start = study.time - timedelta(hours=48)
    for obs in hr:
        t = datetime.fromisoformat(obs["effectiveDateTime"])
        step = int((t - start).total_seconds() // 3600)
        if 0 <= step < 48:
            assert study.vitals.values[step, VITAL_NAMES.index("heart_rate")] == np.float32(
                obs["valueQuantity"]["value"]
            )
