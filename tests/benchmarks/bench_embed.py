"""Throughput of the bulk-embedding job (``signclip.jobs.embed`` on Ray Data) against the reference's inference semantics.

    flock /tmp/signclip-ray.lock .venv/bin/python tests/benchmarks/bench_embed.py            # 2,000 clips, e7.2
    flock /tmp/signclip-ray.lock .venv/bin/python tests/benchmarks/bench_embed.py --quick    # a few minutes
    .venv/bin/python tests/benchmarks/bench_embed.py --clips 5000 --actors 1,2 --bf16 --out runs/bench.json

Clips: copies of the real labelled poses (and the valid refined-face one), time-warped with
``signclip.pose.augment`` (``--variants`` distinct warps, copied round-robin up to ``--clips`` files), written
to a temporary folder. One model (``signclip.create(preset)``, random weights; E7.2 = 12+12 layers,
hidden 768) is saved once and used by both sides:

- reference semantics: one clip at a time, read + preprocessed, zero-padded to 256 frames with the frame
  mask marking the real frames, batch size 1, ``--threads`` torch threads. It is slow, so it runs on a
  random sample of ``--reference-clips`` clips; both its full rate (read + features + forward) and its
  forward-only rate are reported.
- this job: every clip through the Ray Data pipeline (featurising tasks -> actor pool -> Parquet), once per
  actor count in ``--actors``; clips/s = clips / wall time of the pipeline (actor start-up and model loading
  included, ``ray.init`` not).
``--bf16`` adds a bf16 run and reports how far its embeddings move from fp32. The job's fp32 embeddings are
checked against the reference-semantics embeddings of the sampled clips.

Also printed: the compute ceiling, the pose tower's FLOPs at 258 positions over its mean FLOPs at the clips'
true lengths. A job that only skips the padding cannot go beyond it on a machine whose forward pass is
compute-bound (CPU); the rest of the gap is featurising, Ray, and matmul efficiency at other shapes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import signclip
from signclip.io import embedding_store, sample_data
from signclip.pose.augment import Augmentation
from signclip.pose.features import collate, pose_features

sys.path.insert(0, str(Path(__file__).parent))
from gpu_train_step import tower_flops  # noqa: E402

log = logging.getLogger("bench_embed")
SOURCES = [*sample_data.LABELLED_POSES, "poses/refined-face-553.pose"]


def make_clips(folder: Path, n: int, variants: int, seed: int = 0) -> list[Path]:
    """``n`` .pose files: ``variants`` time-warped versions of the real clips, copied round-robin."""
    from pose_format import Pose

    rng = np.random.default_rng(seed)
    warp = Augmentation(temporal_std=0.2)
    base = [Pose.read(sample_data.path(p).read_bytes()) for p in SOURCES]
    made = []
    for i in range(min(variants, n)):
        pose = base[i % len(base)]
        pose = warp(Pose(pose.header, pose.body.copy()), rng) if i >= len(base) else pose
        path = folder / f"variant-{i:04d}.pose"
        with open(path, "wb") as f:
            pose.write(f)
        made.append(path)
    out = []
    for i in range(n):
        target = folder / f"clip-{i:05d}.pose"
        shutil.copyfile(made[i % len(made)], target)
        out.append(target)
    for path in made:
        path.unlink()
    return out


def reference_semantics(model: signclip.SignCLIP, paths: list[Path]) -> dict:
    """One clip at a time, padded to 256 frames, batch 1: rates with and without reading/featurising."""
    limit = model.cfg.max_frames
    embeddings, forward = [], 0.0
    start = time.perf_counter()
    with torch.inference_mode():
        for path in paths:
            clip = pose_features(str(path), model.cfg.feature_set)[:limit]
            frames, mask = collate([clip], max_frames=limit)
            t = time.perf_counter()
            emb = model.encode_pose(torch.from_numpy(frames), torch.from_numpy(mask))
            forward += time.perf_counter() - t
            embeddings.append(emb[0].numpy())
    total = time.perf_counter() - start
    return {"clips": len(paths), "seconds": total, "forward_seconds": forward, "clips_per_s": len(paths) / total,
            "forward_clips_per_s": len(paths) / forward, "embeddings": np.stack(embeddings)}


def job(model_dir: Path, clips_dir: Path, output: Path, actors: int, precision: str, batch_size: int) -> dict:
    from signclip.jobs.embed import EmbedOptions, run

    summary = run(EmbedOptions(model=str(model_dir), input=str(clips_dir), output=str(output), actors=actors,
                               precision=precision, batch_size=batch_size, shard_rows=512))
    return {"actors": actors, "precision": precision, "clips": summary.ok + summary.failed, "ok": summary.ok,
            "seconds": summary.seconds, "clips_per_s": summary.clips_per_s, "resources": summary.resources}


def compute_ceiling(cfg: signclip.ModelConfig, frames: list[int]) -> float:
    """Pose-tower FLOPs per clip padded to max_frames, over the mean at the true lengths (+ CLS and SEP)."""
    v = cfg.video

    def flops(tokens: int) -> float:
        return tower_flops(v.hidden_size, v.intermediate_size, v.num_layers, tokens)

    return flops(cfg.max_frames + 2) / float(np.mean([flops(min(t, cfg.max_frames) + 2) for t in frames]))


def movement(a: np.ndarray, b: np.ndarray) -> dict:
    """How far embeddings ``b`` are from ``a`` (rows aligned)."""
    diff = np.abs(a - b)
    rel = np.linalg.norm(a - b, axis=1) / np.linalg.norm(a, axis=1)
    cos = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return {"max_abs_diff": float(diff.max()), "mean_rel_l2": float(rel.mean()), "max_rel_l2": float(rel.max()),
            "min_cosine": float(cos.min())}


def _combine(a: dict, b: dict) -> dict:
    clips = a["clips"] + b["clips"]
    return {"clips": clips, "seconds": a["seconds"] + b["seconds"], "forward_seconds": a["forward_seconds"] +
            b["forward_seconds"], "clips_per_s": clips / (a["seconds"] + b["seconds"]),
            "forward_clips_per_s": clips / (a["forward_seconds"] + b["forward_seconds"]),
            "before_clips_per_s": a["clips_per_s"], "after_clips_per_s": b["clips_per_s"],
            "embeddings": np.concatenate([a["embeddings"], b["embeddings"]])}


def run_jobs(args: argparse.Namespace, work: Path) -> tuple[list[dict], dict | None]:
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    try:
        runs = []
        for actors in (int(a) for a in args.actors.split(",")):
            runs.append(job(work / "model", work / "clips", work / f"out-{actors}", actors, "fp32", args.batch_size))
            runs[-1]["load_average"] = os.getloadavg()[0]
            print(f"job fp32, {actors} actor(s): {runs[-1]['clips_per_s']:.2f} clips/s ({runs[-1]['clips']} clips "
                  f"in {runs[-1]['seconds']:.1f}s, load average {runs[-1]['load_average']:.1f})", flush=True)
        bf16 = None
        if args.bf16:
            bf16 = job(work / "model", work / "clips", work / "out-bf16", runs[0]["actors"], "bf16", args.batch_size)
            bf16["load_average"] = os.getloadavg()[0]
            print(f"job bf16, {bf16['actors']} actor(s): {bf16['clips_per_s']:.2f} clips/s", flush=True)
    finally:
        ray.shutdown()
    return runs, bf16


def aligned(directory: Path, ids: list[str]) -> np.ndarray:
    corpus = embedding_store.load(str(directory))
    row = dict(zip(corpus.meta["id"], range(len(corpus))))
    return corpus.embeddings[[row[i] for i in ids]]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="e7.2", help="model preset (default e7.2; tiny for a smoke run)")
    parser.add_argument("--clips", type=int, default=2000, help="clips through the job (default 2000)")
    parser.add_argument("--reference-clips", type=int, default=40, help="clips for the reference side (default 40)")
    parser.add_argument("--variants", type=int, default=60, help="distinct time-warped clips (default 60)")
    parser.add_argument("--actors", default="1,2", help="actor counts to run, comma-separated (default 1,2)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="reference threads (default: all)")
    parser.add_argument("--batch-size", type=int, default=256, help="clips per actor call (default 256)")
    parser.add_argument("--bf16", action="store_true", help="also run the job in bf16 and measure the drift")
    parser.add_argument("--quick", action="store_true", help="200 clips, 12 reference clips")
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args(argv)
    if args.quick:
        args.clips, args.reference_clips = min(args.clips, 200), min(args.reference_clips, 12)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="bench-embed-") as tmp:
        work = Path(tmp)
        (work / "clips").mkdir()
        paths = make_clips(work / "clips", args.clips, args.variants)
        model = signclip.create(args.preset)
        model.save(str(work / "model"))
        lengths = [pose_features(str(p), model.cfg.feature_set).shape[0] for p in paths[:args.variants]]
        params = sum(p.numel() for p in model.parameters()) / 1e6
        print(f"preset {args.preset} ({params:.0f}M parameters), {args.clips} clips, mean {np.mean(lengths):.0f} "
              f"frames (min {min(lengths)}, max {max(lengths)}), {os.cpu_count()} cores", flush=True)

        # The reference side runs half before and half after the jobs, so that a change in the machine's
        # load during the run (shared machines) weighs on both sides alike.
        sample = list(np.random.default_rng(1).choice(len(paths), min(args.reference_clips, len(paths)),
                                                        replace=False))
        half = (len(sample) + 1) // 2
        before = reference_semantics(model, [paths[i] for i in sample[:half]])
        print(f"reference semantics, first half: {before['clips_per_s']:.2f} clips/s", flush=True)
        runs, bf16 = run_jobs(args, work)
        after = reference_semantics(model, [paths[i] for i in sample[half:]]) if sample[half:] else before
        ref = _combine(before, after) if sample[half:] else before
        sample_ids = [paths[i].stem for i in sample]
        fidelity = movement(ref["embeddings"], aligned(work / f"out-{runs[0]['actors']}", sample_ids))
        if bf16 is not None:
            ids = [p.stem for p in paths]
            bf16["drift_vs_fp32"] = movement(aligned(work / f"out-{runs[0]['actors']}", ids),
                                             aligned(work / "out-bf16", ids))

    result = {"preset": args.preset, "clips": args.clips, "mean_frames": float(np.mean(lengths)),
              "compute_ceiling": compute_ceiling(model.cfg, lengths),
              "threads": args.threads, "reference": {k: v for k, v in ref.items() if k != "embeddings"},
              "job": runs, "job_vs_reference_embeddings": fidelity, "bf16": bf16,
              "speedup": {f"{r['actors']} actor(s)": r["clips_per_s"] / ref["clips_per_s"] for r in runs}}
    if bf16 is not None:
        result["speedup"]["bf16"] = bf16["clips_per_s"] / ref["clips_per_s"]
    report(result)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))
    return result


def report(result: dict) -> None:
    ref = result["reference"]
    print(f"\n== {result['preset']}, {result['clips']} clips (mean {result['mean_frames']:.0f} frames) ==")
    print(f"reference semantics (batch 1, padded to 256, {result['threads']} threads): {ref['clips_per_s']:.2f} "
          f"clips/s incl. reading (forward only {ref['forward_clips_per_s']:.2f}); before/after the jobs "
          f"{ref.get('before_clips_per_s', ref['clips_per_s']):.2f} / "
          f"{ref.get('after_clips_per_s', ref['clips_per_s']):.2f}")
    print(f"compute ceiling (pose-tower FLOPs padded to 256 / at the true lengths): {result['compute_ceiling']:.2f}x")
    for r in result["job"]:
        print(f"job fp32, {r['actors']} actor(s): {r['clips_per_s']:.2f} clips/s = "
              f"{r['clips_per_s'] / ref['clips_per_s']:.1f}x reference")
    print(f"job vs reference-semantics embeddings (same clips): max |diff| "
          f"{result['job_vs_reference_embeddings']['max_abs_diff']:.2e}")
    if result["bf16"]:
        b = result["bf16"]
        print(f"job bf16, {b['actors']} actor(s): {b['clips_per_s']:.2f} clips/s = "
              f"{b['clips_per_s'] / ref['clips_per_s']:.1f}x reference; vs fp32: "
              + ", ".join(f"{k} {v:.3g}" for k, v in b["drift_vs_fp32"].items()))


if __name__ == "__main__":
    main()
