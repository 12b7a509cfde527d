"""Pose -> model input: a float32 ``[T, D]`` array per clip, and padded batches with a frame mask.

The ``reduced_face`` set reproduces the released SignCLIP (E7.2) exactly: POSE 33 + the 128 face-contour
points + both hands = 203 points, normalised by the shoulders over the WHOLE clip, legs hidden (hips
kept), ``nan -> 0``, flattened point-major. Points that were not detected (confidence 0) keep their raw
stored value (0 in MediaPipe files). Truncation to the model's frame limit is not done here: it must
come after normalisation, and the model's long-clip policy decides it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from pose_format import Pose

from signclip.pose.feature_sets import feature_set
from signclip.pose.layout import BODY_POINTS, LEG_POINTS, check_holistic
from signclip.pose.reader import PoseInputError, PoseSource, describe, read_pose
from signclip.pose.variants import anonymize, mirror_if_left_handed

if TYPE_CHECKING:
    from signclip.pose.augment import Augmentation


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
