"""Predictor: probabilities, ranking and conformal sets worked out by hand; missing modalities stated."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import datetime, timezone

import numpy as np
import pytest
import torch

import medmm
import medmm.predict
from medmm.cases import collate
from medmm.checkpoint import save_checkpoint, update_calibration
from medmm.codes import VITAL_SIGNS
from medmm.errors import ConfigError
from medmm.lm.prompts import IMPRESSION_PROMPT, guided_prompt
from medmm.predict import Predictor
from medmm.records import ClinicalNote, Demographics, ImageSeries, Issue, Study, VitalSeries
from medmm.synth.diagnoses import DIAGNOSES
from medmm.transforms.study import StudyPreprocessor
from tests.test_model import note_tokenizer, open_gates, randomize, tiny_bert, tiny_config, tiny_model

STUDY_TIME = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
DISPLAY = {d.name: d.display for d in DIAGNOSES}


def make_study(
    study_id: str = "case-1", *, image: bool = True, notes: bool = True, vitals_steps: int | None = 4, seed: int = 0
) -> Study:
    rng = np.random.default_rng(seed)
    images = ()
    if image:
        pixels = rng.uniform(0, 4000, size=(48, 40)).astype(np.float32)
        # 8 mm pixels: the 384 x 320 mm of a chest radiograph, inside the default input scope
        images = (
            ImageSeries(pixels=pixels, spacing=(8.0, 8.0), modality="CR", series_uid="1.2.3.4", view_position="PA"),
        )
    texts = ("patient reports cough and fever .", "crackles right lower lobe , no acute distress .")
    note_records = tuple(ClinicalNote(text=t, time=STUDY_TIME) for t in texts) if notes else ()
    series = None
    if vitals_steps is not None:
        values = np.stack(
            [rng.normal(v.low + (v.high - v.low) / 3, 1.0, size=vitals_steps) for v in VITAL_SIGNS], axis=1
        ).astype(np.float32)
        mask = rng.uniform(size=values.shape) > 0.3
        values[~mask] = np.nan
        series = VitalSeries(
            start=STUDY_TIME,
            step_seconds=3600.0,
            channels=tuple(v.name for v in VITAL_SIGNS),
            units=tuple(v.unit for v in VITAL_SIGNS),
            values=values,
            mask=mask,
        )
    warnings = (Issue("record.json", "entry 3", "skipped: unknown resource type", "skipped"),)
    return Study(
        study_id=study_id, images=images, notes=note_records, vitals=series, time=STUDY_TIME, warnings=warnings
    )


@pytest.fixture(scope="module")
def model():
    m = tiny_model().eval()
    randomize(m.lm, 0.1)
    randomize(m.head, 0.5, seed=4)  # spread-out probabilities, so ranking and sets are clear-cut
    open_gates(m, 0.3)
    return m


@pytest.fixture()
def guided_model():
    """The `model` fixture's weights with the impression guide on."""
    m = tiny_model(tiny_config(impression_guide=True)).eval()
    randomize(m.lm, 0.1)
    randomize(m.head, 0.5, seed=4)
    open_gates(m, 0.3)
    return m


def logits_by_hand(model, study: Study) -> np.ndarray:
    """Diagnosis logits (K,) from the preprocessed study, the prompt tokenized here, pooled at its end."""
    batch = collate([StudyPreprocessor(model.config.preprocess, note_tokenizer())(study)])
    tok = model.tokenizer
    ids = torch.tensor([[tok.bos_token_id] + tok.encode(IMPRESSION_PROMPT, add_special_tokens=False)])
    with torch.no_grad():
        out = model(batch, ids, torch.ones_like(ids), torch.tensor([ids.shape[1] - 1]))
    return out.diagnosis_logits[0].double().numpy()


