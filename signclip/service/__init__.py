"""The SignCLIP service on Ray Serve: a FastAPI gateway and separately scaled model deployments.

    signclip serve --model default=models/e7.2 --host 127.0.0.1 --port 8000
    signclip serve --config cluster/serve.yaml          # the models, limits and scaling of the Serve config
    serve run cluster/serve.yaml                          # the same config with Ray's own CLI
    SIGNCLIP_MODELS=default=s3://bucket/models/e7.2 serve run signclip.service:app
    serve deploy cluster/serve.yaml                       # onto a running cluster

Deployments (each autoscaled, each with ``max_queued_requests`` so overload answers 503 + Retry-After):
``Gateway`` (:mod:`signclip.service.gateway`, the HTTP app of :mod:`signclip.api`: parsing, limits, token,
metrics; no model in it) and the model deployments of :mod:`signclip.service.deployments`.

May import ``signclip.api`` and the layers below it; the only package that imports Ray Serve.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ray import serve

from signclip.api.settings import ServiceSettings
from signclip.service.deployments import PoseEmbedder, SearchIndex, TextEmbedder, VideoToPose
from signclip.service.gateway import Gateway

APP_NAME = "signclip"
DEPLOYMENTS = ("Gateway", "TextEmbedder", "PoseEmbedder", "VideoToPose", "SearchIndex")


def make_app(settings: ServiceSettings, options: Mapping[str, Mapping[str, Any]] | None = None) -> serve.Application:
    """The Serve application; ``options`` override deployment options by deployment name."""
    options = {name: dict(o) for name, o in (options or {}).items()}
    unknown = sorted(set(options) - set(DEPLOYMENTS))
    if unknown:
        raise ValueError(f"unknown deployment(s) {unknown}; this app has {list(DEPLOYMENTS)}")

    def configured(deployment: Any) -> Any:
        return deployment.options(**options[deployment.name]) if deployment.name in options else deployment

    video = configured(VideoToPose).bind(settings) if settings.enable_video else None
    search = configured(SearchIndex).bind(settings) if settings.indexes else None
    return configured(Gateway).bind(configured(TextEmbedder).bind(settings), configured(PoseEmbedder).bind(settings),
                                    video, search, settings)


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
