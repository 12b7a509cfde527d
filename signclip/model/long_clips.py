"""The model's policy for clips longer than its frame limit, in plain Python (no torch): featurising workers
decide what a clip becomes without importing the model.

``"truncate"`` keeps the first ``max_frames`` frames (the reference); ``"window"`` averages the embeddings of
``max_frames``-long windows taken every ``window_stride`` frames, the last one ending at the clip's end.
"""

from __future__ import annotations

from typing import Literal

LongClips = Literal["truncate", "window"]
WINDOW_STRIDE = 128  # frames between windows unless a caller chooses (the embed job's --window-stride default)


def windows(length: int, size: int, stride: int) -> list[tuple[int, int]]:
    """``(start, end)`` of windows covering ``length`` frames; one window when the clip fits."""
    if length <= size:
        return [(0, length)]
    starts = list(range(0, length - size + 1, stride))
    if starts[-1] != length - size:
        starts.append(length - size)
    return [(s, s + size) for s in starts]