def test_probabilities_ranking_and_conformal_set_by_hand(model):
    study = make_study()
    temperature = 1.7
    probs = 1.0 / (1.0 + np.exp(-logits_by_hand(model, study) / temperature))
    names = list(model.config.diagnoses)
    order = sorted(range(len(names)), key=lambda k: -probs[k])
    threshold = 1.0 - (probs[order[1]] + probs[order[2]]) / 2  # the two most probable pass 1 - p <= q
    calibration = {"temperature": temperature, "conformal_threshold": threshold, "coverage_target": 0.9}
    predictor = Predictor(model, note_tokenizer=note_tokenizer(), calibration=calibration)
    pred = predictor.predict(study)

    assert [s.name for s in pred.scores] == [names[k] for k in order]
    for score in pred.scores:
        assert score.probability == pytest.approx(probs[names.index(score.name)], abs=1e-6)
        assert score.display == DISPLAY[score.name]
    assert pred.conformal_set == (names[order[0]], names[order[1]])
    assert [s.in_set for s in pred.scores] == [True, True] + [False] * (len(names) - 2)
    assert pred.coverage_target == 0.9 and pred.calibrated
    assert (pred.present, pred.missing) == (("image", "notes", "vitals"), ())
    assert (pred.study_id, pred.model_id, pred.model_version) == ("case-1", "uncheckpointed", medmm.__version__)
    assert pred.warnings == ("record.json: entry 3: skipped: unknown resource type",)
    assert pred.seconds > 0
    batch = predictor.batch([study])
    draft = model.generate(batch, [IMPRESSION_PROMPT])[0]  # a random LM: no diagnosis or finding in it
    assert draft and not any(d.display.lower() in draft for d in DIAGNOSES)
    # nothing of the draft can be given out; the two diagnoses the set keeps are named as not ruled out
    top = [names[k] for k in order[:2]]
    listed = ", ".join(f"{DISPLAY[n].lower()} ({probs[names.index(n)]:.0%})" for n in top)
    assert pred.impression == f"not ruled out (prediction set at 90% coverage): {listed}."
    assert [(c.kind, c.verdict) for c in pred.removed_claims] == [("text", "unsupported")] * len(pred.removed_claims)
    assert " ".join(c.text for c in pred.removed_claims).replace(" ", "") == draft.lower().replace(" ", "").rstrip(".")


def test_without_calibration_probabilities_are_the_plain_sigmoid_and_there_is_no_set(model):
    study = make_study(seed=1)
    probs = 1.0 / (1.0 + np.exp(-logits_by_hand(model, study)))
    pred = Predictor(model, note_tokenizer=note_tokenizer()).predict(study, impression=False)
    for k, name in enumerate(model.config.diagnoses):
        assert pred.probability(name) == pytest.approx(probs[k], abs=1e-6)
    assert pred.conformal_set == () and pred.coverage_target is None and not pred.calibrated
    assert not any(s.in_set for s in pred.scores) and pred.impression == ""


def test_a_study_with_no_image_still_predicts_and_says_what_is_missing(model):
    predictor = Predictor(model, note_tokenizer=note_tokenizer())
    full = predictor.predict(make_study(), impression=False)
    no_image = make_study(image=False)
    pred = predictor.predict(no_image, impression=False)
    assert (pred.present, pred.missing) == (("notes", "vitals"), ("image",))
    probs = 1.0 / (1.0 + np.exp(-logits_by_hand(model, no_image)))
    assert pred.probability("pneumonia") == pytest.approx(probs[model.config.diagnoses.index("pneumonia")], abs=1e-6)
    assert pred.probability("pneumonia") != pytest.approx(
        full.probability("pneumonia"), abs=1e-6
    )  # the image did count
    empty = predictor.predict(Study(study_id="empty"), impression=False)  # nothing to read: no answer
    assert (empty.present, empty.missing, empty.scores, empty.answered) == ((), ("image", "notes", "vitals"), (), False)


def test_a_modality_the_model_cannot_use_is_missing_with_a_warning(model):
    pred = Predictor(model, note_tokenizer=note_tokenizer()).predict(make_study(vitals_steps=10), impression=False)
    assert pred.missing == ("vitals",)
    assert "vitals vital signs: not used (grid of 10 steps, the model reads 4)" in pred.warnings
    assert [(u.modality, u.used) for u in pred.inputs] == [
        ("image", True),
        ("notes", True),
        ("notes", True),
        ("vitals", False),
    ]


