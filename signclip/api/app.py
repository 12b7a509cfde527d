"""The FastAPI app: the original SignCLIP API, an OpenAI-compatible route, uploads, scoring and operations.

Routes (paths relative to where the app is mounted):

    GET|POST /api/embed/text   {"text": str | [str], "model_name"?}            -> {"embeddings": [[...]]}
    GET|POST /api/embed/pose   {"pose": base64 | [base64], "model_name"?}      -> {"embeddings": [[...]]}
    POST /v1/embeddings        {"input": str | [str], "model"?, "encoding_format"?: "float" | "base64"}
    GET  /v1/models            the served models, OpenAI's list shape
    POST /v1/embed/pose        multipart: file=<.pose> (repeatable), model_name?   -> {"embeddings": [[...]]}
    POST /v1/embed/video       multipart: file=<video>, model_name?, return_pose?  -> embeddings + pose info
    POST /score                {"pose": ..., "text": ..., "model_name"?}       -> {"scores": [[pose x text]]}
    GET  /health  /ready  /info  /metrics
    /v1/indexes, /v1/search, /v1/poses/..., /v1/skeleton   dictionary search (signclip.api.search_routes)
    GET  /                      the dictionary page (signclip.api.page)

The original clients send GET requests with a JSON body; both GET and POST are answered the same way.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from starlette.responses import Response

from signclip.api import parsing, schema
from signclip.api.backend import Backend
from signclip.api.calls import Calls, json_response, rows
from signclip.api.errors import ApiError, bad_request, install_handlers, unprocessable
from signclip.api.middleware import BearerTokenMiddleware, BodyLimitMiddleware, MetricsMiddleware
from signclip.api.page import add_page
from signclip.api.prometheus import ServiceMetrics
from signclip.api.search_routes import SEARCH_UPLOAD_ROUTES, add_search_routes
from signclip.api.settings import ServiceSettings
from signclip.api.types import ExtractedPose, Rejected

UPLOAD_ROUTES = frozenset({"/v1/embed/pose", "/v1/embed/video"}) | SEARCH_UPLOAD_ROUTES


def _version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("signclip")
    except importlib.metadata.PackageNotFoundError:
        return "0"


def create_app(backend: Backend, settings: ServiceSettings, metrics: ServiceMetrics | None = None,
               token: str | None = None) -> FastAPI:
    """The API over ``backend``. ``token`` defaults to the environment variable ``settings.api_token_env``."""
    metrics = metrics or ServiceMetrics()
    token = token if token is not None else settings.api_token()
    service = Calls(backend, settings, metrics)
    app = FastAPI(title="SignCLIP embeddings", version=_version(), docs_url="/docs", redoc_url=None,
                  openapi_url="/openapi.json", description=__doc__)
    install_handlers(app)
    errors = schema.ERRORS

    def original_api(path: str, request_model: type, summary: str) -> Callable:
        """The original API's routes answer POST and, as its clients send them, GET with a JSON body (which
        OpenAPI cannot describe: only the POST form is published)."""

        def register(endpoint: Callable) -> Callable:
            app.add_api_route(path, endpoint, methods=["POST"], response_model=schema.Embeddings, responses=errors,
                              openapi_extra=schema.json_body(request_model), summary=summary)
            app.add_api_route(path, endpoint, methods=["GET"], include_in_schema=False)
            return endpoint

        return register

    @original_api("/api/embed/text", schema.TextRequest, "Embed texts (the original API)")
    async def embed_text(request: Request) -> Response:
        body = await parsing.read_json(request)
        texts = parsing.texts(body, settings)
        model = parsing.model_name(body.get("model_name"), settings)
        return json_response({"embeddings": rows(await service.texts(model, texts))})

    @original_api("/api/embed/pose", schema.PoseRequest, "Embed base64 poses (the original API)")
    async def embed_pose(request: Request) -> Response:
        body = await parsing.read_json(request)
        poses = parsing.poses(body, settings)
        model = parsing.model_name(body.get("model_name"), settings)
        return json_response({"embeddings": rows(await service.poses(model, poses))})

    @app.post("/v1/embeddings", response_model=schema.OpenAIEmbeddingResponse, responses=errors,
              openapi_extra=schema.json_body(schema.OpenAIEmbeddingRequest))
    async def openai_embeddings(request: Request) -> Response:
        req = parsing.openai_request(await parsing.read_json(request), settings)
        vectors = await service.texts(req.model, req.texts)
        if req.dimensions is not None and req.dimensions != vectors.shape[1]:
            raise bad_request(f"dimensions {req.dimensions}: model {req.model!r} gives {vectors.shape[1]} "
                              "(no other size is available)", "invalid_value", "dimensions")
        data = [{"object": "embedding", "index": i,
                 "embedding": (base64.b64encode(v.astype("<f4").tobytes()).decode() if req.encoding_format == "base64"
                               else v.tolist())} for i, v in enumerate(vectors)]
        tokens = sum(len(t.split()) for t in req.texts)  # words: the gateway does not tokenize
        return json_response({"object": "list", "data": data, "model": req.model,
                      "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    @app.get("/v1/models", response_model=schema.OpenAIModelList, responses=errors)
    async def openai_models() -> Response:
        return json_response({"object": "list", "data": [{"id": name, "object": "model", "owned_by": "signclip"}
                                                 for name in settings.models]})

    @app.post("/v1/embed/pose", response_model=schema.Embeddings, responses=errors,
              openapi_extra=schema.form_body(schema.PoseUpload))
    async def upload_poses(request: Request) -> Response:
        form = await service.form(request, settings.max_poses)
        files = service.files(form)
        if not files:
            raise bad_request("the upload has no 'file' part; send each .pose as a 'file' field", "missing_field",
                              "file")
        model = service.model_field(form)
        poses = [await f.read() for f in files]
        return json_response({"embeddings": rows(await service.poses(model, poses, param="file"))})

    @app.post("/v1/embed/video", response_model=schema.VideoEmbedding, responses=errors,
              openapi_extra=schema.form_body(schema.VideoUpload))
    async def upload_video(request: Request) -> Response:
        if not settings.enable_video:
            raise ApiError(404, "video extraction is not enabled on this server", "not_enabled")
        form = await service.form(request, 1)
        files = service.files(form)
        if len(files) != 1:
            raise bad_request("send exactly one video as the 'file' field", "missing_field", "file")
        model = service.model_field(form)
        extracted = await backend.video_to_pose(await files[0].read(), parsing.safe_suffix(files[0].filename))
        if isinstance(extracted, Rejected):
            raise unprocessable(extracted.message, extracted.code, "file")
        assert isinstance(extracted, ExtractedPose)
        vectors = await service.poses(model, [extracted.pose], param="file")
        reply: dict[str, Any] = {"embeddings": rows(vectors), "frames": extracted.frames, "fps": extracted.fps,
                                 "warnings": extracted.warnings}
        if str(form.get("return_pose", "")).lower() in ("1", "true", "yes"):
            reply["pose"] = base64.b64encode(extracted.pose).decode()
        return json_response(reply)

    @app.post("/score", response_model=schema.Scores, responses=errors,
              openapi_extra=schema.json_body(schema.ScoreRequest))
    async def score(request: Request) -> Response:
        body = await parsing.read_json(request)
        poses = parsing.poses(body, settings)
        texts = parsing.texts(body, settings)
        model = parsing.model_name(body.get("model_name"), settings)
        pose_vectors, text_vectors = await asyncio.gather(service.poses(model, poses), service.texts(model, texts))
        info = (await backend.models())[model]
        return json_response({"scores": rows(pose_vectors @ text_vectors.T), "model": model, "similarity": info.similarity})

    @app.get("/health", response_model=schema.Health)
    async def health() -> Response:
        return json_response({"status": "ok"})

    @app.get("/ready", response_model=schema.Readiness, responses={503: {"model": schema.Readiness}})
    async def ready() -> Response:
        state = await backend.ready()
        return json_response(state, 200 if state.get("ready") else 503)

    @app.get("/info", response_model=schema.Info, responses=errors)
    async def info() -> Response:
        from signclip.api.backend import versions

        models = await backend.models()
        return json_response({"models": {name: m.to_dict() for name, m in models.items()},
                      "default_model": settings.default_model, "video": settings.enable_video,
                      "limits": settings.public_limits(), "versions": versions()})

    @app.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}},
                                                                   "description": "Prometheus metrics"}})
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    add_search_routes(app, service, errors)
    add_page(app)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = schema.add_request_models(get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    routes = frozenset(getattr(r, "path", "") for r in app.routes)
    app.add_middleware(BodyLimitMiddleware, limit_for=lambda path: settings.max_upload_bytes
                       if path in UPLOAD_ROUTES else settings.max_body_bytes)
    if token:
        app.add_middleware(BearerTokenMiddleware, token=token)
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=routes)
    if settings.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["authorization", "content-type"], max_age=600)
    return app
