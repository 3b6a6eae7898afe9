"""One analysis at a time per browser page: a second Analyse while one runs is refused, and the page says so.

Gradio would otherwise drop the second click without a word (its default trigger mode) and
leave the page showing the running study's results under whatever files are listed by then.
The analyse events therefore accept every click, and each one first asks `RunGuard.begin`:
the first gets the run, any other gets the running one's description to report.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone


@dataclass(frozen=True)
class Run:
    """An analysis in progress: what it reads and when it started."""

    what: str  # e.g. "3 uploaded files" (no patient data)
    started: datetime
    clock: float


class RunGuard:
    """Which page (Gradio session hash) has an analysis running."""

    def __init__(self) -> None:
        self._running: dict[str, Run] = {}
        self._lock = threading.Lock()

    def begin(self, session: str, what: str) -> tuple[bool, Run]:
        """(True, the new run) when `session` had none running; else (False, the run in progress)."""
        with self._lock:
            current = self._running.get(session)
            if current is not None:
                return False, current
            run = Run(what, datetime.now(timezone.utc), time.monotonic())
            self._running[session] = run
            return True, run

    def end(self, session: str, run: Run) -> None:
        """Mark `run` finished (a later run of the same session is left alone)."""
        with self._lock:
            if self._running.get(session) is run:
                del self._running[session]

    def running(self, session: str) -> Run | None:
        with self._lock:
            return self._running.get(session)
