"""The service's HTTP ingress: :func:`signclip.api.create_app` over the models, held in its own replica (layout
``combined``) or reached through handles to the model deployments (``split``)."""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle, DeploymentResponse

from signclip.api.app import create_app
from signclip.api.errors import ApiError, overloaded
from signclip.api.settings import ServiceSettings
from signclip.api.types import Embedded, ExtractedPose, IndexInfo, ModelInfo, Rejected, SearchResult

log = logging.getLogger(__name__)

# a model deployment's handle (layout "split") or the towers' object in the gateway's own replica ("combined")
Part = DeploymentHandle | Any


class ServeBackend:
    """The gateway's :class:`~signclip.api.backend.Backend`: calls the model deployments, maps Ray's failures."""

    def __init__(self, text: Part, pose: Part, video: DeploymentHandle | None, search: DeploymentHandle | None,
                 settings: ServiceSettings):
        self.text, self.pose, self.video, self.search, self.settings = text, pose, video, search, settings
        self._models: dict[str, ModelInfo] | None = None
        self._indexes: dict[str, IndexInfo] | None = None

    async def _call(self, part: Part, method: str, *args: Any, timeout_s: float | None = None) -> Any:
        """``part.method(*args)``: through Serve for a deployment, else on the object in this replica."""
        if isinstance(part, DeploymentHandle):
            return await self._await(getattr(part, method).remote(*args), timeout_s)
        answer = getattr(part, method)(*args)
        if not inspect.isawaitable(answer):
            return answer
        # asyncio.timeout, not wait_for: wait_for runs the call in a task of its own, started on the loop's next
        # turn and answered a turn later; with the tiny model, text at 8 clients went from 0.62-0.65x of a bare
        # server to 0.90-1.03x (bench_serve_overhead.py --servers serve/fast)
        try:
            async with asyncio.timeout(timeout_s or self.settings.request_timeout_s):
                return await answer
        except TimeoutError:
            raise ApiError(504, "the model did not answer in time", "timeout") from None

    async def _await(self, response: DeploymentResponse, timeout_s: float | None = None) -> Any:
        from ray.exceptions import ActorUnavailableError, RayActorError
        from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, ReplicaUnavailableError

        retry = self.settings.retry_after_s
        try:
            async with asyncio.timeout(timeout_s or self.settings.request_timeout_s):
                return await response
        except BackPressureError:
            raise overloaded("the service is at capacity; retry later", retry) from None
        except (RayActorError, ActorUnavailableError, DeploymentUnavailableError, ReplicaUnavailableError) as e:
            log.warning("model replica unavailable: %s", e)
            raise ApiError(503, "a model replica failed or is restarting; retry later", "unavailable",
                           headers={"Retry-After": str(retry)}) from None
        except TimeoutError:
            response.cancel()
            raise ApiError(504, "the model deployment did not answer in time", "timeout") from None

    async def embed_texts(self, model: str, texts: list[str]) -> Embedded:
        return await self._call(self.text, "embed", model, texts)

    async def embed_poses(self, model: str, poses: list[bytes]) -> Embedded | Rejected:
        return await self._call(self.pose, "embed", model, poses)

    async def video_to_pose(self, video: bytes, suffix: str) -> ExtractedPose | Rejected:
        if self.video is None:
            raise ApiError(404, "video extraction is not enabled on this server", "not_enabled")
        return await self._await(self.video.extract.remote(video, suffix))

    async def ready(self) -> dict[str, Any]:
        """Ready when the text and pose deployments hold every model; video extraction is reported, not required
        (a busy extractor must not take the embedding service out of rotation)."""
        parts: dict[str, Part] = {"text": self.text, "pose": self.pose}
        parts |= ({"video": self.video} if self.video else {}) | ({"search": self.search} if self.search else {})
        answers = await asyncio.gather(*(self._call(part, "ready", timeout_s=5.0) for part in parts.values()),
                                       return_exceptions=True)
        components = {}
        for name, answer in zip(parts, answers, strict=True):
            if isinstance(answer, BaseException):
                log.info("%s not ready: %s", name, answer)
            ok = not isinstance(answer, BaseException) and (
                name == "video" or (name == "search" and set(answer["indexes"]) == set(self.settings.indexes))
                or set(answer.get("models", ())) == set(self.settings.models))
            components[name] = "ready" if ok else "not ready"
        required = ("text", "pose", "search") if self.search else ("text", "pose")
        return {"ready": all(components[name] == "ready" for name in required), "components": components,
                "models": sorted(self.settings.models)}

    async def models(self) -> dict[str, ModelInfo]:
        if self._models is None:
            self._models = await self._call(self.text, "info")
        return self._models

    def _searching(self) -> DeploymentHandle:
        if self.search is None:
            raise ApiError(404, "this server serves no index (start it with --index NAME=DIR)", "no_index")
        return self.search

    async def indexes(self) -> dict[str, IndexInfo]:
        if self._indexes is None:
            self._indexes = await self._await(self._searching().info.remote())
        return self._indexes

    async def search_text(self, index: str, query: str, k: int) -> SearchResult:
        return await self._await(self._searching().search_text.remote(index, query, k))

    async def search_pose(self, index: str, pose: bytes, k: int) -> SearchResult | Rejected:
        return await self._await(self._searching().search_pose.remote(index, pose, k))

    async def pose_file(self, index: str, clip_id: str) -> bytes | Rejected | None:
        return await self._await(self._searching().pose_file.remote(index, clip_id))


@serve.deployment(name="Gateway", ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=128,
                  max_queued_requests=512, backpressure_config={"status_code": 503, "retry_after_s": 1},
                  autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 64})
@serve.ingress()
class Gateway:
    """The HTTP ingress: :func:`signclip.api.create_app` over the model deployments."""

    def __init__(self, text: DeploymentHandle | None, pose: DeploymentHandle | None, video: DeploymentHandle | None,
                 search: DeploymentHandle | None, settings: ServiceSettings):
        self.settings = settings
        if text is None or pose is None:  # layout "combined": the models live here
            from signclip.service.deployments import InReplicaModels

            models = InReplicaModels(settings)
            text, pose = models.text, models.pose
        self.backend = ServeBackend(text, pose, video, search, settings)

    def __serve_build_asgi_app__(self) -> Any:
        return create_app(self.backend, self.settings)
