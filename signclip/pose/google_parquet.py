"""Google's isolated-sign landmark files (Kaggle "ASL Signs") -> MediaPipe Holistic ``Pose``.

Each parquet holds one row per frame and landmark: ``frame``, ``row_id`` (``"<frame>-<type>-<index>"``),
``type`` (``face`` / ``left_hand`` / ``pose`` / ``right_hand``), ``landmark_index``, ``x``, ``y``, ``z``:
543 landmarks a frame (face 468, left hand 21, pose 33, right hand 21), ``x``/``y`` MediaPipe's normalised
image coordinates (0..1 inside the frame), ``z`` its relative depth, NaN where the part was not detected.

The ``Pose`` has pose-format's Holistic components POSE_LANDMARKS (33), FACE_LANDMARKS (468),
LEFT_HAND_LANDMARKS (21) and RIGHT_HAND_LANDMARKS (21), point format XYZC, and stores points as
pose-format's MediaPipe reader does: ``x * width``, ``y * height``, ``z`` unchanged. Confidence is 1 for a
landmark with coordinates and 0 (with zero coordinates) where they are NaN or the row is absent; the
files carry no visibility. Frames are the file's distinct ``frame`` numbers in ascending order.

The files do not say how large the videos were, nor their frame rate. The nominal frame is
:data:`NOMINAL_WIDTH` x :data:`NOMINAL_HEIGHT` = 1000 x 1000 (pose-format's own default): square, so both
image axes keep the scale they have in the file. Any other (w, h) only rescales x and y; note that the
shoulder normalisation of :func:`signclip.pose.features.pose_features` is invariant to translation and to a
uniform scale of x, y AND z, so features depend on the chosen aspect ratio (and on the x/y vs z scale):
pass the real width and height when they are known. The frame rate is :data:`NOMINAL_FPS` = 30.
"""

from __future__ import annotations

import io
import os
from functools import cache
from typing import Union

import numpy as np
import pandas as pd
from pose_format import Pose
from pose_format.numpy import NumPyPoseBody
from pose_format.pose_header import PoseHeader, PoseHeaderComponent, PoseHeaderDimensions

from signclip.io import storage
from signclip.pose.holistic_module import pose_format_holistic
from signclip.pose.layout import BODY_POINTS, FACE_POINTS, HAND_POINTS

NOMINAL_WIDTH = 1000
NOMINAL_HEIGHT = 1000
NOMINAL_FPS = 30.0
COLUMNS = ("frame", "type", "landmark_index", "x", "y", "z")
# Google type -> (pose-format component, number of landmarks); components in pose-format's Holistic order.
LANDMARK_TYPES: dict[str, tuple[str, int]] = {
    "pose": ("POSE_LANDMARKS", len(BODY_POINTS)),
    "face": ("FACE_LANDMARKS", len(FACE_POINTS)),
    "left_hand": ("LEFT_HAND_LANDMARKS", len(HAND_POINTS)),
    "right_hand": ("RIGHT_HAND_LANDMARKS", len(HAND_POINTS)),
}
NUM_POINTS = sum(n for _, n in LANDMARK_TYPES.values())  # 543

ParquetSource = Union[str, os.PathLike, bytes]


class GoogleParquetError(ValueError):
    """A file that is not a Google isolated-sign landmark parquet; the message names it and the problem."""


@cache
def holistic_components() -> tuple[PoseHeaderComponent, ...]:
    """pose-format's Holistic components without world landmarks, 468 face points, format XYZC."""
    components = tuple(pose_format_holistic().holistic_components("XYZC", 0)[:4])
    expected = {"POSE_LANDMARKS": BODY_POINTS, "FACE_LANDMARKS": FACE_POINTS,
                "LEFT_HAND_LANDMARKS": HAND_POINTS, "RIGHT_HAND_LANDMARKS": HAND_POINTS}
    for component in components:
        if tuple(component.points) != expected[component.name]:
            raise RuntimeError(f"pose-format's {component.name} points differ from signclip.pose.layout's")
    return components


