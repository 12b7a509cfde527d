"""Streaming video decode with OpenCV: RGB frames one at a time, plus the stream's metadata.

Frames are never collected: a caller that consumes and drops each frame holds one decoded frame at a
time, however long the video. ``s3://`` (any remote) videos are copied to a local temporary file first,
because OpenCV's FFmpeg backend reads paths, not Python file objects.

    with open_video("clip.mp4") as video:
        for frame in video:          # (height, width, 3) uint8, RGB
            ...
        video.info.fps, video.frames_read
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from signclip.io import storage
from signclip.io.scratch import scratch_file

log = logging.getLogger(__name__)

# Leading bytes of the containers FFmpeg commonly holds video in: name -> (offset, magic).
_CONTAINER_MAGIC: dict[str, tuple[int, bytes]] = {
    "ISO base media (mp4/mov)": (4, b"ftyp"),
    "Matroska/WebM": (0, b"\x1a\x45\xdf\xa3"),
    "AVI": (8, b"AVI "),
    "FLV": (0, b"FLV"),
    "ASF/WMV": (0, b"\x30\x26\xb2\x75"),
    "MPEG program stream": (0, b"\x00\x00\x01\xba"),
    "MPEG transport stream": (0, b"\x47"),
    "Ogg": (0, b"OggS"),
}
_HEAD_BYTES = 4 << 20  # how much of a file to inspect when explaining why it does not decode
_T = TypeVar("_T")


class VideoError(Exception):
    """A video that cannot be decoded; the message says why in words meant for a manifest."""


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about the video stream (sizes are of the decoded, display-oriented frames)."""

    width: int  # frame width in pixels, after OpenCV applied the display rotation
    height: int  # frame height in pixels, after rotation
    fps: float  # frames per second as the container states it (29.97 stays 29.97); NaN if absent
    declared_frames: int  # frame count the container declares (0 if it declares none)
    codec: str  # FourCC of the video codec, e.g. "h264"


def _fourcc(value: float) -> str:
    code = int(value) if value and not math.isnan(value) else 0
    text = code.to_bytes(4, "little").decode("latin-1") if code > 0 else ""
    return text.strip("\x00 ") if text.isprintable() else f"0x{code:08x}"


class VideoStream:
    """RGB frames of one local video file, decoded on demand. Use through :func:`open_video`."""

    def __init__(self, local_path: str, threads: int = 0) -> None:
        import cv2

        self._cv2 = cv2
        params = [cv2.CAP_PROP_N_THREADS, int(threads)] if threads > 0 else []
        self._capture = cv2.VideoCapture(local_path, cv2.CAP_FFMPEG, params)
        if not self._capture.isOpened():
            self._capture.release()
            raise VideoError(explain_unreadable(local_path))
        ok, first = self._capture.read()
        if not ok or first is None:
            self._capture.release()
            raise VideoError("the container opens but no frame decodes (corrupt, truncated or empty video stream)")
        self._first: np.ndarray | None = first
        get = self._capture.get
        fps = float(get(cv2.CAP_PROP_FPS) or 0.0)
        declared = get(cv2.CAP_PROP_FRAME_COUNT)
        self.info = VideoInfo(
            width=int(first.shape[1]),
            height=int(first.shape[0]),
            fps=fps if fps > 0 and math.isfinite(fps) else math.nan,
            declared_frames=int(declared) if declared and declared > 0 and math.isfinite(declared) else 0,
            codec=_fourcc(get(cv2.CAP_PROP_FOURCC)),
        )
        self.frames_read = 0
        self._first_ms: float | None = None
        self._last_ms: float | None = None

    def __iter__(self) -> Iterator[np.ndarray]:
        cv2 = self._cv2
        frame = self._first
        self._first = None
        while frame is not None:
            self._note_timestamp()
            self.frames_read += 1
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            ok, frame = self._capture.read()
            if not ok:
                frame = None

    def _note_timestamp(self) -> None:
        ms = float(self._capture.get(self._cv2.CAP_PROP_POS_MSEC))
        if self._first_ms is None:
            self._first_ms = ms
        self._last_ms = ms

    def measured_fps(self) -> float:
        """Frame rate from the decoded frames' timestamps, for containers that declare none (NaN if unknown)."""
        if self.frames_read < 2 or self._first_ms is None or self._last_ms is None:
            return math.nan
        span = (self._last_ms - self._first_ms) / 1000.0
        return (self.frames_read - 1) / span if span > 0 else math.nan

    def decoded_seconds(self) -> float:
        """How far into the video the decoded frames reach: the last frame's timestamp plus one frame at the
        declared rate (NaN when the frames carry no timestamps or the rate is unknown)."""
        if self._first_ms is None or self._last_ms is None or not math.isfinite(self.info.fps):
            return math.nan
        if self.frames_read > 1 and self._last_ms <= self._first_ms:
            return math.nan  # the backend reported no timestamps (every frame at 0)
        return self._last_ms / 1000.0 + 1.0 / self.info.fps

    def close(self) -> None:
        self._capture.release()


