"""Training on Ray Train: it learns from real poses, 2 workers == 1 worker, a killed driver's rerun resumes."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from pose_format import Pose

import signclip
from signclip.extraction.holistic import pose_to_bytes
from signclip.jobs import train
from signclip.pose.augment import Augmentation, augmented_copies
from signclip.pose.holistic_module import pose_format_holistic

pytestmark = pytest.mark.ray

GLOSSES = {"house-colin-1": "house", "house-spreadthesign": "house", "sad-colin": "sad", "library": "library"}


def _video_pose(path: Path) -> Pose:
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    h, w = frames[0].shape[:2]
    return pose_format_holistic().load_holistic(frames, fps=fps, width=w, height=h, progress=False,
                                           additional_holistic_config={"model_complexity": 1})


@pytest.fixture(scope="module")
def sources(poses_dir, videos_dir, tmp_path_factory) -> dict[str, tuple[str, str]]:
    """name -> (pose path, gloss): the 4 labelled real poses and 2 poses extracted from the real videos."""
    out = {name: (str(poses_dir / f"{name}.pose"), gloss) for name, gloss in GLOSSES.items()}
    folder = tmp_path_factory.mktemp("video-poses")
    for video, gloss in [("test_video", "test video"), ("sample_video", "sample video")]:
        target = folder / f"{video}.pose"
        target.write_bytes(pose_to_bytes(_video_pose(videos_dir / f"{video}.mp4")))
        out[video] = (str(target), gloss)
    return out


def _manifest(rows: list[tuple[str, str]], path: Path) -> str:
    pd.DataFrame([{"pose": p, "gloss": g, "sign_language": "ase"} for p, g in rows]).to_csv(path, index=False)
    return str(path)


def _augmented_copies(sources, folder: Path, copies: int, seed: int) -> list[tuple[str, str]]:
    """Different augmented copies of every source, written as .pose files (the validation set)."""
    folder.mkdir(parents=True, exist_ok=True)
    aug = Augmentation(temporal_std=0.15, rotation_std=0.1, shear_std=0.1, scale_std=0.1)
    rows = []
    for i, (name, (path, gloss)) in enumerate(sources.items()):
        for k, pose in enumerate(augmented_copies(Pose.read(Path(path).read_bytes()), copies, seed + i, aug)):
            target = folder / f"{name}-{k}.pose"
            target.write_bytes(pose_to_bytes(pose))
            rows.append((str(target), gloss))
    return rows


def _history(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.timeout(600)
def test_learns_real_signs(ray_local, sources, tmp_path):
    train_rows = [(p, g) for p, g in sources.values()] * 12
    val_rows = _augmented_copies(sources, tmp_path / "val", copies=2, seed=99)
    run = tmp_path / "run"
    code = train.main(["--train", _manifest(train_rows, tmp_path / "train.csv"),
                       "--val", _manifest(val_rows, tmp_path / "val.csv"), "--output", str(run),
                       "--preset", "tiny", "--epochs", "8", "--batch-size", "5", "--unique-texts",
                       "--lr", "2e-3", "--warmup-steps", "10", "--rotation-std", "0.1", "--shear-std", "0.1",
                       "--scale-std", "0.1", "--noise-std", "0.005", "--workers", "1", "--cpus-per-worker", "1"])
    assert code == 0
    history = _history(run)
    final = [h for h in history if "val_R@1" in h][-1]
    assert final["val_R@1"] >= 0.9, history
    for name in ("metrics.csv", "metrics.json", "curves.png", "best/model.safetensors"):
        assert (run / name).exists(), name
    best = signclip.load(run / "best")  # the native format opens directly
    emb = best.embed_poses([val_rows[0][0]])
    assert emb.shape == (1, best.cfg.embedding_dim)


def _equivalence_run(sources, tmp_path: Path, workers: int) -> tuple[list[float], np.ndarray]:
    rows = [(p, g) for p, g in sources.values()] * 2
    run = tmp_path / f"run{workers}"
    code = train.main(["--train", _manifest(rows, tmp_path / "train.csv"), "--val", _manifest(rows[:4], tmp_path / "val.csv"),
                       "--output", str(run), "--preset", "tiny", "--epochs", "1", "--batch-size", "4", "--lr", "1e-3",
                       "--warmup-steps", "1", "--dropout", "0", "--temporal-std", "0", "--checkpoint-every", "1",
                       "--workers", str(workers), "--cpus-per-worker", "0.5"])
    assert code == 0
    losses = [h["train_loss"] for h in _history(run)]  # steps 1, 2 (checkpoints), then the epoch's mean
    weights = signclip.load(run / "best").video_encoder.videomlp.linear1.weight.detach().numpy()
    return losses, weights


@pytest.mark.timeout(600)
def test_two_workers_train_like_one(ray_local, sources, tmp_path):
    one_losses, one_weights = _equivalence_run(sources, tmp_path, 1)
    two_losses, two_weights = _equivalence_run(sources, tmp_path, 2)
    assert len(one_losses) == len(two_losses) == 3  # 3 steps: 2 step checkpoints + the epoch's row
    np.testing.assert_allclose(two_losses, one_losses, rtol=1e-4)  # the same global batches and gradients
    np.testing.assert_allclose(two_weights, one_weights, atol=1e-5)


def _train_args(sources, tmp_path: Path, epochs: int) -> list[str]:
    rows = [(p, g) for p, g in sources.values()] * 4
    return ["--train", _manifest(rows, tmp_path / "train.csv"), "--val", _manifest(rows[:6], tmp_path / "val.csv"),
            "--output", str(tmp_path / "run"), "--preset", "tiny", "--epochs", str(epochs), "--batch-size", "4",
            "--checkpoint-every", "2", "--workers", "2", "--cpus-per-worker", "0.5", "--max-failures", "2"]


@pytest.mark.timeout(600)
def test_rerun_resumes_from_latest_checkpoint(ray_local, sources, tmp_path):
    """A driver killed mid-run; the same command again continues at the checkpointed step. (Ray Train's own
    restart of lost workers is tested by losing a whole node: tests/test_isolated_cluster.py.)"""
    args = _train_args(sources, tmp_path, epochs=3)
    env = dict(os.environ, RAY_ADDRESS=ray_local.get_runtime_context().gcs_address)
    proc = subprocess.Popen([sys.executable, "-m", "signclip.jobs.train", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = tmp_path / "run"
    deadline = time.monotonic() + 300
    try:
        while not (run / "metrics.jsonl").exists() or len(_history(run)) < 3:
            assert proc.poll() is None and time.monotonic() < deadline, "the first run ended before a checkpoint"
            time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert max(h["step"] for h in _history(run)) < 3 * (24 // 4), "the driver was killed after the run ended"
    assert train.main(args) == 0
    steps = [h["step"] for h in _history(run)]
    # rows logged after the restored checkpoint are dropped and redone; a restart from scratch would log 1, 2, ...
    assert all(b > a for a, b in itertools.pairwise(steps)), steps
    assert steps[-1] == 3 * (24 // 4)  # every planned step of the 3 epochs


@pytest.mark.timeout(300)
def test_the_input_check_of_a_large_manifest_keeps_no_features_in_the_driver(ray_local, poses_dir, tmp_path):
    n = train.CHECK_IN_DRIVER_ROWS + 44  # more than the driver checks itself: featurised by Ray Data tasks
    names = ["sad-colin", "house-colin-1", "library"]
    pairs = pd.DataFrame({"pose": [str(poses_dir / f"{names[i % 3]}.pose") for i in range(n)],
                          "text": [f"<en> <ase> {names[i % 3]}" for i in range(n)]})
    pairs.loc[7, "pose"] = str(tmp_path / "gone.pose")
    ok, rejected = train.check_inputs(pairs, "reduced_face", 0.25, keep_features=False)
    assert "frames" not in ok.columns and list(ok["row"]) == [r for r in range(n) if r != 7]
    assert list(rejected["pose"]) == [str(tmp_path / "gone.pose")] and "gone.pose" in rejected["error"].iloc[0]
    with_features, _ = train.check_inputs(pairs, "reduced_face", 0.25)
    assert with_features["length"].tolist() == ok["length"].tolist()
    assert with_features["frames"].map(len).tolist() == [4 * 609 * length for length in ok["length"]]
