"""The model deployments of the service: each loads every served model once per replica and batches requests.

- ``TextEmbedder``: the text tower of every served model, requests batched with ``@serve.batch``.
- ``PoseEmbedder``: pose features and the pose tower, requests batched with ``@serve.batch``.
- ``InReplicaModels``: both of them inside the gateway's replica instead (layout ``combined``).
- ``VideoToPose``: MediaPipe Holistic extraction of uploaded videos (optional).
- ``SearchIndex``: the served indexes (``--index``), each with the model its embeddings were made with; text
  queries batched with ``@serve.batch``, clip queries and the clips' ``.pose`` files (optional).

Every model replica embeds with :class:`signclip.Embedder`, the batch jobs' embedder, so an item's
vector is the offline one whatever else shares its batch. Models given as URLs are fetched by each replica
onto its own node (:mod:`signclip.io.model_cache`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
import time
from typing import Any

from ray import serve

from signclip.api.backend import (
    LoadedModel,
    Tower,
    embed_grouped,
    featurize_all,
    holistic_runner,
    index_info,
    load_indexes,
    load_models,
    pose_file,
    search_pose,
    search_texts,
    video_to_pose,
)
from signclip.api.settings import ServiceSettings
from signclip.api.types import Embedded, ExtractedPose, IndexInfo, ModelInfo, Rejected, SearchResult

log = logging.getLogger(__name__)

TEXT_BATCH_ITEMS = 128  # texts per model batch (at least max_items; raised to it if lower)
POSE_BATCH_ITEMS = 64  # poses per model batch (at least max_poses; raised to it if lower)
# How long a batch waits for more requests once one arrived: a tenth of what the last batch took, at most 5 ms.
# Waiting pays where a batch is dear (the e7.2 model at 8 clients: text 18.7x the original's semantics with a
# fixed 1 ms wait, 24.5x with this rule, bench_serve.py --quick); for a cheap model it is most of a request's
# latency.
BATCH_WAIT_S = 0.005
BATCH_WAIT_SHARE = 0.1
# A model batch expected to take less than this runs on the replica's event loop; longer ones in a thread, so
# that the loop keeps answering meanwhile. For a cheap model the hand-off to a thread cost more than the batch
# (the tiny preset always on the loop: text 811 -> 1027 req/s at 64 clients, pose 129 -> 194 at 8 clients,
# bench_serve_overhead.py). Measured here: tiny model batches 1-10 ms, the e7.2 model's from 69 ms (one text).
INLINE_BATCH_S = 0.02
# Poses up to this many bytes in a request (~5 ms of featurising here) are featurised on the event loop: in a
# GIL-bound replica the hand-off to a thread cost more than it freed (tiny model, 8 clients: 84 -> 98 req/s,
# bench_serve_overhead.py). Larger requests go to a thread so that the loop keeps answering.
INLINE_FEATURIZE_BYTES = 2 << 20
# Local defaults of the model replicas (cluster/serve.yaml sets a cluster's). A load burst adds a replica
# after 5 s, not Ray's default 30 s; replicas are given back only after 5 quiet minutes.
EMBEDDER_AUTOSCALING = {"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 16,
                        "upscale_delay_s": 5, "downscale_delay_s": 300}


def _items(requests: list[tuple[str, list[Any]]]) -> int:
    return sum(len(items) for _, items in requests)


def _set_torch_threads(settings: ServiceSettings) -> int:
    """Intra-op threads: the setting, else the CPUs reserved for this replica (at least 1)."""
    import ray
    import torch

    threads = settings.torch_threads or max(1, math.ceil(ray.get_runtime_context().get_assigned_resources()
                                                          .get("CPU", 1.0)))
    torch.set_num_threads(threads)
    return threads


def _device() -> str:
    """cuda for a replica given a GPU (``num_gpus``); CPU otherwise, even where the node's GPUs are visible."""
    import ray
    import torch

    return "cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"


def _load_here(settings: ServiceSettings, holder: str) -> dict[str, LoadedModel]:
    """Every served model, loaded in this replica with its torch threads set."""
    threads = _set_torch_threads(settings)
    models = load_models(settings.models, settings.precision, _device(), settings.model_fingerprints)
    log.info("%s ready: models %s, %d torch threads", holder, sorted(models), threads)
    return models


class _ModelReplica:
    """Loads every served model once per replica (or shares ``models`` already loaded in this process)."""

    def __init__(self, settings: ServiceSettings, models: dict[str, LoadedModel] | None = None):
        self.models = models if models is not None else _load_here(settings, type(self).__name__)
        self._last_batch: tuple[int, float] | None = None  # (items, seconds) of this replica's last model batch

    async def _embed_batch(self, tower: Tower, requests: list[tuple[str, list[Any]]]) -> list[Embedded]:
        """One model batch of ``requests``: on the event loop when the last batch says it will be short
        (``INLINE_BATCH_S``, scaled up to a larger batch, never down), else in a thread. Its time sets how long
        the next batch waits for requests."""
        items = max(1, _items(requests))

        def timed() -> tuple[list[Embedded], float]:
            started = time.perf_counter()
            return embed_grouped(self.models, tower, requests), time.perf_counter() - started

        last = self._last_batch
        if last is not None and last[1] * max(1.0, items / last[0]) <= INLINE_BATCH_S:
            out, seconds = timed()
        else:
            out, seconds = await asyncio.to_thread(timed)
        self._last_batch = (items, seconds)
        self._batch.set_batch_wait_timeout_s(min(BATCH_WAIT_S, BATCH_WAIT_SHARE * seconds))
        return out

    def ready(self) -> dict[str, Any]:
        return {"models": sorted(self.models), "pid": os.getpid()}

    def info(self) -> dict[str, ModelInfo]:
        return {name: m.info for name, m in self.models.items()}