@contextlib.contextmanager
def local_copy(path: str) -> Iterator[str]:
    """A local filesystem path holding ``path``'s bytes: the path itself, or a temporary copy of a remote file."""
    if not storage.is_remote(path):
        _, local = storage.filesystem(path)
        yield local
        return
    fs, remote = storage.filesystem(path)
    with scratch_file("signclip-video-", os.path.splitext(remote)[1]) as tmp:
        fs.get_file(remote, tmp)
        yield tmp


@contextlib.contextmanager
def open_video(path: str, threads: int = 0) -> Iterator[VideoStream]:
    """Open a local or remote video for streaming decode.

    ``threads`` is FFmpeg's decoder thread count (0: FFmpeg decides). Raises :class:`VideoError` with
    a readable reason when the file is empty, not a video, uses a codec FFmpeg cannot decode, or has no
    decodable frame; ``FileNotFoundError`` when it is absent.
    """
    if not storage.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    with local_copy(path) as local:
        stream = VideoStream(local, threads=threads)
        try:
            yield stream
        finally:
            stream.close()


@dataclass(frozen=True)
class _End:
    error: BaseException | None = None


@contextlib.contextmanager
def read_ahead(items: Iterable[_T], depth: int) -> Iterator[Iterator[_T]]:
    """Iterate ``items`` with a background thread producing up to ``depth`` of them ahead (0: no thread).

    Decoding the next frames while the caller runs a model on the current one. The producer's errors
    reach the consumer; leaving the block stops and joins the producer, so the source can be closed
    right after (use it inside :func:`open_video`'s block).
    """
    if depth <= 0:
        yield iter(items)
        return
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_End())
        except BaseException as e:  # handed to the consumer
            put(_End(e))

    def consume() -> Iterator[_T]:
        while True:
            item = buffer.get()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item

    thread = threading.Thread(target=produce, name="signclip-read-ahead", daemon=True)
    thread.start()
    try:
        yield consume()
    finally:
        stop.set()
        thread.join()


def _mp4_codec_tags(head: bytes) -> list[str]:
    """FourCCs of the sample entries of every ``stsd`` box found in the given bytes of an ISO-BMFF file."""
    tags, start = [], 0
    while (i := head.find(b"stsd", start)) >= 0 and i + 20 <= len(head):
        tags.append(head[i + 16:i + 20].decode("latin-1"))
        start = i + 4
    return tags


# an mp4 track's handler type -> what it holds ('mdir' and the like name metadata handlers, not tracks)
_MP4_TRACKS = {"vide": "video", "soun": "audio", "text": "text", "sbtl": "subtitles", "subt": "subtitles",
               "tmcd": "timecode", "hint": "hint track"}


def _mp4_track_kinds(head: bytes) -> list[str]:
    """The handler type of each 'hdlr' box in an mp4 header ('vide', 'soun', ...), read after the box's
    version, flags and pre-defined field."""
    kinds, start = [], 0
    while (i := head.find(b"hdlr", start)) >= 0 and i + 16 <= len(head):
        kinds.append(head[i + 12:i + 16].decode("latin-1"))
        start = i + 4
    return kinds


def explain_unreadable(local_path: str) -> str:
    """Why FFmpeg (through OpenCV) cannot open ``local_path``: empty, unknown container, or unknown codec."""
    size = os.path.getsize(local_path)
    if size == 0:
        return "empty file (0 bytes)"
    with open(local_path, "rb") as f:
        head = f.read(_HEAD_BYTES)
    container = next((name for name, (offset, magic) in _CONTAINER_MAGIC.items()
                      if head[offset:offset + len(magic)] == magic), None)
    if container is None:
        return f"not a video file: unrecognised container (first bytes {head[:16]!r}, {size} bytes)"
    if container.startswith("ISO"):
        if b"moov" not in head and size <= _HEAD_BYTES:
            return "truncated or corrupt mp4: no 'moov' box (the index of the file is missing)"
        tracks = {_MP4_TRACKS[k] for k in _mp4_track_kinds(head) if k in _MP4_TRACKS}
        if b"moov" in head and tracks and "video" not in tracks:
            return f"no video stream: the file holds only {' and '.join(sorted(tracks))} ({container})"
        tags = _mp4_codec_tags(head)
        if tags:
            names = ", ".join(map(repr, tags))
            return f"unsupported or unknown codec: no decoder for sample entry {names} ({container})"
    return f"cannot open video: {container} container, but no decodable video stream (unknown codec or corrupt file)"
