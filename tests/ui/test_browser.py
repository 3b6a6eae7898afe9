"""The interface in a real browser: headless Chromium uploads a synthetic patient's files and reads the result off the page.

Needs Debian's chromium and chromium-driver (CI installs them); skipped only when they are absent.
Screenshots go under each test's temporary folder, and also under $MEDMM_ARTIFACTS when set.
"""

from __future__ import annotations

import json
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pydicom

from tests.ui.browser import (
    MARKS,
    done,
    save_screenshot,
    text,
    upload,
    upload_and_analyse,
    viewer_drawn,
    viewer_state,
    wait_for,
)
from tests.ui.conftest import full_patient, patient_files, store_events

pytestmark = MARKS
ZONE = "America/New_York"
PROGRESS = ".progress-text, .progress-level, .eta-bar, .wrap.translucent, .wrap.full"


def corrupt(tmp_path: Path) -> Path:
    bad = tmp_path / "corrupt.dcm"
    bad.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00garbage")
    return bad


def dicom_time(ds) -> datetime:
    """The acquisition time as DICOM states it: the first date/time pair present, at its UTC offset."""
    for date_kw, time_kw in (
        ("AcquisitionDate", "AcquisitionTime"),
        ("ContentDate", "ContentTime"),
        ("SeriesDate", "SeriesTime"),
        ("StudyDate", "StudyTime"),
    ):
        if ds.get(date_kw):
            clock = str(ds.get(time_kw) or "000000").split(".")[0].ljust(6, "0")
            offset = str(ds.get("TimezoneOffsetFromUTC") or "+0000")
            sign = -1 if offset.startswith("-") else 1
            zone = timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5])))
            return datetime.strptime(str(ds.get(date_kw)) + clock, "%Y%m%d%H%M%S").replace(tzinfo=zone)
    raise AssertionError("no date in the file")


def expected_header(folder: Path, zone: str) -> dict[str, str]:
    """Patient ID, age, sex and study date worked out from the patient's own files, without medmm."""
    bundle = json.loads((folder / "record.json").read_text())
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    when = dicom_time(pydicom.dcmread(sorted((folder / "images").rglob("*.dcm"))[0], stop_before_pixels=True))
    born, day = date.fromisoformat(patient["birthDate"]), when.astimezone(timezone.utc).date()
    age = day.year - born.year - ((day.month, day.day) < (born.month, born.day))
    local = when.astimezone(ZoneInfo(zone))
    minutes = int(local.utcoffset().total_seconds()) // 60
    offset = f"UTC{'-' if minutes < 0 else '+'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    dicom_id = str(pydicom.dcmread(sorted((folder / "images").rglob("*.dcm"))[0], stop_before_pixels=True).PatientID)
    return {
        "patient-id": patient["id"],
        "age": f"{age} years",
        "sex": patient["gender"],
        "study-date": f"{local:%Y-%m-%d %H:%M} ({zone}, {offset})",
        **({"dicom-patient-id": dicom_id} if dicom_id != patient["id"] else {}),
    }


def facts(driver) -> dict[str, str]:
    return driver.execute_script(
        "const o = {}; document.querySelectorAll('#medmm-header [data-fact]').forEach(f => "
        "{ const dd = f.querySelector('dd').cloneNode(true); dd.querySelectorAll('.medmm-source').forEach(s => s.remove());"
        " o[f.dataset.fact] = dd.innerText.trim(); }); return o;"
    )


def file_statuses(driver) -> dict[str, str]:
    return driver.execute_script(
        "const o = {}; document.querySelectorAll('#medmm-header tr[data-file]').forEach(r => o[r.dataset.file] = r.dataset.status); return o;"
    )


