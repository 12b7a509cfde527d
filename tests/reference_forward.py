"""An independent plain-torch re-implementation of SignCLIP's forward pass, written from CHECKPOINT.md and
SIGNCLIP.md only (no ``signclip`` import, no transformers model). Computed in float64 from the fp32 weights,
so that it is a sharper yardstick than the float32 model under test.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from pose_format import Pose

MAX_FRAMES = 256
MAX_TEXT_TOKENS = 61
TEXT_POSITIONS = 63
LEGS = [f"{side}_{part}" for part in ("KNEE", "ANKLE", "HEEL", "FOOT_INDEX") for side in ("LEFT", "RIGHT")]


def face_contour_points() -> list[str]:
    """The 128 face-contour points: the numerically sorted union of MediaPipe's FACEMESH_CONTOURS, as strings."""
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_CONTOURS

    return [str(i) for i in sorted({i for edge in FACEMESH_CONTOURS for i in edge})]


def load_pose(pose) -> Pose:
    """A fresh Pose from a path, ``.pose`` bytes, or a Pose (copied, never modified)."""
    if isinstance(pose, Pose):
        return Pose(pose.header, pose.body.copy())
    data = pose if isinstance(pose, (bytes, bytearray)) else Path(pose).read_bytes()
    return Pose.read(bytes(data))


def reference_pose_features(pose, max_frames: int | None = MAX_FRAMES) -> np.ndarray:
    """[T, 609] float32 features: 203 points (POSE, FACE contours, LEFT, RIGHT hands) x (x, y, z)."""
    pose = load_pose(pose)
    components = ["POSE_LANDMARKS", "FACE_LANDMARKS", "LEFT_HAND_LANDMARKS", "RIGHT_HAND_LANDMARKS"]
    pose = pose.get_components(components, {"FACE_LANDMARKS": face_contour_points()})
    # normalise over the WHOLE clip, before any truncation
    pose = pose.normalize(pose.header.normalization_info(p1=("POSE_LANDMARKS", "RIGHT_SHOULDER"),
                                                         p2=("POSE_LANDMARKS", "LEFT_SHOULDER")))
    names = pose.header.components[0].points
    assert pose.header.components[0].name == "POSE_LANDMARKS"
    legs = [names.index(n) for n in LEGS]  # POSE is the first component: point index == body index
    data = np.array(pose.body.data.data, dtype=np.float32)  # raw values, masked points included
    data[:, :, legs, :] = 0
    data = np.nan_to_num(data)[:, 0]  # person 0 -> [T, 203, 3]
    feats = data.reshape(data.shape[0], -1)
    assert feats.shape[1] == 609, feats.shape
    return feats if max_frames is None else feats[:max_frames]


# ---------------------------------------------------------------- building blocks, written out


