"""The Ray-free half of video -> pose extraction: decode, Holistic options and reset, pose building,
per-video status, planning, manifests. Real videos from the shared sample data; MediaPipe on CPU."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pose_format import Pose

from signclip.extraction.extract_video import MANIFEST_SCHEMA, VideoTask, process_video, read_pose_summary
from signclip.extraction.holistic import HolisticConfig, HolisticRunner, parse_options
from signclip.extraction.plan import plan
from signclip.extraction.video import VideoError, open_video
from signclip.io import manifests, storage

BIN = Path(sys.executable).parent

pytestmark = pytest.mark.filterwarnings("ignore:label\\(\\) is deprecated:DeprecationWarning")


# ------------------------------------------------------------------------------------------- helpers

def write_video(path: Path, frames: list[np.ndarray], fps: float = 24.0) -> Path:
    """Write BGR frames with OpenCV (mp4v), as a test corpus needs."""
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def bgr_frames(video: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            return frames
        frames.append(frame)


def make_bad_inputs(folder: Path, videos_dir: Path) -> dict[str, Path]:
    """One file per kind of bad input, named by kind."""
    folder.mkdir(parents=True, exist_ok=True)
    real = (videos_dir / "test_video.mp4").read_bytes()
    bad = {
        "empty": folder / "empty.mp4",
        "text": folder / "text.mp4",
        "truncated": folder / "truncated.mp4",
        "codec": folder / "codec.mp4",
    }
    bad["empty"].write_bytes(b"")
    bad["text"].write_text("this is a text file, not a video\n")
    bad["truncated"].write_bytes(real[: len(real) // 2])
    bad["codec"].write_bytes(real.replace(b"avc1", b"zzz9"))  # the sample entry names a codec nobody has
    bad["nobody"] = write_video(folder / "nobody.mp4", [np.zeros((240, 320, 3), np.uint8)] * 12)
    return bad


def read_pose(path: str | Path) -> Pose:
    return Pose.read(storage.read_bytes(str(path)))


# ------------------------------------------------------------------------------------------- decoding

@pytest.mark.parametrize("name,frames,width,height,fps", [
    ("sample_video.mp4", 9, 1280, 720, 24.0),
    ("test_video.mp4", 58, 540, 720, 29.916666666666668),
])
def test_decode_streams_rgb_frames_and_metadata(videos_dir, name, frames, width, height, fps):
    from simple_video_utils.frames import read_frames_exact  # pose-format's decoder (PyAV)

    reference = read_frames_exact(str(videos_dir / name))
    with open_video(str(videos_dir / name)) as video:
        assert (video.info.width, video.info.height, video.info.declared_frames) == (width, height, frames)
        assert video.info.fps == pytest.approx(fps, abs=1e-9)
        assert video.info.codec == "h264"
        count = 0
        for ours, theirs in zip(video, reference, strict=True):
            assert ours.shape == (height, width, 3) and ours.dtype == np.uint8
            assert np.array_equal(ours, theirs)  # the same RGB pixels pose-format feeds Holistic
            count += 1
        assert count == frames == video.frames_read
        assert video.measured_fps() == pytest.approx(fps, rel=0.01)


def test_read_ahead_keeps_order_passes_errors_and_stops_early(videos_dir):
    from signclip.extraction.video import read_ahead

    with open_video(str(videos_dir / "test_video.mp4")) as video, read_ahead(video, 4) as frames:
        ahead = [f.copy() for f in frames]
    with open_video(str(videos_dir / "test_video.mp4")) as video:
        assert all(np.array_equal(a, b) for a, b in zip(ahead, video, strict=True))

    def failing():
        yield 1
        raise OSError("disk gone")

    with read_ahead(failing(), 2) as items:
        assert next(items) == 1
        with pytest.raises(OSError, match="disk gone"):
            next(items)
    with open_video(str(videos_dir / "test_video.mp4")) as video, read_ahead(video, 2) as frames:
        next(frames)  # leaving early stops the producer before the video closes


def test_decode_reads_s3(videos_dir, s3_bucket):
    uri = f"{s3_bucket}/v/sample.mp4"
    storage.write_bytes_atomic(uri, (videos_dir / "sample_video.mp4").read_bytes())
    with open_video(uri) as video:
        assert sum(1 for _ in video) == 9


@pytest.mark.parametrize("kind,message", [
    ("empty", "empty file (0 bytes)"),
    ("text", "not a video file: unrecognised container"),
    ("codec", "unsupported or unknown codec: no decoder for sample entry 'zzz9'"),
])
def test_unreadable_videos_are_explained(tmp_path, videos_dir, kind, message):
    bad = make_bad_inputs(tmp_path, videos_dir)
    with pytest.raises(VideoError, match=message.replace("(", r"\(").replace(")", r"\)")):
        with open_video(str(bad[kind])):
            pass


def test_missing_video_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        with open_video(str(tmp_path / "absent.mp4")):
            pass


# ------------------------------------------------------------------------------------------- options

def test_holistic_options_parse_validate_and_reject():
    assert HolisticConfig() == HolisticConfig.from_options({})
    config = HolisticConfig.from_options(parse_options("model_complexity=1, refine_face_landmarks=true,"
                                                       "min_detection_confidence=0.7"))
    assert config.refine_face_landmarks is True and config.min_detection_confidence == 0.7
    assert config.additional_face_points == 10 and config.as_kwargs()["model_complexity"] == 1
    with pytest.raises(ValueError, match="unknown Holistic option"):
        HolisticConfig.from_options({"model_complexityy": 1})
    with pytest.raises(ValueError, match=r"must be in \[0, 1\]"):
        HolisticConfig.from_options({"min_tracking_confidence": "1.5"})
    with pytest.raises(ValueError, match="must be true or false"):
        HolisticConfig.from_options({"smooth_landmarks": "maybe"})
    with pytest.raises(ValueError, match="must be 0, 1 or 2"):
        HolisticConfig.from_options({"model_complexity": 3})
    with pytest.raises(ValueError, match="not of the form name=value"):
        parse_options("refine_face_landmarks")


@pytest.mark.parametrize("complexity,model", [(0, "pose_landmark_lite.tflite"), (2, "pose_landmark_heavy.tflite")])
def test_options_needing_a_download_fail_up_front(complexity, model):
    from signclip.extraction.holistic import missing_model

    if missing_model(complexity) is None:
        pytest.skip(f"{model} is installed here")
    with pytest.raises(ValueError, match=f"model_complexity={complexity} needs {model}.*would download"):
        HolisticConfig.from_options({"model_complexity": complexity})
    with pytest.raises(ValueError, match="would download"):
        HolisticRunner(HolisticConfig(model_complexity=complexity))


# ------------------------------------------------------------------------------------------- Holistic

@pytest.fixture(scope="module")
def reused_runner_poses(videos_dir, tmp_path_factory) -> dict[str, bytes]:
    """Both real videos through ONE runner, the short one first."""
    out = tmp_path_factory.mktemp("reused")
    runner = HolisticRunner()
    poses = {}
    for name in ("sample_video", "test_video"):
        row = process_video(VideoTask(name, str(videos_dir / f"{name}.mp4"), str(out / f"{name}.pose")), runner)
        assert row["status"] == "ok", row
        poses[name] = (out / f"{name}.pose").read_bytes()
    runner.close()
    return poses


def test_reused_runner_equals_fresh_instance_byte_for_byte(reused_runner_poses, videos_dir, tmp_path):
    fresh = HolisticRunner()
    process_video(VideoTask("t", str(videos_dir / "test_video.mp4"), str(tmp_path / "fresh.pose")), fresh,
                  decode_ahead=3)  # decoding in a background thread changes nothing either
    assert (tmp_path / "fresh.pose").read_bytes() == reused_runner_poses["test_video"]


@pytest.mark.parametrize("name", ["sample_video", "test_video"])
def test_equals_pose_formats_video_to_pose(reused_runner_poses, videos_dir, tmp_path, name):
    """Same options (model_complexity=1) through pose-format's own CLI, in a fresh process."""
    reference = tmp_path / "ref.pose"
    subprocess.run([str(BIN / "video_to_pose"), "-i", str(videos_dir / f"{name}.mp4"), "-o", str(reference)],
                   check=True, capture_output=True)
    ours, theirs = Pose.read(reused_runner_poses[name]), Pose.read(reference.read_bytes())
    assert ours.header.dimensions == theirs.header.dimensions
    assert [(c.name, c.points) for c in ours.header.components] == [(c.name, c.points) for c in
                                                                      theirs.header.components]
    assert ours.body.data.shape == theirs.body.data.shape
    assert ours.body.fps == theirs.body.fps
    assert np.array_equal(ours.body.confidence, theirs.body.confidence)
    # measured: 0.0 (the files are byte-identical); allow float noise should a platform differ
    assert np.abs(ours.body.data.data - theirs.body.data.data).max() <= 1e-3
    assert reused_runner_poses[name] == reference.read_bytes()


