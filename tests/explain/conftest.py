"""A tiny MedMM with open gates, its Predictor, and a hand-built study with every modality."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
import torch

from medmm.codes import VITAL_NAMES
from medmm.predict import Predictor
from medmm.records import ClinicalNote, ImageSeries, Study, VitalSeries
from tests.test_model import note_tokenizer, open_gates, tiny_model

STUDY_TIME = datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)
NOTE_TEXTS = (
    "patient reports cough.",
    "crackles right lower lobe, denies chest pain; sudden dyspnoea at rest with ankle oedema and confusion",
)


def make_study(*, image: bool = True, notes: bool = True, vitals: bool = True, shape=(40, 50)) -> Study:
    """A study with a (40, 50) radiograph, two notes (the second longer than 8 tokens) and a 4-step vitals grid."""
    rng = np.random.default_rng(5)
    images = ()
    if image:
        pixels = rng.uniform(0, 1000, size=shape).astype(np.float32)
        # 8 mm pixels: the 320 x 400 mm of a chest radiograph, inside the default input scope
        images = (
            ImageSeries(pixels=pixels, spacing=(8.0, 8.0), modality="DX", series_uid="1.2.3.4", window=(500.0, 1000.0)),
        )
    texts = NOTE_TEXTS if notes else ()
    note_records = tuple(
        ClinicalNote(text=t, time=STUDY_TIME - timedelta(hours=10 - i), source_id=f"DocumentReference/n{i}")
        for i, t in enumerate(texts)
    )
    series = None
    if vitals:
        values = rng.normal(0, 1, size=(4, len(VITAL_NAMES))).astype(np.float32) + np.array(
            [80, 16, 96, 37, 120, 75, 70], dtype=np.float32
        )
        mask = np.ones_like(values, dtype=bool)
        mask[0, 1] = mask[2, 6] = mask[3, 6] = False
        values[~mask] = np.nan
        units = ("/min", "/min", "%", "Cel", "mm[Hg]", "mm[Hg]", "kg")
        series = VitalSeries(STUDY_TIME - timedelta(hours=4), 3600.0, tuple(VITAL_NAMES), units, values, mask)
    return Study(study_id="S1", images=images, notes=note_records, vitals=series, time=STUDY_TIME)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread; two threads on two busy cores spend their time waiting."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = tiny_model().eval()
    open_gates(m, 0.5)
    return m


@pytest.fixture(scope="module")
def predictor(model) -> Predictor:
    return Predictor(model, note_tokenizer=note_tokenizer())


@pytest.fixture(scope="module")
def study() -> Study:
    return make_study()


@pytest.fixture()
def batch(predictor, study) -> dict:
    return predictor.batch([study])
