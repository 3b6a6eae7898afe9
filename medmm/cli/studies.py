"""Commands that study a model over a cohort: `evaluate`, `compare`, `audit`, `explain` and `batch`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from medmm.cli.app import app, jsonable
from medmm.cli.options import json_option, model_option, seed_option, trail_option


@app.command()
def evaluate(
    model: Path = model_option(),
    cohort: Path = typer.Option(..., "--cohort", help="Cohort with val (fitting) and test (reporting) splits."),
    out: Path = typer.Option(..., "--out", help="Folder for evaluation.json, plots and report.html."),
    coverage: float = typer.Option(0.9, "--coverage", min=0.5, max=0.999, help="Conformal coverage target."),
    n_boot: int = typer.Option(1000, "--n-boot", min=50, help="Bootstrap resamples (patients)."),
    seed: int = seed_option(),
    pdf: bool = typer.Option(False, "--pdf", help="Also write report.pdf (headless Chromium)."),
    baselines: bool = typer.Option(
        True,
        "--baselines/--no-baselines",
        help="Fit classical per-modality baselines (train split, chosen on val) and report the model beside them with paired intervals.",
    ),
    save_calibration: bool = typer.Option(
        False,
        "--save-calibration/--keep-calibration",
        help="Write the calibration fitted on the val split into the checkpoint (its calibration.json and id); "
        "by default the checkpoint is left as it is.",
    ),
    as_json: bool = json_option("evaluation.json"),
) -> None:
    """Metrics with bootstrap CIs, calibration fitted on val, conformal sets, ablation, impressions, baselines, HTML report."""
    from medmm.evaluate.run import evaluate_checkpoint

    result = evaluate_checkpoint(
        model, cohort, out, save_calibration=save_calibration, coverage=coverage, n_boot=n_boot, seed=seed,
        progress=not as_json, baselines=baselines,
    )  # fmt: skip
    report = out / "report.html"
    if pdf:
        from medmm.report.pdf import export_pdf

        export_pdf(report)
    typer.echo(
        json.dumps(jsonable(result.document)) if as_json else f"evaluation: {out / 'evaluation.json'}\nreport: {report}"
    )


@app.command()
def compare(
    evaluations: List[Path] = typer.Argument(
        ..., help="Two or more evaluation folders (what `medmm evaluate` wrote) of the same test split."
    ),
    name: Optional[List[str]] = typer.Option(
        None, "--name", help="A column name per evaluation, in order (default: the folder names)."
    ),
    out: Path = typer.Option(..., "--out", help="Folder for side_by_side.html, .json and .png."),
    as_json: bool = json_option("side_by_side.json"),
) -> None:
    """Models of the same cohort side by side: AUROC, impression quality, answers about the patient's values, latency."""
    from medmm.evaluate.side_by_side import compare_evaluations
    from medmm.report.html import write_side_by_side

    doc = compare_evaluations(evaluations, name or None)
    page = write_side_by_side(out, doc)
    typer.echo(json.dumps(jsonable(doc)) if as_json else f"side by side: {page}")


@app.command()
def audit(
    model: Path = model_option(),
    cohort: Path = typer.Option(..., "--cohort", help="Cohort with demographics (test split is audited)."),
    out: Path = typer.Option(..., "--out", help="Folder for audit.json and the report section."),
    min_group_size: int = typer.Option(
        30, "--min-group-size", min=2, help="Smaller groups are reported as too small, not scored."
    ),
    bound_difference: float = typer.Option(
        0.1, "--bound-difference", min=0.0, help="Flag when |difference| to the reference exceeds this."
    ),
    confidence: float = typer.Option(
        0.95, "--confidence", min=0.5, max=0.999, help="Level of the bootstrap intervals that flags are judged on."
    ),
    n_boot: int = typer.Option(1000, "--n-boot", min=50),
    seed: int = seed_option(),
    as_json: bool = json_option("audit.json"),
) -> None:
    """Subgroup fairness audit (sex, age band, race, ethnicity and intersections) with flags."""
    from medmm.evaluate.run import run_audit

    result = run_audit(
        model,
        cohort,
        out,
        min_group_size=min_group_size,
        bound_difference=bound_difference,
        confidence=confidence,
        n_boot=n_boot,
        seed=seed,
        progress=not as_json,
    )
    if as_json:
        typer.echo(json.dumps(jsonable(result)))
    else:
        from medmm.evaluate.audit_document import audit_record

        flags = audit_record(result).flags
        typer.echo(f"audit: {out / 'audit.json'}  flags: {len(flags)}")
        for f in flags:
            typer.echo(f"  {f.attribute}={f.group} {f.metric}: {f.reason}")


@app.command()
def explain(
    model: Path = model_option(),
    patient: Optional[Path] = typer.Argument(None, help="A patient folder or file (omit with --cohort)."),
    cohort: Optional[Path] = typer.Option(None, "--cohort", help="A cohort with ground truth (with --faithfulness)."),
    faithfulness: bool = typer.Option(
        False, "--faithfulness", help="Measure faithfulness over the cohort's planted ground truth."
    ),
    out: Path = typer.Option(..., "--out", help="Folder for the images, HTML and JSON."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="At most this many cohort patients."),
    as_json: bool = json_option("the result as JSON"),
) -> None:
    """Evidence maps for every modality (attention, Grad-CAM, integrated gradients), or faithfulness figures."""
    from medmm.errors import ConfigError
    from medmm.explain.run import explain_cohort, explain_patient

    if cohort is not None:
        if not faithfulness:
            raise ConfigError("--cohort goes with --faithfulness", where="explain")
        result = explain_cohort(model, cohort, out, limit=limit, progress=not as_json)
    elif patient is not None:
        result = explain_patient(model, patient, out)
    else:
        raise ConfigError("give a PATIENT or --cohort DIR --faithfulness", where="explain")
    typer.echo(json.dumps(jsonable(result)) if as_json else f"wrote {out}")


@app.command()
def batch(
    model: Path = model_option(),
    cohort: Path = typer.Option(..., "--cohort", help="Cohort folder."),
    out: Path = typer.Option(
        ..., "--out", help="Results folder (Parquet parts, manifest, FHIR NDJSON); rerun to resume."
    ),
    engine: str = typer.Option("local", "--engine", help="local or ray."),
    workers: int = typer.Option(1, "--workers", min=1, help="Parallel workers (Ray actors for --engine ray)."),
    protocol: Optional[Path] = typer.Option(None, "--protocol", help="Study protocol YAML (cohort filter, outputs)."),
    audit: Optional[Path] = trail_option("the study's predictions", "OUT/audit.sqlite"),
    as_json: bool = json_option("the summary as JSON"),
) -> None:
    """Run a model over a whole cohort: resumable, crash-safe, local or on Ray (RAY_ADDRESS names a running cluster)."""
    from medmm.batch.run import run_batch

    summary = run_batch(
        model, cohort, out, engine=engine, workers=workers, protocol=protocol, progress=not as_json, audit=audit
    )
    typer.echo(json.dumps(jsonable(summary)) if as_json else str(summary))
