"""The TRIPOD+AI reporting checklist (Collins et al., BMJ 2024), filled from what medmm knows about a run.

Each item is paraphrased in a line. Items medmm can answer from evaluation.json / audit.json
are filled ("reported"); items it can start but people must finish are drafts ("draft");
the rest are left to the authors ("for the authors"). Never claim what the run cannot show.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from medmm.evaluate.audit_document import audit_record
from medmm.evaluate.document import Evaluation, SplitCounts
from medmm.evaluate.fairness import AuditResult

REPORTED, DRAFT, AUTHORS = "reported", "draft", "for the authors"

# (item, section, topic, what the item asks for), paraphrased.
ITEMS: tuple[tuple[str, str, str, str], ...] = (
    (
        "1",
        "Title",
        "Title",
        "Say that the study develops or evaluates a prediction model, for whom, and what it predicts.",
    ),
    ("2", "Abstract", "Abstract", "Follow the TRIPOD+AI for Abstracts checklist."),
    ("3a", "Introduction", "Background", "Explain the clinical context, why the model is needed, and existing models."),
    (
        "3b",
        "Introduction",
        "Background",
        "Describe the target population, the model's intended purpose in the care pathway and its users.",
    ),
    ("3c", "Introduction", "Background", "Describe known health inequalities between sociodemographic groups."),
    (
        "4",
        "Introduction",
        "Objectives",
        "State the objectives, including whether the study develops, evaluates or both.",
    ),
    (
        "5a",
        "Methods",
        "Data",
        "Describe the data sources for development and evaluation, and how representative they are.",
    ),
    ("5b", "Methods", "Data", "Give the dates of data collection and of the end of follow-up."),
    ("6a", "Methods", "Participants", "Describe the setting: kind of care, number and location of centres."),
    ("6b", "Methods", "Participants", "Describe the eligibility criteria."),
    ("6c", "Methods", "Participants", "Describe treatments received, where relevant."),
    (
        "7",
        "Methods",
        "Data preparation",
        "Describe pre-processing and quality checks, and whether they were the same across groups.",
    ),
    ("8a", "Methods", "Outcome", "Define the outcome, its time horizon and how it was assessed."),
    (
        "8b",
        "Methods",
        "Outcome",
        "Describe the qualifications and demographics of outcome assessors, if people assessed it.",
    ),
    ("8c", "Methods", "Outcome", "Report any blinding of outcome assessment."),
    ("9a", "Methods", "Predictors", "Describe how the initial predictors were chosen."),
    ("9b", "Methods", "Predictors", "Define every predictor and how and when it was measured."),
    ("9c", "Methods", "Predictors", "Describe the qualifications and demographics of predictor assessors."),
    ("10", "Methods", "Sample size", "Explain how the study size was arrived at."),
    ("11", "Methods", "Missing data", "Describe how missing data were handled and why."),
    (
        "12a",
        "Methods",
        "Analytical methods",
        "Describe how the data were used (development, tuning, evaluation) and partitioned.",
    ),
    (
        "12b",
        "Methods",
        "Analytical methods",
        "Describe how predictors were handled (transformations, rescaling, standardisation).",
    ),
    (
        "12c",
        "Methods",
        "Analytical methods",
        "Give the model type, its rationale, building steps, tuning and internal validation.",
    ),
    (
        "12d",
        "Methods",
        "Analytical methods",
        "Describe how heterogeneity across clusters (centres, countries) was handled.",
    ),
    ("12e", "Methods", "Analytical methods", "Name the performance measures and why they were chosen."),
    (
        "12f",
        "Methods",
        "Analytical methods",
        "Describe any model updating (such as recalibration) arising from the evaluation.",
    ),
    (
        "12g",
        "Methods",
        "Analytical methods",
        "Describe how predictions were computed for the evaluation (code, object, interface).",
    ),
    (
        "13",
        "Methods",
        "Class imbalance",
        "If class imbalance methods were used, say why and how, and any recalibration after them.",
    ),
    ("14", "Methods", "Fairness", "Describe the approaches used to address fairness and why."),
    ("15", "Methods", "Model output", "Specify the model's output and how any classification thresholds were chosen."),
    (
        "16",
        "Methods",
        "Training versus evaluation",
        "Describe differences between development and evaluation data (setting, eligibility, outcome, predictors).",
    ),
    ("17", "Methods", "Ethical approval", "Name the ethics committee and describe consent or its waiver."),
    ("18a", "Open science", "Funding", "Give the sources of funding and the funders' role."),
    ("18b", "Open science", "Conflicts of interest", "Declare conflicts of interest and financial disclosures."),
    ("18c", "Open science", "Protocol", "Say where the protocol can be read, or that none was written."),
    ("18d", "Open science", "Registration", "Give registration details, or say the study was not registered."),
    ("18e", "Open science", "Data sharing", "Say whether and how the study data are available."),
    ("18f", "Open science", "Code sharing", "Say whether and how the analysis code is available."),
    (
        "19",
        "Open science",
        "Patient and public involvement",
        "Describe patient and public involvement, or say there was none.",
    ),
    ("20a", "Results", "Participants", "Describe the flow of participants, with and without the outcome."),
    (
        "20b",
        "Results",
        "Participants",
        "Report the characteristics of participants: key dates, predictors, sample size, outcome events, missing data.",
    ),
    (
        "20c",
        "Results",
        "Participants",
        "For evaluation, compare the distribution of important predictors with the development data.",
    ),
    ("21", "Results", "Model development", "Give the number of participants and outcome events in each analysis."),
    (
        "22",
        "Results",
        "Model specification",
        "Give the full model (or how to obtain it) so that others can predict with and evaluate it.",
    ),
    (
        "23a",
        "Results",
        "Model performance",
        "Report performance with confidence intervals, also for key subgroups; consider plots.",
    ),
    ("23b", "Results", "Model performance", "Report heterogeneity of performance across clusters, if examined."),
    ("24", "Results", "Model updating", "Report the results of any model updating and the updated performance."),
    (
        "25",
        "Discussion",
        "Interpretation",
        "Interpret the main results, fairness included, against the objectives and earlier studies.",
    ),
    (
        "26",
        "Discussion",
        "Limitations",
        "Discuss limitations (sample, size, overfitting, missing data) and their effect on bias, uncertainty and generalisability.",
    ),
    ("27a", "Discussion", "Usability", "Describe how poor-quality or unavailable input data should be handled in use."),
    (
        "27b",
        "Discussion",
        "Usability",
        "Say whether users must interact with the input data or the model, and what expertise they need.",
    ),
    (
        "27c",
        "Discussion",
        "Usability",
        "Describe the next steps for research, with a view to applicability and generalisability.",
    ),
)


@dataclass(frozen=True)
class ChecklistItem:
    item: str
    section: str
    topic: str
    asks: str
    status: str  # REPORTED | DRAFT | AUTHORS
    answer: str  # what medmm filled in, or what the authors must add
    anchor: str = ""  # section id of the report that holds the evidence


def _f(v: object, digits: int = 3) -> str:
    return "n/a" if v is None else f"{float(v):.{digits}f}"  # type: ignore[arg-type]


def _count(v: object) -> str:
    return f"{v:,}" if isinstance(v, int) else "n/a"


def _counts(groups: dict | None) -> str:
    """'a 3, b 5' of a name -> count mapping ('n/a' when unknown)."""
    return ", ".join(f"{k} {v}" for k, v in groups.items()) if groups else "n/a"


def _names(e: dict) -> str:
    return ", ".join(e["model"]["diagnoses"]) if "model" in e else ", ".join(e["operating_points"]["thresholds"])


def _cohort(e: dict) -> str:
    c = e.get("cohort", {})
    kind = "synthetic (medmm synth; no real patient data)" if c.get("synthetic") else "as supplied to medmm"
    splits = _counts(c.get("splits"))
    return f"Cohort '{c.get('name', 'unknown')}', {kind}: {c.get('patients', 'n/a')} patients (splits: {splits})."


def _test_counts(t: SplitCounts) -> str:
    pos = ", ".join(f"{k} {v}" for k, v in t.positives.items())
    return (
        f"Evaluated split '{t.split}': {t.cases} cases ({t.unreadable} unreadable and {t.unlabelled} unlabelled left out); "
        f"positives per diagnosis: {pos}; no diagnosis: {t.no_diagnosis}."
    )


def _filled(e: dict, audit: AuditResult | None) -> dict[str, tuple[str, str, str]]:
    """item -> (status, answer, anchor) for every item the run can speak to."""
    m = e.get("model", {})
    pre = m.get("preprocess", {})
    record = Evaluation.from_dict(e)
    s = record.summary
    val = record.val
    cohort = e.get("cohort", {})
    groups = "; ".join(f"{a}: {_counts(g)}" for a, g in record.test.groups.items())
    subgroups = "; subgroup metrics in the fairness audit." if audit is not None else "; no subgroup audit in this run."
    out: dict[str, tuple[str, str, str]] = {
        "1": (
            DRAFT,
            "Suggested: 'Evaluation of a multimodal model (imaging, notes, vital signs) for "
            f"{_names(e)} on a held-out split'.",
            "summary",
        ),
        "3b": (
            DRAFT,
            "medmm is a research tool, not a medical device; no care pathway use is intended. "
            "State the research population.",
            "limitations",
        ),
        "5a": (REPORTED, _cohort(e), "cohort"),
        "7": (
            REPORTED,
            f"Images windowed and resized to {pre.get('image_size', 'n/a')} px; vital signs gridded over "
            f"{pre.get('window_hours', 'n/a')} h in {pre.get('step_minutes', 'n/a')}-minute steps with an observation mask; "
            f"up to {pre.get('max_notes', 'n/a')} notes tokenised. The same preprocessing is applied to every case and group; "
            "unreadable files are reported per case.",
            "cohort",
        ),
        "8a": (
            REPORTED,
            f"Multi-label outcome: each of {_names(e)} recorded as a Condition for the study (labels of the cohort).",
            "cohort",
        ),
        "9b": (
            REPORTED,
            f"Inputs: {', '.join(m.get('modalities', []))}, read from DICOM, FHIR R4 and vital-sign tables "
            "at the study time.",
            "cohort",
        ),
        "10": (
            DRAFT,
            f"Sizes follow from the cohort ({cohort.get('patients', 'n/a')} patients); no formal sample-size "
            "calculation was made by medmm.",
            "cohort",
        ),
        "11": (
            REPORTED,
            "Missing modalities are normal: they are masked and stated in every prediction, never imputed. "
            f"Test cases with each input: {_counts(cohort.get('test', {}).get('modalities'))}.",
            "cohort",
        ),
        "12a": (
            REPORTED,
            e["fitting"]["note"] + " Confidence intervals: percentile bootstrap over patients "
            f"({e['settings']['n_boot']} resamples, seed {e['settings']['seed']}).",
            "metrics",
        ),
        "12b": (
            REPORTED,
            "Images: modality LUT applied, MONOCHROME1 inverted, windowed, resized; vitals: canonical units, "
            "implausible values dropped and reported, standardised per channel; notes: tokenised for the notes encoder.",
            "cohort",
        ),
        "12c": (
            DRAFT,
            "Modality encoders, Perceiver resamplers and gated cross-attention into a causal LM "
            f"({m.get('architecture', 'n/a')}, {m.get('backbone', {}).get('finetune', 'n/a')} fine-tuning; "
            f"{_count(m.get('parameters'))} parameters). Authors: describe tuning.",
            "summary",
        ),
        "12e": (
            REPORTED,
            "AUROC, AUPRC, sensitivity, specificity, PPV, NPV per diagnosis; ECE and Brier score; "
            "conformal coverage and set size; modality ablation (AUROC); impression quality.",
            "metrics",
        ),
        "12f": (
            REPORTED,
            f"Temperature scaling (T = {_f(s['temperature'])}) and a split-conformal threshold, "
            f"from the {e['fitting']['source']}.",
            "calibration",
        ),
        "12g": (
            REPORTED,
            f"medmm Predictor on checkpoint {m.get('id', 'n/a')} (medmm {e.get('medmm_version')}).",
            "summary",
        ),
        "15": (
            REPORTED,
            "Calibrated probability per diagnosis; a diagnosis is called positive at the threshold maximising "
            f"Youden's J on the validation split; conformal prediction sets at {_f(s['coverage_target'], 2)} target coverage.",
            "metrics",
        ),
        "16": (
            DRAFT,
            "Evaluation data are a held-out split of the development cohort (same source and definitions); "
            "external data not evaluated.",
            "cohort",
        ),
        "18f": (DRAFT, f"Analysis code: medmm {e.get('medmm_version')} (state where it is published).", ""),
        "20a": (REPORTED, _test_counts(record.test), "cohort"),
        "20b": (REPORTED, f"Test-split cases per group: {groups}.", "cohort"),
        "20c": (
            DRAFT,
            ("Validation split: " + _test_counts(val)) if val else "No validation split in this cohort.",
            "cohort",
        ),
        "21": (
            REPORTED,
            f"Patients per split: {_counts(cohort.get('splits'))}; fitting on {e['fitting']['cases']} cases; "
            f"evaluation on {s['test_cases']} cases.",
            "cohort",
        ),
        "22": (
            REPORTED,
            f"Checkpoint folder '{m.get('folder', 'n/a')}' (id {m.get('id', 'n/a')}): safetensors weights, JSON config, "
            "calibration.json; predictions with `medmm predict --model DIR`.",
            "summary",
        ),
        "23a": (
            REPORTED,
            f"Macro AUROC {_f(s['macro_auroc'])} with bootstrap 95% CIs per diagnosis and metric; "
            f"ROC, PR and reliability plots{subgroups}",
            "metrics",
        ),
        "24": (
            REPORTED,
            f"Pooled ECE {_f(s['ece_before'])} before and {_f(s['ece_after'])} after temperature scaling; "
            f"conformal coverage {_f(s['coverage'])} (target {_f(s['coverage_target'], 2)}).",
            "calibration",
        ),
        "26": (DRAFT, "See the limitations section (generated from this run); authors add their own.", "limitations"),
        "27a": (
            REPORTED,
            "Each prediction states the modalities used and missing; unreadable inputs are reported with file "
            "and element, never guessed.",
            "limitations",
        ),
    }
    if audit is not None:
        flagged = ", ".join(audit.flagged_groups) or "none"
        out["14"] = (
            REPORTED,
            f"Subgroup audit over {', '.join(audit.attributes)} (fairlearn MetricFrame; ratio CI outside "
            f"{list(audit.ratio_band)} or |difference| > {audit.bound_difference} flags a group). "
            f"Flagged: {flagged}.",
            "fairness",
        )
    else:
        out["14"] = (DRAFT, "No subgroup audit was run with this evaluation (run `medmm audit`).", "fairness")
    return out


def tripod_checklist(
    evaluation: dict, audit: AuditResult | Mapping[str, Any] | None = None
) -> tuple[ChecklistItem, ...]:
    """Every TRIPOD+AI item, filled where the run can answer it and marked for the authors otherwise.

    `audit`: the audit (an audit.json document is read into one first), or None when none was run."""
    filled = _filled(evaluation, audit_record(audit))
    items = []
    for item, section, topic, asks in ITEMS:
        status, answer, anchor = filled.get(item, (AUTHORS, "To be completed by the authors.", ""))
        items.append(ChecklistItem(item, section, topic, asks, status, answer, anchor))
    return tuple(items)
