"""Reading a clip: a ``.pose`` path (local or ``s3://``), its bytes, a ``Pose``, or Google's parquet landmarks."""

from __future__ import annotations

import os
from typing import Union

from pose_format import Pose

from signclip.io import storage

PoseSource = Union[str, os.PathLike, bytes, Pose]


class PoseInputError(ValueError):
    """A pose that cannot be turned into features; the message names the input and the problem."""


def describe(source: PoseSource) -> str:
    """A short name for error messages."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, (bytes, bytearray)):
        return f"<{len(source)} bytes>"
    return "<Pose>"


def read_pose(source: PoseSource) -> Pose:
    """A ``Pose`` from a path (local or ``s3://``), the bytes of a ``.pose`` file, or a ``Pose`` (copied)."""
    if isinstance(source, Pose):
        return Pose(header=source.header, body=source.body.copy())
    if isinstance(source, (str, os.PathLike)) and os.fspath(source).lower().endswith(".parquet"):
        # Google's ASL Signs landmark files: one row per frame x landmark, same Holistic points
        from signclip.pose.google_parquet import google_parquet_to_pose

        try:
            return google_parquet_to_pose(os.fspath(source))
        except ValueError as e:
            raise PoseInputError(f"{describe(source)}: {e}") from e
    if isinstance(source, (str, os.PathLike)):
        data = storage.read_bytes(os.fspath(source))
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        raise TypeError(f"expected a path, bytes or pose_format.Pose, got {type(source).__name__}")
    if not data:
        raise PoseInputError(f"{describe(source)}: empty file, not a .pose")
    try:
        return Pose.read(data)
    except Exception as e:  # pose-format raises assorted errors (struct, unicode, value) on bad bytes
        raise PoseInputError(f"{describe(source)}: not a readable .pose file ({type(e).__name__}: {e})") from e
