"""The interface's logic without Gradio: cases from uploads, zips and the demo cohort; staged analysis; audit; questions; feedback."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import zipfile

import numpy as np
import pytest

import medmm.predict
from medmm.errors import ConfigError, DicomError, InputError
from medmm.explain.explainer import explain_study
from medmm.io import load_study
from medmm.io.fhir import read_fhir
from medmm.lm.prompts import guided_prompt
from medmm.trail import prediction_checksum
from tests.io.test_pacs import ORTHANC, PLUGIN, running_orthanc, store
from tests.ui.conftest import full_patient, image_files_and_patient_id, make_service, patient_files, store_events
from ui.session import ClinicianService


@pytest.fixture(scope="module")
def service(ui_model, ui_predictor, small_cohort, tmp_path_factory) -> ClinicianService:
    svc = make_service(ui_model, tmp_path_factory.mktemp("ui-session"), small_cohort, predictor=ui_predictor)
    yield svc
    svc.close()


def grid(predictor) -> dict:
    pre = predictor.model.config.preprocess
    return {"window_hours": pre.window_hours, "step_minutes": pre.step_minutes}


def assert_same_study(a, b) -> None:
    assert a.study_id == b.study_id and a.time == b.time
    assert len(a.images) == len(b.images)
    for x, y in zip(a.images, b.images):
        np.testing.assert_array_equal(x.pixels, y.pixels)
    assert [n.text for n in a.notes] == [n.text for n in b.notes]
    assert (a.vitals is None) == (b.vitals is None)
    if a.vitals is not None:
        np.testing.assert_array_equal(a.vitals.values, b.vitals.values)
    assert a.demographics == b.demographics


def test_uploaded_files_read_as_the_patient_folder_does(service, ui_predictor, small_cohort):
    folder = full_patient(small_cohort)
    case = service.open_uploads(patient_files(folder))
    record_id = read_fhir(folder / "record.json").patient_id
    assert_same_study(case.study, load_study(folder, patient_id=record_id, **grid(ui_predictor)))
    assert case.study.study_id == record_id and case.origin == "upload" and case.folder.parent == service.cases_dir
    want = sorted(hashlib.sha256(p.read_bytes()).hexdigest() for p in patient_files(folder) if p.suffix != ".npz")
    assert sorted(d.sha256 for d in case.digests) == want
    assert case.seconds["load"] > 0 and case.card is not None and case.card.available


def test_a_zipped_patient_folder_gives_the_same_study(service, ui_predictor, small_cohort, tmp_path):
    folder = full_patient(small_cohort)
    archive = tmp_path / "patient.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in patient_files(folder):
            zf.write(p, f"{folder.name}/{p.relative_to(folder)}")
    case = service.open_uploads([archive])
    record_id = read_fhir(folder / "record.json").patient_id
    assert_same_study(case.study, load_study(folder, patient_id=record_id, **grid(ui_predictor)))


def test_a_corrupt_single_file_raises_its_readers_error_naming_only_the_file(service, tmp_path):
    bad = tmp_path / "corrupt.dcm"
    bad.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00garbage")
    before = set(service.cases_dir.iterdir())
    with pytest.raises(DicomError) as err:
        service.open_uploads([bad])
    message = str(err.value)
    assert (
        message.startswith("corrupt.dcm: ") and str(service.cases_dir) not in message and str(tmp_path) not in message
    )
    assert set(service.cases_dir.iterdir()) == before  # the case folder is removed again


def test_several_files_of_which_none_is_readable_are_an_error_naming_the_first(service, tmp_path):
    (tmp_path / "a.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"junk")
    (tmp_path / "b.txt").write_text("hello")
    with pytest.raises(InputError) as err:
        service.open_uploads([tmp_path / "a.dcm", tmp_path / "b.txt"])
    message = str(err.value)
    assert (
        message.startswith("upload: nothing usable was read: a.dcm: ") and "; b.txt: not a recognised input" in message
    )
    with pytest.raises(InputError, match="no files were uploaded"):
        service.open_uploads([])


def test_a_bad_file_beside_good_ones_is_a_warning_with_a_relative_name(service, small_cohort, tmp_path):
    folder = full_patient(small_cohort)
    bad = tmp_path / "broken.dcm"
    bad.write_bytes(b"\0" * 128 + b"DICM" + b"junk")
    case = service.open_uploads(patient_files(folder) + [bad])
    assert case.study.modalities == ("image", "notes", "vitals")
    assert any(w.source == "broken.dcm" and w.kind == "skipped" for w in case.study.warnings)
    assert not any(str(service.cases_dir) in str(w) for w in case.study.warnings)


def test_the_drafted_impression_follows_the_models_guide(service, ui_predictor, small_cohort):
    case = service.open_uploads(patient_files(full_patient(small_cohort)))
    study = case.study
    model = ui_predictor.model
    plain = model.config
    model.config = dataclasses.replace(plain, impression_guide=True, guide_threshold=0.0)  # every diagnosis is named
    try:
        stages = service.analyse(case)
        next(stages)  # the ranked diagnoses
        drafted = next(stages).prediction.impression
        stages.close()  # the explanations are not needed here
        probs = ui_predictor.probabilities(ui_predictor.batch([study]))[0]
        ranked = [plain.diagnoses[k] for k in np.argsort(-probs, kind="stable")]  # most probable first: a clause each
        clauses = [model.generate(ui_predictor.batch([study]), [guided_prompt([d])])[0] for d in ranked]
        parts = [t.strip().rstrip(".").strip() for t in clauses]
        draft = ", ".join(p for p in parts if p) + "."
        batch = ui_predictor.batch([study])
        assert ui_predictor.draft_impressions(batch, probs[None]) == [draft]
        # what the page shows is the draft grounded against the study, as predict gives it
        assert (
            drafted
            == ui_predictor.ground(batch, probs[None], [draft])[0].text
            == ui_predictor.predict(study).impression
        )
    finally:
        model.config = plain


def test_analysis_streams_diagnoses_then_impression_then_explanations(service, ui_predictor, small_cohort):
    folder = full_patient(small_cohort)
    case = service.open_uploads(patient_files(folder))
    stages = list(service.analyse(case, user="dr-test"))
    assert [c.stage for c in stages] == ["diagnoses", "impression", "explanations"]
    first, drafted, explained = stages
    direct = ui_predictor.predict(case.study)  # the same study through the Predictor itself
    assert [(s.name, s.probability) for s in first.prediction.scores] == [
        (s.name, s.probability) for s in direct.scores
    ]
    assert first.prediction.impression == "" and drafted.prediction.impression == direct.impression
    # the prediction shown and recorded is the Predictor's own, timings aside
    assert dataclasses.replace(drafted.prediction, seconds=0.0) == dataclasses.replace(direct, seconds=0.0)
    assert dataclasses.replace(first.prediction, seconds=0.0) == dataclasses.replace(
        ui_predictor.predict(case.study, impression=False), seconds=0.0
    )
    assert 0 < first.prediction.seconds <= drafted.prediction.seconds
    assert set(drafted.seconds) == {"load", "diagnoses", "impression"}
    assert set(explained.seconds) == {"load", "diagnoses", "impression", "explanations"}

    events = [e for e in store_events(service.work_dir, "predict") if e.event_id == drafted.event_id]
    assert len(events) == 1 and events[0].source == "ui" and events[0].user == "dr-test"
    assert events[0].output_checksum == prediction_checksum(drafted.prediction)
    assert sorted(d.sha256 for d in events[0].inputs) == sorted(d.sha256 for d in case.digests)

    top = direct.scores[0].name
    assert list(explained.explanations) == [top] and list(explained.signed) == [top] and explained.signed[top].words
    want = explain_study(ui_predictor, case.study, methods=("attention", "gradcam"), diagnoses=[top], impression=False)
    got = explained.explanations[top]
    for method in ("attention", "gradcam"):
        np.testing.assert_allclose(
            got.get(top, method).image.relevance, want.get(top, method).image.relevance, rtol=1e-6, atol=1e-12
        )
    assert service.get(case.token).stage == "explanations"

    other = direct.scores[-1].name
    more = service.explain(case.token, other)
    assert set(more.explanations) == set(more.signed) == {top, other}
    with pytest.raises(ConfigError):
        service.explain(case.token, "influenza")


def test_the_study_is_scored_once_and_what_was_shown_is_recorded_when_the_draft_fails(
    service, ui_predictor, small_cohort, monkeypatch
):
    case = service.open_uploads(patient_files(full_patient(small_cohort)))
    batches, scored = [], []
    real_collate, real_logits = medmm.predict.collate, ui_predictor.logits

    def counted_collate(items):
        batches.append(len(items))
        return real_collate(items)

    def counted_logits(batch, modalities=None):
        scored.append(modalities)
        return real_logits(batch, modalities)

    def failing_draft(batch, probs, *, max_new_tokens=None):
        raise RuntimeError("the language model failed")

    monkeypatch.setattr(medmm.predict, "collate", counted_collate)
    monkeypatch.setattr(ui_predictor, "logits", counted_logits)
    monkeypatch.setattr(ui_predictor, "draft_impressions", failing_draft)
    before = {e.event_id for e in store_events(service.work_dir, "predict")}
    stages = service.analyse(case, user="dr-fail")
    first = next(stages)
    assert first.stage == "diagnoses" and first.prediction.impression == ""
    with pytest.raises(RuntimeError, match="the language model failed"):
        next(stages)
    assert batches == [1] and scored == [None]  # the study preprocessed once, and one forward for its scores
    new = [e for e in store_events(service.work_dir, "predict") if e.event_id not in before]
    assert len(new) == 1 and new[0].user == "dr-fail"
    assert new[0].output_checksum == prediction_checksum(first.prediction)  # the diagnoses that were shown
    assert not ui_predictor.lock.locked()


def test_questions_are_answered_by_the_predictor_on_the_whole_case(service, ui_predictor, small_cohort):
    case = service.open_uploads(patient_files(full_patient(small_cohort)))
    question = "What supports heart failure?"
    assert service.ask(case.token, f"  {question} ") == ui_predictor.ask(case.study, question).strip()
    with pytest.raises(InputError, match="type a question"):
        service.ask(case.token, "   ")
    with pytest.raises(InputError, match="limited to 300 characters"):
        service.ask(case.token, "why? " * 100)


def test_feedback_is_recorded_with_the_verdict_and_named_diagnoses_only(service, small_cohort):
    case = service.open_uploads(patient_files(full_patient(small_cohort)))
    with pytest.raises(InputError, match="not finished yet"):
        service.feedback(case.token, "agree")
    final = list(service.analyse(case))[-1]
    p = final.prediction
    agree, _ = service.feedback(case.token, "agree", user="dr-a")
    correct, _ = service.feedback(case.token, "disagree", ["sepsis", "pneumonia"], user="dr-a")
    unsure, _ = service.feedback(case.token, "unsure")
    details = {e.event_id: json.loads(e.detail) for e in store_events(service.work_dir, "feedback")}
    expected_agree = sorted(p.conformal_set) if p.conformal_set else [p.scores[0].name]
    assert details[agree] == {"verdict": "agree", "diagnoses": expected_agree}
    assert details[correct] == {"verdict": "disagree", "diagnoses": ["pneumonia", "sepsis"]}
    assert details[unsure] == {"verdict": "unsure", "diagnoses": []}
    stored = (service.work_dir / "audit.sqlite").read_bytes()
    for value in [case.study.study_id, *(n.text[:40] for n in case.study.notes), p.impression]:
        assert (
            len(value) < 6 or value.encode() not in stored
        )  # no patient id, note text or prediction text in the trail
    with pytest.raises(ConfigError):
        service.feedback(case.token, "maybe")
    with pytest.raises(ConfigError):
        service.feedback(case.token, "disagree", ["influenza"])


def test_one_submission_of_the_feedback_form_is_one_event(service, small_cohort):
    case = service.open_uploads(patient_files(full_patient(small_cohort)))
    list(service.analyse(case))
    before = len(store_events(service.work_dir, "feedback"))
    first, new = service.feedback(case.token, "disagree", ["sepsis"], user="dr-a", submission="form-1")
    again, repeated = service.feedback(case.token, "disagree", ["sepsis"], user="dr-a", submission="form-1")
    assert new and not repeated and first == again
    second, new_again = service.feedback(case.token, "unsure", [], user="dr-a", submission="form-2")
    assert new_again and second != first
    assert len(store_events(service.work_dir, "feedback")) == before + 2
    # the page keeps the form's id after recording: a late click with the same content is the same event,
    # another verdict under the same id a new one
    late, fresh = service.feedback(case.token, "unsure", [], user="dr-a", submission="form-2")
    other, fresh_other = service.feedback(case.token, "disagree", ["pneumonia"], user="dr-a", submission="form-2")
    assert (late, fresh) == (second, False) and fresh_other and other not in (first, second)
    assert len(store_events(service.work_dir, "feedback")) == before + 3


def test_the_dicom_header_is_read_only_from_the_cases_own_folder(service, small_cohort):
    case = service.open_uploads(patient_files(full_patient(small_cohort)))
    header = service.dicom_header(case.token, 0)
    assert header.source == "radiograph.dcm" and any(r.keyword == "Modality" for r in header.rows)
    moved = dataclasses.replace(case.study.images[0], source_files=("/etc/passwd",))
    service._update(case, study=dataclasses.replace(case.study, images=(moved,)))
    with pytest.raises(InputError, match="not in the case folder"):
        service.dicom_header(case.token, 0)


def test_demo_patients_are_listed_test_split_first_and_read_in_place(service, ui_predictor, small_cohort):
    import pandas as pd

    manifest = pd.read_csv(small_cohort / "manifest.csv", dtype=str)
    listed = service.demo_patients()
    assert sorted(v for _, v in listed) == sorted(manifest["patient_id"])
    splits = [label.split("(")[1].split(" ")[0] for label, _ in listed]
    assert splits == sorted(splits, key=lambda s: {"test": 0, "val": 1}.get(s, 2))
    row = manifest.iloc[0]
    case = service.open_demo(row["patient_id"])
    from medmm.io.cohort import Cohort

    assert_same_study(case.study, Cohort.open(small_cohort).load(0, **grid(ui_predictor)))
    assert case.study.study_id == row["patient_id"] and case.folder == small_cohort / row["folder"]
    with pytest.raises(Exception, match="no such case"):
        service.open_demo("nobody")


def test_old_cases_are_closed_and_their_files_deleted(ui_model, ui_predictor, small_cohort, tmp_path):
    svc = make_service(ui_model, tmp_path, predictor=ui_predictor, max_cases=2)
    files = patient_files(full_patient(small_cohort))
    cases = [svc.open_uploads(files) for _ in range(3)]
    assert not cases[0].folder.exists() and cases[1].folder.exists() and cases[2].folder.exists()
    with pytest.raises(InputError, match="no open case"):
        svc.get(cases[0].token)
    svc.close()
    assert not cases[2].folder.exists()
    with pytest.raises(InputError):
        svc.get(cases[2].token)


def test_logs_carry_no_patient_data(service, small_cohort, caplog):
    folder = full_patient(small_cohort)
    study = load_study(folder)
    record_id = read_fhir(folder / "record.json").patient_id
    with caplog.at_level(logging.DEBUG):
        case = service.open_uploads(patient_files(folder))
        list(service.analyse(case))
        service.ask(case.token, "Is there sepsis?")
        service.feedback(case.token, "unsure")
        with pytest.raises(DicomError):
            bad = case.folder.parent / "x-corrupt.dcm"
            shutil.copyfile(folder / "record.json", bad)
            service.open_uploads([bad])
    text = "\n".join(f"{r.name}: {r.getMessage()}" for r in caplog.records)
    assert "case analysed" in text and "feedback recorded" in text
    forbidden = [record_id, folder.name, "sepsis?", *(n.text[:30] for n in study.notes)]
    assert not any(f in text for f in forbidden)


def test_the_audit_and_model_card_are_found_next_to_the_model(service, ui_model):
    assert service.audit_dir == ui_model.parent / "audit" and service.audit is not None
    assert service.model_card == ui_model.parent / "model_card.md"
    replaced = dataclasses.replace(service.settings, audit_dir=ui_model.parent / "nowhere")
    assert ClinicianService(replaced, predictor=service.predictor, store=service.store).audit is None


@pytest.mark.skipif(
    not (ORTHANC.is_file() and PLUGIN.is_file()), reason="Orthanc and its DICOMweb plugin are not installed"
)
def test_a_study_pulled_from_dicomweb_is_read_and_analysed(ui_model, ui_predictor, small_cohort, tmp_path):
    folder = full_patient(small_cohort)
    files, patient_id = image_files_and_patient_id(folder)
    with running_orthanc(tmp_path / "orthanc") as url:
        store(url, files)
        svc = make_service(ui_model, tmp_path / "work", predictor=ui_predictor, pacs_url=f"{url}/dicom-web")
        studies = svc.search_pacs(patient_id)
        assert len(studies) == 1 and studies[0].n_instances == len(files)
        case = svc.open_pacs(studies[0].study_uid, patient_id)
    want = load_study(folder / "images", patient_id=patient_id, **grid(ui_predictor))
    assert case.origin == "pacs" and case.study.study_id == patient_id
    for got, expected in zip(case.study.images, want.images):
        np.testing.assert_array_equal(got.pixels, expected.pixels)
    assert [c.stage for c in svc.analyse(case)] == ["diagnoses", "impression", "explanations"]
    with pytest.raises(ConfigError, match="no DICOMweb server"):
        make_service(ui_model, tmp_path / "other", predictor=ui_predictor).search_pacs(patient_id)
    svc.close()


def test_a_fhir_bundle_alone_or_a_vitals_table_alone_is_a_case_with_the_rest_missing(
    service, ui_predictor, small_cohort
):
    folder = full_patient(small_cohort)
    record = service.open_uploads([folder / "record.json"])
    assert record.study.images == () and [n.text for n in record.study.notes] == [
        n.text for n in load_study(folder / "record.json").notes
    ]
    final = list(service.analyse(record))[-1].prediction
    assert "image" in final.missing and "image" not in final.present
    vitals = service.open_uploads([folder / "vitals.csv"])
    want = load_study(folder / "vitals.csv", **grid(ui_predictor)).vitals
    np.testing.assert_array_equal(vitals.study.vitals.values, want.values)
    assert vitals.study.study_id.startswith("upload-") and vitals.study.modalities == ("vitals",)


def test_the_audit_folder_is_looked_for_where_medmm_demo_and_medmm_audit_put_it(tmp_path):
    from ui.session import find_audit_dir

    model = tmp_path / "run" / "model"
    model.mkdir(parents=True)
    assert find_audit_dir(model) is None
    for folder in (
        tmp_path / "run" / "audits" / "default",
        tmp_path / "run" / "audit",
        tmp_path / "run" / "evaluation",
    ):
        folder.mkdir(parents=True)
        (folder / "audit.json").write_text("{}")
        assert find_audit_dir(model) == folder  # each later one is preferred
