"""Does the embed pipeline outrun a cheap model? The job with the ``tiny`` preset (a forward pass that costs almost
nothing, as a GPU's would) against what featurisation alone allows: cores x one core's featurisation rate.

    flock /tmp/signclip-ray.lock .venv/bin/python tests/benchmarks/bench_embed_pipeline.py            # 20,000 clips
    flock /tmp/signclip-ray.lock .venv/bin/python tests/benchmarks/bench_embed_pipeline.py --clips 4000

Clips are symbolic links to the real Holistic poses of the sample data (round-robin), so every clip is read
and featurised for real. In the same run: one core's featurisation rate (read the file + ``pose_features``,
in this process, BLAS held to one thread), then the job (``signclip.jobs.embed`` on a local Ray with every
core; clips/s over the pipeline's wall time, actor start-up included, ``ray.init`` not). Prints both, the
ratio against cores x one core, and the job's stage plan. Target: >= 0.85.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import signclip  # noqa: E402
from signclip.io import sample_data  # noqa: E402
from signclip.pose.features import pose_features  # noqa: E402

POSES = [*sample_data.LABELLED_POSES, "poses/refined-face-553.pose"]


def make_clips(folder: Path, n: int) -> list[Path]:
    sources = [sample_data.path(p) for p in POSES]
    folder.mkdir(parents=True)
    out = []
    for i in range(n):
        link = folder / f"clip-{i:06d}.pose"
        link.symlink_to(sources[i % len(sources)])
        out.append(link)
    return out


def one_core_rate(clips: list[Path], seconds: float) -> float:
    """Clips per second one core featurises (best of three timed passes of ``seconds`` each)."""
    best = 0.0
    for _ in range(3):
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            pose_features(str(clips[done % len(clips)]))
            done += 1
        best = max(best, done / (time.perf_counter() - started))
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=20_000)
    parser.add_argument("--cpus", type=int, default=os.cpu_count(), help="CPUs of the local Ray (default: all)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each one-core timing pass")
    parser.add_argument("--job-options", default="{}", help="extra EmbedOptions fields, as JSON")
    parser.add_argument("--out", help="also write the figures as JSON here")
    args = parser.parse_args(argv)

    import ray

    from signclip.jobs.embed import EmbedOptions, run

    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        work = Path(tmp)
        clips = make_clips(work / "clips", args.clips)
        signclip.create("tiny", seed=0).save(str(work / "model"))
        single = one_core_rate(clips, args.seconds)
        ceiling = args.cpus * single
        print(f"one core featurises {single:.1f} clips/s; {args.cpus} cores: {ceiling:.1f} clips/s", flush=True)
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
        try:
            options = EmbedOptions(model=str(work / "model"), input=str(work / "clips"), output=str(work / "emb"),
                                   **json.loads(args.job_options))
            summary = run(options)
        finally:
            ray.shutdown()
    ratio = summary.clips_per_s / ceiling
    print(f"job (tiny model): {summary.clips_per_s:.1f} clips/s ({summary.ok} ok of {summary.items} in "
          f"{summary.seconds:.1f} s)")
    print(f"job / ({args.cpus} x one core's featurisation) = {ratio:.2f} (target >= 0.85)")
    print(f"stages: {summary.resources}")
    if args.out:
        Path(args.out).write_text(json.dumps({"one_core": single, "cores": args.cpus, "job": summary.clips_per_s,
                                              "ratio": ratio, "resources": summary.resources}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
