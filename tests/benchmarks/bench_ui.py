"""Benchmark: the clinician interface's time from request to first result (the ranked diagnoses), and to the whole result.

    python tests/benchmarks/bench_ui.py [--model DIR] [--cohort DIR] [--requests 20] [--warmup 2]

The app is served on loopback exactly as `medmm serve` serves it and driven through
gradio_client: each request uploads one patient's files and reads the staged results as they
stream. "First result" is the time from submitting the request (upload included) to receiving
the stage that carries the ranked diagnoses; "complete" is the time to the last stage (impression
and explanations done). The server's own stage times (load, diagnoses, impression,
explanations) are printed beside them. Target: first result p50 <= 2 s for the embedded default.

The model is --model, else the embedded default obtained as `medmm serve` obtains it (trained
once into the cache by `medmm demo`'s code path when not there yet). Patients come from --cohort,
else the default's demo cohort, else a small cohort synthesized here at the demo's image size.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

SUMMARY = -1  # the API's last output is the summary JSON


def patients(cohort: Path, count: int) -> list[list[Path]]:
    """The input files of up to `count` patients, test split first and patients with every modality first."""
    import pandas as pd

    manifest = pd.read_csv(cohort / "manifest.csv", dtype=str)
    manifest["full"] = (manifest[["has_image", "has_notes", "has_vitals"]] == "1").all(axis=1)
    manifest["order"] = manifest["split"].map({"test": 0, "val": 1}).fillna(2)
    chosen = manifest.sort_values(["order", "full"], ascending=[True, False]).head(count)
    return [
        sorted(p for p in (cohort / f).rglob("*") if p.is_file() and not p.name.startswith("truth"))
        for f in chosen["folder"]
    ]


def one_request(client, files: list[Path]) -> dict:
    """Seconds to the first result and to the last stage, and the server's stage times."""
    from gradio_client import handle_file

    start = time.perf_counter()
    job = client.submit([handle_file(str(p)) for p in files], 0.6, api_name="/analyse")
    first = None
    summary = None
    for output in job:
        value = output[SUMMARY]
        if isinstance(value, dict) and "stage" in value:
            summary = value
            if first is None and "scores" in value:
                first = time.perf_counter() - start
    complete = time.perf_counter() - start
    if summary is None or first is None:
        raise SystemExit(f"the request failed: {job.outputs()[-1][0] if job.outputs() else 'no output'}")
    return {"first": first, "complete": complete, **{f"server {k}": v for k, v in summary["seconds"].items()}}


def quantiles(values: list[float]) -> str:
    a = np.asarray(values, dtype=np.float64)
    return f"p50 {np.percentile(a, 50):6.3f} s   p90 {np.percentile(a, 90):6.3f} s   min {a.min():6.3f} s   max {a.max():6.3f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="checkpoint folder (default: the embedded default, trained once if needed)",
    )
    parser.add_argument("--cohort", type=Path, default=None, help="cohort to take patients from")
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()

    import torch

    from ui.app import build_app, configure_gradio_paths, ensure_default_model, launch_options
    from ui.session import ClinicianService, Settings

    model = args.model or ensure_default_model()
    cohort = args.cohort or (model.parent / "cohort" if (model.parent / "cohort" / "manifest.csv").is_file() else None)
    with tempfile.TemporaryDirectory(prefix="medmm-bench-ui-") as tmp:
        work = Path(tmp)
        if cohort is None:
            from medmm.synth import SynthConfig, synthesize

            cohort = work / "cohort"
            synthesize(cohort, SynthConfig(patients=12, seed=1, image_size=256, workers=1), progress=False)
        configure_gradio_paths(work / "app")
        service = ClinicianService(Settings(model_dir=model, work_dir=work / "app", audit_store=work / "audit.sqlite"))
        app = build_app(service)
        _, url, _ = app.launch(**launch_options(work / "app", "127.0.0.1", None, {}, "200mb"), prevent_thread_lock=True)
        try:
            from gradio_client import Client

            client = Client(url, verbose=False)
            cases = patients(cohort, max(args.requests, 1))
            for i in range(args.warmup):
                one_request(client, cases[i % len(cases)])
            runs = [one_request(client, cases[i % len(cases)]) for i in range(args.requests)]
        finally:
            app.close()
            service.close()

    cfg = service.predictor.model.config
    print(
        f"model: {model} (image {cfg.preprocess.image_size} px, LM {cfg.backbone.hidden_size}x{cfg.backbone.num_layers}); "
        f"cohort: {cohort}; {args.requests} requests after {args.warmup} warm-up; torch threads {torch.get_num_threads()}, "
        f"{os.cpu_count()} cores"
    )
    print(
        f"first result (ranked diagnoses)  {quantiles([r['first'] for r in runs])}   target p50 <= 2 s: "
        f"{'met' if np.percentile([r['first'] for r in runs], 50) <= 2.0 else 'NOT met'}"
    )
    print(f"complete (impression, explanations) {quantiles([r['complete'] for r in runs])}")
    for stage in ("load", "diagnoses", "impression", "explanations"):
        key = f"server {stage}"
        print(f"  server stage {stage:<13} {quantiles([r[key] for r in runs if key in r])}")


if __name__ == "__main__":
    main()
