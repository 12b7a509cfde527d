"""Which Holistic points feed the model, in which order: the feature sets, by name (pure data)."""

from __future__ import annotations

from dataclasses import dataclass

from signclip.pose.layout import BODY_POINTS, FACE_CONTOUR_POINTS, FACE_POINTS, HAND_POINTS


@dataclass(frozen=True)
class FeatureSet:
    """Which points, in which order, feed the model."""

    name: str
    components: tuple[tuple[str, tuple[str, ...]], ...]  # (component name, point names) in model order
    hide_legs: bool  # zero knees/ankles/heels/feet (the reference does it whenever the body is kept)
    hand_3d: bool = False  # rotate/scale each frame's hand to a canonical 3-D frame (FingerCLIP ablation)

    @property
    def num_points(self) -> int:
        return sum(len(points) for _, points in self.components)

    @property
    def dim(self) -> int:
        return 3 * self.num_points


_HANDS = (("LEFT_HAND_LANDMARKS", HAND_POINTS), ("RIGHT_HAND_LANDMARKS", HAND_POINTS))
# The face points of the paper's isolated-sign models (Google's ASL Signs data): nose, lips, eyes.
_ISLR_FACE = tuple(str(i) for i in sorted(
    [1, 2, 98, 327]
    + [0, 61, 185, 40, 39, 37, 267, 269, 270, 409, 291, 146, 91, 181, 84, 17, 314, 405, 321, 375,
       78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308]
    + [33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173]
    + [263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398]))

FEATURE_SETS: dict[str, FeatureSet] = {
    fs.name: fs
    for fs in (
        FeatureSet("reduced_face", (("POSE_LANDMARKS", BODY_POINTS), ("FACE_LANDMARKS", FACE_CONTOUR_POINTS))
                   + _HANDS, hide_legs=True),
        FeatureSet("full_body", (("POSE_LANDMARKS", BODY_POINTS), ("FACE_LANDMARKS", FACE_POINTS)) + _HANDS,
                   hide_legs=True),
        FeatureSet("right_hand", (("RIGHT_HAND_LANDMARKS", HAND_POINTS),), hide_legs=False),
        FeatureSet("right_hand_3d", (("RIGHT_HAND_LANDMARKS", HAND_POINTS),), hide_legs=False, hand_3d=True),
        FeatureSet("islr_face", (("POSE_LANDMARKS", BODY_POINTS), ("FACE_LANDMARKS", _ISLR_FACE)) + _HANDS,
                   hide_legs=True),
    )
}


def feature_set(name: str) -> FeatureSet:
    """The feature set called ``name``; ``ValueError`` listing the known ones otherwise."""
    try:
        return FEATURE_SETS[name]
    except KeyError:
        raise ValueError(f"unknown feature set {name!r}; known: {sorted(FEATURE_SETS)}") from None