def test_other_holistic_options_pass_through(videos_dir, tmp_path):
    """refine_face_landmarks=true: 478 face points, still equal to video_to_pose with the same options."""
    video = str(videos_dir / "sample_video.mp4")
    config = HolisticConfig.from_options(parse_options("refine_face_landmarks=true"))
    row = process_video(VideoTask("s", video, str(tmp_path / "ours.pose")), HolisticRunner(config))
    assert row["status"] == "ok"
    subprocess.run([str(BIN / "video_to_pose"), "-i", video, "-o", str(tmp_path / "ref.pose"),
                    "--additional-config", "model_complexity=1,refine_face_landmarks=true"],
                   check=True, capture_output=True)
    ours = read_pose(tmp_path / "ours.pose")
    assert [len(c.points) for c in ours.header.components] == [33, 478, 21, 21, 33]
    assert (tmp_path / "ours.pose").read_bytes() == (tmp_path / "ref.pose").read_bytes()
    assert read_pose_summary(str(tmp_path / "ours.pose"), config).frames == 9


def test_pose_layout_and_values(reused_runner_poses):
    pose = Pose.read(reused_runner_poses["test_video"])
    assert [(c.name, len(c.points)) for c in pose.header.components] == [
        ("POSE_LANDMARKS", 33), ("FACE_LANDMARKS", 468), ("LEFT_HAND_LANDMARKS", 21),
        ("RIGHT_HAND_LANDMARKS", 21), ("POSE_WORLD_LANDMARKS", 33)]
    assert pose.header.version == pytest.approx(0.2)
    assert pose.body.data.shape == (58, 1, 576, 3)
    assert pose.body.fps == pytest.approx(29.916666, abs=1e-5)  # a float, not int(fps)
    nose = pose.body.data[:, 0, 0, :2]  # in pixels of the 540x720 video (landmarks may leave the frame)
    assert nose.count() == 2 * 58 and 0 < nose[:, 0].min() < nose[:, 0].max() < 540 and 0 < nose[:, 1].max() < 720


