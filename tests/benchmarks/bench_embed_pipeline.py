"""Does the embed pipeline outrun a cheap model? The job with the ``tiny`` preset (standing in for a GPU's forward
pass; on a CPU it still costs about half as much as featurising) against what featurisation alone allows: cores x
one core's featurisation rate.

    flock /tmp/signclip-ray.lock .venv/bin/python tests/benchmarks/bench_embed_pipeline.py            # 20,000 clips
    flock /tmp/signclip-ray.lock .venv/bin/python tests/benchmarks/bench_embed_pipeline.py --clips 4000
    python tests/benchmarks/bench_embed_pipeline.py --preset e7.2 --job-options '{"precision": "bf16"}' --split

Clips are symbolic links to the real Holistic poses of the sample data (round-robin), so every clip is read
and featurised for real. In the same run: one core's featurisation rate (read the file + ``pose_features``,
in this process, BLAS held to one thread) before and after the job, their mean as the baseline (this
machine's speed drifts by a third over minutes); one core's rate at the job's whole per-clip work without
Ray (an embedding actor's call in this process: featurise, then the model's forward pass), which bounds the
job at cores x that rate; then the job (``signclip.jobs.embed`` on a local Ray with every core; clips/s over
the pipeline's wall time, actor start-up included, ``ray.init`` not), and its rate from the first shard
written to the last (start-up left out: what a corpus large enough to hide it would see), and the Ray worker
processes started during the job, after the first shard apart (a worker pool that ends idle workers and starts
new ones costs a process start, about 1.5 s of CPU, each time). Prints the rates,
the ratio against cores x one core's featurisation, and the job's stage plan. Target: >= 0.85.
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
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import signclip  # noqa: E402
from signclip.io import sample_data  # noqa: E402
from signclip.pose.features import pose_features  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from ray_workers import WorkerStarts  # noqa: E402

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


def best_rate(step: Callable[[int], int], seconds: float) -> float:
    """Clips per second of ``step`` (given the clips done so far, does some and returns how many), best of three
    timed passes of ``seconds`` each."""
    best = 0.0
    for _ in range(3):
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            done += step(done)
        best = max(best, done / (time.perf_counter() - started))
    return best


def one_core_rate(clips: list[Path], seconds: float) -> float:
    """Clips per second one core featurises."""

    def one(done: int) -> int:
        pose_features(str(clips[done % len(clips)]))
        return 1

    return best_rate(one, seconds)


def one_core_job_rate(clips: list[Path], model_dir: str, seconds: float, batch: int = 256) -> float:
    """Clips per second one core gets through an embedding actor's whole call (featurise + forward pass), in
    this process."""
    import numpy as np
    import torch

    from signclip.embedding.stages import EmbedActor, RunSpec, model_spec

    torch.set_num_threads(1)
    actor = EmbedActor(RunSpec(**model_spec(model_dir), output="unused", run_id="bench"), "cpu", threads=1)

    def rows(start: int) -> dict:
        picked = [str(clips[(start + i) % len(clips)]) for i in range(batch)]
        return {"id": np.array(picked, dtype=object), "kind": np.array(["pose"] * batch, dtype=object),
                "source": np.array(picked, dtype=object)}

    def call(done: int) -> int:
        actor(rows(done))
        return batch

    call(0)
    return best_rate(call, seconds)


def steady_rate(output: str, started: float) -> tuple[float, float]:
    """(clips/s between the first and the last shard written, seconds from ``started`` (``time.time()``) to the
    first shard): the job's rate once its actors are up and Ray Data's own actors started, from the shard files'
    modification times."""
    import pyarrow.parquet as pq

    from signclip.io import embedding_store

    shards = sorted((os.path.getmtime(p), pq.ParquetFile(p).metadata.num_rows)
                    for p in embedding_store.list_shards(output))
    if len(shards) < 2:
        return float("nan"), float("nan")
    return sum(rows for _, rows in shards[1:]) / (shards[-1][0] - shards[0][0]), shards[0][0] - started


def stage_rates(clips: list[Path], model_dir: str, precision: str, n: int = 2000) -> dict[str, float]:
    """Clips/s of each stage after featurisation alone, in this process, on ``n`` clips: collate (host
    batches as the Embedder forms them), transfer (host -> device), forward (the pose tower on the device,
    back to host), write (one shard of ``n`` embedded rows). Each device step is timed to its end."""
    import numpy as np
    import torch

    from signclip.embedding.stages import RunSpec, model_spec, write_shard
    from signclip.model.embedder import Embedder
    from signclip.model.factory import load
    from signclip.pose.features import collate

    device = "cuda" if torch.cuda.is_available() else "cpu"
    embedder = Embedder(load(model_dir, device=device), precision=precision)  # type: ignore[arg-type]
    features = [pose_features(str(c)) for c in clips[:n]]
    lengths = [min(f.shape[0], embedder.model.cfg.max_frames) for f in features]
    features = [f[:t] for f, t in zip(features, lengths)]
    seconds = {"collate": 0.0, "transfer": 0.0, "forward": 0.0}

    def timed(stage: str, step):  # noqa: ANN001, ANN202
        if device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        out = step()
        if device == "cuda":
            torch.cuda.synchronize()
        seconds[stage] += time.perf_counter() - started
        return out

    vectors = np.zeros((len(features), embedder.model.cfg.embedding_dim), dtype=np.float32)
    for _ in ("warm-up", "timed"):
        seconds = dict.fromkeys(seconds, 0.0)
        with embedder._inference():  # noqa: SLF001 - the Embedder's own batching, timed step by step
            for batch in embedder._batches(lengths):  # noqa: SLF001
                frames, mask = timed("collate", lambda b=batch: collate([features[i] for i in b]))
                on_device = timed("transfer", lambda f=frames, m=mask: (torch.from_numpy(f).to(device),
                                                                       torch.from_numpy(m).to(device)))
                vectors[batch] = timed("forward", lambda d=on_device: embedder.model.encode_pose(*d).float().cpu())
    spec = RunSpec(**model_spec(model_dir), output=str(Path(model_dir).parent / "split-emb"), run_id="split")
    n_rows = len(features)
    batch = {"id": np.array([f"clip-{i}" for i in range(n_rows)], dtype=object),
             "kind": np.array(["pose"] * n_rows, dtype=object),
             "source": np.array([str(c) for c in clips[:n_rows]], dtype=object),
             "status": np.array(["ok"] * n_rows, dtype=object), "frames": np.array(lengths),
             "segments": np.ones(n_rows, dtype=np.int64), "embedding": vectors}
    started = time.perf_counter()
    write_shard(batch, spec)
    seconds["write"] = time.perf_counter() - started
    return {stage: n_rows / s for stage, s in seconds.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=20_000)
    parser.add_argument("--cpus", type=int, default=os.cpu_count(), help="CPUs of the local Ray (default: all)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each one-core timing pass")
    parser.add_argument("--job-options", default="{}", help="extra EmbedOptions fields, as JSON")
    parser.add_argument("--preset", default="tiny", help="the model's size (random weights): tiny, or e7.2 on a GPU")
    parser.add_argument("--split", action="store_true",
                        help="also time each stage after featurisation alone (collate, transfer, forward, write)")
    parser.add_argument("--out", help="also write the figures as JSON here")
    args = parser.parse_args(argv)

    import ray

    from signclip.jobs.embed import EmbedOptions, run

    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        work = Path(tmp)
        clips = make_clips(work / "clips", args.clips)
        signclip.create(args.preset, seed=0).save(str(work / "model"))
        before = one_core_rate(clips, args.seconds)
        whole = one_core_job_rate(clips, str(work / "model"), args.seconds)
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
        try:
            options = EmbedOptions(model=str(work / "model"), input=str(work / "clips"), output=str(work / "emb"),
                                   **json.loads(args.job_options))
            starts = WorkerStarts()
            started = time.time()
            summary = run(options)
            steady, first_shard_s = steady_rate(options.output, started)
            worker_starts = starts.stop()
            late_starts = sum(t > started + first_shard_s for t in worker_starts)
        finally:
            ray.shutdown()
        after = one_core_rate(clips, args.seconds)
        rates = stage_rates(clips, str(work / "model"), options.precision) if args.split else {}
    single = (before + after) / 2
    ceiling = args.cpus * single
    print(f"one core featurises {single:.1f} clips/s (before the job {before:.1f}, after {after:.1f}); "
          f"{args.cpus} cores: {ceiling:.1f} clips/s")
    print(f"one core through an embedding actor's call without Ray (featurise + {args.preset} forward pass): "
          f"{whole:.1f} clips/s, {whole / single:.2f}x featurising alone: the job's compute ceiling here")
    ratio = summary.clips_per_s / ceiling
    print(f"job ({args.preset} model, {options.precision}): {summary.clips_per_s:.1f} clips/s ({summary.ok} ok of "
          f"{summary.items} in {summary.seconds:.1f} s)")
    print(f"  of which the first shard came {first_shard_s:.1f} s after the job started (actors and Ray "
          f"Data's own actors starting); from there to the last shard {steady:.1f} clips/s, "
          f"{steady / ceiling:.2f} of {args.cpus} x one core's featurisation")
    print(f"  Ray worker processes started during the job: {len(worker_starts)}, of which {late_starts} after the "
          "first shard (a pool ending idle workers and starting new ones)")
    if rates:
        print("each stage alone, clips/s: featurise " + f"{ceiling:.0f} ({args.cpus} cores), "
              + ", ".join(f"{stage} {rate:.0f}" for stage, rate in rates.items()))
    print(f"job / ({args.cpus} x one core's featurisation) = {ratio:.2f} (target >= 0.85)")
    print(f"stages: {summary.resources}")
    if args.out:
        Path(args.out).write_text(json.dumps({"one_core": single, "one_core_before": before,
                                              "one_core_after": after, "one_core_job_work": whole, "cores": args.cpus,
                                              "job": summary.clips_per_s, "job_after_first_shard": steady,
                                              "first_shard_s": first_shard_s,
                                              "worker_starts": len(worker_starts),
                                              "worker_starts_after_first_shard": late_starts,
                                              "ratio": ratio, "resources": summary.resources,
                                              "stages_alone": rates}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
