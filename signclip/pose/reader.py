"""Reading a clip: a ``.pose`` path (local or ``s3://``), its bytes, a ``Pose``, or Google's parquet landmarks.

pose-format is the reader of record (its header, its body). What this adds: a corpus holds a handful of
distinct headers (one per layout), so each distinct header is parsed once per process and reused (parsing a
Holistic header is ~3,800 ``struct.unpack`` calls, two thirds of reading a clip). The cache is keyed by the
header's own bytes: a file whose first bytes equal a parsed header's bytes has that header, since parsing
reads those bytes and nothing else. Cached headers are shared: nothing may modify them.
"""

from __future__ import annotations

import os
import threading
from typing import Union

from pose_format import Pose
from pose_format.numpy.pose_body import NumPyPoseBody
from pose_format.pose_header import PoseHeader
from pose_format.utils.reader import BufferReader

from signclip.io import storage

PoseSource = Union[str, os.PathLike, bytes, Pose]
MAX_CACHED_HEADERS = 32  # distinct headers kept per process (oldest forgotten first)


class PoseInputError(ValueError):
    """A pose that cannot be turned into features; the message names the input and the problem."""


class HeaderCache:
    """Parsed pose headers by their bytes; thread-safe (Serve replicas read poses in threads)."""

    def __init__(self, limit: int = MAX_CACHED_HEADERS):
        self.limit = limit
        self._by_length: dict[int, dict[bytes, PoseHeader]] = {}
        self._order: list[tuple[int, bytes]] = []
        self._lock = threading.Lock()

    def find(self, data: bytes) -> tuple[PoseHeader, int] | None:
        """The cached header ``data`` starts with, and its length in bytes."""
        with self._lock:
            for length, headers in self._by_length.items():
                header = headers.get(data[:length])
                if header is not None:
                    return header, length
        return None

    def add(self, data: bytes, length: int, header: PoseHeader) -> None:
        key = bytes(data[:length])
        with self._lock:
            if key in self._by_length.get(length, {}):
                return
            self._by_length.setdefault(length, {})[key] = header
            self._order.append((length, key))
            while len(self._order) > self.limit:
                old_length, old_key = self._order.pop(0)
                del self._by_length[old_length][old_key]
                if not self._by_length[old_length]:
                    del self._by_length[old_length]

    def __len__(self) -> int:
        return len(self._order)


HEADERS = HeaderCache()


def describe(source: PoseSource) -> str:
    """A short name for error messages."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, (bytes, bytearray)):
        return f"<{len(source)} bytes>"
    return "<Pose>"


def parse_pose(data: bytes) -> Pose:
    """A ``Pose`` from the bytes of a ``.pose`` file, its header from :data:`HEADERS` when seen before."""
    cached = HEADERS.find(data)
    if cached is not None:
        header, length = cached
        reader = BufferReader(data)
        reader.read_offset = length
        return Pose(header, NumPyPoseBody.read(header, reader))
    reader = BufferReader(data)
    header = PoseHeader.read(reader)
    length = reader.read_offset
    body = NumPyPoseBody.read(header, reader)
    HEADERS.add(data, length, header)
    return Pose(header, body)


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
        return parse_pose(data)
    except Exception as e:  # pose-format raises assorted errors (struct, unicode, value) on bad bytes
        raise PoseInputError(f"{describe(source)}: not a readable .pose file ({type(e).__name__}: {e})") from e