# ------------------------------------------------------------------------------------------- one video

def test_bad_inputs_give_failed_rows_with_reasons(tmp_path, videos_dir):
    bad = make_bad_inputs(tmp_path / "in", videos_dir)
    runner = HolisticRunner()
    rows = {kind: process_video(VideoTask(kind, str(path), str(tmp_path / "out" / f"{kind}.pose")), runner)
            for kind, path in bad.items()}
    rows["missing"] = process_video(VideoTask("missing", str(tmp_path / "nope.mp4"), str(tmp_path / "m.pose")),
                                    runner)
    expected = {
        "empty": "empty file (0 bytes)",
        "text": "not a video file",
        "truncated": "truncated or corrupt video: decoded 23 of the 58 frames",
        "codec": "unsupported or unknown codec",
        "missing": "no such file",
    }
    for kind, message in expected.items():
        assert rows[kind]["status"] == "failed", rows[kind]
        assert message in rows[kind]["error"], rows[kind]
        assert rows[kind]["pose_path"] is None
        assert not (tmp_path / "out" / f"{kind}.pose").exists()
    nobody = rows["nobody"]
    assert nobody["status"] == "ok" and nobody["error"] == ""
    assert "no person detected" in nobody["warning"]
    pose = read_pose(nobody["pose_path"])
    assert pose.body.data.shape[0] == 12 and pose.body.data.mask.all()  # every point masked
    manifests.to_table(rows.values(), MANIFEST_SCHEMA)  # every row fits the manifest schema


