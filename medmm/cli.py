"""The `medmm` command line. Each subcommand is one typed function.

Errors end with a non-zero exit and a one-line cause (no traceback unless --debug).
medmm is a research tool, not a medical device.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import List, Optional

import typer

from medmm.errors import MedmmError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="medmm: multimodal diagnostic assistant (DICOM + FHIR + vital signs). Research use only; not a medical device.",
)
_state = {"debug": False}


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on error."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details."),
) -> None:
    _state["debug"] = debug
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not (verbose or debug):
        # pydicom logs decoder failures with tracebacks that can quote element values; medmm
        # reports those files itself as typed errors. (Importing pydicom sets its logger's
        # level, so import it first.)
        import pydicom  # noqa: F401

        logging.getLogger("pydicom").setLevel(logging.CRITICAL)


@app.command()
def synth(
    out: Path = typer.Option(..., "--out", help="Folder to write the cohort into (empty, or a previous synthetic cohort)."),
    patients: int = typer.Option(600, "--patients", min=1, help="Number of patients."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed writes identical files."),
    image_size: int = typer.Option(256, "--image-size", min=32, help="Radiograph size in pixels."),
    ct_fraction: float = typer.Option(0.0, "--ct-fraction", min=0.0, max=1.0, help="Fraction of patients who also get a CT volume."),
    missing: float = typer.Option(0.1, "--missing", min=0.0, max=0.9, help="Rate at which each modality is missing."),
    bias_attribute: Optional[str] = typer.Option(None, "--bias-attribute", help="Demographic attribute of the planted bias (sex, race, ethnicity)."),
    bias_value: Optional[str] = typer.Option(None, "--bias-value", help="Group value that receives the planted bias (e.g. 2054-5)."),
    bias_kind: str = typer.Option("label_noise", "--bias-kind", help="label_noise or image_quality."),
    bias_strength: float = typer.Option(0.0, "--bias-strength", min=0.0, max=1.0, help="Strength of the planted bias (0 = none)."),
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
        **({"workers": workers} if workers else {}),
    )
    summary = synthesize(out, config, progress=not as_json)
    if as_json:
        typer.echo(json.dumps(_jsonable(summary)))
    else:
        typer.echo(f"wrote {patients} patients to {out}")
        typer.echo(str(summary))


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
    config: Path = typer.Option(..., "--config", help="Recipe YAML (training/configs/*.yaml); its `recipe` key names the recipe."),
    overrides: Optional[List[str]] = typer.Argument(None, help="key.path=value overrides, e.g. train.epochs=3 out=runs/x"),
) -> None:
    """Run a training recipe (pretrain_lm, align or finetune) from its YAML config."""
    import importlib

    from medmm.errors import ConfigError
    from medmm.train.recipe import load_recipe_config

    cfg = load_recipe_config(config, overrides or [])
    if cfg.recipe not in ("pretrain_lm", "align", "finetune"):
        raise ConfigError(f"unknown recipe {cfg.recipe!r} (pretrain_lm | align | finetune)", path=config, where="recipe")
    result = importlib.import_module(f"training.{cfg.recipe}").run(cfg)
    typer.echo(json.dumps(_jsonable(result)))


@app.command()
def demo(
    out: Path = typer.Option(Path("medmm-demo"), "--out", help="Folder for the cohort, the runs, the model and the metrics."),
    patients: int = typer.Option(600, "--patients", min=20, help="Synthetic patients."),
    seed: int = typer.Option(0, "--seed"),
    quick: bool = typer.Option(False, "--quick", help="A small smoke run (figures not meaningful)."),
    no_serve: bool = typer.Option(False, "--no-serve", help="Do not start the clinician interface afterwards."),
    as_json: bool = typer.Option(False, "--json", help="Print metrics.json."),
) -> None:
    """Synthesize a cohort, train the embedded default (3 stages), evaluate it, save DIR/model and DIR/metrics.json."""
    from medmm.demo import DemoOptions, run_demo

    metrics = run_demo(DemoOptions(out=out, patients=patients, seed=seed, quick=quick, progress=not as_json))
    if as_json:
        typer.echo(json.dumps(metrics))
    else:
        typer.echo((out / "summary.md").read_text())
        typer.echo(f"model: {out / 'model'}   metrics: {out / 'metrics.json'}")


@app.command()
def predict(
    paths: List[Path] = typer.Argument(..., help="Patient folders or files."),
    model: Path = typer.Option(..., "--model", help="Checkpoint folder (e.g. medmm-demo/model)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per input per line."),
    no_impression: bool = typer.Option(False, "--no-impression", help="Skip generating the impression (faster)."),
) -> None:
    """Ranked diagnoses, conformal set and drafted impression for each patient. Research use only."""
    import dataclasses as dc

    from medmm.io import load_study
    from medmm.predict import Predictor

    predictor = Predictor.from_checkpoint(model)
    failed = 0
    for path in paths:
        try:
            pred = predictor.predict(load_study(path), impression=not no_impression)
            info = {"path": str(path), "status": "ok", **_jsonable(dc.asdict(pred))}
        except MedmmError as err:
            failed += 1
            info = {"path": str(path), "status": "error", "error_type": type(err).__name__, "message": str(err)}
        if as_json:
            typer.echo(json.dumps(info))
        elif info["status"] == "ok":
            typer.echo(f"== {path}  (present: {', '.join(info['present']) or 'none'}; missing: {', '.join(info['missing']) or 'none'})")
            for s in info["scores"]:
                typer.echo(f"  {s['display']:<18} {s['probability']:6.1%}{'  in set' if s['in_set'] else ''}")
            if info["impression"]:
                typer.echo(f"  impression: {info['impression']}")
        else:
            typer.echo(f"== {path}\n  error: {info['error_type']}: {info['message']}")
    if failed:
        raise typer.Exit(code=1)


@app.command()
def deid(
    src: Path = typer.Argument(..., help="A DICOM/FHIR file, a patient folder or a cohort folder."),
    dst: Path = typer.Argument(..., help="Output folder for the de-identified copy."),
    mapping: Path = typer.Option(..., "--mapping", help="Re-identification mapping (JSON), kept outside DST for the data owner."),
    secret: Optional[str] = typer.Option(None, "--secret", envvar="MEDMM_DEID_SECRET", help="Key for pseudonyms and date offsets (reproducible runs)."),
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
    return obj


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `medmm` console script."""
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
