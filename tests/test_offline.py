"""Nothing downloads at run time: the defaults medmm sets, and the demo, `predict` and `serve`
run with every outbound connection refused."""

from __future__ import annotations

import json
import logging
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

from medmm import offline
from tests.netguard import complaints, guarded_env, medmm_command


def test_defaults_are_offline_and_a_users_setting_wins(monkeypatch):
    for key in (*offline.TELEMETRY_OFF, *offline.HUB_OFF, offline.ALLOW_ENV):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "1")  # the user's own choice
    offline.keep_offline()
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["HF_HUB_DISABLE_TELEMETRY"] == "1"
    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False"
    assert os.environ["RAY_USAGE_STATS_ENABLED"] == "1"


def test_downloads_can_be_allowed_on_purpose(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv(offline.ALLOW_ENV, "1")
    offline.keep_offline()
    import os

    assert "HF_HUB_OFFLINE" not in os.environ and os.environ["GRADIO_ANALYTICS_ENABLED"] == "False"


def test_the_hub_kernel_notice_is_not_shown(caplog):
    notice = logging.getLogger("bitsandbytes.backends.cpu.ops")
    with caplog.at_level(logging.DEBUG):
        notice.warning("Failed to load CPU gemm_4bit_forward from kernels-community: offline. Please make sure ...")
        notice.warning("another warning stays")
    shown = [r.getMessage() for r in caplog.records if r.name == notice.name]
    assert shown == ["another warning stays"]
    assert any("not fetched" in r.getMessage() for r in caplog.records if r.name == "medmm.offline")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(args: list[str], env: dict) -> subprocess.CompletedProcess:
    done = subprocess.run(medmm_command(*args), env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


@pytest.mark.slow
def test_demo_predict_and_serve_reach_no_other_machine(tmp_path):
    env, attempts = guarded_env(
        tmp_path / "guard", OMP_NUM_THREADS="1", MEDMM_AUDIT_STORE=str(tmp_path / "audit.sqlite")
    )
    out = tmp_path / "demo"
    said = []
    said.append(run(["demo", "--quick", "--no-serve", "--out", str(out), "--json"], env))
    patient = sorted(p for p in (out / "cohort").iterdir() if p.is_dir())[0]
    predicted = run(["predict", "--model", str(out / "model"), str(patient), "--json"], env)
    said.append(predicted)
    assert json.loads(predicted.stdout.splitlines()[-1])["status"] == "ok"

    port = free_port()
    server = subprocess.Popen(
        medmm_command("serve", "--model", str(out / "model"), "--cohort", str(out / "cohort"), "--port", str(port)),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline, page = time.monotonic() + 180, None
        while page is None and time.monotonic() < deadline and server.poll() is None:
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode()
            except OSError:
                time.sleep(1)
        assert page is not None and "medmm" in page.lower(), "the interface did not come up"
        config = urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=10).read()
        assert json.loads(config)["components"]
    finally:
        server.send_signal(signal.SIGTERM)
        stdout, stderr = server.communicate(timeout=60)
    text = "\n".join([*(d.stdout + d.stderr for d in said), stdout, stderr])
    assert attempts.read_text() == ""  # no name look-up, no connection beyond this machine
    assert complaints(text) == []
