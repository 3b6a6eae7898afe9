"""The DICOMweb client against a real Orthanc (with its DICOMweb plugin) on loopback, and against a stub for the failure paths.

Orthanc comes from Debian (`apt-get install orthanc orthanc-dicomweb`; CI installs it). Each test
session starts its own server with its own config file and storage folder under a temporary
directory; the tests that need it are skipped, with the reason, when the binary is absent.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import numpy as np
import pydicom
import pytest

from medmm.errors import DicomError, InputError
from medmm.io import load_study
from medmm.io.pacs import retrieve_study, search_studies, split_multipart

ORTHANC = Path("/usr/sbin/Orthanc")
PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
needs_orthanc = pytest.mark.skipif(
    not (ORTHANC.is_file() and PLUGIN.is_file()), reason="Orthanc and its DICOMweb plugin are not installed"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_orthanc(folder: Path) -> Iterator[str]:
    """An Orthanc on a free loopback port with its own config and storage under `folder`; yields its base URL."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = {
        "Name": "medmm-test",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "storage"),
        "HttpPort": port,
        "DicomServerEnabled": False,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": [str(PLUGIN)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }
    (folder / "orthanc.json").write_text(json.dumps(config))
    log = open(folder / "orthanc.log", "wb")
    process = subprocess.Popen([str(ORTHANC), str(folder / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/system", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"Orthanc did not start; see {folder / 'orthanc.log'}") from None
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def store(url: str, files: list[Path]) -> None:
    """Send files to Orthanc through its own REST API (POST /instances)."""
    for f in files:
        request = urllib.request.Request(
            f"{url}/instances", data=f.read_bytes(), method="POST", headers={"Content-Type": "application/dicom"}
        )
        with urllib.request.urlopen(request, timeout=30) as r:
            assert r.status == 200


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def pacs(small_cohort, tmp_path_factory):
    """(DICOMweb root, {patient id: its DICOM files}) with two patients stored, one of them with a CT series."""
    if not (ORTHANC.is_file() and PLUGIN.is_file()):
        pytest.skip("Orthanc and its DICOMweb plugin are not installed")
    chosen = {}
    for folder in sorted(p for p in small_cohort.iterdir() if (p / "images").is_dir()):
        files = sorted((folder / "images").rglob("*.dcm"))
        with_ct = any("ct" in f.parts for f in files)
        if with_ct and "ct" not in chosen or not with_ct and "cr" not in chosen:
            chosen["ct" if with_ct else "cr"] = (pydicom.dcmread(files[0], stop_before_pixels=True).PatientID, files)
    with running_orthanc(tmp_path_factory.mktemp("orthanc")) as url:
        for _, files in chosen.values():
            store(url, files)
        yield f"{url}/dicom-web", dict(chosen.values())


@needs_orthanc
def test_search_lists_exactly_the_patients_studies_as_the_files_say(pacs):
    root, patients = pacs
    for patient_id, files in patients.items():
        headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
        studies = search_studies(root, patient_id)
        assert sorted(s.study_uid for s in studies) == sorted({h.StudyInstanceUID for h in headers})
        for s in studies:
            mine = [h for h in headers if h.StudyInstanceUID == s.study_uid]
            assert s.patient_id == patient_id and s.date == mine[0].StudyDate
            assert s.description == (mine[0].get("StudyDescription") or None)
            assert set(s.modalities) == {h.Modality for h in mine}
            assert s.n_instances == len(mine) and s.n_series == len({h.SeriesInstanceUID for h in mine})
    some = next(iter(patients))
    assert search_studies(root, some[:-1]) == []  # no loose matching


@needs_orthanc
def test_retrieve_writes_the_stored_files_and_load_study_reads_them_as_the_originals(pacs, tmp_path):
    root, patients = pacs
    for patient_id, files in patients.items():
        dest = tmp_path / patient_id
        written = [p for s in search_studies(root, patient_id) for p in retrieve_study(root, s.study_uid, dest)]
        assert sorted(sha(p) for p in written) == sorted(sha(f) for f in files)  # Orthanc returns what it stored
        pulled = load_study(dest, patient_id=patient_id)
        original = load_study(next(p for p in files[0].parents if p.name == "images"), patient_id=patient_id)
        by_series = {s.series_uid: s for s in original.images}
        assert sorted(by_series) == sorted(s.series_uid for s in pulled.images)
        for series in pulled.images:
            np.testing.assert_array_equal(series.pixels, by_series[series.series_uid].pixels)
        assert any(s.is_volume for s in pulled.images) == any("ct" in f.parts for f in files)


@needs_orthanc
def test_unknown_studies_and_unsafe_input_are_refused_without_echoing_the_patient(pacs, tmp_path):
    root, patients = pacs
    with pytest.raises(InputError, match="QIDO-RS series: the server lists no series for this study"):
        retrieve_study(root, "1.2.3.999", tmp_path)
    with pytest.raises(InputError, match="digits and dots"):
        retrieve_study(root, "1.2/../../x", tmp_path)
    for wildcard in ("SYN*", "?", "a\\b", "  "):
        with pytest.raises(InputError) as err:
            search_studies(root, wildcard)
        assert str(err.value) == "patient id: expected a non-empty patient id without wildcard characters (* ? \\)"


def test_an_unreachable_server_names_the_server_and_the_request_but_not_the_patient():
    url = f"http://127.0.0.1:{free_port()}/dicom-web"
    with pytest.raises(InputError) as err:
        search_studies(url, "PATIENT-7731")
    message = str(err.value)
    assert (
        message.startswith(f"{url}: QIDO-RS studies: the DICOMweb server could not be reached")
        and "PATIENT-7731" not in message
    )
    with pytest.raises(InputError, match="http\\(s\\) DICOMweb root URL"):
        search_studies("file:///etc", "x")
    with pytest.raises(InputError, match="http\\(s\\) DICOMweb root URL"):
        search_studies("http://user:secret@127.0.0.1:1/x?PatientID=y", "x")


class _Stub(http.server.BaseHTTPRequestHandler):
    """Answers every GET with the class's (status, content type, body)."""

    answer: tuple[int, str, bytes] = (200, "application/dicom+json", b"[]")

    def do_GET(self):  # noqa: N802 (http.server's naming)
        status, kind, body = self.answer
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # keep test output quiet
        pass


@contextlib.contextmanager
def stub(answer: tuple[int, str, bytes]) -> Iterator[str]:
    handler = type("Handler", (_Stub,), {"answer": answer})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/dicom-web"
    finally:
        server.shutdown()
        server.server_close()


def test_malformed_answers_are_dicom_errors_naming_the_request():
    with (
        stub((200, "application/dicom+json", b"<html>")) as url,
        pytest.raises(DicomError, match="QIDO-RS studies: expected DICOM JSON"),
    ):
        search_studies(url, "P1")
    with (
        stub((200, "application/dicom+json", b'{"a": 1}')) as url,
        pytest.raises(DicomError, match="expected a JSON array"),
    ):
        search_studies(url, "P1")
    bad_uid = json.dumps(
        [{"0020000D": {"vr": "UI", "Value": ["1.2.x"]}, "00100020": {"vr": "LO", "Value": ["P1"]}}]
    ).encode()
    with (
        stub((200, "application/dicom+json", bad_uid)) as url,
        pytest.raises(DicomError, match="result 1: expected a StudyInstanceUID"),
    ):
        search_studies(url, "P1")
    with stub((204, "application/dicom+json", b"")) as url:
        assert search_studies(url, "P1") == []
    with stub((401, "text/plain", b"no")) as url, pytest.raises(InputError, match="HTTP 401"):
        search_studies(url, "P1")


def test_multipart_bodies_split_into_their_parts():
    body = b"preamble\r\n--b1\r\nContent-Type: application/dicom\r\n\r\nfirst\r\n--b1 \r\n\r\nsecond\r\nwith lines\r\n--b1--\r\nepilogue"
    assert split_multipart(body, 'multipart/related; type="application/dicom"; boundary=b1') == [
        b"first",
        b"second\r\nwith lines",
    ]
    quoted = b'--"a;b"\r\nX: y\r\n\r\nbody\r\n--"a;b"--'
    assert split_multipart(quoted.replace(b'"', b""), 'multipart/related; boundary="a;b"') == [b"body"]
    with pytest.raises(DicomError, match="truncated"):
        split_multipart(b"--b1\r\n\r\npart", "multipart/related; boundary=b1")
    with pytest.raises(DicomError, match="boundary parameter"):
        split_multipart(b"", "application/dicom")
