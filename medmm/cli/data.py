"""Commands on data: synthetic cohorts (`synth`), cohorts built from real exports (`cohort build`), what
medmm reads of an input (`inspect`) and de-identification (`deid`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from medmm.cli.app import app, jsonable, split_fractions
from medmm.cli.options import doc, json_option
from medmm.errors import MedmmError
from medmm.synth.config import SynthConfig


@app.command()
def synth(
    out: Path = typer.Option(
        ..., "--out", help="Folder to write the cohort into (empty, or a previous synthetic cohort)."
    ),
    patients: int = typer.Option(600, "--patients", min=1, help=doc(SynthConfig, "patients")),
    seed: int = typer.Option(0, "--seed", help=doc(SynthConfig, "seed")),
    image_size: int = typer.Option(256, "--image-size", min=32, help=doc(SynthConfig, "image_size")),
    ct_fraction: float = typer.Option(0.0, "--ct-fraction", min=0.0, max=1.0, help=doc(SynthConfig, "ct_fraction")),
    missing: float = typer.Option(
        0.1,
        "--missing",
        min=0.0,
        max=0.9,
        help="Probability that a patient lacks each modality (image, notes, vitals).",
    ),
    bias_attribute: Optional[str] = typer.Option(None, "--bias-attribute", help=doc(SynthConfig, "bias_attribute")),
    bias_value: Optional[str] = typer.Option(None, "--bias-value", help=doc(SynthConfig, "bias_value")),
    bias_kind: str = typer.Option("label_noise", "--bias-kind", help=doc(SynthConfig, "bias_kind")),
    bias_strength: float = typer.Option(
        0.0, "--bias-strength", min=0.0, max=1.0, help=doc(SynthConfig, "bias_strength")
    ),
    splits: str = typer.Option(
        "0.7,0.15,0.15",
        "--splits",
        help="Train, validation and test fractions, stratified by race, sex, ethnicity and age band "
        "(the demo uses 0.5,0.15,0.35).",
    ),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help=doc(SynthConfig, "workers")),
    as_json: bool = json_option("the summary as JSON"),
) -> None:
    """Write a synthetic multimodal cohort of real files (DICOM, FHIR R4, vitals) with ground truth."""
    from medmm.synth import synthesize

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
        **split_fractions(splits),
        **({"workers": workers} if workers else {}),
    )
    summary = synthesize(out, config, progress=not as_json)
    if as_json:
        typer.echo(json.dumps(jsonable(summary)))
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
    as_json: bool = json_option("the report as JSON"),
) -> None:
    """Write one folder per (patient, index time) sample of a task, a manifest with patient-level splits, and a report."""
    from medmm.population.build import build_cohort

    fractions = split_fractions(splits)
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
        typer.echo(json.dumps(jsonable(built.report)))
    else:
        per_split = ", ".join(f"{k} {v}" for k, v in built.per_split.items())
        typer.echo(
            f"wrote {built.samples} samples of {built.patients} patients to {out} ({per_split}); see cohort_report.md"
        )


@app.command()
def inspect(
    paths: List[Path] = typer.Argument(..., help="DICOM files, FHIR files, vitals tables or patient folders."),
    as_json: bool = json_option("one JSON object per input per line"),
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
    as_json: bool = json_option("the report as JSON"),
) -> None:
    """De-identify DICOM (PS3.15 Basic Profile, retained longitudinal dates) and FHIR bundles."""
    from medmm.deid import deidentify

    report = deidentify(src, dst, mapping_path=mapping, secret=secret, quarantine=quarantine)
    typer.echo(json.dumps(jsonable(report)) if as_json else str(report))
