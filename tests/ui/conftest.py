"""A tiny checkpoint with an audit folder beside it, the shared small synthetic cohort, and services and apps built on them."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pandas as pd
import pytest
import torch

from medmm.trail import AuditStore
from tests.batch.helpers import save_tiny_checkpoint

# A hand-written audit in the format `medmm audit` writes (the fields the group card reads).
FLAG_REASON = "ratio 95% CI [0.40, 0.70] lies below 0.8"


def metric(name: str, value: float, low: float, high: float) -> dict:
    return {
        "metric": name,
        "value": value,
        "ci": [low, high],
        "reference_value": 0.8,
        "ratio": 1.0,
        "ratio_ci": [0.9, 1.1],
        "difference": 0.0,
        "difference_ci": [-0.1, 0.1],
        "skipped_resamples": 0,
    }


def scored(attribute: str, group: str, n: int, auroc: float, status: str = "scored") -> dict:
    metrics = [
        metric("auroc", auroc, auroc - 0.05, auroc + 0.05),
        metric("tpr", 0.7, 0.6, 0.8),
        metric("fpr", 0.1, 0.05, 0.15),
        metric("ppv", 0.6, 0.5, 0.7),
    ]
    return {"attribute": attribute, "group": group, "n": n, "n_patients": n, "status": status, "metrics": metrics}


def small(attribute: str, group: str, n: int) -> dict:
    return {"attribute": attribute, "group": group, "n": n, "n_patients": n, "status": "too small", "metrics": []}


def make_audit(model_id: str) -> dict:
    """Female: reference; male: flagged; age 65-79 scored, 80+ too small; race 1002-5 flagged, 2106-3 scored; no ethnicity groups."""
    groups = [
        scored("sex", "female", 120, 0.84, "reference"),
        scored("sex", "male", 100, 0.61),
        scored("age_band", "65-79", 60, 0.80),
        small("age_band", "80+", 12),
        scored("race", "2106-3", 90, 0.83, "reference"),
        scored("race", "1002-5", 40, 0.55),
        small("sex x race", "female / 1002-5", 9),
    ]
    flags = [
        {"attribute": "sex", "group": "male", "metric": "auroc", "value": 0.61, "reason": FLAG_REASON},
        {"attribute": "race", "group": "1002-5", "metric": "auroc", "value": 0.55, "reason": FLAG_REASON},
        {"attribute": "sex x race", "group": "male / 1002-5", "metric": "tpr", "value": 0.3, "reason": FLAG_REASON},
    ]
    return {
        "format": 1,
        "model": {"id": model_id},
        "cohort": {"name": "demo"},
        "split": {"split": "test"},
        "settings": {"min_group_size": 30},
        "attributes": ["sex", "age_band", "race", "ethnicity", "sex x race"],
        "groups": groups,
        "flags": flags,
    }


@pytest.fixture(scope="session", autouse=True)
def gradio_folder(tmp_path_factory):
    """One Gradio upload folder and cache for every app of the test process.

    Gradio reads them from the environment at each upload, so apps with different folders in one
    process would refuse each other's uploads; `medmm serve` runs one app per process.
    """
    from ui.app import configure_gradio_paths

    names = ("GRADIO_TEMP_DIR", "GRADIO_EXAMPLES_CACHE")
    saved = {k: os.environ.get(k) for k in names}
    configure_gradio_paths(tmp_path_factory.mktemp("gradio-app"))
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread; two threads on two busy cores spend their time waiting."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def ui_model(tmp_path_factory) -> Path:
    """A tiny checkpoint at ROOT/model with its audit at ROOT/audit/audit.json and a model card at ROOT/model_card.md."""
    from medmm.predict import Predictor

    root = tmp_path_factory.mktemp("ui-run")
    model = save_tiny_checkpoint(root / "model")
    model_id = Predictor.from_checkpoint(model).model_id
    (root / "audit").mkdir()
    (root / "audit" / "audit.json").write_text(json.dumps(make_audit(model_id)))
    (root / "model_card.md").write_text("# Model card: tiny test model\n\nResearch use only.\n")
    return model


@pytest.fixture(scope="session")
def ui_predictor(ui_model):
    from medmm.predict import Predictor

    return Predictor.from_checkpoint(ui_model)


def make_service(ui_model: Path, work: Path, cohort: Path | None = None, predictor=None, **settings):
    from ui.session import ClinicianService, Settings

    return ClinicianService(
        Settings(model_dir=ui_model, work_dir=work, audit_store=work / "audit.sqlite", cohort_dir=cohort, **settings),
        predictor=predictor,
    )


def patient_files(folder: Path) -> list[Path]:
    """A synthetic patient's input files (its ground truth left out), as a clinician would upload them."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("truth"))


def full_patient(cohort: Path) -> Path:
    """The first patient of the cohort with a radiograph, notes and vital signs (vitals.csv)."""
    manifest = pd.read_csv(cohort / "manifest.csv", dtype=str)
    for row in manifest.itertuples():
        folder = cohort / row.folder
        if (
            row.has_image == "1"
            and row.has_notes == "1"
            and (folder / "vitals.csv").is_file()
            and (folder / "images").is_dir()
        ):
            return folder
    raise AssertionError("no full patient in the cohort")


def image_files_and_patient_id(folder: Path) -> tuple[list[Path], str]:
    """A patient's DICOM files (what a PACS would hold) and the PatientID they carry."""
    import pydicom

    files = sorted((folder / "images").rglob("*.dcm"))
    return files, str(pydicom.dcmread(files[0], stop_before_pixels=True).PatientID)


@pytest.fixture(scope="module")
def served(ui_model, ui_predictor, small_cohort, tmp_path_factory):
    """The app serving the tiny model over the small cohort, one per test module: (service, url)."""
    work = tmp_path_factory.mktemp("ui-served")
    service = make_service(ui_model, work, small_cohort, predictor=ui_predictor)
    app, url = launch(service, work)
    yield service, url
    app.close()
    service.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(
    service, work: Path, users: dict[str, str] | None = None, max_file_size: str | int = "5mb"
) -> tuple[object, str]:
    """Build the app on `service` and serve it on a free loopback port from a background thread."""
    from ui.app import build_app, launch_options

    app = build_app(service)
    _, url, _ = app.launch(
        **launch_options(work, "127.0.0.1", free_port(), users or {}, max_file_size), prevent_thread_lock=True
    )
    return app, url.rstrip("/")


def store_events(work: Path, action: str | None = None):
    return AuditStore(work / "audit.sqlite").events(action=action)


@pytest.fixture()
def browser(tmp_path):
    """Headless Chromium (Debian's chromium and chromedriver) with a fresh profile; skipped when they are absent."""
    from tests.ui.browser import new_driver

    driver = new_driver(tmp_path / "profile")
    yield driver
    driver.quit()
