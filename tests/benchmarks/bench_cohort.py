"""Benchmark: the cohort Dataset's first pass (decode + preprocess) vs its cached second pass.

    python tests/benchmarks/bench_cohort.py [--patients 200] [--cohort DIR]

Prints seconds per pass and the ratio (target: the cached pass at least 5x faster).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from medmm.cases import CohortDataset
from medmm.encoders.text import load_note_tokenizer
from medmm.io.cohort import Cohort
from medmm.synth import SynthConfig, synthesize
from medmm.transforms.study import PreprocessConfig, StudyPreprocessor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--cohort", type=Path, default=None, help="an existing cohort (else one is synthesized)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.cohort or Path(tmp) / "cohort"
        if args.cohort is None:
            synthesize(root, SynthConfig(patients=args.patients, seed=0), progress=False)
        cohort = Cohort.open(root)
        preprocessor = StudyPreprocessor(PreprocessConfig(), load_note_tokenizer())
        dataset = CohortDataset(cohort, preprocessor, Path(tmp) / "cache", preprocessor.key)
        timings = []
        for _ in range(2):
            start = time.perf_counter()
            for i in range(len(dataset)):
                dataset[i]
            timings.append(time.perf_counter() - start)
    first, second = timings
    print(f"patients: {len(cohort)}")
    print(f"first pass (decode + preprocess + write cache): {first:.2f} s ({len(cohort) / first:.1f} patients/s)")
    print(f"second pass (cache):                            {second:.2f} s ({len(cohort) / second:.1f} patients/s)")
    print(f"speed-up: {first / second:.1f}x (target >= 5x)")


if __name__ == "__main__":
    main()
