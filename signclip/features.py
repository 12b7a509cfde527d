"""Pose -> model input: a float32 ``[T, D]`` array per clip, and padded batches with a frame mask.

The ``reduced_face`` set reproduces the released SignCLIP (E7.2) exactly: POSE 33 + the 128 face-contour
points + both hands = 203 points, normalised by the shoulders over the WHOLE clip, legs hidden (hips
kept), ``nan -> 0``, flattened point-major. Points that were not detected (confidence 0) keep their raw
stored value (0 in MediaPipe files). Truncation to the model's frame limit is not done here: it must
come after normalisation, and the model's long-clip policy decides it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

import numpy as np
from pose_format import Pose

from signclip import storage
from signclip.holistic_layout import (BODY_POINTS, FACE_CONTOUR_POINTS, FACE_POINTS, HAND_POINTS, LEG_POINTS,
                                      check_holistic)

if TYPE_CHECKING:
    from signclip.augment import Augmentation

PoseSource = Union[str, os.PathLike, bytes, Pose]


class PoseInputError(ValueError):
    """A pose that cannot be turned into features; the message names the input and the problem."""


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
    try:
        return FEATURE_SETS[name]
    except KeyError:
        raise ValueError(f"unknown feature set {name!r}; known: {sorted(FEATURE_SETS)}") from None


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
        from signclip.datasets.google_parquet import google_parquet_to_pose

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


def _select(pose: Pose, components: tuple[tuple[str, tuple[str, ...]], ...]) -> Pose:
    return pose.get_components([c for c, _ in components], {c: list(points) for c, points in components})


def _normalize_by_shoulders(pose: Pose, name: str) -> None:
    info = pose.header.normalization_info(p1=("POSE_LANDMARKS", "RIGHT_SHOULDER"),
                                          p2=("POSE_LANDMARKS", "LEFT_SHOULDER"))
    shoulders = pose.body.confidence[:, 0, [info.p1, info.p2]]
    if not np.any(np.all(shoulders > 0, axis=-1)):
        raise PoseInputError(f"{name}: no frame with both shoulders detected, cannot normalise")
    pose.normalize(info)


def _hide_legs(pose: Pose) -> None:
    # pose-format's pose_hide_legs also hides the hips; the reference keeps them.
    idx = [pose.header._get_point_index("POSE_LANDMARKS", p) for p in LEG_POINTS]  # noqa: SLF001
    pose.body.confidence[:, :, idx] = 0
    pose.body.data[:, :, idx, :] = 0


def _normalize_hand_3d(pose: Pose) -> None:
    """Per frame: wrist at the origin, the palm plane (wrist, pinky MCP, index MCP) facing z, the
    wrist -> middle-finger MCP line along an axis, unit size (pose-format's ``PoseNormalizer``)."""
    from pose_format.utils.normalization_3d import PoseNormalizer

    hand = "RIGHT_HAND_LANDMARKS"
    info = pose.header.normalization_info
    normalizer = PoseNormalizer(plane=info(p1=(hand, "WRIST"), p2=(hand, "PINKY_MCP"), p3=(hand, "INDEX_FINGER_MCP")),
                                line=info(p1=(hand, "WRIST"), p2=(hand, "MIDDLE_FINGER_MCP")))
    with np.errstate(invalid="ignore", divide="ignore"):
        data = np.ma.getdata(normalizer(pose.body.data)).astype(np.float32)
    data[pose.body.confidence == 0] = 0  # frames without the hand stay zero, not NaN or garbage
    pose.body.data = np.ma.array(data, mask=np.ma.getmaskarray(pose.body.data))


def right_hand_never_seen(pose: Pose) -> bool:
    """The reference's test-time flip criterion: the right hand does not move (never detected)."""
    hand = pose.get_components(["RIGHT_HAND_LANDMARKS"])
    return bool(np.nan_to_num(np.ma.getdata(hand.body.data)).var(axis=0).sum() == 0)


def mirror_if_left_handed(pose: Pose) -> Pose:
    """Mirror to right-handed (pose-format's ``mirror_horizontal``) when the right hand is never seen."""
    if not right_hand_never_seen(pose):
        return pose
    from signclip.holistic_layout import holistic_module

    mirrored = holistic_module().mirror_horizontal(pose)
    # mirror_horizontal reflects undetected points too (0 -> width); keep them at 0 like MediaPipe does.
    undetected = mirrored.body.confidence == 0
    data = np.ma.getdata(mirrored.body.data).copy()
    data[undetected] = 0
    mirrored.body.data = np.ma.array(data, mask=np.ma.getmaskarray(mirrored.body.data))
    return mirrored


def anonymize(pose: Pose) -> Pose:
    """Replace the signer's appearance by the mean appearance (the ``pose-anonymization`` package)."""
    from pose_anonymization.appearance import remove_appearance

    return remove_appearance(pose)


def pose_features(source: PoseSource, feature_set_name: str = "reduced_face", *, flip: bool = False,
                  anonymized: bool = False, augment: "Augmentation | None" = None,
                  rng: np.random.Generator | None = None) -> np.ndarray:
    """Float32 ``[T, D]`` model input for one clip (all frames; truncation is the model's business).

    ``flip`` and ``anonymized`` are the paper's test-time variants; ``augment`` applies seeded training
    augmentation after normalisation, as the reference does.
    """
    fs = feature_set(feature_set_name)
    name = describe(source)
    pose = read_pose(source)
    check_holistic(pose, name, fs.components)
    if pose.body.data.shape[0] == 0:
        raise PoseInputError(f"{name}: the clip has zero frames")
    if flip:
        pose = mirror_if_left_handed(pose)
    # The shoulders must stay in the selection until normalisation (hand-only sets select afterwards,
    # the reference's order of select-then-normalise fails for them).
    keep = fs.components if any(c == "POSE_LANDMARKS" for c, _ in fs.components) else \
        (("POSE_LANDMARKS", BODY_POINTS),) + fs.components
    pose = _select(pose, keep)
    if anonymized:
        pose = anonymize(pose)
    _normalize_by_shoulders(pose, name)
    if fs.hide_legs:
        _hide_legs(pose)
    if keep != fs.components:
        pose = _select(pose, fs.components)
    if fs.hand_3d:
        _normalize_hand_3d(pose)
    if augment is not None:
        pose = augment(pose, rng if rng is not None else np.random.default_rng())
    data = np.ma.getdata(pose.body.data)[:, 0]
    frames = np.nan_to_num(data).reshape(data.shape[0], -1).astype(np.float32)
    if frames.shape[0] == 0:
        raise PoseInputError(f"{name}: the clip has zero frames")
    return frames


def collate(clips: list[np.ndarray], max_frames: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Zero-pad clips to the longest (or ``max_frames``): ``[B, T, D]`` float32 and a ``[B, T]`` bool mask."""
    if not clips:
        raise ValueError("collate: no clips")
    length = max(c.shape[0] for c in clips) if max_frames is None else max_frames
    out = np.zeros((len(clips), length, clips[0].shape[1]), dtype=np.float32)
    mask = np.zeros((len(clips), length), dtype=bool)
    for i, c in enumerate(clips):
        n = min(c.shape[0], length)
        out[i, :n] = c[:n]
        mask[i, :n] = True
    return out, mask
