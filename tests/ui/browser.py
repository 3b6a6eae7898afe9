"""Helpers of the browser tests: a headless Chromium, waits that report the page's state, screenshots, uploads."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from medmm.report.pdf import find_chromium

CHROMIUM = find_chromium()
DRIVER = shutil.which("chromedriver")
MARKS = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None or DRIVER is None, reason="chromium and chromedriver are not installed"),
]
WAIT = 120  # seconds; the machine may be busy
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1000",
)


def new_driver(profile: Path, zone: str | None = None):
    """A driver on a fresh profile; `zone`: the IANA time zone the page sees."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if CHROMIUM is None or DRIVER is None:
        pytest.skip("chromium and chromedriver are not installed")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(WAIT)
    if zone:
        driver.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": zone})
    return driver


def save_screenshot(driver, tmp_path: Path, name: str, element_id: str | None = None) -> Path:
    """A PNG of the full page (or of one element) under tmp_path, copied to $MEDMM_ARTIFACTS when set."""
    from selenium.webdriver.common.by import By

    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(int(height) + 100, 20000))
    shot = tmp_path / name
    if element_id:
        element = driver.find_element(By.ID, element_id)
        driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", element)
        assert element.screenshot(str(shot))
    else:
        assert driver.save_screenshot(str(shot))
    assert shot.read_bytes()[:4] == b"\x89PNG"
    driver.set_window_size(1280, 1000)
    artifacts = os.environ.get("MEDMM_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, Path(artifacts) / name)
    print(f"screenshot: {shot}")
    return shot


def text(driver, element_id: str) -> str:
    return driver.execute_script(
        "const e = document.getElementById(arguments[0]); return e ? e.innerText : '';", element_id
    )


def wait_for(driver, condition, what: str, timeout: float = WAIT):
    """WebDriverWait(...).until(condition), failing with `what` and the page's status and notice when it times out."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)
    except TimeoutException:
        raise AssertionError(
            f"timed out waiting for {what}; status: {text(driver, 'medmm-status')!r}; "
            f"notice: {text(driver, 'medmm-notice')!r}"
        ) from None


def upload(driver, url: str, files: list[Path]) -> None:
    """Open the page and put `files` in the upload field (every one listed)."""
    from selenium.webdriver.common.by import By

    driver.get(url)
    field = wait_for(
        driver, lambda d: d.find_element(By.CSS_SELECTOR, "#medmm-upload input[type=file]"), "the upload field"
    )
    field.send_keys("\n".join(str(f) for f in files))
    wait_for(
        driver,
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#medmm-upload td.filename")) == len(files),
        "every file listed",
    )


def done(driver) -> bool:
    return text(driver, "medmm-status").startswith("Done in")


def upload_and_analyse(driver, url: str, files: list[Path]) -> None:
    from selenium.webdriver.common.by import By

    upload(driver, url, files)
    driver.find_element(By.ID, "medmm-analyse").click()


def viewer_drawn(driver, element_id: str) -> bool:
    """The in-page viewer has drawn an image (scrolled into view first)."""
    return bool(
        driver.execute_script(
            "const v = document.querySelector('#' + arguments[0] + ' .mv'); if (!v) return false; v.scrollIntoView({block: 'center'});"
            "const c = v.querySelector('canvas'); return !!c && c.width > 0 && v.dataset.zoom !== undefined;",
            element_id,
        )
    )


def viewer_state(driver, element_id: str) -> dict:
    """The viewer's zoom, pan and window as it reports them on its element."""
    return driver.execute_script(
        "return Object.assign({}, document.querySelector('#' + arguments[0] + ' .mv').dataset);", element_id
    )
