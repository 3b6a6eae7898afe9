"""A small synthetic cohort shared by the synth tests (written once per session)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from fhir.resources.R4B.bundle import Bundle

from medmm.synth import SynthConfig, SynthSummary, synthesize

SMALL = SynthConfig(
    patients=24,
    seed=11,
    image_size=64,
    ct_fraction=0.25,
    ct_slices=12,
    ct_size=32,
    monochrome1_fraction=0.5,
    compressed_fraction=0.5,
    fhir_vitals_fraction=0.3,
    workers=2,
)


@pytest.fixture(scope="session")
def cohort_run(tmp_path_factory) -> tuple[Path, SynthSummary]:
    """The shared small cohort (written with two worker processes) and its summary."""
    root = tmp_path_factory.mktemp("synth") / "cohort"
    return root, synthesize(root, SMALL, progress=False)


@pytest.fixture(scope="session")
def cohort(cohort_run) -> Path:
    return cohort_run[0]


@pytest.fixture(scope="session")
def manifest(cohort) -> pd.DataFrame:
    return pd.read_csv(cohort / "manifest.csv", dtype=str, keep_default_na=False)


@pytest.fixture(scope="session")
def bundles(cohort, manifest) -> dict:
    """patient_id -> (R4B Bundle validated from record.json, the raw JSON, truth.json)."""
    out = {}
    for pid in manifest.patient_id:
        raw = json.loads((cohort / pid / "record.json").read_text())
        truth = json.loads((cohort / pid / "truth.json").read_text())
        out[pid] = (Bundle.model_validate(raw), raw, truth)
    return out
