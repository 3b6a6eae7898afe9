"""Commands that train and run models: `train` (one recipe), `demo` (the whole default model) and
`predict` (patients one by one)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from medmm.cli.app import app, jsonable
from medmm.cli.doors import TrainingRecipes, serve_ui
from medmm.cli.options import doc, json_option, model_option, trail_option
from medmm.demo import DemoOptions
from medmm.errors import ConfigError, InputError, MedmmError


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
    typer.echo(json.dumps(jsonable(result)))


@app.command()
def demo(
    out: Path = typer.Option(Path("medmm-demo"), "--out", help=doc(DemoOptions, "out")),
    patients: int = typer.Option(900, "--patients", min=20, help=doc(DemoOptions, "patients")),
    seed: int = typer.Option(0, "--seed", help=doc(DemoOptions, "seed")),
    quick: bool = typer.Option(False, "--quick", help=doc(DemoOptions, "quick")),
    no_serve: bool = typer.Option(False, "--no-serve", help="Do not start the clinician interface afterwards."),
    as_json: bool = json_option("metrics.json"),
    backbone: str = typer.Option("embedded", "--backbone", help=doc(DemoOptions, "backbone")),
) -> None:
    """Synthesize a cohort, train the embedded default (four stages), evaluate it, save DIR/model and DIR/metrics.json."""
    from medmm.demo import run_demo

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
        serve_ui(model=out / "model", cohort=out / "cohort", audit=out / "evaluation")


@app.command()
def predict(
    paths: List[Path] = typer.Argument(..., help="Patient folders or files."),
    model: Path = model_option(),
    as_json: bool = json_option("one JSON object per input per line"),
    no_impression: bool = typer.Option(False, "--no-impression", help="Skip generating the impression (faster)."),
    audit: Optional[Path] = trail_option("the AuditEvent and Provenance of each prediction"),
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
            info = {"path": str(path), "status": "ok", **extra, **jsonable(dc.asdict(pred))}
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
