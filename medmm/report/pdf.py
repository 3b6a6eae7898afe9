"""Optional PDF export of report.html through a headless Chromium (when one is installed)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from medmm.errors import ConfigError, MedmmError

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-pdf-header-footer",
)


def find_chromium() -> str | None:
    """Path of a Chromium-family browser on PATH, or None."""
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


def export_pdf(
    html_path: str | Path, pdf_path: str | Path | None = None, *, browser: str | None = None, timeout: float = 120.0
) -> Path:
    """Print `html_path` to PDF (default: beside it, .pdf) with headless Chromium; returns the PDF's path."""
    html = Path(html_path).resolve()
    if not html.is_file():
        raise ConfigError("report to export not found", path=html)
    exe = browser or find_chromium()
    if exe is None:
        raise ConfigError(f"PDF export needs Chromium; none of {', '.join(BROWSERS)} is on PATH", where="pdf export")
    out = Path(pdf_path) if pdf_path is not None else html.with_suffix(".pdf")
    with tempfile.TemporaryDirectory(prefix="medmm-pdf-") as profile:
        cmd = [exe, *FLAGS, f"--user-data-dir={profile}", f"--print-to-pdf={out.resolve()}", html.as_uri()]
        try:
            done = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise MedmmError(f"Chromium did not finish printing ({type(exc).__name__})", path=html) from exc
    if done.returncode != 0 or not out.is_file() or not out.read_bytes().startswith(b"%PDF"):
        raise MedmmError(f"Chromium could not print the report (exit status {done.returncode})", path=html)
    return out
