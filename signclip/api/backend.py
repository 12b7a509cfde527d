"""What the HTTP app needs from whatever computes embeddings, and the model-side work shared by all backends.

- :class:`Backend`: the app's view (embed texts, embed poses, video -> pose, readiness, model info).
- :func:`load_models`, :func:`featurize_all`, :func:`embed_grouped`: what a model replica does, used as is by
  the Ray Serve deployments (:mod:`signclip.service`) and by :class:`LocalBackend` (one process, no Ray).
- :func:`video_to_pose`: an uploaded video's ``.pose``, or why not.

The answers that cross processes are the value types of :mod:`signclip.api.types`.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from signclip.api.settings import ServiceSettings
from signclip.api.types import Embedded, ExtractedPose, IndexInfo, ModelInfo, Rejected, SearchResult
from signclip.model.embedder import Embedder
from signclip.pose.layout import PoseLayoutError

if TYPE_CHECKING:
    from signclip.extraction.holistic import HolisticRunner
    from signclip.search.lookup import SignSearch

log = logging.getLogger(__name__)

Tower = Literal["text", "pose"]


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

    async def indexes(self) -> dict[str, IndexInfo]: ...

    async def search_text(self, index: str, query: str, k: int) -> SearchResult: ...

    async def search_pose(self, index: str, pose: bytes, k: int) -> SearchResult | Rejected: ...

    async def pose_file(self, index: str, clip_id: str) -> bytes | Rejected | None: ...


def load_models(locations: dict[str, str], precision: str = "fp32", device: str | None = None,
                fingerprints: Mapping[str, str] | None = None) -> dict[str, LoadedModel]:
    """Load every model, local or fetched from object storage into this node's cache (strict loading; an
    unusable model raises ``CheckpointError`` naming it), onto ``device`` (default: the GPU if torch sees one).
    A model named in ``fingerprints`` must be exactly that one (``ModelFetchError`` otherwise)."""
    import torch

    from signclip.io.model_cache import local_model_and_fingerprint
    from signclip.model.factory import load

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    loaded = {}
    for name, location in locations.items():
        directory, fingerprint = local_model_and_fingerprint(location, (fingerprints or {}).get(name))
        model = load(directory, device=device)
        cfg = model.cfg
        info = ModelInfo(name=name, preset=cfg.name, embedding_dim=cfg.embedding_dim, feature_set=cfg.feature_set,
                         feature_dim=cfg.feature_dim, max_frames=cfg.max_frames, max_text_tokens=cfg.max_text_tokens,
                         similarity=cfg.similarity, fingerprint=fingerprint)
        loaded[name] = LoadedModel(Embedder(model, precision=precision), info)  # type: ignore[arg-type]
        log.info("loaded model %s (%s, %s) from %s on %s, %s", name, cfg.name, info.fingerprint, location, device,
                 precision)
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


def load_indexes(settings: ServiceSettings) -> dict[str, SignSearch]:
    """Every served index with the model its embeddings name (fetched into this node's cache, fingerprint checked);
    an index that cannot be searched raises naming it."""
    from signclip.search.lookup import SignSearch

    loaded = {}
    for name, location in settings.indexes.items():
        try:
            loaded[name] = SignSearch.load(location, model_dir=settings.index_models.get(name),
                                           mode=settings.search_mode,  # type: ignore[arg-type]
                                           approximate_above=settings.approximate_above)
        except (OSError, ValueError) as e:
            raise ValueError(f"index {name!r} ({location}): {e}") from e
        log.info("index %s: %d clips of %s (%s)", name, len(loaded[name].corpus), location, loaded[name].index.mode)
    return loaded


def index_info(name: str, search: SignSearch) -> IndexInfo:
    """What ``GET /v1/indexes`` says of one index (its labels counted, not embedded)."""
    meta = search.corpus.meta
    return IndexInfo(name=name, clips=len(search.corpus), labels=len(search.labels),
                     model=search.model_location, fingerprint=str(meta["model_hash"].iloc[0]),
                     similarity=search.embedder.model.cfg.similarity, mode=search.index.mode)


def search_texts(indexes: dict[str, SignSearch], requests: Sequence[tuple[str, str, int]]) -> list[SearchResult]:
    """Text queries ``(index, query, k)``, the queries of one index searched together."""
    out: list[SearchResult | None] = [None] * len(requests)
    by_index: dict[str, list[int]] = {}
    for i, (name, _, _) in enumerate(requests):
        by_index.setdefault(name, []).append(i)
    for name, members in by_index.items():
        k = max(requests[i][2] for i in members)
        for i, hits in zip(members, indexes[name].search_many([requests[i][1] for i in members], k)):
            out[i] = SearchResult(name, hits[:requests[i][2]])
    return [r for r in out if r is not None]


def search_pose(search: SignSearch, name: str, pose: bytes, k: int) -> SearchResult | Rejected:
    """A clip query: its nearest clips and the index's best labels for it (refusals as ``Rejected``)."""
    if not isinstance(pose, (bytes, bytearray)):
        return Rejected(0, "invalid_pose", "pose: expected the bytes of a .pose file")
    try:
        vector = search.embed_clips([bytes(pose)])
    except ValueError as e:  # PoseInputError, PoseLayoutError
        return Rejected(0, "unsupported_pose_layout" if isinstance(e, PoseLayoutError) else "invalid_pose",
                        f"pose: {e}")
    return SearchResult(name, search.search_clips(vector, k)[0], search.recognize(vector, k)[0])


def pose_file(search: SignSearch, clip_id: str) -> bytes | Rejected | None:
    """The ``.pose`` bytes of one clip of the index (None for an id it does not hold; ``Rejected`` when its file
    cannot be read here, e.g. a path on the embedding run's own disk, seen from another node)."""
    from signclip.io import storage

    path = search.pose_path(clip_id)
    if path is None:
        return None
    try:
        return storage.read_bytes(path)
    except OSError as e:
        log.warning("clip %r: its pose file %s cannot be read here (%s: %s)", clip_id, path, type(e).__name__, e)
        return Rejected(0, "pose_file_unreachable", f"the pose file of clip {clip_id!r} cannot be read by this "
                        "server (the index names it by a path this node does not have, or it was removed)")


def holistic_runner(options: dict[str, Any] | None = None) -> HolisticRunner:
    """A Holistic runner with the given options (validated; an unusable option raises ``ValueError``)."""
    from signclip.extraction.holistic import HolisticConfig, HolisticRunner

    return HolisticRunner(HolisticConfig.from_options(dict(options or {})))


def video_to_pose(runner: HolisticRunner, video: bytes, max_seconds: float, suffix: str) -> ExtractedPose | Rejected:
    """The ``.pose`` of an uploaded video (extraction's own video loop), or why not."""
    from signclip.extraction.extract_video import VideoTooLong, extract_upload
    from signclip.extraction.video import VideoError

    try:
        pose, facts = extract_upload(video, runner, max_seconds, suffix)
    except VideoTooLong as e:
        return Rejected(0, "video_too_long", f"video: {e}")
    except VideoError as e:
        return Rejected(0, "invalid_video", f"video: {e}")
    return ExtractedPose(pose, int(facts.frames or 0), float(facts.fps or 0.0), facts.warnings)


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
        self._models = load_models(settings.models, settings.precision, fingerprints=settings.model_fingerprints)
        self._indexes = load_indexes(settings)
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
        def run() -> ExtractedPose | Rejected:
            with self._video_lock:
                if self._runner is None:
                    self._runner = holistic_runner(self.settings.holistic_options)
                return video_to_pose(self._runner, video, self.settings.max_video_seconds, suffix)

        return await asyncio.to_thread(run)

    async def ready(self) -> dict[str, Any]:
        return {"ready": True, "models": sorted(self._models)}

    async def models(self) -> dict[str, ModelInfo]:
        return {name: m.info for name, m in self._models.items()}

    async def indexes(self) -> dict[str, IndexInfo]:
        def info() -> dict[str, IndexInfo]:
            return {name: index_info(name, search) for name, search in self._indexes.items()}

        return await asyncio.to_thread(info)

    async def search_text(self, index: str, query: str, k: int) -> SearchResult:
        return (await asyncio.to_thread(search_texts, self._indexes, [(index, query, k)]))[0]

    async def search_pose(self, index: str, pose: bytes, k: int) -> SearchResult | Rejected:
        return await asyncio.to_thread(search_pose, self._indexes[index], index, pose, k)

    async def pose_file(self, index: str, clip_id: str) -> bytes | Rejected | None:
        return await asyncio.to_thread(pose_file, self._indexes[index], clip_id)
