"""Benchmark `medmm synth`: patients written per second (target: 1,000 patients in <= 60 s on 2 cores).

python benchmarks/bench_synth.py --patients 1000
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

from medmm.synth import SynthConfig, synthesize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1000, help="patients to write (default 1000)")
    parser.add_argument("--image-size", type=int, default=256, help="radiograph size in pixels (default 256)")
    parser.add_argument("--ct-fraction", type=float, default=0.0, help="fraction of patients with a CT volume")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    config = SynthConfig(
        patients=args.patients,
        seed=args.seed,
        image_size=args.image_size,
        ct_fraction=args.ct_fraction,
        workers=args.workers,
    )
    tmp = Path(tempfile.mkdtemp(prefix="medmm-bench-synth-"))
    try:
        cpu0, t0 = _cpu_seconds(), time.perf_counter()
        summary = synthesize(tmp / "cohort", config, progress=False)
        seconds = time.perf_counter() - t0
        cpu = _cpu_seconds() - cpu0
        size = sum(p.stat().st_size for p in (tmp / "cohort").rglob("*") if p.is_file())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"patients      {summary.patients}")
    print(f"workers       {args.workers}")
    print(f"image size    {args.image_size}")
    print(f"seconds       {seconds:.1f}")
    print(f"patients/s    {summary.patients / seconds:.1f}")
    print(f"files written {summary.files_written}")
    print(f"megabytes     {size / 1e6:.1f}")
    print(f"cpu seconds   {cpu:.1f} (all processes; {1000 * cpu / summary.patients:.0f} ms per patient)")
    projected = seconds * 1000 / summary.patients
    print(
        f"target        1000 patients in <= 60 s: {'met' if projected <= 60 else 'missed'} (projected {projected:.0f} s)"
    )
    # On a shared machine wall time includes other processes' load; CPU time does not.
    print(
        f"cpu-bound     {cpu * 1000 / summary.patients / max(1, min(args.workers, os.cpu_count() or 1)):.0f} s "
        f"for 1000 patients if the workers had their cores to themselves"
    )


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the worker processes)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


if __name__ == "__main__":
    main()
