"""Embedder throughput against the reference's inference semantics, same weights, same threads.

    .venv/bin/python tests/benchmarks/bench_embedder.py [--clips 1000] [--reference-clips 60]

Reference semantics (the original API path): each clip alone, zero-padded to 256 frames (258 positions);
each text alone, padded to 63 tokens, and the pose tower also run on a dummy 256-frame pose per text
(the original's text path did that). Ours: ``Embedder`` with length-sorted batches at the true length.
Features are computed once up front: featurisation costs the same on both sides and is not timed.
The reference side runs on a random subset (it is slow); rates are per item.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import signclip
from signclip.io import sample_data
from signclip.model.embedder import Embedder
from signclip.model.prompts import SIGN_LANGUAGES, build_prompt
from signclip.pose.features import collate, pose_features

GLOSSES = ["house", "sad", "library", "police", "mother", "father", "school", "water", "thank you", "good morning",
           "how are you", "book", "friend", "teacher", "coffee", "tomorrow"]


def real_clips(n: int) -> list[np.ndarray]:
    names = [p for p in sample_data.LABELLED_POSES] + ["poses/refined-face-553.pose"]
    base = [pose_features(str(sample_data.path(p))) for p in names]
    return [base[i % len(base)] for i in range(n)]


def prompts(n: int) -> list[str]:
    langs = sorted(SIGN_LANGUAGES)
    return [build_prompt(GLOSSES[i % len(GLOSSES)], langs[(i // len(GLOSSES)) % len(langs)]) for i in range(n)]


def reference_pose_rate(model: signclip.SignCLIP, clips: list[np.ndarray]) -> float:
    start = time.perf_counter()
    with torch.inference_mode():
        for clip in clips:
            frames, mask = collate([clip[:256]], max_frames=256)
            model.encode_pose(torch.from_numpy(frames), torch.from_numpy(mask))
    return len(clips) / (time.perf_counter() - start)


def reference_text_rate(model: signclip.SignCLIP, texts: list[str]) -> float:
    dummy = torch.randn(1, 256, model.cfg.feature_dim)
    dummy_mask = torch.ones(1, 256, dtype=torch.bool)
    start = time.perf_counter()
    with torch.inference_mode():
        for text in texts:
            ids, mask = model.tokenizer.batch(model.tokenizer.ids([text]))
            padded = np.full((1, 63), model.tokenizer.pad_id)
            padded_mask = np.zeros((1, 63), bool)
            padded[:, : ids.shape[1]], padded_mask[:, : ids.shape[1]] = ids, mask
            model.encode_text(torch.from_numpy(padded), torch.from_numpy(padded_mask))
            model.encode_pose(dummy, dummy_mask)
    return len(texts) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="e7.2")
    parser.add_argument("--clips", type=int, default=1000)
    parser.add_argument("--reference-clips", type=int, default=60)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = signclip.create(args.preset)
    clips, texts = real_clips(args.clips), prompts(args.clips)
    rng = np.random.default_rng(0)
    sample = [clips[i] for i in rng.choice(len(clips), args.reference_clips, replace=False)]
    text_sample = [texts[i] for i in rng.choice(len(texts), args.reference_clips, replace=False)]
    print(f"preset {args.preset}, {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, "
          f"{args.threads} threads, mean clip {np.mean([c.shape[0] for c in clips]):.0f} frames")

    ref_pose = reference_pose_rate(model, sample)
    start = time.perf_counter()
    Embedder(model).embed_features(clips)
    ours_pose = len(clips) / (time.perf_counter() - start)
    print(f"poses: reference semantics {ref_pose:.2f} clips/s ({len(sample)} clips), "
          f"embedder {ours_pose:.2f} clips/s ({len(clips)} clips), ratio {ours_pose / ref_pose:.2f}x")

    ref_text = reference_text_rate(model, text_sample)
    start = time.perf_counter()
    Embedder(model).embed_texts(texts)
    ours_text = len(texts) / (time.perf_counter() - start)
    print(f"texts: reference semantics {ref_text:.2f} texts/s ({len(text_sample)} texts), "
          f"embedder {ours_text:.2f} texts/s ({len(texts)} texts), ratio {ours_text / ref_text:.2f}x")


if __name__ == "__main__":
    main()
