"""The evaluation report: one self-contained HTML file rendered from evaluation.json and audit.json.

Plots are read from the PNG files the evaluation wrote under out_dir and embedded as data URIs,
so report.html can be mailed or archived alone. Templates live in medmm/report/templates. The
audit is read as its typed record (medmm.evaluate.audit_document); the templates render its
audit.json document.
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Any, Mapping

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from medmm.codes import ETHNICITIES, RACES
from medmm.evaluate.audit_document import audit_record
from medmm.evaluate.document import Evaluation
from medmm.evaluate.fairness import AuditResult
from medmm.report.tripod import AUTHORS, DRAFT, REPORTED, tripod_checklist
from medmm.tasks import DEFAULT_TASK, load_task, task_to_dict

TEMPLATES = Path(__file__).parent / "templates"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MAX_EXPLANATIONS = 6
EXPLANATION_FILE = "explanation.json"  # written by `medmm explain` for each patient
SECTIONS: tuple[tuple[str, str], ...] = (
    ("summary", "Summary"),
    ("cohort", "Cohort"),
    ("metrics", "Metrics"),
    ("curves", "ROC and precision-recall curves"),
    ("calibration", "Calibration"),
    ("conformal", "Conformal prediction sets"),
    ("ablation", "Modality ablation"),
    ("baselines", "Classical baselines"),
    ("impression", "Impression quality"),
    ("fairness", "Fairness audit"),
    ("explanations", "Explanation examples"),
    ("limitations", "Limitations"),
    ("tripod", "TRIPOD+AI checklist"),
)
METRIC_NAMES = {
    "auroc": "AUROC",
    "auprc": "AUPRC",
    "sensitivity": "Sensitivity",
    "specificity": "Specificity",
    "ppv": "PPV",
    "npv": "NPV",
    "tpr": "TPR",
    "fpr": "FPR",
    "ece": "ECE",
}


def num(value: object, digits: int = 3) -> str:
    """A number for a table cell; an undefined value (None or NaN) is an en dash."""
    if value is None or isinstance(value, bool):
        return "–" if value is None else str(value)
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)
    return "–" if not math.isfinite(v) else f"{v:.{digits}f}"


def pct(value: object, digits: int = 1) -> str:
    """A share as a percentage, or an en dash."""
    if value is None:
        return "–"
    v = float(value)  # type: ignore[arg-type]
    return "–" if not math.isfinite(v) else f"{100 * v:.{digits}f}%"


def interval(pair: object, digits: int = 3) -> str:
    """'low–high' of a [low, high] pair ('low to high' when a bound is negative)."""
    if not isinstance(pair, (list, tuple)) or len(pair) != 2 or pair[0] is None or pair[1] is None:
        return "–"
    low, high = num(pair[0], digits), num(pair[1], digits)
    return f"{low} to {high}" if low.startswith("-") or high.startswith("-") else f"{low}–{high}"


def estimate(est: object, digits: int = 3) -> str:
    """'value (low–high)' of an Estimate dict."""
    if not isinstance(est, dict) or num(est.get("value")) == "–":
        return "–"
    return f"{num(est.get('value'), digits)} ({interval([est.get('low'), est.get('high')], digits)})"


def group_label(group: str, attribute: str = "") -> str:
    """A group as people read it: OMB codes get their display name (intersections part by part)."""
    parts = [p.strip() for p in str(group).split(" / ")]
    named = [f"{RACES[p]} ({p})" if p in RACES else f"{ETHNICITIES[p]} ({p})" if p in ETHNICITIES else p for p in parts]
    return " / ".join(named)


def label_table(evaluation: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Label name -> {display, snomed, icd10} of the evaluated model's task (evaluation.json's model.labels);
    the default task's labels for an evaluation written before labels were recorded."""
    stored = ((evaluation or {}).get("model") or {}).get("labels")
    if isinstance(stored, list) and all(isinstance(x, dict) and "name" in x for x in stored):
        return {str(x["name"]): x for x in stored}
    return {entry["name"]: entry for entry in task_to_dict(load_task(DEFAULT_TASK))["labels"]}


