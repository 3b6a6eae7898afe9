"""Run a medmm command with every outbound connection refused, and see what it tried.

`guarded_env(folder)` gives the environment for a subprocess: a `sitecustomize` on its
PYTHONPATH installs an audit hook (PEP 578) in every Python process it starts, which refuses
any name look-up or connection that is not to this machine and writes it to a log. The
environment also drops the offline and telemetry settings a developer or CI may have set, so
that what keeps medmm offline is medmm itself.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

SITECUSTOMIZE = r"""
import os, sys

_LOG = os.environ["MEDMM_NETGUARD_LOG"]
_LOCAL = ("127.", "::1", "localhost", "0.0.0.0")


def _local(host) -> bool:
    host = host.decode() if isinstance(host, bytes) else str(host)
    return host == "" or host.startswith(_LOCAL) or host in ("::", "ip6-localhost")


def _hook(event, args):
    if event == "socket.getaddrinfo":
        host = args[0]
    elif event == "socket.connect":
        address = args[1]
        if not isinstance(address, tuple):  # a Unix socket
            return
        host = address[0]
    else:
        return
    if host is None or _local(host):
        return
    with open(_LOG, "a") as fh:
        fh.write(f"{event} {host!r} pid={os.getpid()} argv={sys.argv[:2]!r}\n")
    raise ConnectionRefusedError(f"outbound connection refused by the test: {host}")


sys.addaudithook(_hook)
"""

# Settings that keep libraries offline or quiet; the guarded run starts without any of them.
CLEARED = (
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "HF_HUB_DISABLE_TELEMETRY",
    "GRADIO_ANALYTICS_ENABLED",
    "RAY_USAGE_STATS_ENABLED",
    "RAY_USAGE_STATS_PROMPT_ENABLED",
    "DO_NOT_TRACK",
    "MEDMM_ALLOW_DOWNLOADS",
)

# A line that reports a download or a connection that failed.
COMPLAINT = re.compile(
    r"(fail|could not|couldn't|cannot|unable|error|refused|offline mode|not available in the local cache)"
    r"[^\n]*(download|hub|huggingface|kernels-community|connect|resolve|network|telemetry|analytics)",
    re.IGNORECASE,
)


def guarded_env(folder: Path, **extra: str) -> tuple[dict[str, str], Path]:
    """Environment for a guarded subprocess, and the log its refused attempts go to."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE)
    log = folder / "attempts.log"
    log.write_text("")
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env["PYTHONPATH"] = os.pathsep.join([str(folder), *filter(None, [os.environ.get("PYTHONPATH")])])
    env["MEDMM_NETGUARD_LOG"] = str(log)
    env.update(extra)
    return env, log


def medmm_command(*args: str) -> list[str]:
    """The installed console script, run by this interpreter's environment."""
    return [str(Path(sys.executable).with_name("medmm")), *args]


def complaints(text: str) -> list[str]:
    return [line for line in text.splitlines() if COMPLAINT.search(line)]