@serve.deployment(name="TextEmbedder", ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=128,
                  max_queued_requests=256, autoscaling_config=EMBEDDER_AUTOSCALING)
class TextEmbedder(_ModelReplica):
    """Text embeddings; concurrent requests share model batches."""

    def __init__(self, settings: ServiceSettings, models: dict[str, LoadedModel] | None = None):
        super().__init__(settings, models)
        self._batch.set_max_batch_size(max(TEXT_BATCH_ITEMS, settings.max_items))

    async def embed(self, model: str, texts: list[str]) -> Embedded:
        return await self._batch((model, texts))

    @serve.batch(max_batch_size=TEXT_BATCH_ITEMS, batch_wait_timeout_s=BATCH_WAIT_S, batch_size_fn=_items)
    async def _batch(self, requests: list[tuple[str, list[str]]]) -> list[Embedded]:
        return await self._embed_batch("text", requests)


@serve.deployment(name="PoseEmbedder", ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=64,
                  max_queued_requests=256, autoscaling_config=EMBEDDER_AUTOSCALING)
class PoseEmbedder(_ModelReplica):
    """Pose embeddings of ``.pose`` bytes: features per request, then model batches shared across requests."""

    def __init__(self, settings: ServiceSettings, models: dict[str, LoadedModel] | None = None):
        super().__init__(settings, models)
        self._batch.set_max_batch_size(max(POSE_BATCH_ITEMS, settings.max_poses))

    async def embed(self, model: str, poses: list[bytes]) -> Embedded | Rejected:
        embedder = self.models[model].embedder
        size = sum(len(p) for p in poses if isinstance(p, (bytes, bytearray)))
        features = (featurize_all(embedder, poses) if size <= INLINE_FEATURIZE_BYTES
                    else await asyncio.to_thread(featurize_all, embedder, poses))
        if isinstance(features, Rejected):
            return features
        return await self._batch((model, features))

    @serve.batch(max_batch_size=POSE_BATCH_ITEMS, batch_wait_timeout_s=BATCH_WAIT_S, batch_size_fn=_items)
    async def _batch(self, requests: list[tuple[str, list[Any]]]) -> list[Embedded]:
        return await self._embed_batch("pose", requests)


class InReplicaModels:
    """Both towers in the calling replica (layout ``combined``): the models loaded once, text and pose requests
    batched across requests exactly as by the deployments above, without a hop between processes."""

    def __init__(self, settings: ServiceSettings):
        models = _load_here(settings, "Gateway (layout combined)")
        self.text = TextEmbedder.func_or_class(settings, models)
        self.pose = PoseEmbedder.func_or_class(settings, models)


@serve.deployment(name="VideoToPose", ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=2,
                  max_queued_requests=16, autoscaling_config={"min_replicas": 1, "max_replicas": 2,
                                                              "target_ongoing_requests": 1})
class VideoToPose:
    """MediaPipe Holistic on uploaded videos, one at a time per replica."""

    def __init__(self, settings: ServiceSettings):
        self.settings = settings
        self.runner = holistic_runner(settings.holistic_options)  # validates the options now
        self.lock = threading.Lock()

    def ready(self) -> dict[str, Any]:
        return {"pid": os.getpid()}

    async def extract(self, video: bytes, suffix: str) -> ExtractedPose | Rejected:
        def run() -> ExtractedPose | Rejected:
            with self.lock:
                return video_to_pose(self.runner, video, self.settings.max_video_seconds, suffix)

        return await asyncio.to_thread(run)


@serve.deployment(name="SearchIndex", ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=128,
                  max_queued_requests=256, autoscaling_config=EMBEDDER_AUTOSCALING)
class SearchIndex:
    """Every served index, loaded once per replica with the model its embeddings name (fetched onto this node)."""

    def __init__(self, settings: ServiceSettings):
        threads = _set_torch_threads(settings)
        self.indexes = load_indexes(settings)
        self._batch.set_max_batch_size(TEXT_BATCH_ITEMS)
        log.info("SearchIndex ready: %s, %d torch threads",
                 {name: len(search.corpus) for name, search in self.indexes.items()}, threads)

    def ready(self) -> dict[str, Any]:
        return {"indexes": sorted(self.indexes), "pid": os.getpid()}

    def info(self) -> dict[str, IndexInfo]:
        return {name: index_info(name, search) for name, search in self.indexes.items()}

    async def search_text(self, index: str, query: str, k: int) -> SearchResult:
        return await self._batch((index, query, k))

    @serve.batch(max_batch_size=TEXT_BATCH_ITEMS, batch_wait_timeout_s=BATCH_WAIT_S)
    async def _batch(self, requests: list[tuple[str, str, int]]) -> list[SearchResult]:
        return await asyncio.to_thread(search_texts, self.indexes, requests)

    async def search_pose(self, index: str, pose: bytes, k: int) -> SearchResult | Rejected:
        return await asyncio.to_thread(search_pose, self.indexes[index], index, pose, k)

    async def pose_file(self, index: str, clip_id: str) -> bytes | Rejected | None:
        return await asyncio.to_thread(pose_file, self.indexes[index], clip_id)
