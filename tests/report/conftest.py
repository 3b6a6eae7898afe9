import pytest

from tests.report.run_folder import report_folder


@pytest.fixture(scope="session")
def report_run():
    """The shared evaluation + audit run folder (see run_folder.py)."""
    return report_folder()