def test_a_batch_of_studies_equals_each_study_alone(model):
    predictor = Predictor(model, note_tokenizer=note_tokenizer(), calibration={"conformal_threshold": 0.5})
    studies = [
        make_study("a", seed=2),
        make_study("b", image=False, seed=3),
        make_study("c", notes=False, vitals_steps=None, seed=4),
    ]
    together = predictor.predict_many(studies)
    for study, pred in zip(studies, together):
        alone = predictor.predict(study)
        assert pred.study_id == study.study_id and pred.missing == alone.missing
        assert [s.name for s in pred.scores] == [s.name for s in alone.scores]
        np.testing.assert_allclose(
            [s.probability for s in pred.scores], [s.probability for s in alone.scores], atol=1e-5
        )
        assert pred.conformal_set == alone.conformal_set and pred.impression == alone.impression


def test_the_staged_prediction_scores_once_and_ends_as_predict_does(model, monkeypatch):
    calibration = {"temperature": 1.3, "conformal_threshold": 0.5, "coverage_target": 0.9}
    predictor = Predictor(model, note_tokenizer=note_tokenizer(), calibration=calibration)
    study = make_study("staged", seed=6)
    direct = predictor.predict(study)
    scores_only = predictor.predict(study, impression=False)

    batches, forwards, scored = [], [], []
    real_collate, real_logits = medmm.predict.collate, predictor.logits

    def counted_collate(items):
        batches.append(len(items))
        return real_collate(items)

    def counted_logits(batch, modalities=None):
        scored.append(modalities)
        return real_logits(batch, modalities)

    monkeypatch.setattr(medmm.predict, "collate", counted_collate)
    monkeypatch.setattr(predictor, "logits", counted_logits)
    hook = model.register_forward_pre_hook(lambda module, args: forwards.append(1))
    try:
        stages = predictor.predict_stages(study)
        first = next(stages)
        assert (batches, len(forwards), scored) == ([1], 1, [None])  # the diagnoses: one batch, one forward
        assert not predictor.lock.locked()  # nothing is held while the caller shows the first stage
        final = next(stages)
        assert next(stages, None) is None
    finally:
        hook.remove()
    # the impression reused the batch and probabilities: no second preprocessing or scoring forward
    # (the grounding's radiograph-alone score is the only other pass through the diagnosis head)
    assert batches == [1] and scored.count(None) == 1 and set(scored) <= {None, ("image",)}

    for got, want in ((first, scores_only), (final, direct)):
        for f in dataclasses.fields(want):
            if f.name != "seconds":
                assert getattr(got, f.name) == getattr(want, f.name), f.name
    assert final.impression and final.removed_claims and not first.removed_claims
    assert 0 < first.seconds <= final.seconds

    empty = list(predictor.predict_stages(Study(study_id="empty")))  # nothing readable: the refusal alone
    assert len(empty) == 1 and not empty[0].answered
    assert dataclasses.replace(empty[0], seconds=0.0) == dataclasses.replace(
        predictor.predict(Study(study_id="empty")), seconds=0.0
    )


@pytest.mark.parametrize(
    ("calibration", "where"),
    [
        ({"temperature": 0.0}, "calibration.temperature"),
        ({"temperature": float("nan")}, "calibration.temperature"),
        ({"conformal_threshold": 1.5}, "calibration.conformal_threshold"),
        ({"coverage_target": "0.9"}, "calibration.coverage_target"),
    ],
)
def test_a_calibration_that_would_mislead_is_refused(model, calibration, where):
    with pytest.raises(ConfigError) as info:
        Predictor(model, note_tokenizer=note_tokenizer(), calibration=calibration)
    assert info.value.where == where


def test_from_checkpoint_uses_its_calibration_and_a_checksum_model_id(model, tmp_path):
    calibration = {"temperature": 2.0, "conformal_threshold": 0.8, "coverage_target": 0.9}
    folder = save_checkpoint(model, tmp_path / "ckpt")
    update_calibration(folder, calibration)
    predictor = Predictor.from_checkpoint(folder, note_tokenizer=note_tokenizer(), text_backbone=tiny_bert(0))
    assert predictor.calibration == calibration
    assert predictor.model_id == hashlib.sha256((folder / "checksums.json").read_bytes()).hexdigest()[:16]
    study = make_study()
    loaded = predictor.predict(study)
    direct = Predictor(model, note_tokenizer=note_tokenizer(), calibration=calibration).predict(study)
    assert [(s.name, s.probability, s.in_set) for s in loaded.scores] == [
        (s.name, s.probability, s.in_set) for s in direct.scores
    ]
    assert loaded.impression == direct.impression and loaded.calibrated


