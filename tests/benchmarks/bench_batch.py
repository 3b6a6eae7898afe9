"""Benchmark: `medmm batch` throughput, its scaling with cohort size, and Ray (2 workers) against local (1 worker).

    python tests/benchmarks/bench_batch.py [--model DIR] [--cohort DIR] [--cases 30] [--no-impression]

Every study runs in a fresh process, so its peak memory is its own. Throughput is the steady
rate once running: the cases after the first batch over the time between the first and the
last case's `predicted_at` (imports, loading the model and starting Ray are left out; the
whole wall time is printed too). Prints cases per second, the time and peak-memory ratios of
10x the cases (targets: time 10x within 15%, memory within 20%), and the Ray / local ratio.
The model defaults to the demo's (medmm-demo/model) when present, else an untrained embedded
default built here; the cohort is synthesized unless given.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import json, resource, sys
from medmm.batch.plan import CohortFilter, Outputs, RunOptions, StudyProtocol
from medmm.batch.run import run_batch
model, cohort, out, engine, workers, limit, impression = sys.argv[1:8]
protocol = StudyProtocol(filter=CohortFilter(limit=int(limit)), outputs=Outputs(impression=impression == "1", fhir=True),
                         run=RunOptions(batch_size=8, part_size=64))
summary = run_batch(model, cohort, out, engine=engine, workers=int(workers), protocol=protocol, progress=False)
peak_kib = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
import pandas as pd
times = pd.read_parquet(summary.results, columns=["predicted_at"])["predicted_at"]
span = (times.max() - times.min()).total_seconds()
print(json.dumps({"seconds": summary.seconds, "cases": summary.processed, "failed": summary.failed, "peak_mib": peak_kib / 1024,
                  "span": span, "steady": (summary.processed - 8) / span if span > 0 else float("nan")}))
"""


def _default_model(tmp: Path) -> Path:
    demo = Path("medmm-demo/model")
    if (demo / "checksums.json").is_file():
        return demo
    from medmm.checkpoint import save_checkpoint
    from medmm.model import ModelConfig, build_model

    print("no demo model found: timing an untrained embedded default (run `medmm demo` for the trained one)")
    return save_checkpoint(build_model(ModelConfig()), tmp / "model")


def _study(model: Path, cohort: Path, out: Path, engine: str, workers: int, limit: int, impression: bool) -> dict:
    args = [str(model), str(cohort), str(out), engine, str(workers), str(limit), "1" if impression else "0"]
    done = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"study failed ({engine}, {limit} cases):\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="checkpoint folder (default: medmm-demo/model, else an untrained default)",
    )
    parser.add_argument(
        "--cohort", type=Path, default=None, help="a cohort with at least 10x --cases patients (else synthesized)"
    )
    parser.add_argument("--cases", type=int, default=30, help="the small study; the large one has 10x as many")
    parser.add_argument("--no-impression", action="store_true", help="time the diagnosis head only")
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args()
    impression = not args.no_impression
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model = args.model or _default_model(tmp)
        cohort = args.cohort
        if cohort is None:
            from medmm.synth import SynthConfig, synthesize

            cohort = tmp / "cohort"
            synthesize(cohort, SynthConfig(patients=10 * args.cases, seed=0, missing_image=0.0), progress=False)
        small, large = args.cases, 10 * args.cases
        runs = {}
        plan = [("local small", "local", 1, small), ("local large", "local", 1, large)] + (
            [] if args.skip_ray else [("ray large", "ray", 2, large)]
        )
        for name, engine, workers, limit in plan:
            runs[name] = r = _study(model, cohort, tmp / name.replace(" ", "-"), engine, workers, limit, impression)
            print(
                f"{name:<12} {r['cases']:>5} cases  wall {r['seconds']:7.1f} s  steady {r['steady']:7.2f} cases/s over {r['span']:6.1f} s  "
                f"peak {r['peak_mib']:6.0f} MiB  failed {r['failed']}"
            )

    a, b = runs["local small"], runs["local large"]
    work = (b["cases"] - 8) / (a["cases"] - 8)
    time_ratio = b["span"] / a["span"]
    print(f"\nthroughput, local engine, 1 worker: {b['steady']:.2f} cases/s")
    print(
        f"10x the cases: time x{time_ratio:.2f} for x{work:.2f} the work ({time_ratio / work - 1:+.1%}, target within 15%)"
    )
    memory = b["peak_mib"] / a["peak_mib"]
    print(f"10x the cases: peak memory x{memory:.2f} ({memory - 1:+.1%}, target within 20%)")
    if not args.skip_ray:
        print(
            f"Ray 2 workers vs local 1 worker: {runs['ray large']['steady']:.2f} vs {b['steady']:.2f} cases/s, ratio {runs['ray large']['steady'] / b['steady']:.2f}"
        )


if __name__ == "__main__":
    main()
