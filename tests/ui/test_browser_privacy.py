"""Privacy in a real browser: no share button, nothing of the patient in the browser's storage, nothing before login,
throttled sign-ins, audit events named by the login, and the work folder gone after SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pydicom

from tests.ui.browser import MARKS, WAIT, done, text, upload, upload_and_analyse, wait_for
from tests.ui.conftest import free_port, full_patient, launch, make_service, patient_files, store_events

pytestmark = MARKS
REPO = Path(__file__).resolve().parents[2]
STORAGE = """
const finish = arguments[arguments.length - 1];
(async () => {
  const out = {local: {...localStorage}, session: {...sessionStorage}, indexeddb: {}, caches: []};
  for (const info of (indexedDB.databases ? await indexedDB.databases() : [])) {
    const db = await new Promise((ok, ko) => { const r = indexedDB.open(info.name); r.onsuccess = () => ok(r.result); r.onerror = ko; });
    for (const name of Array.from(db.objectStoreNames)) {
      out.indexeddb[info.name + '/' + name] = await new Promise(ok => {
        const r = db.transaction(name).objectStore(name).getAll(); r.onsuccess = () => ok(r.result); r.onerror = () => ok('unreadable'); });
    }
    db.close();
  }
  if (window.caches) out.caches = await caches.keys();
  return JSON.stringify(out);
})().then(finish, e => finish('error: ' + e));
"""


def patient_traces(folder: Path, files: list[Path]) -> list[str]:
    """What must not be left in the browser: ids, note text, file names, image and file URLs."""
    bundle = json.loads((folder / "record.json").read_text())
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    dicom = pydicom.dcmread(sorted((folder / "images").rglob("*.dcm"))[0], stop_before_pixels=True)
    from medmm.io import load_study

    notes = [n.text.split("\n\n")[1][:30] for n in load_study(folder).notes if "\n\n" in n.text]
    return [patient["id"], dicom.PatientID, *notes, *(f.name for f in files), "gradio_api/file", "data:image", "base64"]


def test_no_share_button_and_nothing_of_the_patient_in_browser_storage(served, browser, small_cohort):
    _, url = served
    folder = full_patient(small_cohort)
    files = patient_files(folder)
    upload_and_analyse(browser, url, files)
    wait_for(browser, done, "the analysis")
    browser.find_element("xpath", "//*[@id='medmm-verdict']//label[contains(., 'Unsure')]").click()
    browser.execute_script("document.getElementById('medmm-send-feedback').click();")
    wait_for(browser, lambda d: "recorded" in text(d, "medmm-feedback-status"), "the feedback")
    shares = browser.execute_script(
        "return Array.from(document.querySelectorAll('button, a, [role=button], [aria-label], [title]'))"
        ".filter(e => /share/i.test((e.getAttribute('aria-label') || '') + ' ' + (e.getAttribute('title') || '') + ' ' + e.className"
        " + ' ' + (e.tagName === 'BUTTON' || e.tagName === 'A' ? e.innerText : ''))).map(e => e.outerHTML.slice(0, 120));"
    )
    assert shares == []
    stored = browser.execute_async_script(STORAGE)
    assert not stored.startswith("error"), stored
    dump = json.loads(stored)
    for trace in patient_traces(folder, files):
        assert trace not in stored, (trace, dump)
    assert dump["indexeddb"] == {} and dump["caches"] == []  # no run history, no cached responses


def test_with_login_nothing_leaks_before_sign_in_wrong_passwords_wait_and_the_audit_names_the_user(
    ui_model, ui_predictor, small_cohort, browser, tmp_path
):
    patients = pd.read_csv(small_cohort / "manifest.csv", dtype=str)["patient_id"].tolist()
    service = make_service(ui_model, tmp_path, small_cohort, predictor=ui_predictor)
    app, url = launch(service, tmp_path, users={"alice": "wonderland"})
    try:
        browser.get(url)
        wait_for(browser, lambda d: d.find_elements("css selector", "input[type=password]"), "the login page")
        page = browser.page_source + browser.execute_script(
            "return JSON.stringify([window.gradio_config, window.gradio_api_info])"
        )
        assert not any(p in page for p in patients) and "analyse" not in page and "SYN" not in page
        statuses = browser.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "Promise.all(['/config', '/gradio_api/info', '/gradio_api/info?all_endpoints=true', '/gradio_api/openapi.json',"
            " '/openapi.json', '/gradio_api/queue/status'].map(u => fetch(u).then(r => r.text().then(t => [u, r.status, t]))))"
            ".then(done)"
        )
        for target, status, body in statuses:
            assert status in (401, 403, 404) and not any(p in body for p in patients), (target, status)

        def sign_in(password: str) -> None:
            user, secret = browser.find_elements("css selector", "input[type=text], input[type=password]")[:2]
            user.clear()
            user.send_keys("alice")
            secret.clear()
            secret.send_keys(password)
            browser.find_element("xpath", "//button[normalize-space()='Login']").click()

        for attempt in range(4):  # three free failures, the fourth starts a one-second wait
            sign_in(f"wrong-{attempt}")
            wait_for(browser, lambda d: "Incorrect" in d.find_element("tag name", "body").text, "the refusal")
            browser.refresh()
            wait_for(browser, lambda d: d.find_elements("css selector", "input[type=password]"), "the login page again")
        throttled = browser.execute_async_script(
            "const done = arguments[arguments.length - 1]; const f = new FormData(); f.append('username', 'alice');"
            "f.append('password', 'wonderland'); fetch('/login', {method: 'POST', body: f})"
            ".then(r => done([r.status, r.headers.get('retry-after')]));"
        )
        assert throttled[0] == 429 and int(throttled[1]) >= 1  # even the right password waits, unchecked
        time.sleep(int(throttled[1]) + 0.2)
        sign_in("wonderland")
        wait_for(browser, lambda d: d.find_elements("id", "medmm-analyse"), "the app after sign-in")
        before = len(store_events(tmp_path, "predict"))
        upload_and_analyse(browser, url, patient_files(full_patient(small_cohort)))
        wait_for(browser, done, "the analysis")
        wait_for(browser, lambda d: len(store_events(tmp_path, "predict")) == before + 1, "the audit record")
        assert store_events(tmp_path, "predict")[-1].user == "alice"
    finally:
        app.close()
        service.close()


def test_the_work_folder_is_deleted_on_sigterm_and_stale_ones_at_start(ui_model, small_cohort, browser, tmp_path):
    temp = tmp_path / "tmp"
    temp.mkdir()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = temp / "medmm-ui-stale"
    (stale / "cases").mkdir(parents=True)
    (stale / "owner.json").write_text(json.dumps({"pid": gone.pid, "started": None}))
    port = free_port()
    env = {**os.environ, "TMPDIR": str(temp), "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONPATH": str(REPO)}
    for name in ("GRADIO_TEMP_DIR", "GRADIO_EXAMPLES_CACHE", "MEDMM_USERS"):
        env.pop(name, None)
    command = [
        sys.executable,
        "-m",
        "medmm.cli",
        "serve",
        "--model",
        str(ui_model),
        "--port",
        str(port),
        "--cohort",
        str(small_cohort),
        "--audit-store",
        str(tmp_path / "audit.sqlite"),
    ]
    server = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + WAIT
        while True:
            try:
                urllib.request.urlopen(url, timeout=5).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, server.stdout.read().decode(
                    errors="replace"
                )[-3000:]
                time.sleep(0.5)
        work = [p for p in temp.glob("medmm-ui-*") if p.is_dir()]
        assert not stale.exists() and len(work) == 1  # the dead server's folder went at start; this server made its own
        upload(browser, url, patient_files(full_patient(small_cohort)))
        assert any((work[0] / "gradio").rglob("record.json"))  # the upload lies in the work folder
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
        assert not work[0].exists() and list(temp.glob("medmm-ui-*")) == []
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
