"""One video -> one Holistic ``.pose``: decode, landmarks, the checks, and the manifest row. No Ray here.

:func:`extract_pose` is the one video loop; the extraction job calls it through :func:`process_video`
(one manifest row per video, ``ok`` / ``failed`` / ``skipped``, never raising for a bad video) and the
service's video route through :func:`extract_upload` (an uploaded file's bytes, within a duration limit).

    runner = HolisticRunner(HolisticConfig())
    row = process_video(VideoTask("clip", "clip.mp4", "out/clip.pose"), runner)
"""

from __future__ import annotations

import datetime
import logging
import math
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from signclip.extraction.holistic import (
    HolisticConfig,
    HolisticRunner,
    build_pose,
    pose_to_bytes,
)
from signclip.extraction.video import VideoError, open_video, read_ahead
from signclip.io import storage
from signclip.io.scratch import scratch_file
from signclip.io.status import FAILED, OK, SKIPPED

if TYPE_CHECKING:
    from pose_format import Pose

log = logging.getLogger(__name__)

# A video is called truncated when it decodes this many frames fewer than its container declares
# (a header count may be an estimate for some containers, so a tiny shortfall only warns).
_TRUNCATION_MIN_FRAMES = 2
_TRUNCATION_FRACTION = 0.02
_FALLBACK_FPS = 60.0  # frame rate assumed for a duration limit when the container declares none


class VideoTooLong(VideoError):
    """A video over the duration limit it was given."""


@dataclass
class VideoFacts:
    """What is known about a video so far; filled in while it is extracted, kept when extraction fails."""

    width: int | None = None
    height: int | None = None
    frames: int | None = None
    fps: float | None = None
    warnings: list[str] = field(default_factory=list)


def _limited(frames: Iterator[np.ndarray], max_frames: int, limit: str) -> Iterator[np.ndarray]:
    for n, frame in enumerate(frames, start=1):
        if n > max_frames:
            raise VideoTooLong(limit)
        yield frame


def extract_pose(path: str, runner: HolisticRunner, facts: VideoFacts, *, max_seconds: float | None = None,
                 decode_threads: int = 0, decode_ahead: int = 0) -> Pose:
    """The Holistic pose of the video at ``path`` (local or URL), filling ``facts`` as they become known.

    Raises :class:`~signclip.extraction.video.VideoError` (a truncated or undecodable video;
    :class:`VideoTooLong` beyond ``max_seconds``) or ``FileNotFoundError``.
    """
    with open_video(path, threads=decode_threads) as video:
        info = video.info
        facts.width, facts.height = info.width, info.height
        frames: Iterator[np.ndarray] = iter(video)
        if max_seconds is not None:
            limit = f"longer than the limit of {max_seconds:g} s"
            if math.isfinite(info.fps) and info.declared_frames / info.fps > max_seconds:
                raise VideoTooLong(f"{limit} ({info.declared_frames / info.fps:.1f} s)")
            frames = _limited(frames, int(max_seconds * (info.fps if math.isfinite(info.fps) else _FALLBACK_FPS))
                              + 1, limit)
        with read_ahead(frames, decode_ahead) as stream:
            data, confidence = runner.landmarks(stream, info.width, info.height)
        facts.frames = int(data.shape[0])
        declared = info.declared_frames
        tolerance = max(_TRUNCATION_MIN_FRAMES, _TRUNCATION_FRACTION * declared)
        short = bool(declared) and facts.frames < declared - tolerance
        # Matroska/WebM store no frame count: OpenCV declares duration x nominal rate, which a variable-rate
        # video (phones, browser recordings) does not reach in frames, though its frames reach its end in time
        variable_rate = short and video.decoded_seconds() >= (declared - tolerance) / info.fps
        fps = video.measured_fps() if variable_rate or not math.isfinite(info.fps) else info.fps
    if short and not variable_rate:
        raise VideoError(f"truncated or corrupt video: decoded {facts.frames} of the {declared} frames "
                         f"its container declares")
    if not math.isfinite(fps):
        fps = 0.0
        facts.warnings.append("frame rate unknown (container declares none), fps stored as 0")
    elif not math.isfinite(info.fps):
        facts.warnings.append(f"container declares no frame rate; {fps:.3f} measured from timestamps")
    elif variable_rate:
        facts.warnings.append(f"variable frame rate: {facts.frames} frames where {info.fps:g} fps would give "
                              f"{declared}; their mean rate {fps:.3f} fps is stored")
    elif declared and facts.frames != declared:
        facts.warnings.append(f"decoded {facts.frames} frames, container declares {declared}")
    facts.fps = fps
    if not confidence.any():
        facts.warnings.append("no person detected in any frame (pose is fully masked)")
    return build_pose(data, confidence, fps, info.width, info.height, runner.config)


# ----------------------------------------------------------------------------------------------- uploads

def extract_upload(video: bytes, runner: HolisticRunner, max_seconds: float,
                   suffix: str = ".video") -> tuple[bytes, VideoFacts]:
    """The ``.pose`` bytes of an uploaded video and what was learnt about it.

    The bytes go to a private temporary file (FFmpeg reads files, not buffers), removed afterwards; its
    name is ours (``suffix`` only hints the container). Raises ``VideoError`` / ``VideoTooLong``.
    """
    if not video:
        raise VideoError("empty upload")
    with scratch_file("signclip-upload-", suffix) as path:
        with open(path, "wb") as f:
            f.write(video)
        facts = VideoFacts()
        pose = extract_pose(path, runner, facts, max_seconds=max_seconds)
        return pose_to_bytes(pose), facts


# ----------------------------------------------------------------------------------------------- the job's rows

