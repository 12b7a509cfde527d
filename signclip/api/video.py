"""An uploaded video's bytes -> a MediaPipe Holistic ``.pose``, within a duration limit.

The bytes go to a private temporary file (FFmpeg reads files, not buffers) that is removed afterwards;
its name is ours, never the client's. Extraction itself is :mod:`signclip.extraction`'s.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from signclip.api.backend import ExtractedPose, Rejected
from signclip.extraction import HolisticConfig, HolisticRunner, build_pose, pose_to_bytes
from signclip.video import VideoError, open_video


class _TooLong(Exception):
    pass


def holistic_runner(options: Mapping[str, Any] | None = None) -> HolisticRunner:
    """A Holistic runner with the given options (validated; an unusable option raises ``ValueError``)."""
    return HolisticRunner(HolisticConfig.from_options(dict(options or {})))


def safe_suffix(filename: str | None) -> str:
    """The upload's extension if it is a plain short one (FFmpeg may use it as a hint), else ``.video``."""
    ext = os.path.splitext(filename or "")[1].lower()
    return ext if re.fullmatch(r"\.[a-z0-9]{1,5}", ext) else ".video"


def _limited(frames: Iterator[np.ndarray], max_frames: int) -> Iterator[np.ndarray]:
    for n, frame in enumerate(frames, start=1):
        if n > max_frames:
            raise _TooLong
        yield frame


def extract_pose(video: bytes, runner: HolisticRunner, max_seconds: float, suffix: str = ".video") -> \
        ExtractedPose | Rejected:
    """The ``.pose`` of ``video``, or why not (not a video, undecodable, longer than ``max_seconds``)."""
    if not video:
        return Rejected(0, "invalid_video", "video: empty upload")
    fd, path = tempfile.mkstemp(prefix="signclip-upload-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(video)
        return _extract(path, runner, max_seconds)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def _extract(path: str, runner: HolisticRunner, max_seconds: float) -> ExtractedPose | Rejected:
    too_long = f"video: longer than the limit of {max_seconds:g} s"
    try:
        with open_video(path) as stream:
            info = stream.info
            if math.isfinite(info.fps) and info.declared_frames / info.fps > max_seconds:
                return Rejected(0, "video_too_long", f"{too_long} ({info.declared_frames / info.fps:.1f} s)")
            # Without a declared rate, allow up to 60 fps for the duration limit.
            max_frames = int(max_seconds * (info.fps if math.isfinite(info.fps) else 60.0)) + 1
            try:
                data, confidence = runner.landmarks(_limited(iter(stream), max_frames), info.width, info.height)
            except _TooLong:
                return Rejected(0, "video_too_long", too_long)
            fps = info.fps if math.isfinite(info.fps) else stream.measured_fps()
    except VideoError as e:
        return Rejected(0, "invalid_video", f"video: {e}")
    warnings = [] if confidence.any() else ["no person detected in any frame (the pose is fully masked)"]
    fps = fps if math.isfinite(fps) else 0.0
    pose = build_pose(data, confidence, fps, info.width, info.height, runner.config)
    return ExtractedPose(pose_to_bytes(pose), int(data.shape[0]), float(fps), warnings)
