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
