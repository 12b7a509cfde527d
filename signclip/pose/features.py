"""Pose -> model input: a float32 ``[T, D]`` array per clip, and padded batches with a frame mask.

The ``reduced_face`` set reproduces the released SignCLIP (E7.2) exactly: POSE 33 + the 128 face-contour
points + both hands = 203 points, normalised by the shoulders over the WHOLE clip, legs hidden (hips
kept), ``nan -> 0``, flattened point-major. Points that were not detected (confidence 0) keep their raw
stored value (0 in MediaPipe files). Truncation to the model's frame limit is not done here: it must
come after normalisation, and the model's long-clip policy decides it.

The arithmetic is pose-format's (``Pose.get_components`` and ``Pose.normalize`` on masked arrays), done with
index arrays worked out once per header and feature set (:class:`Selection`) and with the masked arrays'
operations written out on plain arrays, so a clip costs a body read and a few array operations;
``tests/reference_features.py`` computes the same through pose-format's API and ``tests/test_features.py``
checks that every real pose, feature set and variant matches it bit for bit.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

import numpy as np
from numpy import ma
from pose_format import Pose
from pose_format.numpy.pose_body import NumPyPoseBody
from pose_format.pose_header import PoseHeader, PoseHeaderDimensions

from signclip.pose.feature_sets import FeatureSet, feature_set
from signclip.pose.layout import BODY_POINTS, LEG_POINTS, PoseLayoutError, check_holistic
from signclip.pose.reader import PoseInputError, PoseSource, describe, read_pose
from signclip.pose.variants import anonymize, mirror_if_left_handed

if TYPE_CHECKING:
    from signclip.pose.augment import Augmentation

POINTS_FIRST = (2, 1, 0, 3)  # frames, people, points, dims <-> points, people, frames, dims (pose-format's)


def _offsets(header: PoseHeader) -> dict[str, tuple[int, dict[str, int]]]:
    out, start = {}, 0
    for c in header.components:
        out.setdefault(c.name, (start, {p: i for i, p in reversed(list(enumerate(c.points)))}))
        start += len(c.points)
    return out


def _subset_header(header: PoseHeader, components: tuple[tuple[str, tuple[str, ...]], ...]) -> PoseHeader:
    """The header pose-format's ``get_components`` would give (limbs remapped), from the header alone."""
    points = sum(len(c.points) for c in header.components)
    dims = max(len(c.format) for c in header.components) - 1
    empty = Pose(header, NumPyPoseBody(0, np.zeros((0, 1, points, dims), dtype=np.float32),
                                       np.zeros((0, 1, points), dtype=np.float32)))
    return empty.get_components([c for c, _ in components], {c: list(p) for c, p in components}).header


class Selection:
    """Which points of one header feed one feature set: index arrays, worked out once per (header, set)."""

    def __init__(self, header: PoseHeader, fs: FeatureSet, name: str):
        check_holistic(header, name, fs.components)
        # The shoulders must stay in the selection until normalisation (hand-only sets select afterwards;
        # the reference's order of select-then-normalise fails for them).
        self.keep_components = fs.components if any(c == "POSE_LANDMARKS" for c, _ in fs.components) else \
            (("POSE_LANDMARKS", BODY_POINTS),) + fs.components
        offsets = _offsets(header)
        self.keep = np.array([offsets[c][0] + offsets[c][1][p] for c, points in self.keep_components for p in points],
                             dtype=np.intp)
        within = {}
        start = 0
        for c, points in self.keep_components:
            for i, p in enumerate(points):
                within.setdefault((c, p), start + i)
            start += len(points)
        self.shoulders = (within[("POSE_LANDMARKS", "RIGHT_SHOULDER")], within[("POSE_LANDMARKS", "LEFT_SHOULDER")])
        self.legs = np.array([within[("POSE_LANDMARKS", p)] for p in LEG_POINTS], dtype=np.intp) if fs.hide_legs \
            else None
        self.final = None if self.keep_components == fs.components else \
            np.array([within[(c, p)] for c, points in fs.components for p in points], dtype=np.intp)
        self._header, self._fs = header, fs
        self._headers: dict[str, PoseHeader] = {}

    def header(self, which: str) -> PoseHeader:
        """A fresh header of the ``"keep"`` or ``"final"`` selection, for pose-format functions that want a Pose
        (they may write into its dimensions: never hand them a shared header)."""
        if which not in self._headers:
            components = self.keep_components if which == "keep" else self._fs.components
            self._headers[which] = _subset_header(self._header, components)
        h = self._headers[which]
        return PoseHeader(h.version, PoseHeaderDimensions(h.dimensions.width, h.dimensions.height,
                                                          h.dimensions.depth), h.components, h.is_bbox)


_SELECTIONS: weakref.WeakKeyDictionary[PoseHeader, dict[str, Selection]] = weakref.WeakKeyDictionary()


def selection(header: PoseHeader, fs: FeatureSet, name: str) -> Selection:
    """The :class:`Selection` of ``fs`` in ``header`` (raises ``PoseLayoutError`` for a header without its points)."""
    per_header = _SELECTIONS.setdefault(header, {})
    found = per_header.get(fs.name)
    if found is None:
        found = per_header[fs.name] = Selection(header, fs, name)
    return found