def _variable_rate_video(path: Path, source: Path, container: str, codec: str) -> int:
    """The source's frames at 30 fps for a second, then at 10 fps: Matroska declares duration x 30 frames."""
    import fractions

    import av

    capture = cv2.VideoCapture(str(source))
    frames = []
    while (read := capture.read())[0]:
        frames.append(cv2.cvtColor(read[1], cv2.COLOR_BGR2RGB))
    stamps = [i * 33 for i in range(30)] + [990 + i * 100 for i in range(len(frames) - 30)]
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=30)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        stream.time_base = stream.codec_context.time_base = fractions.Fraction(1, 1000)
        for frame, ms in zip(frames, stamps):
            encoded = av.VideoFrame.from_ndarray(frame, format="rgb24")
            encoded.pts, encoded.time_base = ms, stream.time_base
            out.mux(stream.encode(encoded))
        out.mux(stream.encode())
    return len(frames)


@pytest.mark.parametrize("container, codec", [("matroska", "libx264"), ("webm", "libvpx")])
def test_a_variable_frame_rate_video_is_extracted_not_failed_as_truncated(tmp_path, videos_dir, container, codec):
    video = tmp_path / f"phone.{container}"
    frames = _variable_rate_video(video, videos_dir / "test_video.mp4", container, codec)
    declared = cv2.VideoCapture(str(video)).get(cv2.CAP_PROP_FRAME_COUNT)
    assert declared > frames * 1.5  # the premise: the container's count is duration x nominal rate
    row = process_video(VideoTask("phone", str(video), str(tmp_path / "phone.pose")), HolisticRunner())
    assert row["status"] == "ok" and row["frames"] == frames, row
    assert "variable frame rate" in row["warning"]
    pose = read_pose(row["pose_path"])
    duration = pose.body.data.shape[0] / pose.body.fps
    assert 3.5 < duration < 4.0, (pose.body.fps, duration)  # 1 s at 30 fps + 2.8 s at 10 fps, not 58/30 s


def test_an_audio_only_file_is_failed_for_having_no_video_stream(tmp_path):
    import av

    path = tmp_path / "voice-memo.mp4"
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=16000)
        for i in range(20):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    row = process_video(VideoTask("memo", str(path), str(tmp_path / "memo.pose")), HolisticRunner())
    assert row["status"] == "failed" and row["error"].startswith("no video stream: the file holds only audio"), row


def test_a_pose_made_with_other_holistic_options_is_made_again(tmp_path, videos_dir):
    from signclip.jobs.extract import earlier_manifest, rows_of_other_videos, with_recorded_options

    video, target = str(videos_dir / "sample_video.mp4"), tmp_path / "s.pose"
    runner = HolisticRunner()
    first = process_video(VideoTask("s", video, str(target)), runner)
    assert json.loads(first["holistic"]) == dataclasses.asdict(runner.config)
    manifests.write_manifest(manifests.to_table([first], MANIFEST_SCHEMA), str(tmp_path / "manifest.parquet"))
    earlier = earlier_manifest(str(tmp_path / "manifest.parquet"))
    planned = [VideoTask("s", video, str(target), pose_exists=True), VideoTask("t", video, "t.pose")]
    tasks = with_recorded_options(planned, earlier)
    assert [t.made_with for t in tasks] == [first["holistic"], ""]
    assert process_video(tasks[0], runner)["status"] == "skipped"  # the same options: kept
    other = HolisticRunner(HolisticConfig(min_detection_confidence=0.7))
    redone = process_video(tasks[0], other)
    assert redone["status"] == "ok" and json.loads(redone["holistic"])["min_detection_confidence"] == 0.7
    unknown = process_video(replace(tasks[0], made_with=""), other)  # options not recorded: the layout decides
    assert unknown["status"] == "skipped" and unknown["holistic"] == ""
    assert rows_of_other_videos(earlier, {"s"}).num_rows == 0 and rows_of_other_videos(earlier, {"x"}).num_rows == 1
    # a manifest of a version without the column reads, the options unknown
    pq.write_table(manifests.to_table([first], MANIFEST_SCHEMA).drop(["holistic"]), tmp_path / "old.parquet")
    assert earlier_manifest(str(tmp_path / "old.parquet"))["holistic"].to_pylist() == [None]


