"""Training throughput with 1 and 2 CPU workers (Ray Train, gloo), side by side, and the scaling ratio.

    .venv/bin/python tests/benchmarks/bench_train.py [--preset small] [--rows 96] [--batch-size 16]

Both runs train the same preset on the same manifest (real poses replicated, E7.2's temporal
augmentation on) for one epoch each. The rate is the job's own per-epoch samples/s (the featurisation
stage, forward, backward and the cross-worker gather included; Ray start-up excluded). It also prints how many
Ray worker processes each run started (Ray ends idle task workers when the train workers hold most CPUs).
On a 2-core machine each worker gets 1 core (0.75 CPU of Ray's budget, leaving room for featurisation).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import pandas as pd
import ray

from signclip.io import sample_data
from signclip.jobs import train

sys.path.insert(0, str(Path(__file__).parent))
from ray_workers import WorkerStarts  # noqa: E402


def run(tmp: Path, manifest: str, workers: int, args: argparse.Namespace) -> tuple[float, int]:
    """(the epoch's samples/s, Ray worker processes started during the run)."""
    out = tmp / f"run-{workers}"
    starts = WorkerStarts()
    code = train.main(["--train", manifest, "--val", manifest, "--output", str(out), "--preset", args.preset,
                       "--epochs", "1", "--batch-size", str(args.batch_size), "--workers", str(workers),
                       "--cpus-per-worker", str(1.5 / workers), "--data-cpus", "0.25", "--warmup-steps", "10"])
    started = len(starts.stop())
    assert code == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "samples_per_s" in r][-1]["samples_per_s"], started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--rows", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    with tempfile.TemporaryDirectory() as tmp:
        items = list(sample_data.LABELLED_POSES.items())
        rows = [{"pose": str(sample_data.path(p)), "gloss": g, "sign_language": "ase"}
                for p, g in (items[i % len(items)] for i in range(args.rows))]
        manifest = str(Path(tmp) / "train.csv")
        pd.DataFrame(rows).to_csv(manifest, index=False)
        (one, one_starts), (two, two_starts) = run(Path(tmp), manifest, 1, args), run(Path(tmp), manifest, 2, args)
    print(f"preset {args.preset}, global batch {args.batch_size}, {args.rows} samples/epoch")
    print(f"1 worker: {one:.2f} samples/s; 2 workers: {two:.2f} samples/s; scaling {two / one:.2f}x")
    print(f"Ray worker processes started: {one_starts} (1 worker), {two_starts} (2 workers)")


if __name__ == "__main__":
    main()
