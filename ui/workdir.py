"""The app's work folder (case inputs, Gradio's uploads and cache): made at start, deleted at exit.

`make_work_dir` creates a private temporary folder named medmm-ui-* holding an owner file
(process id and start time). At exit it is deleted: normal exit and Ctrl-C through atexit,
SIGTERM and SIGHUP through a handler that cleans up and exits. A process killed outright
(SIGKILL, power loss) cannot clean up, so at start `remove_stale_work_dirs` deletes the
medmm-ui-* folders of this user whose owner process is gone (or whose id now belongs to a
process that started later). Folders without an owner file are left alone.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)
PREFIX = "medmm-ui-"
OWNER_FILE = "owner.json"


def process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux /proc), or None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22 of stat; the command name may hold spaces


def alive(pid: int, started: str | None) -> bool:
    """Whether process `pid` runs and is the one that started at `started` (when known)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: alive
    now = process_start(pid)
    return started is None or now is None or now == started


def make_work_dir(root: str | Path | None = None) -> Path:
    """A new private folder PREFIX* under `root` (default: the system's temporary folder) with its owner file."""
    folder = Path(tempfile.mkdtemp(prefix=PREFIX, dir=root))
    owner = {"pid": os.getpid(), "started": process_start(os.getpid())}
    (folder / OWNER_FILE).write_text(json.dumps(owner), encoding="utf-8")
    return folder


def remove_stale_work_dirs(root: str | Path | None = None) -> list[Path]:
    """Delete this user's PREFIX* folders under `root` whose owner process is gone; returns them."""
    removed = []
    for folder in Path(root or tempfile.gettempdir()).glob(PREFIX + "*"):
        try:
            if not folder.is_dir() or folder.is_symlink() or folder.stat().st_uid != os.getuid():
                continue
            owner = json.loads((folder / OWNER_FILE).read_text(encoding="utf-8"))
            pid, started = int(owner["pid"]), owner.get("started")
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if pid != os.getpid() and not alive(pid, started):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    if removed:
        log.info("removed %d work folder(s) of processes that are gone", len(removed))
    return removed


class Cleanup:
    """Runs the clean-up once, at exit or on SIGTERM/SIGHUP (then exits with status 0)."""

    SIGNALS = (signal.SIGTERM, signal.SIGHUP)

    def __init__(self, clean: Callable[[], None]):
        self._clean = clean
        self._done = False
        self._lock = threading.Lock()
        atexit.register(self.run)

    def run(self) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        try:
            self._clean()
        except Exception as err:  # noqa: BLE001 - clean-up must not stop the exit
            log.warning("work folder clean-up failed (%s)", type(err).__name__)

    def install_signal_handlers(self) -> bool:
        """Clean up and exit on SIGTERM and SIGHUP; only possible from the main thread (False otherwise)."""
        if threading.current_thread() is not threading.main_thread():
            return False
        for sig in self.SIGNALS:
            signal.signal(sig, self._on_signal)
        return True

    def _on_signal(self, signum, frame) -> None:  # noqa: ARG002
        log.info("signal %d: cleaning up and exiting", signum)
        self.run()
        logging.shutdown()
        sys.stdout.flush()
        os._exit(0)  # server threads may still hold the interpreter; the clean-up is done
