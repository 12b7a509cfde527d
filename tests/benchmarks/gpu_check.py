"""Prepared GPU check: everything that needs a GPU machine (one H200-class GPU, 16 CPU cores), in under 8 minutes.

    python tests/benchmarks/gpu_check.py                 # all parts; figures also under $OUT when it is set
    python tests/benchmarks/gpu_check.py --only embed,serve
    python tests/benchmarks/gpu_check.py --dry-run       # the commands, without running them
    python tests/benchmarks/gpu_check.py --smoke         # every part at toy size on CPU: checks that each one
                                                         # starts and ends (gpu_bundle.py --verify runs this)

On the workplace's lent GPU machines, whose image lacks Ray and the rest of the stack, ``gpu_bundle.py`` packs what
is missing and prints the two calls that run these parts there.

Parts, each a benchmark of this folder with its own time limit (a part that runs out is reported, the next
one still runs):

- ``train``: ``gpu_train_step.py``: bf16 training-step throughput and MFU at E7.2 size, embedding throughput;
- ``embed``: the embed job end to end on 20,000 clips at E7.2 size, bf16, every core
  (``bench_embed_pipeline.py --split``): clips/s against cores x one core's featurisation, and each stage
  alone (featurise, collate, transfer, forward, write) to show which one bounds the job;
- ``serve``: ``signclip serve`` with its models on the GPU (bf16; half a GPU per replica, so two fit) against
  the original's one-request-at-a-time server on the same GPU (``bench_serve.py --quick``): text and pose
  requests/s;
- ``extract``: ``bench_extract.py --cpus 16``: the extraction job against pose-format's parallel CLI on 16
  cores (out of reach on 2 cores, where Ray's fixed cost is a large share).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def parts(out: Path | None, cpus: int, smoke: bool = False) -> dict[str, tuple[list[str], int]]:
    """name -> (command, time limit in seconds); the limits add up to under 8 minutes."""
    def saved(name: str) -> list[str]:
        return ["--out", str(out / f"{name}.json")] if out else []

    py = sys.executable
    if smoke:
        return {
            "train": ([py, str(HERE / "gpu_train_step.py"), "--device", "cpu", "--preset", "tiny", "--steps", "1",
                       "--batch-size", "4", "--clips", "64"], 120),
            "embed": ([py, str(HERE / "bench_embed_pipeline.py"), "--preset", "tiny", "--clips", "400",
                       "--cpus", str(cpus), "--seconds", "1", "--split", *saved("embed")], 300),
            "serve": ([py, str(HERE / "bench_serve.py"), "--clients", "4", "--seconds", "2", "--rounds", "1",
                       "--mixes", "text", "pose",
                       "--cpus", str(cpus), *saved("serve")], 300),
            "extract": ([py, str(HERE / "bench_extract.py"), "--cpus", str(cpus), "--only", "bc", "--copies", "1"],
                        300),
        }
    return {
        "train": ([py, str(HERE / "gpu_train_step.py"), "--steps", "20"], 60),
        "embed": ([py, str(HERE / "bench_embed_pipeline.py"), "--preset", "e7.2", "--clips", "20000",
                   "--cpus", str(cpus), "--job-options", '{"precision": "bf16"}', "--split", *saved("embed")], 140),
        "serve": ([py, str(HERE / "bench_serve.py"), "--quick", "--gpus", "0.5", "--precision", "bf16",
                   "--cpus", str(cpus), *saved("serve")], 130),
        "extract": ([py, str(HERE / "bench_extract.py"), "--cpus", str(cpus), "--only", "bc", "--copies", "8"], 110),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="comma-separated subset of train,embed,serve,extract")
    parser.add_argument("--cpus", type=int, default=os.cpu_count(), help="CPUs for the Ray jobs (default: all)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    parser.add_argument("--smoke", action="store_true", help="every part at toy size on CPU")
    args = parser.parse_args(argv)
    out = Path(os.environ["OUT"]) if os.environ.get("OUT") else None
    plan = parts(out, args.cpus, args.smoke)
    chosen = args.only.split(",") if args.only else list(plan)
    unknown = sorted(set(chosen) - set(plan))
    if unknown:
        parser.error(f"unknown part(s) {unknown}; known: {sorted(plan)}")
    env = dict(os.environ, RAY_AUTH_MODE=os.environ.get("RAY_AUTH_MODE", "disabled"))
    outcomes = {}
    for name in chosen:
        command, limit = plan[name]
        print(f"\n=== {name} (limit {limit} s): {' '.join(command[1:])}", flush=True)
        if args.dry_run:
            continue
        started = time.perf_counter()
        # its own process group: a part stopped at its limit takes the Ray processes it started with it
        proc = subprocess.Popen(command, env=env, start_new_session=True)
        try:
            code = proc.wait(limit)
            outcomes[name] = "ok" if code == 0 else f"exit {code}"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            outcomes[name] = f"stopped at its {limit} s limit"
        print(f"=== {name}: {outcomes[name]} after {time.perf_counter() - started:.0f} s", flush=True)
    if outcomes:
        print("\n" + ", ".join(f"{name}: {outcome}" for name, outcome in outcomes.items()))
    return 0 if all(o == "ok" for o in outcomes.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
