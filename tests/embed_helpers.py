"""Inputs for the embed / evaluate / search tests, made in temporary folders from the real sample poses.

The real files are only read; what is written here (bad files, a long clip, time-warped copies) lives
under pytest's tmp_path.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from pose_format import Pose
from pose_format.numpy.pose_body import NumPyPoseBody

LABELLED = {"house-colin-1": "house", "house-spreadthesign": "house", "sad-colin": "sad", "library": "library"}
NOT_HOLISTIC = ("reduced-holistic-178", "openpose-137")


def tiny_model(directory: Path) -> Path:
    import signclip

    signclip.create("tiny").save(str(directory))
    return directory


def read(path: Path) -> Pose:
    return Pose.read(path.read_bytes())


def write(pose: Pose, path: Path) -> Path:
    buffer = io.BytesIO()
    pose.write(buffer)
    path.write_bytes(buffer.getvalue())
    return path


def with_frames(pose: Pose, data: np.ndarray, confidence: np.ndarray) -> Pose:
    return Pose(pose.header, NumPyPoseBody(fps=pose.body.fps, data=data, confidence=confidence))


def long_clip(source: Path, target: Path, repeats: int = 3) -> Path:
    """The real clip played ``repeats`` times in a row (house-colin-1: 3 x 93 = 279 > 256 frames)."""
    pose = read(source)
    data = np.ma.concatenate([pose.body.data] * repeats)
    return write(with_frames(pose, data, np.concatenate([pose.body.confidence] * repeats)), target)


def zero_frames(source: Path, target: Path) -> Path:
    pose = read(source)
    return write(with_frames(pose, pose.body.data[:0], pose.body.confidence[:0]), target)


def warped_copies(source: Path, folder: Path, n: int, seed: int) -> list[Path]:
    """``n`` time-warped copies (signclip.pose.augment's speed change), so that copies embed differently."""
    from signclip.pose.augment import Augmentation

    augment = Augmentation(temporal_std=0.25)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        pose = augment(read(source), rng)
        out.append(write(pose, folder / f"{source.stem}-{i}.pose"))
    return out


def bad_inputs(folder: Path, poses_dir: Path) -> dict[str, Path]:
    """id -> path of each bad input, plus a long clip (valid, over 256 frames)."""
    folder.mkdir(parents=True, exist_ok=True)
    garbage = folder / "garbage.pose"
    garbage.write_bytes(b"this is not a pose file at all" * 10)
    empty = folder / "empty.pose"
    empty.write_bytes(b"")
    return {
        "garbage": garbage,
        "empty": empty,
        "zero-frames": zero_frames(poses_dir / "library.pose", folder / "zero-frames.pose"),
        "long": long_clip(poses_dir / "house-colin-1.pose", folder / "long.pose"),
        "missing": folder / "does-not-exist.pose",
        **{name: poses_dir / f"{name}.pose" for name in NOT_HOLISTIC},
    }


def manifest_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    import pandas as pd

    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def write_corpus(work: Path, poses_dir: Path, model_dir: Path, extra: dict[str, Path] | None = None) -> str:
    """An embedding directory of the labelled real poses (+ ``extra`` id -> path), written by the embed job's
    own stages called in-process (no Ray), with a failed clip and a prompt row that searches must skip."""
    from signclip.embedding.stages import EmbedActor, RunSpec, featurize, model_spec, write_shard

    clips = {**{name: poses_dir / f"{name}.pose" for name in LABELLED}, **(extra or {}),
             "openpose-137": poses_dir / "openpose-137.pose"}
    ids = list(clips)
    batch = {"id": np.array(ids + ["prompt"], dtype=object),
             "kind": np.array(["pose"] * len(ids) + ["text"], dtype=object),
             "source": np.array([str(p) for p in clips.values()] + ["prompts.txt:1"], dtype=object),
             "text": np.array([""] * len(ids) + ["<en> <ase> house"], dtype=object),
             "gloss": np.array([LABELLED.get(i, "") for i in ids] + [""], dtype=object),
             "language": np.array(["ase" if i in LABELLED else "" for i in ids] + [""], dtype=object)}
    spec = RunSpec(**model_spec(str(model_dir)), output=str(work / "emb"), run_id="r1")
    write_shard(EmbedActor(spec)(featurize(batch, spec)), spec)
    return str(work / "emb")
