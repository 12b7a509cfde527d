"""Batched embedding of many poses or texts: the one embedder behind the jobs and the server.

- An item's embedding never depends on the rest of its batch: padding is masked, and the pose tower
  places ``[SEP]`` at the reference's fixed position whatever the batch's length.
- Batches are formed by length (sorted), padded to their own longest item, not to 256 frames.
- Clips longer than the model's frame limit follow ``long_clips``: ``"truncate"`` keeps the first
  ``max_frames`` frames (the reference), ``"window"`` averages the embeddings of ``max_frames``-long
  windows taken every ``window_stride`` frames (the last one ending at the clip's end).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Iterator, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from signclip.model.long_clips import WINDOW_STRIDE, LongClips, windows
from signclip.pose.features import collate, pose_features
from signclip.pose.reader import PoseSource

if TYPE_CHECKING:
    from signclip.model.network import SignCLIP

PAD_SLACK = 16  # padding positions a batch may always add to its shortest item, whatever ``max_padding``
# Default padded frames per forward pass. On CPU small passes win (measured with the embed job at E7.2's width,
# 768: less padding once sorted clips are cut into passes, activations that stay in cache), and a narrower model
# gets proportionally more frames for the same activations (at width 32, passes of 1,024 frames spent a quarter
# of the job in per-operation overhead); a GPU wants big passes.
CPU_BATCH_FRAMES = 1024
CPU_BATCH_WIDTH = 768
GPU_BATCH_FRAMES = 16384


class Embedder:
    """Embeds with ``model`` in eval mode under ``torch.inference_mode``.

    ``max_batch_frames`` bounds a batch's padded size (items x longest length), which bounds memory
    whatever the clip lengths (default: ``GPU_BATCH_FRAMES`` on a GPU, ``CPU_BATCH_FRAMES`` on CPU for a model
    as wide as E7.2, more for narrower ones); ``max_batch_size`` bounds the item count; ``max_padding`` bounds
    the compute spent on padding (a batch's longest item is at most that many times its shortest, or at most ``PAD_SLACK``
    positions longer).
    """

    def __init__(self, model: "SignCLIP", *, max_batch_size: int = 64, max_batch_frames: int | None = None,
                 max_padding: float = 1.25,
                 long_clips: LongClips = "truncate", window_stride: int = WINDOW_STRIDE, flip: bool = False,
                 anonymized: bool = False, precision: Literal["fp32", "bf16"] = "fp32"):
        if long_clips not in ("truncate", "window"):
            raise ValueError(f"long_clips {long_clips!r}: expected 'truncate' or 'window'")
        if not 0 < window_stride <= model.cfg.max_frames:
            raise ValueError(f"window_stride {window_stride}: expected 1..{model.cfg.max_frames}")
        self.model = model
        self.max_batch_size = max_batch_size
        self.max_batch_frames = max_batch_frames or (
            GPU_BATCH_FRAMES if self.device.type == "cuda"
            else CPU_BATCH_FRAMES * max(1, CPU_BATCH_WIDTH // model.cfg.video.hidden_size))
        self.max_padding = max_padding
        self.long_clips = long_clips
        self.window_stride = window_stride
        self.flip = flip
        self.anonymized = anonymized
        self.precision = precision

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def featurize(self, source: PoseSource) -> np.ndarray:
        """The model's features for one clip (all frames). Raises ``ValueError`` subclasses on bad input."""
        return pose_features(source, self.model.cfg.feature_set, flip=self.flip, anonymized=self.anonymized)

    def segments(self, clip: np.ndarray) -> list[np.ndarray]:
        """What the pose tower sees for one clip, per the long-clip policy."""
        limit = self.model.cfg.max_frames
        if self.long_clips == "truncate":
            return [clip[:limit]]
        return [clip[s:e] for s, e in windows(clip.shape[0], limit, self.window_stride)]

    def _batches(self, lengths: Sequence[int]) -> Iterator[list[int]]:
        order = np.argsort(np.asarray(lengths), kind="stable")
        batch: list[int] = []
        for i in order:
            longest = lengths[i]  # sorted ascending: the newest item is the longest
            if batch and (len(batch) + 1 > self.max_batch_size or
                          (len(batch) + 1) * longest > self.max_batch_frames or
                          longest > max(self.max_padding * lengths[batch[0]], lengths[batch[0]] + PAD_SLACK)):
                yield batch
                batch = []
            batch.append(int(i))
        if batch:
            yield batch

    @contextlib.contextmanager
    def _inference(self) -> Iterator[None]:
        was_training = self.model.training
        # train(False) walks every module (here 0.8 ms for the tiny model, 5 ms for E7.2): only when needed
        if was_training:
            self.model.eval()
        autocast = (torch.autocast(self.device.type, dtype=torch.bfloat16) if self.precision == "bf16"
                    else contextlib.nullcontext())
        try:
            with torch.inference_mode(), autocast:
                yield
        finally:
            if was_training:
                self.model.train()

    def embed_features(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        """float32 [N, E] from per-clip features [T_i, D] (any length)."""
        if not clips:
            return np.zeros((0, self.model.cfg.embedding_dim), dtype=np.float32)
        pieces, owner = [], []
        for i, clip in enumerate(clips):
            if clip.ndim != 2 or clip.shape[0] == 0 or clip.shape[1] != self.model.cfg.feature_dim:
                raise ValueError(f"clip {i}: features of shape {clip.shape}, expected [T>0, "
                                 f"{self.model.cfg.feature_dim}]")
            for seg in self.segments(clip):
                pieces.append(seg)
                owner.append(i)
        out = torch.zeros(len(pieces), self.model.cfg.embedding_dim)
        with self._inference():
            for batch in self._batches([p.shape[0] for p in pieces]):
                frames, mask = collate([pieces[i] for i in batch])
                emb = self.model.encode_pose(torch.from_numpy(frames).to(self.device),
                                             torch.from_numpy(mask).to(self.device))
                out[batch] = emb.float().cpu()
        return self._merge(out, np.asarray(owner), len(clips))

    def _merge(self, pieces: torch.Tensor, owner: np.ndarray, n: int) -> np.ndarray:
        if len(owner) == n:  # one segment per clip, in order
            return pieces.numpy()
        merged = torch.zeros(n, pieces.shape[1])
        merged.index_add_(0, torch.from_numpy(owner), pieces)
        merged /= torch.from_numpy(np.bincount(owner, minlength=n)).unsqueeze(1).float()
        if self.model.cfg.similarity == "cosine":
            merged = F.normalize(merged, dim=-1)
        return merged.numpy()

    def embed_poses(self, poses: Sequence[PoseSource]) -> np.ndarray:
        """float32 [N, E]. Raises on the first bad pose; jobs featurise item by item to isolate errors."""
        return self.embed_features([self.featurize(p) for p in poses])

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """float32 [N, E] for prompts; each truncated to the model's token limit."""
        texts = list(texts)
        if any(not isinstance(t, str) for t in texts):
            raise TypeError("embed_texts: every text must be a str")
        if not texts:
            return np.zeros((0, self.model.cfg.embedding_dim), dtype=np.float32)
        tokenizer = self.model.tokenizer
        if tokenizer is None:
            raise RuntimeError("this model has no tokenizer; load it with signclip.load(directory)")
        ids = tokenizer.ids(texts)
        out = torch.zeros(len(texts), self.model.cfg.embedding_dim)
        with self._inference():
            for batch in self._batches([len(i) for i in ids]):
                tokens, mask = tokenizer.batch([ids[i] for i in batch])
                emb = self.model.encode_text(torch.from_numpy(tokens).to(self.device),
                                             torch.from_numpy(mask).to(self.device))
                out[batch] = emb.float().cpu()
        return out.numpy()
