"""The MediaPipe Holistic point layout, and the check that a pose really has it.

Point names come from pose-format's Holistic module (which reads them from MediaPipe), loaded once.
"""

from __future__ import annotations

import contextlib
import os
from functools import cache
from types import ModuleType
from typing import Iterable

from pose_format import Pose

LEGS = ("KNEE", "ANKLE", "HEEL", "FOOT_INDEX")
LEG_POINTS = tuple(f"{side}_{part}" for part in LEGS for side in ("LEFT", "RIGHT"))


class PoseLayoutError(ValueError):
    """The pose is not a MediaPipe Holistic pose with the points a feature set needs."""


@contextlib.contextmanager
def _stderr_silenced():
    # MediaPipe's C++ bindings print a harmless protobuf AttributeError to fd 2 at import time.
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@cache
def holistic_module() -> ModuleType:
    """``pose_format.utils.holistic`` (imports MediaPipe), imported once and quietly."""
    with _stderr_silenced():
        from pose_format.utils import holistic
    return holistic


def _names() -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    h = holistic_module()
    return tuple(h.BODY_POINTS), tuple(h.HAND_POINTS), tuple(h.FACEMESH_CONTOURS_POINTS)


BODY_POINTS, HAND_POINTS, FACE_CONTOUR_POINTS = _names()
FACE_POINTS = tuple(str(i) for i in range(468))  # 478-point refined meshes add 10 iris points after these


def _preview(names: Iterable[str], limit: int = 6) -> str:
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_holistic(pose: Pose, name: str, needed: Iterable[tuple[str, Iterable[str]]]) -> None:
    """Raise ``PoseLayoutError`` naming every missing component or point, or a wrong point format.

    The body is always needed: normalisation uses its shoulders whatever the feature set.
    """
    have = {c.name: c for c in pose.header.components}
    needed = dict(needed)
    needed.setdefault("POSE_LANDMARKS", BODY_POINTS)
    problems = []
    for component, points in needed.items():
        if component not in have:
            problems.append(f"component {component} is missing")
            continue
        missing = [p for p in points if p not in set(have[component].points)]
        if missing:
            problems.append(f"{component} lacks {len(missing)} of the points it needs ({_preview(missing)})")
        elif have[component].format[:3] != "XYZ":
            problems.append(f"{component} has point format {have[component].format!r}, needs XYZ")
    if problems:
        found = ", ".join(f"{c.name} ({len(c.points)} points)" for c in pose.header.components)
        raise PoseLayoutError(f"{name}: not a MediaPipe Holistic pose: {'; '.join(problems)}. Found: {found}")