def test_resume_skips_valid_pose_and_redoes_bad_or_mismatched_ones(tmp_path, videos_dir):
    video = str(videos_dir / "sample_video.mp4")
    target = tmp_path / "s.pose"
    runner = HolisticRunner()
    first = process_video(VideoTask("s", video, str(target)), runner)
    assert first["status"] == "ok"
    good = target.read_bytes()

    again = process_video(VideoTask("s", video, str(target), pose_exists=True), runner)
    assert again["status"] == "skipped"
    assert (again["frames"], again["fps"], again["width"], again["height"]) == (9, 24.0, 1280, 720)

    assert process_video(VideoTask("s", video, str(target), pose_exists=True), runner,
                         overwrite=True)["status"] == "ok"

    target.write_bytes(good[: len(good) // 2])  # what a non-atomic writer killed mid-way would leave
    with pytest.raises(ValueError, match="unreadable"):
        read_pose_summary(str(target), runner.config)
    redone = process_video(VideoTask("s", video, str(target), pose_exists=True), runner)
    assert redone["status"] == "ok" and target.read_bytes() == good

    refined = HolisticConfig(refine_face_landmarks=True)
    with pytest.raises(ValueError, match="layout"):
        read_pose_summary(str(target), refined)


def test_worker_memory_does_not_grow_with_video_length(tmp_path, videos_dir):
    """Peak RSS of one extraction process: a 9-frame 1280x720 video vs the same video 16 times over.

    Holding the long video's frames would add 135 x 2.7 MB = 370 MB; a stream adds only landmarks.
    """
    frames = bgr_frames(videos_dir / "sample_video.mp4")
    short = write_video(tmp_path / "short.mp4", frames)
    long = write_video(tmp_path / "long.mp4", frames * 16)
    script = ("import json, resource, sys\n"
              "from signclip.extraction.holistic import HolisticRunner; from signclip.extraction.extract_video import VideoTask, process_video\n"
              "row = process_video(VideoTask('v', sys.argv[1], sys.argv[2]), HolisticRunner())\n"
              "print(json.dumps({'frames': row['frames'], 'status': row['status'],\n"
              "                  'rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))\n")
    peaks = {}
    for video in (short, long):
        out = subprocess.run([sys.executable, "-c", script, str(video), str(tmp_path / f"{video.stem}.pose")],
                             check=True, capture_output=True, text=True)
        peaks[video.stem] = json.loads(out.stdout.strip().splitlines()[-1])
    assert peaks["short"]["frames"] == 9 and peaks["long"]["frames"] == 144
    growth = peaks["long"]["rss_mb"] - peaks["short"]["rss_mb"]
    print(f"peak RSS: 9 frames {peaks['short']['rss_mb']:.0f} MB, 144 frames {peaks['long']['rss_mb']:.0f} MB")
    assert growth < 60, peaks


# ------------------------------------------------------------------------------------------- planning

def test_plan_mirrors_relative_paths_and_flags_existing_poses(tmp_path, videos_dir):
    src = tmp_path / "videos"
    (src / "a" / "b").mkdir(parents=True)
    (src / "a" / "b" / "one.mp4").write_bytes(b"x")
    (src / "two.mov").write_bytes(b"x")
    (src / "notes.txt").write_text("not a video")
    out = tmp_path / "poses"
    (out / "a" / "b").mkdir(parents=True)
    (out / "a" / "b" / "one.pose").write_bytes(b"old")

    tasks = plan(str(src), str(out))
    assert [(t.id, Path(t.pose_path).relative_to(out).as_posix(), t.pose_exists) for t in tasks] == [
        ("a/b/one", "a/b/one.pose", True), ("two", "two.pose", False)]

    globbed = plan(str(src / "a" / "**" / "*.mp4"), str(out))
    assert [Path(t.pose_path).relative_to(out).as_posix() for t in globbed] == ["b/one.pose"]

    single = plan(str(src / "two.mov"), str(out))
    assert [(t.id, Path(t.pose_path).name) for t in single] == [("two", "two.pose")]

    (src / "two.mp4").write_bytes(b"x")
    with pytest.raises(ValueError, match="would both write"):
        plan(str(src), str(out))


def test_plan_from_csv_and_parquet_manifests(tmp_path):
    (tmp_path / "clips" / "x").mkdir(parents=True)
    for name in ("x/1.mp4", "2.mp4"):
        (tmp_path / "clips" / name).write_bytes(b"x")
    frame = pd.DataFrame({"id": ["first", "second"], "path": ["clips/x/1.mp4", str(tmp_path / "clips" / "2.mp4")],
                          "gloss": ["house", "sad"]})
    frame.to_csv(tmp_path / "list.csv", index=False)
    frame.to_parquet(tmp_path / "list.parquet")
    for name in ("list.csv", "list.parquet"):
        tasks = plan(str(tmp_path / name), str(tmp_path / "out"))
        assert [t.id for t in tasks] == ["first", "second"]
        assert [Path(t.pose_path).relative_to(tmp_path / "out").as_posix() for t in tasks] == [
            "clips/x/1.pose", "clips/2.pose"]
    with pytest.raises(ValueError, match="no 'video' column"):
        plan(str(tmp_path / "list.csv"), str(tmp_path / "out"), path_column="video")
    # a mistyped --id-column is refused, not silently replaced by ids derived from the paths
    with pytest.raises(ValueError, match=r"list\.csv: no 'clip_id' column for the ids"):
        plan(str(tmp_path / "list.csv"), str(tmp_path / "out"), id_column="clip_id")
    assert [t.id for t in plan(str(tmp_path / "list.csv"), str(tmp_path / "out"), id_column="gloss")] == [
        "house", "sad"]


def test_a_video_listed_under_several_ids_is_planned_once_with_each_id(tmp_path, caplog):
    """One video, several signs cut from it (WLASL lists such): one pose, every id kept for the manifest."""
    (tmp_path / "v").mkdir()
    for name in ("long.mp4", "other.mp4"):
        (tmp_path / "v" / name).write_bytes(b"x")
    pd.DataFrame({"id": ["house-1", "sad", "house-2", "house-1"],
                  "path": ["v/long.mp4", "v/other.mp4", "v/long.mp4", "v/long.mp4"]}).to_csv(tmp_path / "m.csv",
                                                                                          index=False)
    with caplog.at_level("WARNING", logger="signclip.extraction.plan"):
        tasks = plan(str(tmp_path / "m.csv"), str(tmp_path / "out"))
    assert [(t.id, t.also_ids, Path(t.pose_path).name) for t in tasks] == [
        ("house-1", ("house-2",), "long.pose"), ("sad", (), "other.pose")]
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path / 'v' / 'long.mp4'} is listed more than once as 'house-1'; extracting it once"]
    pd.DataFrame({"id": ["house-1", "house-1"], "path": ["v/long.mp4", "v/other.mp4"]}).to_csv(tmp_path / "bad.csv",
                                                                                             index=False)
    with pytest.raises(ValueError, match="id 'house-1' names both .*long.mp4 and .*other.mp4"):
        plan(str(tmp_path / "bad.csv"), str(tmp_path / "out"))


def test_plan_from_a_manifest_with_empty_cells(tmp_path):
    (tmp_path / "clips").mkdir()
    for name in ("1.mp4", "2.mp4"):
        (tmp_path / "clips" / name).write_bytes(b"x")
    # null ids fall back to the videos' paths (not two videos both named "None"); an empty path is refused
    pd.DataFrame({"id": [None, None], "path": ["clips/1.mp4", "clips/2.mp4"]}).to_parquet(tmp_path / "ids.parquet")
    assert [t.id for t in plan(str(tmp_path / "ids.parquet"), str(tmp_path / "out"))] == ["clips/1", "clips/2"]
    # integer ids with a null among them: pandas makes the column float; each id is still "101", not "101.0"
    pq.write_table(pa.table({"id": pa.array([101, None], pa.int64()), "path": ["clips/1.mp4", "clips/2.mp4"]}),
                   tmp_path / "numbers.parquet")
    assert [t.id for t in plan(str(tmp_path / "numbers.parquet"), str(tmp_path / "out"))] == ["101", "clips/2"]
    pd.DataFrame({"path": ["clips/1.mp4", ""]}).to_csv(tmp_path / "holes.csv", index=False)
    with pytest.raises(ValueError, match=r"holes\.csv row 2: empty 'path'"):
        plan(str(tmp_path / "holes.csv"), str(tmp_path / "out"))


def test_a_manifests_videos_outside_its_folder_keep_their_poses_when_rows_are_added(s3_bucket):
    """Manifests in s3://b/manifests/, videos in s3://b/videos/: a video's pose is named by the video alone,
    not by the deepest folder all listed videos share, so a manifest that grows keeps the poses made so far."""
    for name in ("videos/a/x.mp4", "videos/a/y.mp4", "videos/b/z.mp4"):
        storage.write_bytes_atomic(f"{s3_bucket}/{name}", b"x")
    listing = f"{s3_bucket}/manifests/list.csv"
    storage.write_bytes_atomic(listing, pd.DataFrame({"path": [f"{s3_bucket}/videos/a/x.mp4",
                                                               f"{s3_bucket}/videos/a/y.mp4"]}).to_csv(index=False).encode())
    first = plan(listing, f"{s3_bucket}/poses")
    bucket = s3_bucket.split("://", 1)[1]
    assert [(t.id, t.pose_path) for t in first] == [
        (f"{bucket}/videos/a/x", f"{s3_bucket}/poses/{bucket}/videos/a/x.pose"),
        (f"{bucket}/videos/a/y", f"{s3_bucket}/poses/{bucket}/videos/a/y.pose")]
    for task in first:
        storage.write_bytes_atomic(task.pose_path, b"done")
    storage.write_bytes_atomic(listing, pd.DataFrame({"path": [f"{s3_bucket}/videos/{n}.mp4" for n in (
        "a/x", "a/y", "b/z")]}).to_csv(index=False).encode())
    grown = plan(listing, f"{s3_bucket}/poses")
    assert [t.pose_path for t in grown[:2]] == [t.pose_path for t in first]
    assert [t.pose_exists for t in grown] == [True, True, False]


def test_plan_and_manifests_on_s3(s3_bucket):
    for name in ("v/a/1.mp4", "v/2.mp4"):
        storage.write_bytes_atomic(f"{s3_bucket}/{name}", b"x")
    storage.write_bytes_atomic(f"{s3_bucket}/poses/a/1.pose", b"old")
    tasks = plan(f"{s3_bucket}/v", f"{s3_bucket}/poses")
    assert [(t.id, t.pose_path, t.pose_exists) for t in tasks] == [
        ("2", f"{s3_bucket}/poses/2.pose", False), ("a/1", f"{s3_bucket}/poses/a/1.pose", True)]

    csv = pd.DataFrame({"path": ["a/1.mp4", "2.mp4"]}).to_csv(index=False).encode()
    storage.write_bytes_atomic(f"{s3_bucket}/v/list.csv", csv)
    from_manifest = plan(f"{s3_bucket}/v/list.csv", f"{s3_bucket}/poses")
    assert [t.video_path for t in from_manifest] == [f"{s3_bucket}/v/a/1.mp4", f"{s3_bucket}/v/2.mp4"]

    rows = [{"id": "a", "status": "ok", "frames": 3, "fps": 29.97}, {"id": "b", "status": "failed", "error": "x"}]
    manifests.write_manifest(rows, f"{s3_bucket}/out/manifest.parquet", MANIFEST_SCHEMA)
    back = manifests.read_manifest(f"{s3_bucket}/out/manifest.parquet")
    assert list(back.columns) == MANIFEST_SCHEMA.names
    assert back["fps"].tolist()[0] == 29.97 and pd.isna(back["fps"].tolist()[1])
    assert manifests.status_counts(pa.Table.from_pandas(back)) == {"ok": 1, "failed": 1, "skipped": 0}


def test_manifest_rows_keep_schema_and_order(tmp_path):
    table = manifests.to_table([{"status": "skipped", "id": "z", "extra": 1}], MANIFEST_SCHEMA)
    assert table.schema == MANIFEST_SCHEMA and table.num_rows == 1
    manifests.write_manifest(table, str(tmp_path / "m.parquet"))
    assert manifests.read_manifest(str(tmp_path / "m.parquet"))["id"].tolist() == ["z"]
    with pytest.raises(ValueError, match="manifest must be"):
        manifests.read_manifest(_write(tmp_path / "m.json", b"{}"))
    assert manifests.resolve("x/y.mp4", "s3://b/lists/m.csv") == "s3://b/lists/x/y.mp4"
    assert manifests.resolve("../y.mp4", "s3://b/lists/m.csv") == "s3://b/y.mp4"
    assert manifests.resolve("s3://c/z.mp4", "s3://b/m.csv") == "s3://c/z.mp4"


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


# ------------------------------------------------------------------------------------------- job options (no Ray)

def test_actor_pool_leaves_room_for_other_stages():
    from signclip.jobs.extract import ExtractConfig, actor_pool_sizes

    config = ExtractConfig(input="in", output="out")  # 0.9 CPU per actor
    assert actor_pool_sizes(config, cluster_cpus=2.0, videos=24) == (1, 2, 2)  # 1.8 of 2 CPUs
    assert actor_pool_sizes(config, cluster_cpus=2.0, videos=1) == (1, 1, 2)  # starts with what the work needs
    assert actor_pool_sizes(config, cluster_cpus=16.0, videos=100) == (1, 17, 17)
    one_cpu = ExtractConfig(input="in", output="out", cpus_per_actor=1.0, min_actors=4, max_actors=3)
    assert actor_pool_sizes(one_cpu, cluster_cpus=2.0, videos=10) == (3, 3, 3)


def test_a_pool_larger_than_the_cluster_is_news_only_when_it_was_not_asked_for(monkeypatch, caplog):
    import ray

    from signclip.jobs.extract import ExtractConfig, _plan_pass

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 32.0})
    with caplog.at_level("INFO", logger="signclip.jobs.extract"):
        # the RayJob spec's --max-actors 120: the autoscaling group grows to fit it
        assert _plan_pass(ExtractConfig(input="i", output="o", max_actors=120), 500, 1) == (1, 120, 120)
        assert all(r.levelname == "INFO" for r in caplog.records) and "the pool grows as nodes join" in caplog.text
        caplog.clear()
        assert _plan_pass(ExtractConfig(input="i", output="o", cpus_per_actor=48), 5, 1) == (1, 1, 1)
    assert [r.levelname for r in caplog.records][0] == "WARNING"
    assert "one actor needs 48.00 CPU and the cluster has 32 CPUs now" in caplog.text


