"""Every CPU benchmark of this folder, one after the other, each holding the machine's Ray lock (``make bench``).

    .venv/bin/python tests/benchmarks/run_all.py                   # all, with each script's defaults
    .venv/bin/python tests/benchmarks/run_all.py --only serve,embed --quick

Each script prints the baseline and this project side by side, and the ratio; this runner only sequences
them (two benchmarks at once would share the cores and both lie) and reports which failed. GPU checks
(``gpu_*.py``) are not run here: they need a GPU machine.
"""

from __future__ import annotations

import argparse
import fcntl
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
LOCK = "/tmp/signclip-ray.lock"
# Smaller runs for --quick: the same comparisons, minutes instead of tens of minutes.
QUICK = {
    "embedder": ["--clips", "200", "--reference-clips", "20"],
    "embed": ["--clips", "400", "--reference-clips", "20", "--actors", "1"],
    "corpus_load": ["--clips", "20000"],
    "embed_pipeline": ["--clips", "4000"],
    "extract": ["--copies", "4", "--only", "bc"],
    "featurize": ["--rounds", "2"],
    "search": ["--clips", "20000", "--seconds", "8"],
    "serve": ["--quick"],
    "serve_overhead": ["--seconds", "4", "--servers", "noop/fast", "serve/fast"],
    "train": ["--rows", "48"],
}


def main(argv: list[str] | None = None) -> int:
    scripts = {p.stem.removeprefix("bench_"): p for p in sorted(HERE.glob("bench_*.py"))}
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(scripts)}")
    parser.add_argument("--quick", action="store_true", help="smaller runs of the same comparisons")
    args = parser.parse_args(argv)
    chosen = args.only.split(",") if args.only else list(scripts)
    unknown = sorted(set(chosen) - set(scripts))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; known: {sorted(scripts)}")
    failed = []
    for name in chosen:
        command = [sys.executable, str(scripts[name]), *(QUICK.get(name, []) if args.quick else [])]
        print(f"\n=== {name}: {' '.join(command[1:])}", flush=True)
        started = time.perf_counter()
        with open(LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            code = subprocess.call(command)
        print(f"=== {name}: exit {code} after {time.perf_counter() - started:.0f} s", flush=True)
        if code:
            failed.append(name)
    if failed:
        print(f"\nbenchmarks that failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
