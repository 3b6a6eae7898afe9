"""The served app over HTTP: concurrent predictions through gradio_client, streaming stages, the file route, login, upload limit."""

from __future__ import annotations

import http.client
import json
import os
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

from medmm.io import load_study
from medmm.io.fhir import read_fhir
from tests.io.test_pacs import ORTHANC, PLUGIN, running_orthanc, store
from tests.ui.conftest import (
    full_patient,
    image_files_and_patient_id,
    launch,
    make_service,
    patient_files,
    store_events,
)

pytestmark = pytest.mark.slow
OUTPUTS = (
    "status",
    "notice",
    "header",
    "modalities",
    "diagnoses",
    "impression",
    "card",
    "series",
    "preset",
    "slice",
    "viewer",
    "dicom",
    "target",
    "compare",
    "overlay_attention",
    "overlay_gradcam",
    "vitals",
    "notes",
    "overlay_attention_b",
    "overlay_gradcam_b",
    "vitals_b",
    "notes_b",
    "answer",
    "verdict",
    "named",
    "comment",
    "feedback_status",
    "summary",
)


def named(output: tuple) -> dict:
    return dict(zip(OUTPUTS, output, strict=True))


def raw_get(url: str, target: str) -> tuple[int, bytes]:
    """GET with the request target sent exactly as written (no client-side normalisation of '..')."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("GET", target)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def expected_scores(predictor, folder: Path) -> list[tuple[str, float]]:
    """The ranked diagnoses of a patient's files, straight from the Predictor (no interface involved)."""
    pre = predictor.model.config.preprocess
    record_id = read_fhir(folder / "record.json").patient_id
    study = load_study(folder, patient_id=record_id, window_hours=pre.window_hours, step_minutes=pre.step_minutes)
    return [(s.name, s.probability) for s in predictor.predict(study, impression=False).scores]


def test_ten_concurrent_predictions_through_gradio_client(served, ui_predictor, small_cohort):
    from gradio_client import Client, handle_file

    service, url = served
    manifest = pd.read_csv(small_cohort / "manifest.csv", dtype=str)
    folders = [small_cohort / f for f in manifest["folder"][:10]]
    before = len(store_events(service.work_dir, "predict"))

    def one(folder: Path):
        client = Client(url, verbose=False)
        job = client.submit([handle_file(str(p)) for p in patient_files(folder)], 0.6, api_name="/analyse")
        job.result(timeout=240)
        return job.outputs()

    with ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(one, folders))
    for folder, outputs in zip(folders, results):
        staged = [
            named(o) for o in outputs if isinstance(named(o)["summary"], dict) and named(o)["summary"].get("stage")
        ]
        assert [o["summary"]["stage"] for o in staged] == ["diagnoses", "impression", "explanations"], folder.name
        first = staged[0]
        got = [(s["name"], s["probability"]) for s in first["summary"]["scores"]]
        assert got == expected_scores(ui_predictor, folder)
        assert "medmm-diagnoses" in first["diagnoses"] and "medmm-error" not in named(outputs[-1])["status"]
    assert len(store_events(service.work_dir, "predict")) == before + 10


def test_stages_stream_and_the_session_can_ask_and_give_feedback(served, ui_predictor, small_cohort):
    from gradio_client import Client, handle_file

    service, url = served
    folder = full_patient(small_cohort)
    client = Client(url, verbose=False)
    job = client.submit([handle_file(str(p)) for p in patient_files(folder)], 0.5, api_name="/analyse")
    job.result(timeout=120)
    starting, loaded, diagnosed, drafted, explained = (named(o) for o in job.outputs())
    assert starting["diagnoses"] == "" and starting["summary"] is None and "Reading 3 files" in starting["header"]
    assert "Read 1 image series" in loaded["status"] and json.loads(loaded["viewer"])["kind"] == "grey"
    assert "medmm-group-card" in loaded["card"] and 'data-fact="patient-id"' in loaded["header"]
    assert diagnosed["diagnoses"].count("<tr data-diagnosis=") == 5 and 'data-status="used"' in diagnosed["header"]
    assert "Draft impression" in drafted["impression"] and drafted["summary"]["audit_event"]
    attention, gradcam = json.loads(explained["overlay_attention"]), json.loads(explained["overlay_gradcam"])
    assert (
        attention["kind"] == gradcam["kind"] == "rgb"
        and "Grad-CAM" in gradcam["caption"]
        and "opacity 0.50" in gradcam["caption"]
    )
    event = next(
        e for e in store_events(service.work_dir, "predict") if e.event_id == drafted["summary"]["audit_event"]
    )
    assert event.user == "anonymous"  # no login: never the account the server runs under

    pre = ui_predictor.model.config.preprocess
    record_id = read_fhir(folder / "record.json").patient_id
    study = load_study(folder, patient_id=record_id, window_hours=pre.window_hours, step_minutes=pre.step_minutes)
    question = "What supports heart failure?"
    assert client.predict(question, api_name="/ask") in (ui_predictor.ask(study, question).strip(),)
    status, verdict, diagnoses, comment = client.predict("disagree", ["sepsis"], api_name="/feedback")
    assert (
        "Feedback recorded" in status and verdict["value"] is None and diagnoses["value"] == [] and comment == ""
    )  # form reset
    last = store_events(service.work_dir, "feedback")[-1]
    assert json.loads(last.detail) == {"verdict": "disagree", "diagnoses": ["sepsis"]} and last.user == "anonymous"


