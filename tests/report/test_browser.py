"""The report in a real browser: headless Chromium renders every section and decodes every image.

Needs the Debian packages chromium and chromium-driver (CI installs them); skipped only when
they are absent. The full-page screenshot is kept under the test's temporary folder and its
path printed, for a person to look at.
"""

from __future__ import annotations

import shutil

import pytest

from medmm.report.html import SECTIONS, write_report
from medmm.report.pdf import export_pdf, find_chromium

CHROMIUM = find_chromium()
DRIVER = shutil.which("chromedriver")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None, reason="chromium and chromedriver are not installed"
)
pytestmark = [pytest.mark.browser, pytest.mark.slow]


@needs_chromium
def test_report_renders_every_section_with_its_images_in_headless_chromium(report_run, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    report = write_report(report_run.out, report_run.evaluation, report_run.audit, report_run.explanations)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1280,900",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        driver.set_page_load_timeout(60)
        driver.get(report.as_uri())
        ids = driver.execute_script("return Array.from(document.querySelectorAll('section')).map(s => s.id)")
        assert ids == [sid for sid, _ in SECTIONS]
        for sid, _ in SECTIONS:  # rendered, not just present: every section has a visible box
            height = driver.execute_script(f"return document.getElementById('{sid}').getBoundingClientRect().height")
            assert height > 40, sid
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight, i.closest('section').id])"
        )
        assert len(images) >= 5
        assert all(done and width > 0 and height > 0 for done, width, height, _ in images), images
        assert {"curves", "calibration", "fairness", "explanations"} <= {section for *_, section in images}
        full = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1280, min(int(full) + 100, 30000))
        shot = tmp_path / "report-screenshot.png"
        assert driver.save_screenshot(str(shot)) and shot.read_bytes()[:4] == b"\x89PNG"
        print(f"report screenshot: {shot}")
    finally:
        driver.quit()


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_pdf_export(report_run, tmp_path):
    report = write_report(report_run.out, report_run.evaluation, report_run.audit, None)
    pdf = export_pdf(report, tmp_path / "report.pdf")
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF") and data.count(b"/Type /Page") >= 3