def diagnosis(name: str, labels: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """A label's display name from `labels` (see label_table; default: the default task's)."""
    entry = (labels if labels is not None else label_table(None)).get(name)
    return str(entry.get("display") or name) if entry else name


def _env(labels: Mapping[str, Mapping[str, Any]] | None = None) -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        num=num,
        pct=pct,
        interval=interval,
        estimate=estimate,
        group_label=group_label,
        diagnosis=lambda name: diagnosis(name, labels),
        metric_name=lambda m: METRIC_NAMES.get(m, m),
    )
    return env


def embed_png(path: Path) -> str | None:
    """A data URI of the PNG at `path`; None when it is missing or not a PNG."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if not data.startswith(PNG_MAGIC):
        return None
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _images(out_dir: Path, plots: dict | None) -> dict[str, str | None]:
    return {key: embed_png(out_dir / rel) for key, rel in (plots or {}).items()}


def explanation_examples(
    explanations_dir: Path | None, limit: int = MAX_EXPLANATIONS, labels: Mapping[str, Mapping[str, Any]] | None = None
) -> list[dict]:
    """Explanation figures to show: those listed in `medmm explain`'s explanation.json files, else every PNG found.

    Within one explanation.json the default method comes first; several patients' folders
    under `explanations_dir` are read in name order.
    """
    if explanations_dir is None or not Path(explanations_dir).is_dir():
        return []
    root = Path(explanations_dir)
    entries: list[tuple[Path, str, str]] = []
    for index in sorted(root.rglob(EXPLANATION_FILE)):
        try:
            data = json.loads(index.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        listed = data.get("explanations", []) if isinstance(data, dict) else []
        for x in sorted((x for x in listed if isinstance(x, dict)), key=lambda x: not x.get("default")):
            for modality, rel in (x.get("files") or {}).items():
                if str(rel).endswith(".png"):
                    title = f"{diagnosis(str(x.get('target', '')), labels)}: {x.get('method', '')} ({modality})"
                    entries.append((index.parent / str(rel), title, str(x.get("caption", ""))))
    if not entries:
        entries = [(p, p.stem.replace("_", " "), "") for p in sorted(root.rglob("*.png"))]
    out = []
    for path, title, caption in entries:
        uri = embed_png(path)
        if uri is not None:
            out.append({"title": title, "caption": caption, "uri": uri})
        if len(out) >= limit:
            break
    return out


def limitations(evaluation: dict, audit: AuditResult | Mapping[str, Any] | None) -> list[str]:
    """Limitations of this run, stated plainly (fixed ones first, then those the figures show)."""
    record = Evaluation.from_dict(evaluation)
    audit = audit_record(audit)
    s = record.summary
    cohort = record.cohort
    out = ["medmm is a research tool, not a medical device: nothing here supports a clinical decision."]
    if cohort.get("synthetic"):
        out.append(
            "The cohort is synthetic, generated by documented rules: these figures say nothing about performance on real patients."
        )
    out.append(
        "The evaluation is internal (a held-out split of one cohort); there is no external, temporal or multi-site validation."
    )
    labels = label_table(evaluation)
    few = [diagnosis(n, labels) for n, k in record.test.positives.items() if k < 10]
    if few:
        out.append(
            f"Fewer than 10 positive test cases for {', '.join(few)}: their intervals are wide and their metrics unstable."
        )
    if evaluation["fitting"]["source"] != "validation split":
        out.append("The cohort has no validation split: calibration and thresholds were not refitted to it.")
    if s.get("ece_before") is not None and s.get("ece_after") is not None and s["ece_after"] > s["ece_before"]:
        out.append("Temperature scaling fitted on validation did not lower the test calibration error.")
    if s.get("coverage") is not None:
        out.append(
            "Conformal coverage is marginal (over cases, all diagnoses of a case together), not per diagnosis or per group, "
            "and holds only for cases exchangeable with the calibration cases."
        )
        if s["coverage"] < s["coverage_target"] - 0.03:
            out.append(
                f"Empirical coverage ({pct(s['coverage'])}) fell more than 3 points short of the target ({pct(s['coverage_target'])})."
            )
    else:
        out.append("The model has no conformal calibration: no prediction sets were evaluated.")
    imp = record.impression
    if imp:
        out.append(
            f"Impressions are generated text: they named the true top diagnosis in {pct(imp.names_true_top)} of positive cases. "
            "Their findings are checked against each case's data before they are given out, with word lists, the adult "
            "vital-sign thresholds and a negation rule; findings outside those word lists are withheld rather than checked."
        )
    if audit is None:
        out.append("No subgroup audit accompanies this evaluation: performance per group is unknown.")
    else:
        small = audit.groups_too_small
        if small:
            out.append(
                f"{small} subgroup(s) had fewer than {audit.min_group_size} patients and were not scored: "
                "performance for them is unknown."
            )
        if audit.flags:
            out.append(
                f"The audit flagged {', '.join(group_label(g) for g in audit.flagged_groups)}: see the fairness section."
            )
        out.append(
            "No flag is not proof of fairness: only recorded attributes are audited, and small groups give wide intervals."
        )
    out += [
        f"{i['source']}{', ' + i['where'] if i['where'] else ''}: {i['message']}" for i in evaluation.get("issues", [])
    ]
    return out


def _fairness_context(out_dir: Path, audit: AuditResult | None) -> dict:
    """The fairness section's variables: the audit's document, its plots embedded, and its groups per attribute."""
    if audit is None:
        return {"audit": None, "audit_images": {}, "audit_groups": {}}
    document = audit.to_json()
    by_attribute: dict[str, list[dict]] = {}
    for g in document["groups"]:
        by_attribute.setdefault(g["attribute"], []).append({**g, "by_metric": {m["metric"]: m for m in g["metrics"]}})
    plots = audit.context.plots if audit.context is not None else None
    return {"audit": document, "audit_images": _images(out_dir, plots), "audit_groups": by_attribute}


def write_report(
    out_dir: str | Path,
    evaluation: dict,
    audit: AuditResult | Mapping[str, Any] | None,
    explanations_dir: Path | None,
) -> Path:
    """Render out_dir/report.html from the evaluation (and audit) written into out_dir; returns its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    audit = audit_record(audit)
    checklist = tripod_checklist(evaluation, audit)
    labels = label_table(evaluation)
    html = (
        _env(labels)
        .get_template("report.html.j2")
        .render(
            e=evaluation,
            sections=SECTIONS,
            images=_images(out, evaluation.get("plots")),
            explanations=explanation_examples(explanations_dir, labels=labels),
            limitations=limitations(evaluation, audit),
            checklist=checklist,
            checklist_counts={k: sum(i.status == k for i in checklist) for k in (REPORTED, DRAFT, AUTHORS)},
            **_fairness_context(out, audit),
        )
    )
    path = out / "report.html"
    path.write_text(html, encoding="utf-8")
    return path


