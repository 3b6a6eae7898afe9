"""Fuzz medmm.io for a chosen time and print the figures.

    python tests/fuzz/run_fuzz.py --seconds 600 --seed 1

Every input must load or raise a MedmmError subtype within the time limit and the memory bound,
and a FHIR or vitals input must leave intact files beside it in a patient folder whole.
Prints the number of inputs, the outcome counts per input kind, the longest single-input time
and every failure (rebuild one with tests.fuzz.mutators.make_case(seed, index), or pass --save).
Exits 1 when any input failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __name__ == "__main__" and __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script: the repository root

from tests.fuzz.harness import cpu_workers, run_pass  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run the pass, print the figures; 0 when nothing failed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to start new inputs (default 60)")
    parser.add_argument("--count", type=int, default=None, help="stop after this many inputs instead")
    parser.add_argument("--seed", type=int, default=1, help="fuzz seed: case i is the same on every run")
    parser.add_argument("--workers", type=int, default=cpu_workers(), help="worker processes (default: cores)")
    parser.add_argument("--timeout", type=float, default=10.0, help="per-input time limit in seconds")
    parser.add_argument(
        "--memory-mib",
        type=int,
        default=2048,
        help="address space a worker may add while reading an input (0: unbounded)",
    )
    parser.add_argument("--save", type=Path, default=None, help="folder to write failing inputs to")
    parser.add_argument("--json", type=Path, default=None, help="file to write the figures to as JSON")
    args = parser.parse_args(argv)

    summary = run_pass(
        args.seed,
        count=args.count,
        seconds=None if args.count else args.seconds,
        workers=args.workers,
        timeout_s=args.timeout,
        memory_mib=args.memory_mib,
        save_dir=args.save,
    )
    print("\n".join(summary.lines()))
    if args.json is not None:
        args.json.write_text(json.dumps(summary.as_dict(), indent=2))
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