def test_ask_answers_from_the_prediction_without_the_language_model(model, monkeypatch):
    calibration = {
        "conformal_threshold": 0.5,
        "coverage_target": 0.9,
        "operating_thresholds": {n: 0.6 for n in model.config.diagnoses},
    }
    predictor = Predictor(model, note_tokenizer=note_tokenizer(), calibration=calibration)
    study = make_study()
    p = 1.0 / (1.0 + np.exp(-logits_by_hand(model, study)))[model.config.diagnoses.index("pleural_effusion")]
    monkeypatch.setattr(model, "generate", lambda *a, **k: pytest.fail("the language model wrote an answer"))
    answer = predictor.answer(study, "is there a pleural effusion?")
    word = "likely" if p >= 0.6 else ("possible" if 1 - p <= 0.5 else "unlikely")
    where = "in" if 1 - p <= 0.5 else "outside"
    side = "at or above" if p >= 0.6 else "below"
    assert answer.kind == "likelihood" and answer.answered
    assert answer.text.splitlines()[0] == (
        f"Pleural effusion is {word}: probability {p:.0%}, {side} its operating threshold (60%); {where} the prediction set at 90% coverage."
    )
    assert predictor.ask(study, "is there a pleural effusion?") == answer.text
    nothing = predictor.answer(Study(study_id="empty"), "is there a pleural effusion?")
    assert not nothing.answered and nothing.text.startswith("No answer: nothing this model can read")


def test_a_guided_impression_is_written_after_the_diagnoses_at_or_above_the_threshold(guided_model):
    model = guided_model
    temperature = 1.3
    studies = [make_study("g1", seed=0), make_study("g2", image=False, seed=5)]
    probs = np.stack([1.0 / (1.0 + np.exp(-logits_by_hand(model, s) / temperature)) for s in studies])  # (2, K)
    names = list(model.config.diagnoses)
    ranked = np.sort(probs[0])[::-1]
    threshold = float((ranked[1] + ranked[2]) / 2)  # the first study's two most probable are named
    model.config = dataclasses.replace(model.config, guide_threshold=threshold)
    predictor = Predictor(model, note_tokenizer=note_tokenizer(), calibration={"temperature": temperature})
    preds = predictor.predict_many(studies)

    chosen = [
        [names[k] for k in np.argsort(-probs[row], kind="stable") if probs[row, k] >= threshold]
        for row in range(len(studies))
    ]  # most probable first
    assert len(chosen[0]) == 2
    assert predictor.impression_prompts(probs) == [
        [guided_prompt([d]) for d in c] or [guided_prompt([])] for c in chosen
    ]
    # one clause per suspected diagnosis, each written alone after its one-name guide, then joined by hand
    batch = predictor.batch(studies)
    drafts = predictor.draft_impressions(batch, predictor.probabilities(batch))
    for draft, study, c in zip(drafts, studies, chosen):
        clauses = [model.generate(predictor.batch([study]), [guided_prompt([d])])[0] for d in c] or [
            model.generate(predictor.batch([study]), [guided_prompt([])])[0]
        ]
        parts = [t.strip().rstrip(".").strip() for t in clauses]
        assert draft == ", ".join(p for p in parts if p) + "."
    # what is given out is the draft grounded against each study
    assert [p.impression for p in preds] == [
        g.text for g in predictor.ground(batch, predictor.probabilities(batch), drafts)
    ]
    alone = predictor.predict(studies[0])
    assert alone.impression == preds[0].impression
    assert drafts[0] != model.generate(predictor.batch(studies[:1]), [IMPRESSION_PROMPT])[0]  # the guide was read
    for pred, p in zip(preds, probs):  # the diagnosis pools the plain prompt: the guide never reaches it
        for score in pred.scores:
            assert score.probability == pytest.approx(p[names.index(score.name)], abs=1e-6)