def _offsets() -> dict[str, int]:
    order = [c.name for c in holistic_components()]
    sizes = {name: n for name, n in LANDMARK_TYPES.values()}
    starts = np.cumsum([0] + [sizes[name] for name in order])[:-1]
    by_component = dict(zip(order, starts.tolist()))
    return {kind: by_component[name] for kind, (name, _) in LANDMARK_TYPES.items()}


def read_landmarks(source: ParquetSource) -> pd.DataFrame:
    """The landmark rows of one file (columns :data:`COLUMNS`), from a path (local or s3://) or bytes."""
    import pyarrow.parquet as pq

    name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else f"<{len(source)} bytes>"
    data = storage.read_bytes(os.fspath(source)) if isinstance(source, (str, os.PathLike)) else bytes(source)
    try:
        table = pq.read_table(io.BytesIO(data))
    except Exception as e:  # pyarrow raises ArrowInvalid / OSError variants on bad bytes
        raise GoogleParquetError(f"{name}: not a readable parquet file ({type(e).__name__}: {e})") from e
    absent = [c for c in COLUMNS if c not in table.column_names]
    if absent:
        raise GoogleParquetError(f"{name}: not a Google landmark file: no column(s) {', '.join(absent)}")
    df = table.select(list(COLUMNS)).to_pandas()
    df.attrs["name"] = name
    return df


def landmarks_to_pose(df: pd.DataFrame, *, width: int = NOMINAL_WIDTH, height: int = NOMINAL_HEIGHT,
                      fps: float = NOMINAL_FPS, name: str = "<landmarks>") -> Pose:
    """A Holistic ``Pose`` from landmark rows in Google's long layout (see the module docstring)."""
    kinds = list(LANDMARK_TYPES)
    codes = pd.Index(kinds).get_indexer(df["type"].astype(str)).astype(np.int64)  # -1: unknown type
    if (codes < 0).any():
        unknown = sorted(set(df["type"].astype(str)) - set(kinds))
        raise GoogleParquetError(f"{name}: unknown landmark type(s) {', '.join(unknown)}; "
                                 f"expected {', '.join(kinds)}")
    landmark = df["landmark_index"].to_numpy().astype(np.int64)
    limits = np.array([LANDMARK_TYPES[k][1] for k in kinds], dtype=np.int64)[codes]
    bad = (landmark < 0) | (landmark >= limits)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise GoogleParquetError(f"{name}: landmark_index {landmark[i]} out of range for type {kinds[codes[i]]!r} "
                                 f"(it has {limits[i]} landmarks)")
    frame_numbers, frame = np.unique(df["frame"].to_numpy(), return_inverse=True)
    offsets = _offsets()
    point = np.array([offsets[k] for k in kinds], dtype=np.int64)[codes] + landmark
    slot = frame.astype(np.int64) * NUM_POINTS + point
    if len(np.unique(slot)) != len(slot):
        raise GoogleParquetError(f"{name}: a landmark is listed twice in one frame")
    xyz = df[["x", "y", "z"]].to_numpy(dtype=np.float64)
    seen = ~np.isnan(xyz).any(axis=1)
    xyz = xyz * np.array([width, height, 1.0])
    data = np.zeros((len(frame_numbers), 1, NUM_POINTS, 3), dtype=np.float32)
    confidence = np.zeros((len(frame_numbers), 1, NUM_POINTS), dtype=np.float32)
    data[frame[seen], 0, point[seen]] = xyz[seen]
    confidence[frame[seen], 0, point[seen]] = 1.0
    header = PoseHeader(version=0.2, dimensions=PoseHeaderDimensions(width=width, height=height, depth=0),
                        components=list(holistic_components()))
    return Pose(header, NumPyPoseBody(fps=float(fps), data=data, confidence=confidence))


def google_parquet_to_pose(source: ParquetSource, *, width: int = NOMINAL_WIDTH, height: int = NOMINAL_HEIGHT,
                           fps: float = NOMINAL_FPS) -> Pose:
    """One Google landmark parquet (path, local or s3://, or its bytes) as a MediaPipe Holistic ``Pose``
    that :func:`signclip.pose.features.pose_features` accepts."""
    df = read_landmarks(source)
    return landmarks_to_pose(df, width=width, height=height, fps=fps, name=df.attrs["name"])