def expected_points(config: HolisticConfig) -> list[tuple[str, int]]:
    """(component, number of points) of the Holistic header ``config`` produces."""
    n_face = 468 + config.additional_face_points
    return [("POSE_LANDMARKS", 33), ("FACE_LANDMARKS", n_face), ("LEFT_HAND_LANDMARKS", 21),
            ("RIGHT_HAND_LANDMARKS", 21), ("POSE_WORLD_LANDMARKS", 33)]


def read_pose_summary(path: str, config: HolisticConfig) -> VideoFacts:
    """Read ``path`` fully; raise ``ValueError`` unless it is a complete Holistic pose of ``config``'s layout."""
    from pose_format import Pose

    try:
        pose = Pose.read(storage.read_bytes(path))
    except FileNotFoundError:
        raise
    except Exception as e:  # pose-format raises assorted errors on malformed input
        raise ValueError(f"unreadable .pose ({type(e).__name__}: {e})") from e
    layout = [(c.name, len(c.points)) for c in pose.header.components]
    if layout != expected_points(config):
        raise ValueError(f"pose layout {layout} differs from the requested Holistic options")
    frames = int(pose.body.data.shape[0])
    if frames < 1:
        raise ValueError("pose has no frames")
    return VideoFacts(frames=frames, fps=float(pose.body.fps), width=int(pose.header.dimensions.width),
                      height=int(pose.header.dimensions.height))


@dataclass(frozen=True)
class VideoTask:
    """One video to turn into one ``.pose``."""

    id: str  # identifier of the video in the manifests
    video_path: str  # local path or URI of the video
    pose_path: str  # where its .pose goes
    pose_exists: bool = False  # a file was at pose_path when the job was planned (check it, maybe skip)
    # the Holistic options an earlier run's manifest records for that pose (HolisticConfig.to_json; "": unknown)
    made_with: str = ""
    # other ids the input lists this video under (e.g. one video, several signs cut from it): one pose,
    # a manifest row for each
    also_ids: tuple[str, ...] = ()


# The extraction manifest: one row per video.
MANIFEST_SCHEMA = pa.schema([
    pa.field("id", pa.string()),
    pa.field("video_path", pa.string()),
    pa.field("pose_path", pa.string()),  # null when no pose was written
    pa.field("frames", pa.int64()),
    pa.field("fps", pa.float64()),
    pa.field("width", pa.int64()),
    pa.field("height", pa.int64()),
    pa.field("seconds", pa.float64()),  # wall time spent on this video
    pa.field("status", pa.string()),  # ok / failed / skipped
    pa.field("error", pa.string()),  # why it failed ("" otherwise)
    pa.field("warning", pa.string()),  # e.g. no person detected ("" if none)
    pa.field("worker", pa.string()),  # host:pid of the process that handled it
    pa.field("started_at", pa.timestamp("ms", tz="UTC")),  # when work on this video began
    pa.field("holistic", pa.string()),  # the Holistic options that made the pose (JSON; "" if unknown or none)
])


@dataclass
class _Row:
    task: VideoTask
    facts: VideoFacts = field(default_factory=VideoFacts)
    started: float = field(default_factory=time.perf_counter)
    started_at: datetime.datetime = field(default_factory=lambda: datetime.datetime.now(datetime.timezone.utc))

    def finish(self, status: str, error: str = "", pose_written: bool = True, holistic: str = "") -> dict[str, Any]:
        f = self.facts
        return {
            "id": self.task.id, "video_path": self.task.video_path,
            "pose_path": self.task.pose_path if pose_written else None,
            "frames": f.frames, "fps": f.fps, "width": f.width, "height": f.height,
            "seconds": round(time.perf_counter() - self.started, 4), "status": status, "error": error,
            "warning": "; ".join(f.warnings), "worker": f"{socket.gethostname()}:{os.getpid()}",
            "started_at": self.started_at, "holistic": holistic if pose_written else "",
        }


def process_video(task: VideoTask, runner: HolisticRunner, overwrite: bool = False,
                  decode_threads: int = 0, decode_ahead: int = 0) -> dict[str, Any]:
    """Extract ``task``'s video to its ``.pose`` and return its manifest row (:data:`MANIFEST_SCHEMA`).

    A pose already at ``pose_path`` that reads back complete and in the requested layout is kept
    (``skipped``) unless ``overwrite``, or unless an earlier run recorded other Holistic options for it
    (``task.made_with``). Any problem with the video gives a ``failed`` row; nothing raises.
    The pose is written atomically, so an interrupted run never leaves a truncated file behind.
    ``decode_threads``: FFmpeg decoder threads (0: FFmpeg decides); ``decode_ahead``: frames a background
    thread decodes ahead of Holistic (0: decode inline).
    """
    row = _Row(task)
    options = runner.config.to_json()
    if task.pose_exists and not overwrite:
        if task.made_with and task.made_with != options:
            log.info("%s: redoing, the pose was made with other Holistic options (%s)", task.id, task.made_with)
        else:
            try:
                row.facts = read_pose_summary(task.pose_path, runner.config)
            except (ValueError, FileNotFoundError) as e:
                log.info("%s: redoing, existing pose is not usable: %s", task.id, e)
            else:
                return row.finish(SKIPPED, holistic=task.made_with)
    try:
        pose = extract_pose(task.video_path, runner, row.facts, decode_threads=decode_threads,
                            decode_ahead=decode_ahead)
        storage.write_bytes_atomic(task.pose_path, pose_to_bytes(pose))
    except (VideoError, FileNotFoundError) as e:
        log.warning("%s: failed: %s", task.id, e)
        return row.finish(FAILED, str(e), pose_written=False)
    except Exception as e:  # one bad video must not stop the others
        log.exception("%s: failed unexpectedly", task.id)
        return row.finish(FAILED, f"{type(e).__name__}: {e}", pose_written=False)
    return row.finish(OK, holistic=options)
