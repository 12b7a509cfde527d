"""The imported model's forward pass against the independent reference (tests/reference_forward.py), to 1e-4,
on a tiny random fairseq checkpoint and the real sample poses."""

from __future__ import annotations

import numpy as np
import numpy.ma as ma
import pytest
from pose_format import Pose
from pose_format.numpy import NumPyPoseBody

import signclip
from tests.fairseq_fixture import make_fairseq_checkpoint
from tests.reference_forward import (
    load_state_dict_fp32,
    reference_pose_features,
    reference_text_embedding,
    reference_tokenizer,
    reference_video_embedding,
)

TOL = 1e-4
HEADS = 4
POSES = ["house-colin-1", "house-spreadthesign", "sad-colin", "library", "refined-face-553"]  # 576 / 553 points
LONG_PROMPT = "<en> <ase> " + " ".join(["House library police sad"] * 20)  # far more than 61 word pieces
PROMPTS = ["<en> <ase> house", "House", "house", "<en> <fsl> house", "<en> <ase> police", "random text",
           "Fingerspell the letter A in German Sign Language.", "<en> <gsg> Über housing", LONG_PROMPT]


class Tiny:
    def __init__(self, directory, scale: float):
        # different depths per tower, heads not derivable from shapes, special tokens not at 101/102
        self.ckpt, self.bert = make_fairseq_checkpoint(directory, hidden=32, layers_video=2, layers_text=3,
                                                       heads=HEADS, intermediate=64, seed=1, scale=scale)
        self.model = signclip.from_fairseq(self.ckpt, bert=self.bert)
        self.sd = load_state_dict_fp32(self.ckpt)
        self.tok = reference_tokenizer(self.bert)
        self.cls, self.sep = self.tok.cls_token_id, self.tok.sep_token_id
        self._cache: dict = {}

    def video(self, features):
        return reference_video_embedding(self.sd, features, HEADS, cls_id=self.cls, sep_id=self.sep)

    def video_of(self, path: str):
        if path not in self._cache:
            self._cache[path] = self.video(reference_pose_features(path))
        return self._cache[path]

    def text(self, prompt):
        if ("text", prompt) in self._cache:
            return self._cache["text", prompt]
        ids = self.tok(prompt, add_special_tokens=False)["input_ids"]
        self._cache["text", prompt] = reference_text_embedding(self.sd, ids, HEADS, cls_id=self.cls,
                                                               sep_id=self.sep, pad_id=self.tok.pad_token_id)
        return self._cache["text", prompt]


# Weight scale 0.02 (BERT's init) keeps activations small: there the MLP LayerNorm's eps (1e-5, not 1e-12)
# shows (~8e-4) but tanh-GELU instead of erf-GELU does not (~3e-5); at 0.2 it is the other way round.
@pytest.fixture(scope="module", params=[0.02, 0.2], ids=["w0.02", "w0.2"])
def tiny(request, tmp_path_factory) -> Tiny:
    return Tiny(tmp_path_factory.mktemp("tiny"), request.param)


def _max_diff(a, b) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max())


def _long_pose(poses_dir) -> Pose:
    """279 frames: four real 576-point clips back to back (truncation to 256 drops most of the last one)."""
    parts = [Pose.read((poses_dir / f"{n}.pose").read_bytes())
             for n in ("house-spreadthesign", "sad-colin", "house-colin-1", "library")]
    data = ma.concatenate([p.body.data for p in parts])
    conf = np.concatenate([p.body.confidence for p in parts])
    return Pose(parts[0].header, NumPyPoseBody(parts[0].body.fps, data, conf))


def test_pose_embeddings_match_reference(tiny, poses_dir):
    paths = [str(poses_dir / f"{n}.pose") for n in POSES]
    got = tiny.model.embed_poses(paths)
    assert isinstance(got, np.ndarray) and got.dtype == np.float32 and got.shape == (len(paths), 32)
    for path, row in zip(paths, got):
        want = tiny.video_of(path)
        assert _max_diff(row, want) <= TOL, (path, _max_diff(row, want))


def test_pose_input_kinds_agree_and_pose_is_not_modified(tiny, poses_dir):
    path = poses_dir / "library.pose"
    pose = Pose.read(path.read_bytes())
    before = np.array(pose.body.data.data)
    by_kind = tiny.model.embed_poses([path, path.read_bytes(), pose])  # pathlib.Path, bytes, Pose
    assert np.array_equal(np.array(pose.body.data.data), before), "embed_poses modified the caller's Pose"
    alone = tiny.model.embed_poses([str(path)])[0]
    for row in by_kind:
        assert _max_diff(row, alone) <= 1e-6


def test_long_clip_is_normalised_whole_then_truncated(tiny, poses_dir):
    pose = _long_pose(poses_dir)
    assert len(pose.body.data) > 256
    want = tiny.video(reference_pose_features(pose))  # normalise over all frames, keep the first 256
    body = pose.body
    truncated_first = Pose(pose.header, NumPyPoseBody(body.fps, body.data[:256], body.confidence[:256]))
    # the test is only meaningful if the order (normalise, then truncate) matters
    assert _max_diff(tiny.video(reference_pose_features(truncated_first)), want) > 10 * TOL
    got = tiny.model.embed_poses([pose])[0]
    assert _max_diff(got, want) <= TOL, _max_diff(got, want)


def test_text_embeddings_match_reference(tiny):
    assert len(tiny.tok.tokenize(LONG_PROMPT)) > 61
    got = tiny.model.embed_texts(PROMPTS)
    assert isinstance(got, np.ndarray) and got.dtype == np.float32 and got.shape == (len(PROMPTS), 32)
    for prompt, row in zip(PROMPTS, got):
        want = tiny.text(prompt)
        assert _max_diff(row, want) <= TOL, (prompt, _max_diff(row, want))
    assert _max_diff(got[1], got[2]) > 10 * TOL, "'House' and 'house' must differ: the tokenizer is cased"


def test_score_matrix_matches_reference(tiny, poses_dir):
    paths = [str(poses_dir / f"{n}.pose") for n in POSES]
    videos = tiny.model.embed_poses(paths)
    texts = tiny.model.embed_texts(PROMPTS)
    want = np.stack([tiny.text(p) for p in PROMPTS]).astype(np.float64) @ \
        np.stack([tiny.video_of(p) for p in paths]).astype(np.float64).T
    got = texts.astype(np.float64) @ videos.astype(np.float64).T
    scale = max(1.0, float(np.abs(want).max()))
    assert _max_diff(got, want) <= TOL * scale, (_max_diff(got, want), scale)
