"""The privacy middleware over HTTP: uploads served only to their session, nothing before login, throttled sign-ins."""

from __future__ import annotations

import json
import re

import httpx
import pandas as pd
import pytest

from tests.ui.conftest import full_patient, launch, make_service, patient_files
from ui.guard import SESSION_COOKIE

pytestmark = pytest.mark.slow
ANONYMOUS_TARGETS = (
    "/",
    "/?page=",
    "/config",
    "/gradio_api/info",
    "/gradio_api/info?all_endpoints=true",
    "/gradio_api/openapi.json",
    "/openapi.json",
    "/docs",
    "/gradio_api/startup-events",
    "/gradio_api/app_id",
    "/gradio_api/user",
    "/gradio_api/token",
    "/gradio_api/runs",
    "/gradio_api/queue/status",
    "/gradio_api/upload_progress",
    "/manifest.json",
    "/theme.css",
    "/monitoring",
    "/gradio_api/run-history/records",
)


def upload(client: httpx.Client, files) -> list[str]:
    response = client.post("/gradio_api/upload", files=[("files", (p.name, p.read_bytes())) for p in files])
    assert response.status_code == 200
    return response.json()


def test_an_upload_is_served_only_to_the_session_that_uploaded_it(served, small_cohort):
    _, url = served
    files = patient_files(full_patient(small_cohort))
    with httpx.Client(base_url=url, timeout=60) as alice, httpx.Client(base_url=url, timeout=60) as mallory:
        alice.get("/config")
        mallory.get("/config")
        assert alice.cookies[SESSION_COOKIE] != mallory.cookies[SESSION_COOKIE]
        paths = upload(alice, files)
        record = next(p for p in paths if p.endswith("record.json"))
        mine = alice.get(f"/gradio_api/file={record}")
        assert mine.status_code == 200 and mine.content == (full_patient(small_cohort) / "record.json").read_bytes()
        assert mine.headers["cache-control"] == "no-store"
        for target in (f"/gradio_api/file={record}", f"/gradio_api/file/{record}"):
            assert mallory.get(target).status_code == 404
        with httpx.Client(base_url=url, timeout=60) as stranger:  # no cookie at all
            assert stranger.get(f"/gradio_api/file={record}").status_code == 404


def test_an_analysis_of_another_sessions_upload_is_refused(served, small_cohort):
    import uuid

    service, url = served
    before = len(service._cases)
    with httpx.Client(base_url=url, timeout=120) as alice, httpx.Client(base_url=url, timeout=120) as mallory:
        alice.get("/config")
        config = mallory.get("/config").json()
        paths = upload(alice, patient_files(full_patient(small_cohort)))
        fn = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "analyse")
        session = uuid.uuid4().hex
        data = [
            [{"path": p, "meta": {"_type": "gradio.FileData"}, "orig_name": p.rsplit("/", 1)[-1]} for p in paths],
            0.3,
            "",
        ]
        assert (
            mallory.post(
                "/gradio_api/queue/join", json={"data": data, "fn_index": fn, "session_hash": session}
            ).status_code
            == 200
        )
        outputs = []
        with mallory.stream("GET", "/gradio_api/queue/data", params={"session_hash": session}) as stream:
            for line in stream.iter_lines():
                if line.startswith("data:"):
                    message = json.loads(line[5:])
                    if message["msg"] in ("process_generating", "process_completed"):
                        outputs.append(json.dumps(message.get("output", {})))
                    if message["msg"] == "process_completed":
                        break
    assert "not uploaded from this browser session" in outputs[-1] and len(service._cases) == before


def test_with_login_nothing_of_the_app_or_its_patients_is_served_before_sign_in(
    ui_model, ui_predictor, small_cohort, tmp_path
):
    patients = pd.read_csv(small_cohort / "manifest.csv", dtype=str)["patient_id"].tolist()
    service = make_service(ui_model, tmp_path, small_cohort, predictor=ui_predictor)
    app, url = launch(service, tmp_path, users={"alice": "wonderland"})
    try:
        with httpx.Client(base_url=url, timeout=30) as anonymous:
            for target in ANONYMOUS_TARGETS:
                response = anonymous.get(target)
                body = response.text
                assert not any(p in body for p in patients), target
                assert "analyse" not in body and 'named_endpoints": {"' not in body, target
                if target in ("/", "/?page="):
                    assert response.status_code == 200 and '"auth_required":true' in body.replace(" ", "")
                    assert 'window.gradio_api_info = {"named_endpoints": {}, "unnamed_endpoints": {}};' in body
                elif target not in (
                    "/manifest.json",
                    "/theme.css",
                    "/gradio_api/startup-events",
                    "/gradio_api/app_id",
                    "/gradio_api/user",
                    "/gradio_api/token",
                ):
                    assert response.status_code in (401, 403, 404), target
        with httpx.Client(base_url=url, timeout=30) as alice:
            assert alice.post("/login", data={"username": "alice", "password": "wonderland"}).status_code == 200
            page = alice.get("/").text
            assert (
                re.search(r'"api_name":\s*"analyse"', page) or '"analyse"' in page
            )  # signed in: the page is whole again
            assert not any(
                p in alice.get("/config").text for p in patients
            )  # the demo list comes per session, after sign-in
    finally:
        app.close()
        service.close()
