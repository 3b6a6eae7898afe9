"""The interface in a real browser: headless Chromium uploads a synthetic patient's files and reads the result off the page.

Needs Debian's chromium and chromium-driver (CI installs them); skipped only when they are absent.
Each test saves a screenshot under its temporary folder, and also under $MEDMM_ARTIFACTS when set.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from medmm.report.pdf import find_chromium
from tests.ui.conftest import full_patient, launch, make_service, patient_files, store_events

CHROMIUM = find_chromium()
DRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None or DRIVER is None, reason="chromium and chromedriver are not installed"),
]
WAIT = 120  # seconds; the machine may be busy


@pytest.fixture()
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(WAIT)
    yield driver
    driver.quit()


def save_screenshot(driver, tmp_path: Path, name: str) -> Path:
    """A full-page PNG under tmp_path, copied to $MEDMM_ARTIFACTS when set."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(int(height) + 100, 20000))
    shot = tmp_path / name
    assert driver.save_screenshot(str(shot)) and shot.read_bytes()[:4] == b"\x89PNG"
    artifacts = os.environ.get("MEDMM_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, Path(artifacts) / name)
    print(f"screenshot: {shot}")
    return shot


def wait_for(driver, condition, what: str):
    """WebDriverWait(...).until(condition), failing with `what` and the page's status text when it times out."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, WAIT).until(condition)
    except TimeoutException:
        status = driver.execute_script("const s = document.getElementById('medmm-status'); return s ? s.innerText : null;")
        images = driver.execute_script(
            "return Array.from(document.querySelectorAll('[id^=medmm-] img')).map(i => [i.closest('[id]').id, i.complete, i.naturalWidth, i.src]);")
        raise AssertionError(f"timed out waiting for {what}; status: {status!r}; images: {images}") from None


def upload_and_analyse(driver, url: str, files: list[Path]) -> None:
    from selenium.webdriver.common.by import By

    driver.get(url)
    field = wait_for(driver, lambda d: d.find_element(By.CSS_SELECTOR, "#medmm-upload input[type=file]"), "the upload field")
    field.send_keys("\n".join(str(f) for f in files))
    listed = lambda d: len(d.find_elements(By.CSS_SELECTOR, "#medmm-upload td.filename")) == len(files)  # noqa: E731
    wait_for(driver, listed, "every file to be uploaded and listed")
    driver.find_element(By.ID, "medmm-analyse").click()


def image_loaded(driver, element_id: str) -> bool:
    """The component's image has arrived and decoded (scrolled into view first: images below the fold load lazily)."""
    return bool(driver.execute_script(
        "const i = document.querySelector(arguments[0]); if (i) i.scrollIntoView({block: 'center'});"
        "return !!i && i.complete && i.naturalWidth > 0;", f"#{element_id} img"))


def test_a_patients_files_give_diagnoses_impression_and_overlays_on_the_page(served, browser, small_cohort, tmp_path):
    from selenium.webdriver.common.by import By

    service, url = served
    folder = full_patient(small_cohort)
    before = len(store_events(service.work_dir, "predict"))
    upload_and_analyse(browser, url, patient_files(folder))
    wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#medmm-diagnoses tr[data-diagnosis]")) == 5, "the ranked diagnoses")
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#medmm-impression blockquote"), "the impression")
    wait_for(browser, lambda d: image_loaded(d, "medmm-overlay-attention") and image_loaded(d, "medmm-overlay-gradcam"), "both overlays")
    wait_for(browser, lambda d: image_loaded(d, "medmm-viewer") and image_loaded(d, "medmm-vitals"), "the viewer and the vitals chart")

    rows = browser.find_elements(By.CSS_SELECTOR, "#medmm-diagnoses tr[data-diagnosis]")
    shown = [float(r.find_element(By.CSS_SELECTOR, ".medmm-prob").text.rstrip("%")) for r in rows]
    assert shown == sorted(shown, reverse=True)
    assert browser.find_element(By.CSS_SELECTOR, "#medmm-impression blockquote").text.strip()
    assert "Research use only" in browser.find_element(By.ID, "medmm-disclaimer").text
    assert "Imaging: used" in browser.find_element(By.ID, "medmm-modalities").text
    assert "fairness audit" in browser.find_element(By.ID, "medmm-group-card").text
    assert browser.find_elements(By.CSS_SELECTOR, "#medmm-notes mark")
    assert "Model card" in browser.find_element(By.TAG_NAME, "body").text
    wait_for(browser, lambda d: len(store_events(service.work_dir, "predict")) == before + 1, "the audit record")
    save_screenshot(browser, tmp_path, "ui-result.png")


def test_a_corrupt_file_shows_its_error_and_the_app_keeps_serving(served, browser, small_cohort, tmp_path):
    from selenium.webdriver.common.by import By

    _, url = served
    bad = tmp_path / "corrupt.dcm"
    bad.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00garbage")
    upload_and_analyse(browser, url, [bad])
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#medmm-status .medmm-error"), "the error message")
    message = browser.find_element(By.CSS_SELECTOR, "#medmm-status .medmm-error").text
    assert message.startswith("DicomError: corrupt.dcm: ")
    assert not browser.find_elements(By.CSS_SELECTOR, "#medmm-diagnoses tr[data-diagnosis]")
    save_screenshot(browser, tmp_path, "ui-error.png")

    upload_and_analyse(browser, url, patient_files(full_patient(small_cohort)))  # a fresh page: the server still answers
    wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#medmm-diagnoses tr[data-diagnosis]")) == 5, "a later result")