def test_a_corrupt_upload_shows_the_error_and_the_app_keeps_serving(served, small_cohort, tmp_path):
    from gradio_client import Client, handle_file

    _, url = served
    bad = tmp_path / "corrupt.dcm"
    bad.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00garbage")
    client = Client(url, verbose=False)
    failed = named(client.predict([handle_file(str(bad))], 0.6, api_name="/analyse"))
    assert 'role="alert"' in failed["status"] and "DicomError: corrupt.dcm: " in failed["status"]
    assert failed["diagnoses"] == "" and failed["summary"] is None
    folder = small_cohort / pd.read_csv(small_cohort / "manifest.csv", dtype=str)["folder"][0]
    ok = named(client.predict([handle_file(str(p)) for p in patient_files(folder)], 0.6, api_name="/analyse"))
    assert ok["summary"]["stage"] == "explanations"


@pytest.mark.parametrize(
    "target",
    [
        "/gradio_api/file=/etc/passwd",
        "/gradio_api/file=../../../../../../../../etc/passwd",
        "/gradio_api/file=..%2F..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "/gradio_api/file=%2Fetc%2Fpasswd",
        "/gradio_api/file/../../../../../../etc/passwd",
        "/gradio_api/file=%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/file=/etc/passwd",
    ],
)
def test_path_traversal_gets_a_4xx(served, target):
    _, url = served
    status, body = raw_get(url, target)
    assert 400 <= status < 500, (target, status)
    assert b"root:" not in body


def test_only_the_public_folder_is_served_not_case_inputs_or_the_audit_store(served, small_cohort):
    service, url = served
    folder = small_cohort / pd.read_csv(small_cohort / "manifest.csv", dtype=str)["folder"][0]
    case = service.open_uploads(patient_files(folder))
    inside = [
        case.folder / "record.json",
        service.work_dir / "audit.sqlite",
        service.work_dir / "public" / ".." / "audit.sqlite",
    ]
    for path in inside:
        status, _ = raw_get(url, f"/gradio_api/file={path}")
        assert status == 403, path
    card = (service.work_dir / "public" / "model_card.md").resolve()
    status, body = raw_get(url, f"/gradio_api/file={card}")
    assert status == 200 and body.startswith(b"# Model card: tiny test model")


def test_uploads_over_the_size_limit_are_refused(served, tmp_path):
    _, url = served
    big = tmp_path / "big.dcm"
    big.write_bytes(b"\0" * (6 * 1024 * 1024))  # the app was launched with a 5 MB limit
    boundary = "medmmboundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="big.dcm"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + big.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.request(
            "POST",
            "/gradio_api/upload",
            body=body,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        assert conn.getresponse().status == 413
    finally:
        conn.close()


def test_with_login_configured_anonymous_calls_are_refused(ui_model, ui_predictor, small_cohort, tmp_path):
    from gradio_client import Client, handle_file

    service = make_service(ui_model, tmp_path, small_cohort, predictor=ui_predictor)
    app, url = launch(service, tmp_path, users={"alice": "wonderland"})
    try:
        for target in (
            "/config",
            "/gradio_api/info",
            "/gradio_api/file=" + str((tmp_path / "public" / "model_card.md").resolve()),
        ):
            assert raw_get(url, target)[0] == 401, target
        parts = urllib.parse.urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        conn.request(
            "POST",
            "/gradio_api/call/analyse",
            body=json.dumps({"data": [[], 0.6]}),
            headers={"Content-Type": "application/json"},
        )
        assert conn.getresponse().status == 401
        conn.close()
        with pytest.raises(Exception):
            Client(url, verbose=False)
        with pytest.raises(Exception):
            Client(url, auth=("alice", "wrong"), verbose=False)
        client = Client(url, auth=("alice", "wonderland"), verbose=False)
        folder = small_cohort / pd.read_csv(small_cohort / "manifest.csv", dtype=str)["folder"][0]
        result = named(client.predict([handle_file(str(p)) for p in patient_files(folder)], 0.6, api_name="/analyse"))
        assert result["summary"]["stage"] == "explanations"
        event = next(e for e in store_events(tmp_path, "predict") if e.event_id == result["summary"]["audit_event"])
        assert event.user == "alice"
    finally:
        app.close()
        service.close()