def test_the_guide_uses_the_calibrated_operating_thresholds(guided_model):
    model = guided_model
    study = make_study("g3", seed=2)
    probs = 1.0 / (1.0 + np.exp(-logits_by_hand(model, study)))  # (K,), temperature 1
    names = list(model.config.diagnoses)
    order = np.argsort(-probs)
    # the most probable diagnosis is set just above its probability, the least probable just below
    cut = {names[order[0]]: float(probs[order[0]]) + 1e-3, names[order[-1]]: float(probs[order[-1]]) - 1e-3}
    predictor = Predictor(
        model, note_tokenizer=note_tokenizer(), calibration={"temperature": 1.0, "operating_thresholds": cut}
    )
    expected = [
        names[k]
        for k in np.argsort(-probs, kind="stable")
        if probs[k] >= cut.get(names[k], model.config.guide_threshold)
    ]
    assert names[order[0]] not in expected and names[order[-1]] in expected
    assert predictor.impression_guides(probs[None]) == [tuple(expected)]
    assert predictor.impression_prompts(probs[None]) == [[guided_prompt([d]) for d in expected]]
    saved = model.config
    try:  # written in one generation: the whole guide, most probable last
        model.config = dataclasses.replace(saved, guide_clauses=False)
        assert predictor.impression_prompts(probs[None]) == [[guided_prompt(expected[::-1])]]
        batch = predictor.batch([study])
        assert predictor.draft_impressions(batch, probs[None]) == model.generate(batch, [guided_prompt(expected[::-1])])
    finally:
        model.config = saved


def test_a_conformal_guide_names_the_conformal_set(guided_model):
    model = guided_model
    study = make_study("g4", seed=4)
    probs = 1.0 / (1.0 + np.exp(-logits_by_hand(model, study)))  # (K,), temperature 1
    names = list(model.config.diagnoses)
    ranked = np.sort(probs)[::-1]
    q = float(1.0 - (ranked[1] + ranked[2]) / 2)  # the two most probable are in the set (1 - p <= q)
    calibration = {"temperature": 1.0, "conformal_threshold": q, "operating_thresholds": dict.fromkeys(names, 0.0)}
    saved = model.config
    try:
        model.config = dataclasses.replace(saved, guide_set="conformal")
        predictor = Predictor(model, note_tokenizer=note_tokenizer(), calibration=calibration)
        chosen = [names[k] for k in np.argsort(-probs, kind="stable") if 1.0 - probs[k] <= q]  # most probable first
        assert len(chosen) == 2 and predictor.conformal_set(probs) == tuple(chosen)
        assert predictor.impression_guides(probs[None]) == [tuple(chosen)]
        assert predictor.impression_prompts(probs[None]) == [[guided_prompt([d]) for d in chosen]]  # a clause each
        model.config = dataclasses.replace(saved, guide_set="conformal", guide_clauses=False)
        assert predictor.impression_prompts(probs[None]) == [
            [guided_prompt(chosen[::-1])]
        ]  # one guide: most probable last
        model.config = dataclasses.replace(saved, guide_set="operating")  # every diagnosis at threshold 0
        assert predictor.impression_guides(probs[None]) == [tuple(names[k] for k in np.argsort(-probs, kind="stable"))]
    finally:
        model.config = saved
    with pytest.raises(ConfigError, match="operating or conformal"):
        tiny_model(tiny_config(guide_set="top"))


# -- grounding: what the LM writes is checked against the study before it leaves the Predictor ---------


def grounding_study(
    *,
    age: float | None = 60.0,
    image: bool = True,
    notes: tuple[str, ...] = ("reports productive cough .", "no crackles ."),
    vitals: bool = True,
) -> Study:
    """A 4-step grid without fever or tachypnoea (36.2-37.1 Cel, 11.5-16.5 /min), notes and a radiograph."""
    base = make_study("g", image=image, notes=False, vitals_steps=None)
    values = np.full((4, len(VITAL_SIGNS)), np.nan, dtype=np.float32)
    names = [v.name for v in VITAL_SIGNS]
    values[:, names.index("temperature")] = [36.2, 37.1, 36.8, 36.5]
    values[:, names.index("resp_rate")] = [11.5, 16.5, 14.0, 12.0]
    series = VitalSeries(
        start=STUDY_TIME,
        step_seconds=3600.0,
        channels=tuple(names),
        units=tuple(v.unit for v in VITAL_SIGNS),
        values=values,
        mask=~np.isnan(values),
    )
    return dataclasses.replace(
        base,
        demographics=Demographics(patient_id="p", age_years=age),
        vitals=series if vitals else None,
        notes=tuple(ClinicalNote(text=t, time=STUDY_TIME) for t in notes),
    )