def test_the_result_carries_its_header_and_warnings_unfaded(served, browser, small_cohort, tmp_path):
    service, url = served
    folder = full_patient(small_cohort)
    browser.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": ZONE})
    before = len(store_events(service.work_dir, "predict"))
    upload_and_analyse(browser, url, patient_files(folder) + [corrupt(tmp_path)])
    seen_progress, faded = set(), []
    while not done(browser):  # while the stages arrive, progress shows on the status line only, and results stay opaque
        hosts, opacity = browser.execute_script(
            "const shown = e => { const s = getComputedStyle(e); return e.getBoundingClientRect().width > 0 && s.opacity !== '0'"
            "  && s.visibility !== 'hidden' && s.display !== 'none' && !e.classList.contains('hide'); };"
            "const hosts = Array.from(document.querySelectorAll(arguments[0])).filter(shown)"
            "  .map(e => (e.closest('[id^=medmm-]') || {id: null}).id);"
            "const d = document.getElementById('medmm-diagnoses');"
            "return [hosts, d && d.querySelector('tr') ? getComputedStyle(d).opacity : '1'];",
            PROGRESS,
        )
        seen_progress.update(hosts)
        faded += [opacity] if opacity != "1" else []
        assert "medmm-error" not in browser.find_element("id", "medmm-status").get_attribute("innerHTML")
        time.sleep(0.05)
    assert seen_progress <= {"medmm-status"} and not faded

    assert facts(browser) == expected_header(folder, ZONE)
    assert file_statuses(browser) == {
        "radiograph.dcm": "used",
        "record.json": "used",
        "vitals.csv": "used",
        "corrupt.dcm": "not read",
    }
    warnings = text(browser, "medmm-header")
    assert (
        "input warning" in warnings and "corrupt.dcm: truncated or corrupted" in warnings
    )  # still there on the final page
    rows = browser.find_elements("css selector", "#medmm-diagnoses tr[data-diagnosis]")
    shown = [float(r.find_element("css selector", ".medmm-prob").text.rstrip("%")) for r in rows]
    assert len(shown) == 5 and shown == sorted(shown, reverse=True)
    assert "Research use only" in text(browser, "medmm-disclaimer") and "Imaging: used" in text(
        browser, "medmm-modalities"
    )
    assert "Sex" in text(browser, "medmm-group-card") and "Draft impression" in text(browser, "medmm-impression")
    wait_for(browser, lambda d: len(store_events(service.work_dir, "predict")) == before + 1, "the audit record")
    assert store_events(service.work_dir, "predict")[-1].user == "anonymous"
    save_screenshot(browser, tmp_path, "ui-result-header.png")


def test_the_viewer_zooms_pans_sets_the_window_and_shows_markers_and_the_header(served, browser, small_cohort):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.actions.wheel_input import ScrollOrigin

    _, url = served
    folder = full_patient(small_cohort)
    upload_and_analyse(browser, url, patient_files(folder))
    wait_for(browser, done, "the analysis")
    wait_for(browser, lambda d: viewer_drawn(d, "medmm-viewer"), "the image")
    sides = browser.execute_script(
        "const o = {}; document.querySelectorAll('#medmm-viewer .mv-marker').forEach(m => "
        "o[m.className.split('mv-').pop()] = m.innerText); return o;"
    )
    assert sides == {"left": "R", "right": "L", "top": "H", "bottom": "F"}  # PatientOrientation L\F of a PA radiograph
    canvas = browser.find_element("css selector", "#medmm-viewer canvas")
    assert browser.execute_script("return getComputedStyle(arguments[0]).imageRendering", canvas) != "pixelated"
    start = viewer_state(browser, "medmm-viewer")
    ActionChains(browser).scroll_from_origin(ScrollOrigin.from_element(canvas), 0, -400).perform()
    wait_for(browser, lambda d: float(viewer_state(d, "medmm-viewer")["zoom"]) > 1.5, "zoom in")
    ActionChains(browser).click_and_hold(canvas).move_by_offset(40, 25).release().perform()
    wait_for(browser, lambda d: viewer_state(d, "medmm-viewer")["pan"] != start["pan"], "a pan")
    browser.find_element("xpath", "//*[@id='medmm-viewer']//button[text()='W/L']").click()
    ActionChains(browser).click_and_hold(canvas).move_by_offset(60, -30).release().perform()
    wider = lambda d: float(viewer_state(d, "medmm-viewer")["width"]) > float(start["width"])  # noqa: E731
    brighter = lambda d: float(viewer_state(d, "medmm-viewer")["center"]) > float(start["center"])  # noqa: E731
    wait_for(browser, lambda d: wider(d) and brighter(d), "a wider window at a higher level after the drag")
    ActionChains(browser).double_click(canvas).perform()
    reset = lambda d: [viewer_state(d, "medmm-viewer").get(k) for k in ("zoom", "pan", "center", "width")]  # noqa: E731
    wait_for(browser, lambda d: reset(d) == ["1.000", "0,0", start["center"], start["width"]], "the reset view")

    browser.find_element("xpath", "//*[@id='medmm-preset']//label[contains(., 'Full range')]").click()
    wait_for(browser, lambda d: viewer_state(d, "medmm-viewer").get("width") != start["width"], "the full-range window")

    browser.find_element("xpath", "//button[contains(., 'DICOM header')]").click()
    header = wait_for(browser, lambda d: text(d, "medmm-dicom-header") or None, "the DICOM header")
    ds = pydicom.dcmread(sorted((folder / "images").rglob("*.dcm"))[0], stop_before_pixels=True)
    assert "Modality" in header and "PixelSpacing" in header and ds.PatientID in header
    for hidden in (
        ds.StudyInstanceUID,
        ds.SOPInstanceUID,
        ds.AccessionNumber,
        ds.StudyDate,
        "StudyInstanceUID",
        "AccessionNumber",
    ):
        assert hidden not in header


