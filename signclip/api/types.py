"""The value types of the API: plain, picklable answers that cross from model replicas to the gateway."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Embedded:
    """Embeddings of one request's items, and the size of the model batch they were computed in."""

    vectors: np.ndarray  # float32 [N, E]
    batch_items: int  # items in the batch (this request's and others'), for metrics


@dataclass(frozen=True)
class Rejected:
    """An input the model side refused (a pose it cannot read, a video it cannot decode)."""

    index: int  # which item of the request
    code: str  # machine-readable reason, e.g. "invalid_pose", "unsupported_pose_layout"
    message: str  # what is wrong, in words


@dataclass(frozen=True)
class ExtractedPose:
    """A ``.pose`` extracted from an uploaded video."""

    pose: bytes
    frames: int
    fps: float
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ModelInfo:
    """What ``GET /info`` says about one served model."""

    name: str
    preset: str
    embedding_dim: int
    feature_set: str
    feature_dim: int
    max_frames: int
    max_text_tokens: int
    similarity: str
    fingerprint: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class IndexInfo:
    """What ``GET /v1/indexes`` says about one served index."""

    name: str
    clips: int  # embedded clips it searches
    labels: int  # distinct glosses / texts it recognises
    model: str  # the model its queries are embedded with (as the embeddings name it)
    fingerprint: str  # that model's fingerprint
    similarity: str  # dot / cosine
    mode: str  # exact / approximate

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SearchResult:
    """The nearest clips of an index for one query and, for a clip query, its best labels."""

    index: str
    hits: list  # signclip.search.lookup.Hit, best first
    glosses: list = field(default_factory=list)  # signclip.search.lookup.Label, best first (clip queries)
