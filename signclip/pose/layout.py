"""The MediaPipe Holistic point layout, as data, and the check that a pose really has it.

The names are MediaPipe's (``PoseLandmark``, ``HandLandmark``, the face mesh's contour points) in the order
pose-format's Holistic header lists them; ``tests/test_features.py`` checks them against pose-format's
holistic module. Keeping them here means reading poses never imports MediaPipe.
"""

from __future__ import annotations

from typing import Iterable

from pose_format.pose_header import PoseHeader

_PAIRED = ("SHOULDER", "ELBOW", "WRIST", "PINKY", "INDEX", "THUMB", "HIP", "KNEE", "ANKLE", "HEEL", "FOOT_INDEX")
BODY_POINTS: tuple[str, ...] = (
    ("NOSE",)
    + tuple(f"{side}_EYE{part}" for side in ("LEFT", "RIGHT") for part in ("_INNER", "", "_OUTER"))
    + ("LEFT_EAR", "RIGHT_EAR", "MOUTH_LEFT", "MOUTH_RIGHT")
    + tuple(f"{side}_{part}" for part in _PAIRED for side in ("LEFT", "RIGHT"))
)
_FINGERS = tuple(f"{finger}_{joint}" for finger in ("INDEX_FINGER", "MIDDLE_FINGER", "RING_FINGER", "PINKY")
                 for joint in ("MCP", "PIP", "DIP", "TIP"))
HAND_POINTS: tuple[str, ...] = ("WRIST", "THUMB_CMC", "THUMB_MCP", "THUMB_IP", "THUMB_TIP") + _FINGERS
# The face-mesh points on MediaPipe's FACEMESH_CONTOURS (face oval, lips, eyes, eyebrows), ascending.
FACE_CONTOUR_POINTS: tuple[str, ...] = tuple(str(i) for i in (
    0, 7, 10, 13, 14, 17, 21, 33, 37, 39, 40, 46, 52, 53, 54, 55, 58, 61, 63, 65, 66, 67, 70, 78, 80, 81, 82, 84,
    87, 88, 91, 93, 95, 103, 105, 107, 109, 127, 132, 133, 136, 144, 145, 146, 148, 149, 150, 152, 153, 154, 155,
    157, 158, 159, 160, 161, 162, 163, 172, 173, 176, 178, 181, 185, 191, 234, 246, 249, 251, 263, 267, 269, 270,
    276, 282, 283, 284, 285, 288, 291, 293, 295, 296, 297, 300, 308, 310, 311, 312, 314, 317, 318, 321, 323, 324,
    332, 334, 336, 338, 356, 361, 362, 365, 373, 374, 375, 377, 378, 379, 380, 381, 382, 384, 385, 386, 387, 388,
    389, 390, 397, 398, 400, 402, 405, 409, 415, 454, 466))
# MediaPipe's FACEMESH_CONTOURS: the face's outline, lips, eyes and eyebrows as pairs of face-mesh point numbers
# (the page draws these; a .pose header carries the whole tessellation).
FACE_CONTOUR_LIMBS: tuple[tuple[int, int], ...] = (
    (0, 267), (7, 163), (10, 338), (13, 312), (14, 317), (17, 314), (21, 54), (33, 7), (33, 246), (37, 0), (39,
    37), (40, 39), (46, 53), (52, 65), (53, 52), (54, 103), (58, 132), (61, 146), (61, 185), (63, 105), (65,
    55), (66, 107), (67, 109), (70, 63), (78, 95), (78, 191), (80, 81), (81, 82), (82, 13), (84, 17), (87, 14),
    (88, 178), (91, 181), (93, 234), (95, 88), (103, 67), (105, 66), (109, 10), (127, 162), (132, 93), (136,
    172), (144, 145), (145, 153), (146, 91), (148, 176), (149, 150), (150, 136), (152, 148), (153, 154), (154,
    155), (155, 133), (157, 173), (158, 157), (159, 158), (160, 159), (161, 160), (162, 21), (163, 144), (172,
    58), (173, 133), (176, 149), (178, 87), (181, 84), (185, 40), (191, 80), (234, 127), (246, 161), (249, 390),
    (251, 389), (263, 249), (263, 466), (267, 269), (269, 270), (270, 409), (276, 283), (282, 295), (283, 282),
    (284, 251), (288, 397), (293, 334), (295, 285), (296, 336), (297, 332), (300, 293), (310, 415), (311, 310),
    (312, 311), (314, 405), (317, 402), (318, 324), (321, 375), (323, 361), (324, 308), (332, 284), (334, 296),
    (338, 297), (356, 454), (361, 288), (365, 379), (373, 374), (374, 380), (375, 291), (377, 152), (378, 400),
    (379, 378), (380, 381), (381, 382), (382, 362), (384, 398), (385, 384), (386, 385), (387, 386), (388, 387),
    (389, 356), (390, 373), (397, 365), (398, 362), (400, 377), (402, 318), (405, 321), (409, 291), (415, 308),
    (454, 323), (466, 388),
)
FACE_POINTS: tuple[str, ...] = tuple(str(i) for i in range(468))  # 478-point refined meshes add 10 iris points

LEGS = ("KNEE", "ANKLE", "HEEL", "FOOT_INDEX")
LEG_POINTS = tuple(f"{side}_{part}" for part in LEGS for side in ("LEFT", "RIGHT"))


class PoseLayoutError(ValueError):
    """The pose is not a MediaPipe Holistic pose with the points a feature set needs."""


def _preview(names: Iterable[str], limit: int = 6) -> str:
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_holistic(header: PoseHeader, name: str, needed: Iterable[tuple[str, Iterable[str]]]) -> None:
    """Raise ``PoseLayoutError`` naming every missing component or point, or a wrong point format.

    The body is always needed: normalisation uses its shoulders whatever the feature set.
    """
    have = {c.name: c for c in header.components}
    needed = dict(needed)
    needed.setdefault("POSE_LANDMARKS", BODY_POINTS)
    problems = []
    for component, points in needed.items():
        if component not in have:
            problems.append(f"component {component} is missing")
            continue
        present = set(have[component].points)
        missing = [p for p in points if p not in present]
        if missing:
            problems.append(f"{component} lacks {len(missing)} of the points it needs ({_preview(missing)})")
        elif have[component].format[:3] != "XYZ":
            problems.append(f"{component} has point format {have[component].format!r}, needs XYZ")
    if problems:
        found = ", ".join(f"{c.name} ({len(c.points)} points)" for c in header.components)
        raise PoseLayoutError(f"{name}: not a MediaPipe Holistic pose: {'; '.join(problems)}. Found: {found}")