def writes(model, monkeypatch, text: str) -> None:
    """Make the LM write `text` for every row (the draft the grounding then reads)."""
    monkeypatch.setattr(model, "write_impressions", lambda batch, guides, max_new_tokens=None: [text] * len(guides))


def open_calibration(model, **extra) -> dict:
    """Every diagnosis at or above its operating threshold (nothing is ruled out by the prediction)."""
    return {"operating_thresholds": dict.fromkeys(model.config.diagnoses, 0.0), **extra}


def test_predict_gives_out_only_the_claims_the_study_supports(model, monkeypatch):
    study = grounding_study()
    writes(model, monkeypatch, "pneumonia (focal consolidation; fever and tachypnoea; productive cough and crackles).")
    predictor = Predictor(
        model,
        note_tokenizer=note_tokenizer(),
        calibration=open_calibration(model, image_finding_thresholds={"pneumonia": 0.0}),
    )
    pred = predictor.predict(study)
    assert pred.impression == "pneumonia (focal consolidation; productive cough)."
    removed = {c.text: (c.kind, c.verdict) for c in pred.removed_claims}
    assert removed == {
        "fever": ("vitals", "contradicted"),
        "tachypnoea": ("vitals", "contradicted"),
        "crackles": ("notes", "contradicted"),
    }
    fever = next(c for c in pred.removed_claims if c.text == "fever")
    assert fever.reason == "max temperature 37.1 Cel at 2026-03-01 13:00 UTC (fever: >= 38.0 Cel)"
    kept = {c.text: c for c in pred.claims}
    assert (
        kept["productive cough"].reason == 'the notes say so: "reports productive cough ." (note 2026-03-01 12:00 UTC)'
    )
    # the image claim reads the diagnosis head given the radiograph alone (this model has no unimodal heads)
    alone = dataclasses.replace(study, notes=(), vitals=None)
    p_image = 1.0 / (1.0 + np.exp(-logits_by_hand(model, alone)[model.config.diagnoses.index("pneumonia")]))
    assert (
        kept["focal consolidation"].reason
        == f"diagnosis head given the radiograph alone for pneumonia: {p_image:.0%} (threshold 0%)"
    )
    # the batch-level steps (batch, probabilities, impressions) say the same
    batch = predictor.batch([study])
    assert predictor.impressions(batch, predictor.probabilities(batch)) == [pred.impression]


def test_a_child_and_an_image_only_study_get_no_vital_or_note_finding(model, monkeypatch):
    writes(model, monkeypatch, "sepsis (fever, tachycardia and hypotension; rigors and confusion).")
    predictor = Predictor(model, note_tokenizer=note_tokenizer(), calibration=open_calibration(model))
    child = predictor.predict(grounding_study(age=8 / 12, notes=()))
    assert child.impression == "sepsis."
    assert all("the patient is 8 months old" in c.reason for c in child.removed_claims if c.kind == "vitals")
    image_only = predictor.predict(grounding_study(notes=(), vitals=False))
    assert image_only.impression == "sepsis." and image_only.present == ("image",)
    reasons = {c.text: c.reason for c in image_only.removed_claims}
    assert (
        reasons["fever"] == "no vital sign was read for this study"
        and reasons["rigors"] == "no note was read for this study"
    )


def test_the_notes_read_are_the_newest_cut_at_the_models_token_limit(model):
    predictor = Predictor(
        model, note_tokenizer=note_tokenizer()
    )  # max_notes 2, max_note_tokens 8: [CLS], six words, [SEP]
    texts = ("rigors .", "patient reports cough and fever . crackles right lower lobe .", "no acute distress .")
    read = predictor.notes_read(grounding_study(notes=texts))
    assert [n.read_chars for n in read] == [0, len("patient reports cough and fever ."), len("no acute distress .")]