@pytest.mark.skipif(
    not (ORTHANC.is_file() and PLUGIN.is_file()), reason="Orthanc and its DICOMweb plugin are not installed"
)
def test_search_and_pull_from_a_dicomweb_server_through_the_app(ui_model, ui_predictor, small_cohort, tmp_path):
    import pydicom
    from gradio_client import Client

    files, patient_id = image_files_and_patient_id(full_patient(small_cohort))
    with running_orthanc(tmp_path / "orthanc") as pacs:
        store(pacs, files)
        service = make_service(ui_model, tmp_path / "work", predictor=ui_predictor, pacs_url=f"{pacs}/dicom-web")
        app, url = launch(service, tmp_path / "work")
        try:
            client = Client(url, verbose=False)
            studies, note = client.predict(patient_id, api_name="/search_pacs")
            assert "1 study found." in note and len(studies["choices"]) == 1
            study_uid = studies["value"]
            assert study_uid == pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
            result = named(client.predict(study_uid, patient_id, 0.6, api_name="/analyse_pacs"))
            assert result["summary"]["stage"] == "explanations" and "image" in result["summary"]["present"]
            _, note = client.predict("NOBODY", api_name="/search_pacs")
            assert "No study found" in note
        finally:
            app.close()
            service.close()


def test_each_stage_reports_its_progress_before_its_result(served, small_cohort):
    """The raw queue protocol: gr.Progress messages name the steps, and the generator's four staged results follow one another."""
    import uuid

    import httpx

    _, url = served
    files = patient_files(full_patient(small_cohort))
    with httpx.Client(base_url=url, timeout=120) as http:
        config = http.get("/config").json()
        fn = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "analyse")
        paths = http.post("/gradio_api/upload", files=[("files", (p.name, p.read_bytes())) for p in files]).json()
        session = uuid.uuid4().hex
        data = [[{"path": p, "meta": {"_type": "gradio.FileData"}, "orig_name": Path(p).name} for p in paths], 0.6, ""]
        body = {"data": data, "fn_index": fn, "session_hash": session, "event_data": None, "trigger_id": None}
        joined = http.post("/gradio_api/queue/join", json=body)
        assert joined.status_code == 200
        seen = []
        with http.stream("GET", "/gradio_api/queue/data", params={"session_hash": session}) as stream:
            for line in stream.iter_lines():
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                if message["msg"] == "progress":
                    seen.append(message["progress_data"][0]["desc"])
                elif message["msg"] in ("process_generating", "process_completed"):
                    seen.append(message["msg"])
                if message["msg"] == "process_completed":
                    break
    # progress is sampled by the queue every few milliseconds, so a quick stage's message may be superseded; the rest keep order.
    # Five results: the emptied page, the input as read, the diagnoses, the impression, the explanations
    steps = ["Reading the input", "Ranking diagnoses", "Drafting the impression", "Computing explanations"]
    progress = [m for m in seen if not m.startswith("process_")]
    assert progress and all(m in steps for m in progress) and progress == sorted(progress, key=steps.index)
    assert [m for m in seen if m.startswith("process_")] == ["process_generating"] * 5 + ["process_completed"]


