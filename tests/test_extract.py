"""The extraction job on the session's local Ray (2 CPUs): real videos, bad inputs, resume, s3://, and a
worker killed mid-run."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pandas as pd
import pytest
from pose_format import Pose

from signclip.extraction.extract_video import VideoTask, process_video
from signclip.extraction.holistic import HolisticRunner
from signclip.io import manifests, storage
from signclip.jobs.extract import MANIFEST_NAME, ExtractConfig, main, run
from tests.test_extraction_unit import make_bad_inputs

pytestmark = [pytest.mark.ray, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

COLUMNS = ["id", "video_path", "pose_path", "frames", "fps", "width", "height", "seconds", "status", "error",
           "warning", "worker", "started_at", "holistic"]


def copy_videos(videos_dir: Path, target: Path, layout: dict[str, str]) -> Path:
    """Copies of the real videos under ``target``: relative path -> source file name."""
    for relative, name in layout.items():
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(videos_dir / name, target / relative)
    return target


def read_manifest(output: str) -> pd.DataFrame:
    return manifests.read_manifest(storage.join(output, MANIFEST_NAME)).set_index("id")


@pytest.mark.timeout(240)
def test_a_run_over_part_of_the_input_keeps_the_manifest_rows_of_the_rest(ray_local, tmp_path, videos_dir):
    src = copy_videos(videos_dir, tmp_path / "in", {"a.mp4": "sample_video.mp4", "b.mp4": "sample_video.mp4"})
    out = tmp_path / "out"
    assert main(["--input", str(src), "--output", str(out), "--no-progress"]) == 0
    first = read_manifest(str(out))
    assert main(["--input", str(src / "a.mp4"), "--output", str(out), "--no-progress"]) == 0
    rows = read_manifest(str(out))
    assert rows["status"].to_dict() == {"a": "skipped", "b": "ok"}  # b's row is the first run's
    assert rows.loc["b"].to_dict() == first.loc["b"].to_dict()
    # other Holistic options: the poses they would change are made again, not kept
    assert main(["--input", str(src), "--output", str(out), "--no-progress",
                 "--holistic-options", "min_detection_confidence=0.6"]) == 0
    rows = read_manifest(str(out))
    assert rows["status"].to_dict() == {"a": "ok", "b": "ok"}
    assert {json.loads(h)["min_detection_confidence"] for h in rows["holistic"]} == {0.6}
    (out / "manifest.parquet").write_bytes(b"not parquet")  # an unreadable earlier manifest: replaced
    assert main(["--input", str(src / "a.mp4"), "--output", str(out), "--no-progress"]) == 0
    assert read_manifest(str(out))["status"].to_dict() == {"a": "skipped"}


@pytest.mark.timeout(240)
def test_a_video_listed_under_two_ids_gets_one_pose_and_a_manifest_row_for_each(ray_local, tmp_path, videos_dir):
    src = copy_videos(videos_dir, tmp_path / "in", {"long.mp4": "sample_video.mp4", "other.mp4": "test_video.mp4"})
    pd.DataFrame({"id": ["house-1", "sad", "house-2"], "path": ["long.mp4", "other.mp4", "long.mp4"]}).to_csv(
        src / "clips.csv", index=False)
    out = tmp_path / "out"
    summary = run(ExtractConfig(input=str(src / "clips.csv"), output=str(out), progress=False))
    assert (summary.videos, summary.ok) == (2, 2)
    rows = read_manifest(str(out))
    assert sorted(rows.index) == ["house-1", "house-2", "sad"]
    assert rows.loc["house-1"].to_dict() == {**rows.loc["house-2"].to_dict()}  # one pose, the same row
    assert Path(rows.loc["house-2", "pose_path"]) == out / "long.pose" and rows.loc["house-2", "status"] == "ok"
    assert sorted(p.name for p in out.glob("*.pose")) == ["long.pose", "other.pose"]
    again = run(ExtractConfig(input=str(src / "clips.csv"), output=str(out), progress=False))
    assert (again.videos, again.skipped) == (2, 2)
    assert read_manifest(str(out))["status"].to_dict() == {"house-1": "skipped", "sad": "skipped",
                                                          "house-2": "skipped"}


@pytest.mark.timeout(240)
def test_extracts_folder_with_bad_inputs_then_resumes(ray_local, tmp_path, videos_dir):
    src = copy_videos(videos_dir, tmp_path / "in", {"signer1/sample.mp4": "sample_video.mp4",
                                                    "signer2/deep/test.mp4": "test_video.mp4"})
    make_bad_inputs(src / "bad", videos_dir)
    out = tmp_path / "out"
    argv = ["--input", str(src), "--output", str(out), "--no-progress", "--min-actors", "2"]

    assert main(argv) == 1  # some videos failed, the others finished
    rows = read_manifest(str(out))
    assert list(rows.reset_index().columns) == COLUMNS
    assert rows["status"].to_dict() == {
        "bad/codec": "failed", "bad/empty": "failed", "bad/nobody": "ok", "bad/text": "failed",
        "bad/truncated": "failed", "signer1/sample": "ok", "signer2/deep/test": "ok"}
    assert "empty file" in rows.loc["bad/empty", "error"]
    assert "not a video file" in rows.loc["bad/text", "error"]
    assert "truncated" in rows.loc["bad/truncated", "error"]
    assert "unknown codec" in rows.loc["bad/codec", "error"]
    assert "no person detected" in rows.loc["bad/nobody", "warning"]
    test = rows.loc["signer2/deep/test"]
    assert (test["frames"], test["width"], test["height"]) == (58, 540, 720)
    assert test["fps"] == pytest.approx(29.916666666666668, abs=1e-12)  # the float rate, not int(fps)
    assert test["pose_path"] == str(out / "signer2" / "deep" / "test.pose")
    assert Pose.read((out / "signer2/deep/test.pose").read_bytes()).body.data.shape == (58, 1, 576, 3)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.pose")) == [
        "bad/nobody.pose", "signer1/sample.pose", "signer2/deep/test.pose"]

    # the actor reused its Holistic graph across videos: the output still equals a fresh instance's
    fresh = tmp_path / "fresh.pose"
    process_video(VideoTask("s", str(src / "signer1/sample.mp4"), str(fresh)), HolisticRunner())
    assert (out / "signer1/sample.pose").read_bytes() == fresh.read_bytes()

    # a rerun skips what is done and retries what failed
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.pose")}
    assert main(argv) == 1
    rerun = read_manifest(str(out))
    assert rerun.loc[["signer1/sample", "signer2/deep/test", "bad/nobody"], "status"].tolist() == ["skipped"] * 3
    assert rerun.loc["signer2/deep/test", "frames"] == 58
    assert (rerun["status"] == "failed").sum() == 4
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.pose")} == before

    # --overwrite redoes them
    summary = run(ExtractConfig(input=str(src / "signer1"), output=str(out / "signer1"), overwrite=True,
                                progress=False))
    assert (summary.ok, summary.skipped, summary.failed) == (1, 0, 0)
    assert (out / "signer1/sample.pose").stat().st_mtime_ns != before[out / "signer1/sample.pose"]


@pytest.mark.timeout(180)
def test_s3_input_and_output(ray_local, s3_bucket, videos_dir):
    storage.write_bytes_atomic(f"{s3_bucket}/videos/a/sample.mp4", (videos_dir / "sample_video.mp4").read_bytes())
    storage.write_bytes_atomic(f"{s3_bucket}/videos/empty.mp4", b"")
    listing = pd.DataFrame({"id": ["clip-1", "clip-2"], "path": ["a/sample.mp4", "empty.mp4"]})
    storage.write_bytes_atomic(f"{s3_bucket}/videos/list.csv", listing.to_csv(index=False).encode())
    output = f"{s3_bucket}/poses"

    summary = run(ExtractConfig(input=f"{s3_bucket}/videos/list.csv", output=output, progress=False))
    assert (summary.ok, summary.failed, summary.frames) == (1, 1, 9)
    rows = read_manifest(output)
    assert rows.loc["clip-1", "pose_path"] == f"{output}/a/sample.pose"
    assert rows.loc["clip-2", "error"] == "empty file (0 bytes)"
    pose = Pose.read(storage.read_bytes(f"{output}/a/sample.pose"))
    assert pose.body.data.shape == (9, 1, 576, 3) and pose.header.dimensions.width == 1280

    again = run(ExtractConfig(input=f"{s3_bucket}/videos/list.csv", output=output, progress=False))
    assert (again.skipped, again.failed) == (1, 1)


@pytest.mark.timeout(240)
def test_killed_worker_s_videos_are_extracted_again_and_reported_once(ray_local, tmp_path, videos_dir):
    layout = {f"v{i}.mp4": "test_video.mp4" for i in range(5)}
    src = copy_videos(videos_dir, tmp_path / "in", layout)
    out = tmp_path / "out"
    killed: list[int] = []

    def kill_first_worker(row: dict) -> None:
        if not killed:
            pid = int(row["worker"].rsplit(":", 1)[1])
            assert pid != os.getpid()
            os.kill(pid, signal.SIGKILL)  # the actor is busy with its next video now
            killed.append(pid)

    summary = run(ExtractConfig(input=str(src), output=str(out), progress=False, min_actors=2,
                                attempts=4), on_row=kill_first_worker)
    assert killed
    rows = manifests.read_manifest(str(out / MANIFEST_NAME))
    assert sorted(rows["id"]) == [f"v{i}" for i in range(5)]  # each exactly once
    assert (rows["status"] == "ok").all(), rows[["id", "status", "error"]]
    assert (rows["frames"] == 58).all()
    assert summary.ok == 5
    reference = (out / "v0.pose").read_bytes()
    assert all((out / f"v{i}.pose").read_bytes() == reference for i in range(5))
    with pytest.raises(ProcessLookupError):
        os.kill(killed[0], 0)


@pytest.mark.timeout(180)
def test_video_lost_with_its_worker_is_reported_failed_once(ray_local, tmp_path, videos_dir):
    """One attempt only: the videos the killed worker held are reported failed, the others finish."""
    src = copy_videos(videos_dir, tmp_path / "in", {f"v{i}.mp4": "test_video.mp4" for i in range(4)})
    out = tmp_path / "out"
    killed: list[int] = []

    def kill_first_worker(row: dict) -> None:
        if not killed:
            killed.append(int(row["worker"].rsplit(":", 1)[1]))
            os.kill(killed[0], signal.SIGKILL)

    summary = run(ExtractConfig(input=str(src), output=str(out), progress=False, min_actors=2,
                                attempts=1), on_row=kill_first_worker)
    rows = manifests.read_manifest(str(out / MANIFEST_NAME))
    assert sorted(rows["id"]) == [f"v{i}" for i in range(4)]
    lost = rows[rows["status"] == "failed"]
    assert len(lost) >= 1 and lost["error"].str.contains("worker process died").all()
    assert summary.ok + summary.failed == 4 and summary.ok >= 1
    for path in rows.loc[rows["status"] == "ok", "pose_path"]:
        assert Pose.read(Path(path).read_bytes()).body.data.shape[0] == 58
