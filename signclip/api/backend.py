"""What the HTTP app needs from whatever computes embeddings, and the model-side work shared by all backends.

- :class:`Backend`: the app's view (embed texts, embed poses, video -> pose, readiness, model info).
- :func:`load_models`, :func:`featurize_all`, :func:`embed_grouped`: what a model replica does, used as is by
  the Ray Serve deployments (``jobs/serve.py``) and by :class:`LocalBackend` (one process, no Ray).
- :class:`Embedded` / :class:`Rejected` / :class:`ExtractedPose`: plain picklable answers that cross processes.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from signclip.api.settings import ServiceSettings
from signclip.embedder import Embedder
from signclip.holistic_layout import PoseLayoutError

log = logging.getLogger(__name__)

Tower = Literal["text", "pose"]


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


@dataclass
class LoadedModel:
    """A model ready to embed: its embedder and its description."""

    embedder: Embedder
    info: ModelInfo


class Backend(Protocol):
    """What the HTTP app calls. Implementations raise ``ApiError`` for anything the client should see."""

    async def embed_texts(self, model: str, texts: list[str]) -> Embedded: ...

    async def embed_poses(self, model: str, poses: list[bytes]) -> Embedded | Rejected: ...

    async def video_to_pose(self, video: bytes, suffix: str) -> ExtractedPose | Rejected: ...

    async def ready(self) -> dict[str, Any]: ...

    async def models(self) -> dict[str, ModelInfo]: ...


def load_models(directories: dict[str, str]) -> dict[str, LoadedModel]:
    """Load every model (strict loading; a bad directory raises ``CheckpointError`` naming it)."""
    from signclip.checkpoint import fingerprint, load

    loaded = {}
    for name, directory in directories.items():
        model = load(directory)
        cfg = model.cfg
        info = ModelInfo(name=name, preset=cfg.name, embedding_dim=cfg.embedding_dim, feature_set=cfg.feature_set,
                         feature_dim=cfg.feature_dim, max_frames=cfg.max_frames, max_text_tokens=cfg.max_text_tokens,
                         similarity=cfg.similarity, fingerprint=fingerprint(directory))
        loaded[name] = LoadedModel(Embedder(model), info)
        log.info("loaded model %s (%s, %s) from %s", name, cfg.name, info.fingerprint, directory)
    return loaded


def featurize_all(embedder: Embedder, poses: Sequence[bytes]) -> list[np.ndarray] | Rejected:
    """Features of every pose, or the first pose's rejection. Only bytes are accepted, never paths."""
    features = []
    for i, pose in enumerate(poses):
        if not isinstance(pose, (bytes, bytearray)):
            return Rejected(i, "invalid_pose", f"pose[{i}]: expected the bytes of a .pose file")
        try:
            features.append(embedder.featurize(bytes(pose)))
        except ValueError as e:  # PoseInputError, PoseLayoutError
            code = "unsupported_pose_layout" if isinstance(e, PoseLayoutError) else "invalid_pose"
            return Rejected(i, code, f"pose[{i}]: {e}")
    return features


def embed_grouped(models: dict[str, LoadedModel], tower: Tower,
                  requests: Sequence[tuple[str, Sequence[Any]]]) -> list[Embedded]:
    """Embed several requests' items together, one embedder call per model, and split the result back.

    ``requests`` are ``(model name, items)`` with items texts (``tower="text"``) or pose features.
    An item's embedding does not depend on what shares its batch (the embedder masks padding).
    """
    total = sum(len(items) for _, items in requests)
    out: list[Embedded | None] = [None] * len(requests)
    by_model: dict[str, list[int]] = {}
    for i, (name, _) in enumerate(requests):
        by_model.setdefault(name, []).append(i)
    for name, members in by_model.items():
        embedder = models[name].embedder
        items = [item for i in members for item in requests[i][1]]
        vectors = embedder.embed_texts(items) if tower == "text" else embedder.embed_features(items)
        start = 0
        for i in members:
            n = len(requests[i][1])
            out[i] = Embedded(vectors[start:start + n], total)
            start += n
    return [e for e in out if e is not None]


def versions() -> dict[str, str]:
    """Versions of the packages that decide what the service computes."""
    found = {}
    for package in ("signclip", "torch", "ray", "pose-format", "fastapi"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


class LocalBackend:
    """Everything in this process, no Ray: one request's items form one batch. For tests and notebooks."""

    def __init__(self, settings: ServiceSettings):
        self.settings = settings
        self._models = load_models(settings.models)
        self._runner: Any = None
        self._video_lock = threading.Lock()

    async def embed_texts(self, model: str, texts: list[str]) -> Embedded:
        return (await asyncio.to_thread(embed_grouped, self._models, "text", [(model, texts)]))[0]

    async def embed_poses(self, model: str, poses: list[bytes]) -> Embedded | Rejected:
        features = await asyncio.to_thread(featurize_all, self._models[model].embedder, poses)
        if isinstance(features, Rejected):
            return features
        return (await asyncio.to_thread(embed_grouped, self._models, "pose", [(model, features)]))[0]

    async def video_to_pose(self, video: bytes, suffix: str) -> ExtractedPose | Rejected:
        from signclip.api.video import extract_pose, holistic_runner

        def run() -> ExtractedPose | Rejected:
            with self._video_lock:
                if self._runner is None:
                    self._runner = holistic_runner(self.settings.holistic_options)
                return extract_pose(video, self._runner, self.settings.max_video_seconds, suffix)

        return await asyncio.to_thread(run)

    async def ready(self) -> dict[str, Any]:
        return {"ready": True, "models": sorted(self._models)}

    async def models(self) -> dict[str, ModelInfo]:
        return {name: m.info for name, m in self._models.items()}