def test_without_a_model_card_file_the_card_is_written_from_the_audit_folders_evaluation(
    ui_model, ui_predictor, tmp_path
):
    import numpy as np

    from medmm.evaluate.pipeline import audit_from_scores, evaluate_from_scores
    from medmm.evaluate.scores import SplitScores
    from medmm.governance import model_card
    from medmm.synth.diagnoses import DIAGNOSIS_NAMES
    from ui.app import build_app

    rng = np.random.default_rng(1)
    scores = []
    for split, n in (("val", 80), ("test", 80)):
        labels = rng.integers(0, 2, size=(n, len(DIAGNOSIS_NAMES)))
        attributes = pd.DataFrame(
            {"sex": rng.choice(["female", "male"], n), "age_band": rng.choice(["40-64", "65-79"], n)}
        )
        logits = labels * 2.0 - 1 + rng.normal(0, 1, labels.shape)
        scores.append(
            SplitScores(split, DIAGNOSIS_NAMES, tuple(f"{split}{i}" for i in range(n)), labels, logits, attributes)
        )
    audit_dir = tmp_path / "audit"
    evaluation, _ = evaluate_from_scores(*scores, audit_dir, n_boot=20, plots=False)
    audit = audit_from_scores(*scores, audit_dir, n_boot=20, plots=False)
    import shutil

    model = Path(shutil.copytree(ui_model, tmp_path / "run" / "model"))  # no model_card.md beside this copy
    service = make_service(model, tmp_path / "work", predictor=ui_predictor, audit_dir=audit_dir)
    assert service.model_card is None
    build_app(service)
    written = (tmp_path / "work" / "public" / "model_card.md").read_text()
    on_disk = json.loads((audit_dir / "evaluation.json").read_text())
    assert written == model_card(
        on_disk, json.loads((audit_dir / "audit.json").read_text()), json.loads((model / "config.json").read_text())
    )
    assert written.startswith("# Model card") and evaluation["summary"] and audit["groups"]


def test_a_demo_cohort_patient_is_analysed_through_the_app(served, ui_predictor, small_cohort):
    from gradio_client import Client

    from medmm.io.cohort import Cohort

    _, url = served
    cohort = Cohort.open(small_cohort)
    pre = ui_predictor.model.config.preprocess
    study = cohort.load(1, window_hours=pre.window_hours, step_minutes=pre.step_minutes)
    result = named(Client(url, verbose=False).predict(cohort.entries[1].patient_id, 0.6, api_name="/analyse_demo"))
    want = [(s.name, s.probability) for s in ui_predictor.predict(study, impression=False).scores]
    assert [(s["name"], s["probability"]) for s in result["summary"]["scores"]] == want


def test_serve_launches_on_loopback_with_the_given_model_and_settings(ui_model, small_cohort, tmp_path, monkeypatch):
    import urllib.request

    from tests.ui.conftest import free_port
    from ui.app import serve

    for name in (
        "GRADIO_TEMP_DIR",
        "GRADIO_EXAMPLES_CACHE",
    ):  # serve points them at its own folder; put them back afterwards
        monkeypatch.setenv(name, os.environ[name])
    monkeypatch.setenv("MEDMM_USERS", "carol:pw")
    port = free_port()
    app, url = serve(
        ui_model,
        port=port,
        work_dir=tmp_path / "work",
        audit_store=tmp_path / "audit.sqlite",
        cohort=small_cohort,
        block=False,
    )
    try:
        assert url.startswith(f"http://127.0.0.1:{port}")
        assert raw_get(url, "/config")[0] == 401  # MEDMM_USERS turned the login on
        assert os.environ["GRADIO_TEMP_DIR"] == str(tmp_path / "work" / "gradio")
        request = urllib.request.Request(f"{url.rstrip('/')}/login", data=b"username=carol&password=pw", method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
    finally:
        app.close()


def test_the_default_model_is_trained_once_and_then_reused(tmp_path, monkeypatch):
    import medmm.demo
    from tests.batch.helpers import save_tiny_checkpoint
    from ui.app import default_cache_dir, ensure_default_model

    monkeypatch.setenv("MEDMM_CACHE", str(tmp_path / "cache"))
    assert default_cache_dir() == tmp_path / "cache" / "demo"
    calls = []

    def fake_demo(options, recipes):  # stands in for the minutes-long training: writes a model where `medmm demo` would
        calls.append(options)
        save_tiny_checkpoint(options.out / "model")

    monkeypatch.setattr(medmm.demo, "run_demo", fake_demo)
    first = ensure_default_model()
    second = ensure_default_model()
    assert first == second == tmp_path / "cache" / "demo" / "model"
    assert [c.out for c in calls] == [tmp_path / "cache" / "demo"]


def test_launch_options_carry_the_security_settings(tmp_path):
    from gradio import analytics

    from ui.app import launch_options

    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False" and not analytics.analytics_enabled()
    open_options = launch_options(tmp_path, "127.0.0.1", None, {}, "10mb")
    assert open_options["share"] is False and open_options["auth"] is None and open_options["max_file_size"] == "10mb"
    assert (
        open_options["allowed_paths"] == [str((tmp_path / "public").resolve())]
        and open_options["server_name"] == "127.0.0.1"
    )
    check = launch_options(tmp_path, "127.0.0.1", None, {"dana": "pw"}, "10mb")["auth"]
    assert check("dana", "pw") and not check("dana", "nope")