def choose(driver, element_id: str, label: str) -> None:
    """Pick `label` in a Gradio dropdown."""
    box = driver.find_element("css selector", f"#{element_id} input")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", box)
    box.click()
    option = wait_for(
        driver,
        lambda d: next((o for o in d.find_elements("css selector", "li.item") if o.text.strip() == label), None),
        f"the option {label}",
    )
    option.click()


def test_two_diagnoses_side_by_side_with_signed_notes_a_legible_chart_and_opacity_typed(
    served, browser, small_cohort, tmp_path
):
    _, url = served
    upload_and_analyse(browser, url, patient_files(full_patient(small_cohort)))
    wait_for(browser, done, "the analysis")
    ranked = [
        r.text for r in browser.find_elements("css selector", "#medmm-diagnoses tr[data-diagnosis] td:nth-child(2)")
    ]
    choose(browser, "medmm-compare", ranked[1])
    for element in (
        "medmm-overlay-attention",
        "medmm-overlay-gradcam",
        "medmm-overlay-attention-b",
        "medmm-overlay-gradcam-b",
    ):
        wait_for(browser, lambda d, e=element: viewer_drawn(d, e), element)
    for side, name in (("", ranked[0]), ("-b", ranked[1])):
        notes = text(browser, f"medmm-notes{side}")
        assert f"argues against {name}" in notes and "supports" in notes  # the legend of signed word evidence
        assert browser.find_elements(
            "css selector", f"#medmm-notes{side} mark.medmm-for, #medmm-notes{side} mark.medmm-against"
        )
        chart = text(browser, f"medmm-vitals{side}")
        assert "adult normal range" in chart and f"support {name}" in chart
        assert (
            browser.find_element("css selector", f"#medmm-vitals{side} img")
            .get_attribute("src")
            .startswith("data:image/png;base64,")
        )

    def caption(
        d, element_id: str = "medmm-overlay-gradcam"
    ) -> str:  # read afresh: a new value rebuilds the viewer's elements
        return d.execute_script(
            "const c = document.querySelector('#' + arguments[0] + ' .mv-caption'); return c ? c.innerText : '';",
            element_id,
        )

    assert "opacity 0.35" in caption(browser)
    box = browser.find_element("css selector", "#medmm-opacity input[type=number]")
    box.clear()
    box.send_keys("0.8")  # typed, no slider drag, no blur
    wait_for(browser, lambda d: "opacity 0.80" in caption(d), "the overlays redrawn at the typed opacity")
    wait_for(browser, lambda d: "opacity 0.80" in caption(d, "medmm-overlay-gradcam-b"), "column B redrawn too")
    box.clear()
    box.send_keys("0.35")
    wait_for(browser, lambda d: "opacity 0.35" in caption(d), "the default opacity again")
    save_screenshot(browser, tmp_path, "ui-evidence.png", "medmm-evidence")
    save_screenshot(browser, tmp_path, "ui-vitals.png", "medmm-vitals")


