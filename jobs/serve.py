"""The SignCLIP embedding service on Ray Serve: a FastAPI gateway and separately scaled model deployments.

    signclip serve --model default=models/e7.2 --host 127.0.0.1 --port 8000
    signclip serve --config cluster/serve.yaml          # the models, limits and scaling of the Serve config
    serve run cluster/serve.yaml                          # the same config with Ray's own CLI
    SIGNCLIP_MODELS=default=models/e7.2 serve run jobs.serve:app
    serve deploy cluster/serve.yaml                       # onto a running cluster

Deployments (each autoscaled, each with ``max_queued_requests`` so overload answers 503 + Retry-After):

- ``Gateway``: the HTTP app of :mod:`signclip.api` (parsing, limits, token, metrics); no model in it.
- ``TextEmbedder``: the text tower of every served model, requests batched with ``@serve.batch``.
- ``PoseEmbedder``: pose features and the pose tower, requests batched with ``@serve.batch``.
- ``VideoToPose``: MediaPipe Holistic extraction of uploaded videos (optional).

Every model replica embeds with :class:`signclip.Embedder`, the batch jobs' embedder, so an item's
vector is the offline one whatever else shares its batch.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle, DeploymentResponse

from signclip.api.app import create_app
from signclip.api.backend import Embedded, ExtractedPose, ModelInfo, Rejected, embed_grouped, featurize_all, load_models
from signclip.api.errors import ApiError, overloaded
from signclip.api.settings import ServiceSettings, parse_models

log = logging.getLogger(__name__)

APP_NAME = "signclip"
DEPLOYMENTS = ("Gateway", "TextEmbedder", "PoseEmbedder", "VideoToPose")
TEXT_BATCH_ITEMS = 128  # texts per model batch (at least max_items; raised to it if lower)
POSE_BATCH_ITEMS = 64  # poses per model batch (at least max_poses; raised to it if lower)
BATCH_WAIT_S = 0.005  # how long a batch waits for more requests once one arrived
# Local defaults of the embedders (cluster/serve.yaml sets a cluster's). A load burst adds a replica
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


class _ModelReplica:
    """Loads every served model once per replica."""

    def __init__(self, settings: ServiceSettings):
        threads = _set_torch_threads(settings)
        self.models = load_models(settings.models)
        log.info("%s ready: models %s, %d torch threads", type(self).__name__, sorted(self.models), threads)

    def ready(self) -> dict[str, Any]:
        return {"models": sorted(self.models), "pid": os.getpid()}

    def info(self) -> dict[str, ModelInfo]:
        return {name: m.info for name, m in self.models.items()}


@serve.deployment(name="TextEmbedder", ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=64,
                  max_queued_requests=256, autoscaling_config=EMBEDDER_AUTOSCALING)
class TextEmbedder(_ModelReplica):
    """Text embeddings; concurrent requests share model batches."""

    def __init__(self, settings: ServiceSettings):
        super().__init__(settings)
        self._batch.set_max_batch_size(max(TEXT_BATCH_ITEMS, settings.max_items))

    async def embed(self, model: str, texts: list[str]) -> Embedded:
        return await self._batch((model, texts))

    @serve.batch(max_batch_size=TEXT_BATCH_ITEMS, batch_wait_timeout_s=BATCH_WAIT_S, batch_size_fn=_items)
    async def _batch(self, requests: list[tuple[str, list[str]]]) -> list[Embedded]:
        return await asyncio.to_thread(embed_grouped, self.models, "text", requests)


@serve.deployment(name="PoseEmbedder", ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=64,
                  max_queued_requests=256, autoscaling_config=EMBEDDER_AUTOSCALING)
class PoseEmbedder(_ModelReplica):
    """Pose embeddings of ``.pose`` bytes: features per request, then model batches shared across requests."""

    def __init__(self, settings: ServiceSettings):
        super().__init__(settings)
        self._batch.set_max_batch_size(max(POSE_BATCH_ITEMS, settings.max_poses))

    async def embed(self, model: str, poses: list[bytes]) -> Embedded | Rejected:
        features = await asyncio.to_thread(featurize_all, self.models[model].embedder, poses)
        if isinstance(features, Rejected):
            return features
        return await self._batch((model, features))

    @serve.batch(max_batch_size=POSE_BATCH_ITEMS, batch_wait_timeout_s=BATCH_WAIT_S, batch_size_fn=_items)
    async def _batch(self, requests: list[tuple[str, list[Any]]]) -> list[Embedded]:
        return await asyncio.to_thread(embed_grouped, self.models, "pose", requests)


@serve.deployment(name="VideoToPose", ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=2,
                  max_queued_requests=16, autoscaling_config={"min_replicas": 1, "max_replicas": 2,
                                                              "target_ongoing_requests": 1})
class VideoToPose:
    """MediaPipe Holistic on uploaded videos, one at a time per replica."""

    def __init__(self, settings: ServiceSettings):
        from signclip.api.video import holistic_runner

        self.settings = settings
        self.runner = holistic_runner(settings.holistic_options)  # validates the options now
        self.lock = threading.Lock()

    def ready(self) -> dict[str, Any]:
        return {"pid": os.getpid()}

    async def extract(self, video: bytes, suffix: str) -> ExtractedPose | Rejected:
        from signclip.api.video import extract_pose

        def run() -> ExtractedPose | Rejected:
            with self.lock:
                return extract_pose(video, self.runner, self.settings.max_video_seconds, suffix)

        return await asyncio.to_thread(run)


class ServeBackend:
    """The gateway's :class:`~signclip.api.backend.Backend`: calls the model deployments, maps Ray's failures."""

    def __init__(self, text: DeploymentHandle, pose: DeploymentHandle, video: DeploymentHandle | None,
                 settings: ServiceSettings):
        self.text, self.pose, self.video, self.settings = text, pose, video, settings
        self._models: dict[str, ModelInfo] | None = None

    async def _await(self, response: DeploymentResponse, timeout_s: float | None = None) -> Any:
        from ray.exceptions import ActorUnavailableError, RayActorError
        from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, ReplicaUnavailableError

        retry = self.settings.retry_after_s
        try:
            return await asyncio.wait_for(asyncio.ensure_future(response), timeout_s or self.settings.request_timeout_s)
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
        return await self._await(self.text.embed.remote(model, texts))

    async def embed_poses(self, model: str, poses: list[bytes]) -> Embedded | Rejected:
        return await self._await(self.pose.embed.remote(model, poses))

    async def video_to_pose(self, video: bytes, suffix: str) -> ExtractedPose | Rejected:
        if self.video is None:
            raise ApiError(404, "video extraction is not enabled on this server", "not_enabled")
        return await self._await(self.video.extract.remote(video, suffix))

    async def ready(self) -> dict[str, Any]:
        """Ready when the text and pose deployments hold every model; video extraction is reported, not required
        (a busy extractor must not take the embedding service out of rotation)."""
        parts = {"text": self.text, "pose": self.pose} | ({"video": self.video} if self.video else {})
        answers = await asyncio.gather(*(self._await(h.ready.remote(), timeout_s=5.0) for h in parts.values()),
                                       return_exceptions=True)
        components = {}
        for name, answer in zip(parts, answers, strict=True):
            if isinstance(answer, BaseException):
                log.info("%s not ready: %s", name, answer)
            ok = not isinstance(answer, BaseException) and (name == "video" or
                                                            set(answer["models"]) == set(self.settings.models))
            components[name] = "ready" if ok else "not ready"
        return {"ready": components["text"] == components["pose"] == "ready", "components": components,
                "models": sorted(self.settings.models)}

    async def models(self) -> dict[str, ModelInfo]:
        if self._models is None:
            self._models = await self._await(self.text.info.remote())
        return self._models


@serve.deployment(name="Gateway", ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=128,
                  max_queued_requests=512, backpressure_config={"status_code": 503, "retry_after_s": 1},
                  autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 64})
@serve.ingress()
class Gateway:
    """The HTTP ingress: :func:`signclip.api.create_app` over the model deployments."""

    def __init__(self, text: DeploymentHandle, pose: DeploymentHandle, video: DeploymentHandle | None,
                 settings: ServiceSettings):
        self.settings = settings
        self.backend = ServeBackend(text, pose, video, settings)

    def __serve_build_asgi_app__(self) -> Any:
        return create_app(self.backend, self.settings)


def make_app(settings: ServiceSettings, options: Mapping[str, Mapping[str, Any]] | None = None) -> serve.Application:
    """The Serve application; ``options`` override deployment options by deployment name."""
    options = {name: dict(o) for name, o in (options or {}).items()}
    unknown = sorted(set(options) - set(DEPLOYMENTS))
    if unknown:
        raise ValueError(f"unknown deployment(s) {unknown}; this app has {list(DEPLOYMENTS)}")

    def configured(deployment: Any) -> Any:
        return deployment.options(**options[deployment.name]) if deployment.name in options else deployment

    video = configured(VideoToPose).bind(settings) if settings.enable_video else None
    return configured(Gateway).bind(configured(TextEmbedder).bind(settings), configured(PoseEmbedder).bind(settings),
                                    video, settings)


def build_app(args: dict[str, Any] | None = None) -> serve.Application:
    """Serve's application builder (``import_path: jobs.serve:build_app`` with the config's ``args``)."""
    return make_app(ServiceSettings.from_mapping(args or {}))


def __getattr__(name: str) -> Any:
    # ``serve run jobs.serve:app``: the app is built on access, from the environment (SIGNCLIP_MODELS),
    # so importing this module has no side effects and needs no models.
    if name == "app":
        return build_app({})
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- command line ----------------------------------------------------------------------------------------
def read_serve_config(path: str, app_name: str | None = None) -> tuple[dict[str, Any], dict[str, dict[str, Any]],
                                                                        dict[str, Any]]:
    """(app args, deployment options by name, http_options) of one application of a Serve config YAML."""
    import yaml

    with open(path, encoding="utf-8") as f:
        config = yaml.safe_load(f) or {}
    apps = config.get("applications") or []
    chosen = [a for a in apps if app_name is None or a.get("name") == app_name]
    if not chosen:
        raise ValueError(f"{path}: no application{f' named {app_name!r}' if app_name else ''}")
    app = chosen[0]
    deployments = {d["name"]: {k: v for k, v in d.items() if k != "name"} for d in app.get("deployments") or []}
    return dict(app.get("args") or {}), deployments, dict(config.get("http_options") or {})


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="signclip serve", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", default=[], metavar="NAME=DIR",
                        help="a model to serve (repeatable); overrides the config's models")
    parser.add_argument("--config", help="a Serve config YAML (cluster/serve.yaml): models, limits, scaling")
    parser.add_argument("--app-name", default=None, help="which application of --config (default: the first)")
    parser.add_argument("--host", default=None, help="address to bind (default 127.0.0.1, local only)")
    parser.add_argument("--port", type=int, default=None, help="HTTP port (default 8000)")
    parser.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray)")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    parser.add_argument("--no-video", action="store_true", help="do not deploy video extraction")
    parser.add_argument("--cors-origin", action="append", default=[], help="an allowed browser origin (repeatable)")
    return parser.parse_args(argv)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        app_args, options, http = read_serve_config(args.config, args.app_name) if args.config else ({}, {}, {})
        if args.model:
            app_args["models"] = parse_models(args.model)
        if args.no_video:
            app_args["enable_video"] = False
        if args.cors_origin:
            app_args["cors_origins"] = args.cors_origin
        settings = ServiceSettings.from_mapping(app_args)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    host = args.host or http.get("host") or "127.0.0.1"
    port = args.port or int(http.get("port") or 8000)
    if not _is_loopback(host) and not settings.api_token():
        log.warning("binding %s without a token: set %s to require one", host, settings.api_token_env)
    import ray

    ray.init(address=args.address, num_cpus=args.num_cpus if args.address is None else None)
    serve.start(http_options={"host": host, "port": port})
    serve.run(make_app(settings, options), name=args.app_name or APP_NAME, route_prefix="/")
    log.info("serving %s on http://%s:%d (Ctrl-C or SIGTERM to stop)", sorted(settings.models), host, port)
    signal.signal(signal.SIGTERM, _stop)
    try:
        while True:
            time.sleep(3600)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        serve.shutdown()
        ray.shutdown()
    return 0


def _stop(signum: int, frame: Any) -> None:
    raise SystemExit(0)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(main())
