"""Prepared GPU check: training-step throughput and model FLOPs utilisation at E7.2 size, bf16.

    python tests/benchmarks/gpu_train_step.py [--batch-size 64] [--steps 20] [--frames 98] [--peak-tflops 989]
    python tests/benchmarks/gpu_train_step.py --device cpu --preset tiny --steps 1 --clips 64   # a smoke run

Runs the real training step (``signclip.training.step.Stepper``: both towers, reference loss, Adam, clipping)
on random features of the Spreadthesign mean clip length, a single GPU, bf16 autocast. FLOPs per sample
~= 6 x parameters-in-matmuls x tokens (forward + backward), counted per tower; MFU = achieved / peak
(H100 SXM dense bf16: 989 TFLOP/s). Also reports embedding throughput (inference) at the same size.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import signclip
from signclip.model.embedder import Embedder
from signclip.training.step import Stepper, TrainConfig, loss_for, make_optimizer


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def tower_flops(hidden: int, inter: int, layers: int, tokens: int) -> float:
    per_token = layers * (4 * hidden * hidden + 2 * hidden * inter) * 2  # matmul MACs x 2
    attention = layers * 2 * 2 * tokens * hidden  # QK^T and AV
    return tokens * (per_token + attention)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--frames", type=int, default=98)
    parser.add_argument("--text-tokens", type=int, default=12)
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--preset", default="e7.2")
    parser.add_argument("--clips", type=int, default=4000, help="clips of the embedding-throughput pass")
    args = parser.parse_args()
    device = torch.device(args.device)
    model = signclip.create(args.preset).to(device)
    cfg = TrainConfig(precision="bf16", warmup_steps=1)
    optimizer, scheduler = make_optimizer(model, cfg)
    step = Stepper(model, loss_for(model, cfg, distributed=False), optimizer, scheduler, cfg, device)
    b = args.batch_size
    frames = torch.randn(b, args.frames, model.cfg.feature_dim, device=device)
    frame_mask = torch.ones(b, args.frames, dtype=torch.bool, device=device)
    ids = torch.randint(1000, 20000, (b, args.text_tokens), device=device)
    text_mask = torch.ones_like(ids, dtype=torch.bool)
    for _ in range(3):
        step((frames, frame_mask, ids, text_mask))
    synchronize(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        step((frames, frame_mask, ids, text_mask))
    synchronize(device)
    elapsed = time.perf_counter() - start
    rate = b * args.steps / elapsed
    v, t = model.cfg.video, model.cfg.text
    flops = 3 * (tower_flops(v.hidden_size, v.intermediate_size, v.num_layers, args.frames + 2)
                 + tower_flops(t.hidden_size, t.intermediate_size, t.num_layers, args.text_tokens))
    mfu = rate * flops / (args.peak_tflops * 1e12)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"{name}: train step batch {b}, {args.frames} frames: {rate:.1f} samples/s, "
          f"{flops / 1e9:.1f} GFLOP/sample, MFU {mfu * 100:.1f}% of {args.peak_tflops:.0f} TFLOP/s")
    clips = [np.random.randn(int(n), model.cfg.feature_dim).astype(np.float32)
             for n in np.random.default_rng(0).integers(40, 226, args.clips)]
    for precision in ("fp32", "bf16"):
        embedder = Embedder(model, precision=precision, max_batch_size=256, max_batch_frames=65536)
        embedder.embed_features(clips[:256])
        synchronize(device)
        start = time.perf_counter()
        embedder.embed_features(clips)
        synchronize(device)
        print(f"embedding {precision}: {len(clips) / (time.perf_counter() - start):.0f} clips/s")


if __name__ == "__main__":
    main()