def _gelu(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def _layer_norm(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * w + b


def _linear(x: torch.Tensor, sd: dict, name: str) -> torch.Tensor:
    return x @ sd[name + ".weight"].T + sd[name + ".bias"]


def _bert_layer(x: torch.Tensor, valid: torch.Tensor, sd: dict, p: str, heads: int) -> torch.Tensor:
    """One post-LN BERT layer on x [S, H]; ``valid`` [S] bool marks the keys that may be attended to."""
    s, h = x.shape
    d = h // heads

    def split(t):  # [S, H] -> [heads, S, d]
        return t.view(s, heads, d).transpose(0, 1)

    q = split(_linear(x, sd, p + "attention.self.query"))
    k = split(_linear(x, sd, p + "attention.self.key"))
    v = split(_linear(x, sd, p + "attention.self.value"))
    scores = q @ k.transpose(1, 2) / math.sqrt(d)
    scores = scores.masked_fill(~valid[None, None, :], float("-inf"))
    ctx = (torch.softmax(scores, dim=-1) @ v).transpose(0, 1).reshape(s, h)
    a = _layer_norm(_linear(ctx, sd, p + "attention.output.dense") + x,
                    sd[p + "attention.output.LayerNorm.weight"], sd[p + "attention.output.LayerNorm.bias"], 1e-12)
    inter = _gelu(_linear(a, sd, p + "intermediate.dense"))
    return _layer_norm(_linear(inter, sd, p + "output.dense") + a,
                       sd[p + "output.LayerNorm.weight"], sd[p + "output.LayerNorm.bias"], 1e-12)


def _bert_encoder(emb: torch.Tensor, positions: torch.Tensor, valid: torch.Tensor, sd: dict, p: str,
                  heads: int) -> torch.Tensor:
    """Embeddings [S, H] (word or frame tokens) + position + type-0, LayerNorm, then every layer under ``p``."""
    x = emb + sd[p + "embeddings.position_embeddings.weight"][positions] \
        + sd[p + "embeddings.token_type_embeddings.weight"][0]
    x = _layer_norm(x, sd[p + "embeddings.LayerNorm.weight"], sd[p + "embeddings.LayerNorm.bias"], 1e-12)
    n = 0
    while f"{p}encoder.layer.{n}.output.dense.weight" in sd:
        x = _bert_layer(x, valid, sd, f"{p}encoder.layer.{n}.", heads)
        n += 1
    assert n > 0
    return x


def _as64(state_dict: dict) -> dict:
    return {k.removeprefix("mmmodel."): v.to(torch.float64) for k, v in state_dict.items()}


def load_state_dict_fp32(ckpt_path) -> dict:
    """The checkpoint's ``model`` dict, prefix stripped, as float32 (independently of the importer)."""
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    sd = ckpt.get("model", ckpt.get("state_dict"))
    return {k.removeprefix("mmmodel."): v.float() for k, v in sd.items() if not k.endswith("position_ids")}


# ---------------------------------------------------------------- the two towers


def reference_video_embedding(state_dict_fp32: dict, features: np.ndarray, heads: int, *,
                              cls_id: int, sep_id: int) -> np.ndarray:
    """Pooled video embedding [H] of features [T <= 256, 609], the plain 258-position computation."""
    sd = _as64(state_dict_fp32)
    t = len(features)
    assert 0 < t <= MAX_FRAMES
    x = torch.as_tensor(np.asarray(features), dtype=torch.float64)
    m = "video_encoder.videomlp."
    tok = _gelu(_linear(x, sd, m + "linear1"))
    tok = _layer_norm(tok, sd[m + "LayerNorm.weight"], sd[m + "LayerNorm.bias"], 1e-5)
    tok = _linear(tok, sd, m + "linear2")

    p = "video_encoder.bert."
    words = sd[p + "embeddings.word_embeddings.weight"]
    seq = torch.zeros(MAX_FRAMES + 2, tok.shape[1], dtype=torch.float64)
    seq[0] = words[cls_id]
    seq[1:t + 1] = tok
    seq[MAX_FRAMES + 1] = words[sep_id]  # SEP always at position 257
    valid = torch.zeros(MAX_FRAMES + 2, dtype=torch.bool)
    valid[: t + 1] = True
    valid[MAX_FRAMES + 1] = True
    out = _bert_encoder(seq, torch.arange(MAX_FRAMES + 2), valid, sd, p, heads)
    pooled = valid.clone()
    pooled[0] = False  # CLS excluded
    return out[pooled].mean(0).numpy().astype(np.float32)


def reference_text_embedding(state_dict_fp32: dict, token_ids: list[int], heads: int, *,
                             cls_id: int, sep_id: int, pad_id: int = 0) -> np.ndarray:
    """Pooled text embedding [H] of WordPiece ids WITHOUT special tokens (truncated here to 61)."""
    sd = _as64(state_dict_fp32)
    ids = list(token_ids)[:MAX_TEXT_TOKENS]
    n = len(ids) + 2
    full = [cls_id] + ids + [sep_id] + [pad_id] * (TEXT_POSITIONS - n)
    valid = torch.arange(TEXT_POSITIONS) < n
    words = sd["text_encoder.embeddings.word_embeddings.weight"][torch.tensor(full)]
    out = _bert_encoder(words, torch.arange(TEXT_POSITIONS), valid, sd, "text_encoder.", heads)
    return out[1:n].mean(0).numpy().astype(np.float32)


def reference_tokenizer(bert_dir):
    """WordPiece ids (cased) for the reference; the tokenizer itself is not under test."""
    from transformers import BertTokenizer

    return BertTokenizer(str(Path(bert_dir) / "vocab.txt"), do_lower_case=False)