def test_a_second_click_while_running_is_refused_visibly(served, browser, small_cohort, monkeypatch):
    service, url = served
    opened = service.open_uploads

    def slow(paths):  # long enough that the second click lands while the first analysis runs
        time.sleep(1.5)
        return opened(paths)

    monkeypatch.setattr(service, "open_uploads", slow)
    files = patient_files(full_patient(small_cohort))
    before = len(store_events(service.work_dir, "predict"))
    upload(browser, url, files)
    browser.execute_script(
        "const b = document.getElementById('medmm-analyse'); b.click(); setTimeout(() => b.click(), 400);"
    )
    wait_for(browser, lambda d: "was not taken" in text(d, "medmm-notice"), "the refusal of the second click")
    wait_for(browser, done, "the first analysis")
    assert "was still running" in text(browser, "medmm-notice")  # still said on the final page
    assert sorted(file_statuses(browser)) == sorted(p.name for p in files)
    time.sleep(1.0)
    assert len(store_events(service.work_dir, "predict")) == before + 1  # one analysis, not two

    browser.find_element("css selector", "#medmm-upload input[type=file]").send_keys(str(files[0]))
    wait_for(browser, lambda d: "file list changed" in text(d, "medmm-notice"), "the stale-result notice")


def test_one_feedback_submission_is_one_event_and_the_form_starts_empty(served, browser, small_cohort):
    service, url = served
    upload_and_analyse(browser, url, patient_files(full_patient(small_cohort)))
    wait_for(browser, done, "the analysis")
    checked = "return document.querySelectorAll('#medmm-verdict input:checked, #medmm-named input:checked').length"
    assert browser.execute_script(checked) == 0  # no verdict preselected
    before = len(store_events(service.work_dir, "feedback"))
    send = browser.find_element("id", "medmm-send-feedback")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'}); arguments[0].click();", send)
    wait_for(
        browser, lambda d: "Choose a verdict first" in text(d, "medmm-feedback-status"), "the missing-verdict message"
    )

    browser.find_element("xpath", "//*[@id='medmm-verdict']//label[contains(., 'Disagree')]").click()
    browser.find_element("xpath", "//*[@id='medmm-named']//label[contains(., 'Sepsis')]").click()
    browser.execute_script(
        "arguments[0].click(); arguments[0].click(); setTimeout(() => arguments[0].click(), 150);", send
    )
    wait_for(
        browser, lambda d: "Feedback recorded" in text(d, "medmm-feedback-status"), "the feedback record"
    )  # said again by a late click
    wait_for(browser, lambda d: d.execute_script(checked) == 0, "the form reset")
    time.sleep(1.5)  # any later click would have been recorded by now
    events = store_events(service.work_dir, "feedback")
    assert len(events) == before + 1 and json.loads(events[-1].detail) == {
        "verdict": "disagree",
        "diagnoses": ["sepsis"],
    }

    browser.find_element("xpath", "//*[@id='medmm-verdict']//label[contains(., 'Unsure')]").click()
    browser.execute_script("arguments[0].click();", send)
    wait_for(browser, lambda d: len(store_events(service.work_dir, "feedback")) == before + 2, "the second submission")
    last = store_events(service.work_dir, "feedback")[-1]
    assert json.loads(last.detail) == {"verdict": "unsure", "diagnoses": []} and last.user == "anonymous"


def test_a_corrupt_file_shows_its_error_and_the_app_keeps_serving(served, browser, small_cohort, tmp_path):
    _, url = served
    upload_and_analyse(browser, url, [corrupt(tmp_path)])
    wait_for(browser, lambda d: d.find_elements("css selector", "#medmm-status .medmm-error"), "the error message")
    assert text(browser, "medmm-status").startswith("DicomError: corrupt.dcm: ")
    assert not browser.find_elements("css selector", "#medmm-diagnoses tr[data-diagnosis]") and not text(
        browser, "medmm-header"
    )
    save_screenshot(browser, tmp_path, "ui-error.png")
    upload_and_analyse(
        browser, url, patient_files(full_patient(small_cohort))
    )  # a fresh page: the server still answers
    wait_for(
        browser,
        lambda d: len(d.find_elements("css selector", "#medmm-diagnoses tr[data-diagnosis]")) == 5,
        "a later result",
    )
