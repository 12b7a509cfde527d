"""SignCLIP: a pose tower and a text tower that embed into one space (``MMFusionSeparate`` semantics).

Pose tower: frame features -> ``VideoTokenMLP`` -> BERT over ``[CLS] frames [SEP]`` -> masked mean over
the real frames and ``[SEP]``. ``[SEP]`` always sits at position ``max_frames + 1`` (257), where the
reference's zero padding to 256 frames puts it, so running on the true length gives the reference's
numbers without computing the padding. Text tower: BERT over ``[CLS] ids [SEP]`` -> mean over ids and
``[SEP]``. Each ``encode_*`` needs only its own modality.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from signclip.model.bert import Bert
from signclip.model.config import ModelConfig

if TYPE_CHECKING:
    from signclip.model.tokenizer import Tokenizer
    from signclip.pose.reader import PoseSource


class VideoTokenMLP(nn.Module):
    """Frame features -> token embeddings: linear, exact GELU, LayerNorm (eps 1e-5), linear."""

    def __init__(self, in_dim: int, hidden: int):
        super().__init__()
        self.linear1 = nn.Linear(in_dim, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=1e-5)
        self.linear2 = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.LayerNorm(F.gelu(self.linear1(x))))


class PoseTower(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.videomlp = VideoTokenMLP(cfg.feature_dim, cfg.video.hidden_size)
        self.bert = Bert(cfg.video)

    def forward(self, frames: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """``frames`` [B, T, D] (T <= max_frames), ``frame_mask`` [B, T] bool -> pooled [B, H]."""
        b, t, _ = frames.shape
        if t > self.cfg.max_frames:
            raise ValueError(f"{t} frames: more than the model's {self.cfg.max_frames}; truncate or window first")
        words = self.bert.embeddings.word_embeddings.weight
        x = torch.cat([words[self.cfg.cls_token_id].expand(b, 1, -1), self.videomlp(frames),
                       words[self.cfg.sep_token_id].expand(b, 1, -1)], dim=1)
        positions = torch.arange(t + 2, device=frames.device)
        positions[-1] = self.cfg.max_frames + 1
        ones = torch.ones(b, 1, dtype=torch.bool, device=frames.device)
        key_mask = torch.cat([ones, frame_mask, ones], dim=1)
        hidden = self.bert(x, positions, key_mask)
        pool = torch.cat([~ones, frame_mask, ones], dim=1)
        return _masked_mean(hidden, pool)


class TextTower(Bert):
    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg.text)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """``ids`` [B, L] = ``[CLS] ids [SEP] [PAD]..``, ``mask`` [B, L] bool -> pooled [B, H]."""
        positions = torch.arange(ids.shape[1], device=ids.device)
        hidden = super().forward(self.embeddings.word_embeddings(ids), positions, mask)
        pool = mask.clone()
        pool[:, 0] = False  # [CLS] is not pooled
        return _masked_mean(hidden, pool)


def _masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # in float32: under CPU bf16 autocast the hidden states are bf16, where a count of 257 rounds to 256
    weights = mask.to(torch.float32).unsqueeze(-1)
    return (hidden.float() * weights).sum(1) / weights.sum(1)


class SignCLIP(nn.Module):
    """The two towers, the scoring rule and the tokenizer. Build with ``signclip.create`` / ``load``."""

    def __init__(self, cfg: ModelConfig, tokenizer: "Tokenizer | None" = None):
        super().__init__()
        self.cfg = cfg
        self.video_encoder = PoseTower(cfg)
        self.text_encoder = TextTower(cfg)
        if cfg.similarity == "cosine":
            self.logit_scale = nn.Parameter(torch.tensor(cfg.logit_scale_init))
        self.tokenizer = tokenizer

    def _finish(self, pooled: torch.Tensor) -> torch.Tensor:
        return F.normalize(pooled, dim=-1) if self.cfg.similarity == "cosine" else pooled

    def encode_pose(self, frames: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """Pose embeddings [B, E] from padded features and their frame mask."""
        return self._finish(self.video_encoder(frames, frame_mask))

    def encode_text(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Text embeddings [B, E] from padded token ids and their mask."""
        return self._finish(self.text_encoder(ids, mask))

    def scale(self) -> torch.Tensor:
        """The factor applied to similarities in the loss: 1 for "dot", exp(logit scale, capped at 100)."""
        if self.cfg.similarity == "dot":
            return torch.ones((), device=self.video_encoder.videomlp.linear1.weight.device)
        return self.logit_scale.clamp(max=np.log(100.0)).exp()

    def forward(self, frames: torch.Tensor, frame_mask: torch.Tensor, ids: torch.Tensor,
                text_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Both towers and the scale in one call (what DDP must wrap so gradients are synchronised)."""
        return self.encode_pose(frames, frame_mask), self.encode_text(ids, text_mask), self.scale()

    # -- high-level API (see signclip.model.embedder) ------------------------------------------------------
    def embed_poses(self, poses: Sequence["PoseSource"], **options) -> np.ndarray:
        """float32 [N, E] embeddings of ``.pose`` paths, bytes or ``Pose`` objects."""
        from signclip.model.embedder import Embedder

        return Embedder(self, **options).embed_poses(poses)

    def embed_texts(self, texts: Sequence[str], **options) -> np.ndarray:
        """float32 [N, E] embeddings of prompts such as ``"<en> <ase> house"``."""
        from signclip.model.embedder import Embedder

        return Embedder(self, **options).embed_texts(texts)

    def save(self, directory: str) -> None:
        """Native format: ``model.safetensors`` + ``config.json`` + tokenizer files; a local directory or a URL."""
        from signclip.model.checkpoint import save

        save(self, directory)