def write_audit_page(out_dir: str | Path, audit: AuditResult | Mapping[str, Any]) -> Path:
    """Render out_dir/audit.html: the fairness section alone, as a page of its own."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    record = audit_record(audit)
    # label names from the audited model's task (audit.json's model.labels), else the default task's
    labels = (record.context.model or {}).get("labels") if record.context is not None else None
    html = (
        _env(label_table({"model": {"labels": labels}}))
        .get_template("audit.html.j2")
        .render(**_fairness_context(out, record))
    )
    path = out / "audit.html"
    path.write_text(html, encoding="utf-8")
    return path


def write_side_by_side(out_dir: str | Path, doc: dict) -> Path:
    """Render out_dir/side_by_side.html (and side_by_side.png) from a medmm.evaluate.side_by_side document."""
    from medmm.evaluate.plots import png_bytes
    from medmm.evaluate.side_by_side import side_by_side_figure

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    png = out / "side_by_side.png"
    png.write_bytes(png_bytes(side_by_side_figure(doc)))
    (out / "side_by_side.json").write_text(json.dumps(doc, indent=2), encoding="utf-8")
    html = _env().get_template("side_by_side.html.j2").render(doc=doc, image=embed_png(png))
    path = out / "side_by_side.html"
    path.write_text(html, encoding="utf-8")
    return path