def test_command_line_maps_to_config():
    from signclip.jobs.extract import build_parser, config_from_args

    args = build_parser().parse_args(["--input", "s3://b/v", "--output", "out", "--overwrite",
                                      "--holistic-options", "refine_face_landmarks=true,min_tracking_confidence=0.6",
                                      "--cpus-per-actor", "0.5", "--max-actors", "3", "--no-progress"])
    config = config_from_args(args)
    assert (config.input, config.output, config.overwrite, config.progress) == ("s3://b/v", "out", True, False)
    assert config.holistic == HolisticConfig(refine_face_landmarks=True, min_tracking_confidence=0.6)
    assert (config.cpus_per_actor, config.max_actors) == (0.5, 3)
    with pytest.raises(ValueError, match="unknown Holistic option"):
        config_from_args(build_parser().parse_args(["--input", "x", "--output", "y", "--holistic-options", "nope=1"]))


def test_extraction_workers_do_not_import_torch_or_ray():
    # every extraction actor imports these; torch alone costs seconds and ~300 MB per process
    code = ("import sys, signclip, signclip.extraction.holistic, signclip.extraction.video, signclip.jobs.extract; "
            "print(sorted(m for m in ('torch', 'ray', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"
    # the package's public names still resolve, on first use
    import signclip
    assert signclip.preset("e7.2").feature_dim == 609 and "Embedder" in dir(signclip)


@pytest.mark.parametrize(("cpus", "threads"), [(0.9, 1), (2.0, 2)])
def test_extraction_actor_limits_opencv_threads_to_its_cpus(cpus, threads):
    # process-global setting: checked in a fresh process, where OpenCV would otherwise use every core
    code = ("import cv2; from signclip.jobs.extract import ExtractVideos; "
            f"ExtractVideos({{}}, overwrite=False, decode_threads=1, decode_ahead=0, cpus={cpus}); "
            "print(cv2.getNumThreads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert int(out.stdout.strip().splitlines()[-1]) == threads
