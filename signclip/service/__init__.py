"""The SignCLIP service on Ray Serve: a FastAPI gateway and separately scaled model deployments.

    signclip serve --model default=models/e7.2 --host 127.0.0.1 --port 8000
    signclip serve --config cluster/serve.yaml          # the models, limits and scaling of the Serve config
    serve run cluster/serve.yaml                          # the same config with Ray's own CLI
    SIGNCLIP_MODELS=default=s3://bucket/models/e7.2 serve run signclip.service:app
    serve deploy cluster/serve.yaml                       # onto a running cluster

Deployments (each autoscaled, each with ``max_queued_requests`` so overload answers 503 + Retry-After):
``Gateway`` (:mod:`signclip.service.gateway`, the HTTP app of :mod:`signclip.api`: parsing, limits, token,
metrics) and the deployments of :mod:`signclip.service.deployments`. Where the models run is the settings'
``layout``: ``combined`` (default) keeps them in the Gateway's replicas, so a request makes no hop between
processes; ``split`` gives text and pose their own deployments (``TextEmbedder``, ``PoseEmbedder``), scaled
apart from HTTP, for large models on CPUs. Video extraction and search are their own deployments either way.

May import ``signclip.api`` and the layers below it; the only package that imports Ray Serve.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ray import serve

from signclip.api.settings import ServiceSettings
from signclip.service.deployments import EMBEDDER_AUTOSCALING, PoseEmbedder, SearchIndex, TextEmbedder, VideoToPose
from signclip.service.gateway import Gateway

APP_NAME = "signclip"
DEPLOYMENTS = ("Gateway", "TextEmbedder", "PoseEmbedder", "VideoToPose", "SearchIndex")
# Ray Serve's data-plane switches (Ray >= 2.55), read from the environment of every Serve process when Ray
# starts: "fast" puts HAProxy in front of the ingress replicas (which answer HTTP themselves, on ports that the
# HAProxy of every node must reach) and calls between deployments over direct gRPC. Measured by
# tests/benchmarks/bench_serve_overhead.py.
SERVE_MODES: dict[str, dict[str, str]] = {
    "fast": {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_HA_PROXY": "1"},
    "default": {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "0", "RAY_SERVE_ENABLE_HA_PROXY": "0"},
}
MODEL_DEPLOYMENTS = ("TextEmbedder", "PoseEmbedder")  # not made in layout "combined"
# The Gateway's defaults where it holds the models: a model replica's CPU and scaling (a config's options win);
# it scales at 16 ongoing requests a replica, as they do. At 32, 32 clients on the e7.2 model kept one replica
# and a core idle on 2 cores: pose 3.5x the original's semantics, 4.1x at 16 (bench_serve.py --mixes pose).
COMBINED_GATEWAY: dict[str, Any] = {"ray_actor_options": {"num_cpus": 1},
                                    "autoscaling_config": EMBEDDER_AUTOSCALING}


def make_app(settings: ServiceSettings, options: Mapping[str, Mapping[str, Any]] | None = None) -> serve.Application:
    """The Serve application; ``options`` override deployment options by deployment name."""
    options = {name: dict(o) for name, o in (options or {}).items()}
    combined = settings.layout == "combined"
    deployments = [name for name in DEPLOYMENTS if not (combined and name in MODEL_DEPLOYMENTS)]
    unknown = sorted(set(options) - set(deployments))
    if unknown:
        raise ValueError(f"unknown deployment(s) {unknown}; this app (layout {settings.layout!r}) has {deployments}"
                         + ("; the models are in the Gateway's replicas, set its options" if combined else ""))
    if combined:
        chosen = options.get("Gateway", {})
        defaults = {k: v for k, v in COMBINED_GATEWAY.items()
                    if not (k == "autoscaling_config" and "num_replicas" in chosen)}
        options["Gateway"] = defaults | chosen | {
            "ray_actor_options": COMBINED_GATEWAY["ray_actor_options"] | chosen.get("ray_actor_options", {})}

    def configured(deployment: Any) -> Any:
        if deployment.name not in options:
            return deployment
        chosen = options[deployment.name]
        if "num_replicas" in chosen:  # a fixed replica count replaces the default autoscaling
            chosen.setdefault("autoscaling_config", None)
        return deployment.options(**chosen)

    video = configured(VideoToPose).bind(settings) if settings.enable_video else None
    search = configured(SearchIndex).bind(settings) if settings.indexes else None
    if combined:
        return configured(Gateway).bind(None, None, video, search, settings)
    return configured(Gateway).bind(configured(TextEmbedder).bind(settings), configured(PoseEmbedder).bind(settings),
                                    video, search, settings)


def use_serve_mode(mode: str) -> None:
    """Give Serve ``mode`` (a key of ``SERVE_MODES``) in the local Ray this process starts next: its controller,
    proxies and replicas inherit this process's environment. A cluster's nodes take it from their own."""
    os.environ.update(SERVE_MODES[mode])
    # an ingress replica stopping behind HAProxy stays up 30 s by default so that load balancers in front of the
    # nodes can drop it; locally HAProxy is the only one, and Ctrl-C should not take half a minute
    os.environ.setdefault("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", "2")


def build_app(args: dict[str, Any] | None = None) -> serve.Application:
    """Serve's application builder (``import_path: signclip.service:build_app`` with the config's ``args``)."""
    return make_app(ServiceSettings.from_mapping(args or {}))


def __getattr__(name: str) -> Any:
    # ``serve run signclip.service:app``: the app is built on access, from the environment (SIGNCLIP_MODELS),
    # so importing this module has no side effects and needs no models.
    if name == "app":
        return build_app({})
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def read_serve_config(path: str, app_name: str | None = None) -> tuple[dict[str, Any], dict[str, dict[str, Any]],
                                                                        dict[str, Any]]:
    """(app args, deployment options by name, http_options) of one application of a Serve config YAML; the
    config's top-level ``proxy_location`` is given with the http options."""
    import yaml

    with open(path, encoding="utf-8") as f:
        config = yaml.safe_load(f) or {}
    apps = config.get("applications") or []
    chosen = [a for a in apps if app_name is None or a.get("name") == app_name]
    if not chosen:
        raise ValueError(f"{path}: no application{f' named {app_name!r}' if app_name else ''}")
    app = chosen[0]
    deployments = {d["name"]: {k: v for k, v in d.items() if k != "name"} for d in app.get("deployments") or []}
    http = dict(config.get("http_options") or {})
    if config.get("proxy_location"):
        http["proxy_location"] = config["proxy_location"]
    return dict(app.get("args") or {}), deployments, http