def _select(data: np.ndarray, mask: np.ndarray, confidence: np.ndarray,
            index: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # pose-format's NumPyPoseBody.get_points, step for step (the same memory layout, so the same float sums)
    def pick(array: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
        return np.transpose(np.transpose(array, axes)[index], axes)

    return pick(data, POINTS_FIRST), pick(mask, POINTS_FIRST), pick(confidence, (2, 1, 0))


def _masked(op, a: np.ndarray, a_mask: np.ndarray, b, b_mask) -> tuple[np.ndarray, np.ndarray]:
    # numpy.ma's binary operations: computed everywhere, masked results keep the first operand's value
    mask = a_mask | b_mask
    result = op(a, b)
    np.copyto(result, a, casting="unsafe", where=mask)
    return result, mask


def _masked_sum(x: np.ndarray, mask: np.ndarray, axis) -> np.ndarray:
    filled = x.copy("K")  # numpy.ma's filled(0), in the same layout
    np.copyto(filled, 0, where=mask)
    return filled.sum(axis=axis)


_TWO, _UNMASKED = np.asarray(2), np.zeros((), dtype=bool)  # numpy.ma wraps scalars as 0-d arrays (int64: float64 out)


def _normalize_by_shoulders(data: np.ndarray, mask: np.ndarray, confidence: np.ndarray,
                            shoulders: tuple[int, int], name: str) -> np.ndarray:
    """pose-format's ``Pose.normalize`` by the shoulders (centred on their midpoint, their mean distance 1) on
    its masked arrays, written out as the array operations numpy.ma performs, in its order and dtypes; the
    result is float64, as pose-format's is. ``data`` is centred in place."""
    if not np.any(np.all(confidence[:, 0, list(shoulders)] > 0, axis=-1)):
        raise PoseInputError(f"{name}: no frame with both shoulders detected, cannot normalise")
    points, points_mask = np.transpose(data, POINTS_FIRST), np.transpose(mask, POINTS_FIRST)
    (p1, m1), (p2, m2) = (points[shoulders[0]], points_mask[shoulders[0]]), \
        (points[shoulders[1]], points_mask[shoulders[1]])
    total, total_mask = _masked(np.add, p2, m2, p1, m1)
    middle, middle_mask = _masked(np.true_divide, total, total_mask, _TWO, _UNMASKED)
    center = _masked_sum(middle, middle_mask, (0, 1)) * 1. / (~middle_mask).sum(axis=(0, 1))
    data -= np.where(mask, center.dtype.type(0), center)
    # pose-format's distance_batch, on the shoulders as centred (views of data)
    difference, difference_mask = _masked(np.subtract, p1, m1, p2, m2)
    squared, squared_mask = _masked(np.power, difference, difference_mask, _TWO, _UNMASKED)
    distance, distance_mask = np.sqrt(_masked_sum(squared, squared_mask, -1)), squared_mask.all(axis=-1)
    mean_distance = _masked_sum(distance, distance_mask, None) * 1. / (~distance_mask).sum()
    scaled = data * (1 / mean_distance)
    np.copyto(scaled, data, casting="unsafe", where=mask)
    return scaled


def _normalize_hand_3d(pose: Pose) -> Pose:
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
    return pose


def feature_error(e: BaseException) -> str:
    """What went wrong for one clip, as its failed row says it: our own errors are full sentences naming the
    input; anything else (a bug, or a file of a shape nobody checked for) gets its type for the reader."""
    if isinstance(e, (PoseInputError, PoseLayoutError, FileNotFoundError)):
        return str(e)
    return f"{type(e).__name__}: {e}"


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
    chosen = selection(pose.header, fs, name)
    if pose.body.data.shape[0] == 0:
        raise PoseInputError(f"{name}: the clip has zero frames")
    if flip:
        pose = mirror_if_left_handed(pose)
        chosen = selection(pose.header, fs, name)
    body = pose.body
    data, mask, confidence = _select(np.ma.getdata(body.data), np.ma.getmaskarray(body.data), body.confidence,
                                     chosen.keep)
    if anonymized:
        kept = anonymize(Pose(chosen.header("keep"), NumPyPoseBody(body.fps, ma.array(data, mask=mask), confidence)))
        data, mask, confidence = np.ma.getdata(kept.body.data), np.ma.getmaskarray(kept.body.data), \
            kept.body.confidence
    data = _normalize_by_shoulders(data, mask, confidence, chosen.shoulders, name)
    if chosen.legs is not None:
        # pose-format's pose_hide_legs also hides the hips; the reference keeps them
        confidence[:, :, chosen.legs] = 0
        data[:, :, chosen.legs, :] = 0
        mask[:, :, chosen.legs, :] = False  # numpy.ma unmasks what is assigned
    if chosen.final is not None:
        data, mask, confidence = _select(data, mask, confidence, chosen.final)
    if fs.hand_3d or augment is not None:
        pose = Pose(chosen.header("final"), NumPyPoseBody(body.fps, ma.array(data, mask=mask), confidence))
        if fs.hand_3d:
            pose = _normalize_hand_3d(pose)
        if augment is not None:
            pose = augment(pose, rng if rng is not None else np.random.default_rng())
        data = np.ma.getdata(pose.body.data)
    frames = data[:, 0]
    out = np.nan_to_num(frames.reshape(frames.shape[0], -1).astype(np.float32), copy=False)
    if out.shape[0] == 0:
        raise PoseInputError(f"{name}: the clip has zero frames")
    return out


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
