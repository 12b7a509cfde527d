"""Features computed the plain way, through pose-format's public API only (read, get_components, normalize):
the semantics :func:`signclip.pose.features.pose_features` must keep, bit for bit, while it takes shortcuts
(a header parsed once per distinct header, points selected by cached index arrays). Used by the equivalence
test and ``tests/benchmarks/bench_featurize.py``.
"""

from __future__ import annotations

import numpy as np
from pose_format import Pose
from pose_format.pose_header import PoseHeaderCache

from signclip.pose.feature_sets import feature_set
from signclip.pose.layout import BODY_POINTS, LEG_POINTS, check_holistic
from signclip.pose.variants import anonymize, mirror_if_left_handed


def _select(pose: Pose, components) -> Pose:
    return pose.get_components([c for c, _ in components], {c: list(points) for c, points in components})


def reference_features(data: bytes, feature_set_name: str = "reduced_face", *, flip: bool = False,
                       anonymized: bool = False, augment=None, rng: np.random.Generator | None = None,
                       fresh_header: bool = True) -> np.ndarray:
    """``fresh_header``: bypass pose-format's one-entry header cache (the variants write into header objects);
    False is pose-format as a user calls it (the benchmark's baseline)."""
    fs = feature_set(feature_set_name)
    if fresh_header:
        PoseHeaderCache.clear_cache()
    pose = Pose.read(data)
    check_holistic(pose.header, "<reference>", fs.components)
    if flip:
        pose = mirror_if_left_handed(pose)
    keep = fs.components if any(c == "POSE_LANDMARKS" for c, _ in fs.components) else \
        (("POSE_LANDMARKS", BODY_POINTS),) + fs.components
    pose = _select(pose, keep)
    if anonymized:
        pose = anonymize(pose)
    pose.normalize(pose.header.normalization_info(p1=("POSE_LANDMARKS", "RIGHT_SHOULDER"),
                                                  p2=("POSE_LANDMARKS", "LEFT_SHOULDER")))
    if fs.hide_legs:
        idx = [pose.header._get_point_index("POSE_LANDMARKS", p) for p in LEG_POINTS]  # noqa: SLF001
        pose.body.confidence[:, :, idx] = 0
        pose.body.data[:, :, idx, :] = 0
    if keep != fs.components:
        pose = _select(pose, fs.components)
    if fs.hand_3d:
        from pose_format.utils.normalization_3d import PoseNormalizer

        hand, info = "RIGHT_HAND_LANDMARKS", pose.header.normalization_info
        normalizer = PoseNormalizer(plane=info(p1=(hand, "WRIST"), p2=(hand, "PINKY_MCP"),
                                               p3=(hand, "INDEX_FINGER_MCP")),
                                    line=info(p1=(hand, "WRIST"), p2=(hand, "MIDDLE_FINGER_MCP")))
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.ma.getdata(normalizer(pose.body.data)).astype(np.float32)
        out[pose.body.confidence == 0] = 0
        pose.body.data = np.ma.array(out, mask=np.ma.getmaskarray(pose.body.data))
    if augment is not None:
        pose = augment(pose, rng if rng is not None else np.random.default_rng())
    frames = np.ma.getdata(pose.body.data)[:, 0]
    return np.nan_to_num(frames).reshape(frames.shape[0], -1).astype(np.float32)
