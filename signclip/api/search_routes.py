"""Dictionary search over the served indexes (embedding directories written by ``signclip embed``):

    GET  /v1/indexes                          the served indexes
    GET  /v1/search?q=<text>&k=10&index=NAME  text -> the k nearest clips
    POST /v1/search                           a clip (multipart file=<.pose or video>, or {"pose": base64}),
                                              k, index -> the k nearest clips and the index's k best glosses
    GET  /v1/poses/<index>/<id>               a clip's .pose, for drawing (ids of the index only)
    GET  /v1/skeleton                         the connections the page draws that a .pose header lacks

A query is embedded by the model the index was embedded with (checked by fingerprint when the index loads).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from starlette.responses import Response

from signclip.api import parsing, schema
from signclip.api.calls import Calls, json_response
from signclip.api.errors import ApiError, bad_request, unprocessable
from signclip.api.types import ExtractedPose, Rejected, SearchResult

SEARCH_UPLOAD_ROUTES = frozenset({"/v1/search"})
POSE_SUFFIX = ".pose"


def pose_url(index: str, clip_id: str) -> str:
    """The route of a clip's ``.pose``, relative to the service root (an id's ``/`` kept as folders)."""
    return f"v1/poses/{quote(index, safe='')}/{quote(clip_id, safe='/')}"


def _hit(hit: Any, index: str) -> dict[str, Any]:
    return {"rank": hit.rank, "score": hit.score, "id": hit.id, "gloss": hit.gloss, "text": hit.text,
            "language": hit.language, "pose_url": pose_url(index, hit.id)}


def _answer(result: SearchResult, **extra: Any) -> dict[str, Any]:
    return {"index": result.index, **extra, "hits": [_hit(h, result.index) for h in result.hits],
            "glosses": [{"rank": g.rank, "score": g.score, "label": g.label, "language": g.language,
                         "clips": g.clips} for g in result.glosses]}


def add_search_routes(app: FastAPI, calls: Calls, errors: dict) -> None:
    settings, backend = calls.settings, calls.backend

    @app.get("/v1/indexes", response_model=schema.IndexList, responses=errors)
    async def list_indexes() -> Response:
        found = await backend.indexes() if settings.indexes else {}
        return json_response({"object": "list", "data": [info.to_dict() for info in found.values()]})

    @app.get("/v1/search", response_model=schema.SearchAnswer, responses=errors)
    async def search_by_text(q: str = "", k: str = "", index: str = "") -> Response:
        name = parsing.index_name(index, settings)
        query = parsing.search_query(q, settings)
        count = parsing.result_count(k, settings)
        result = await backend.search_text(name, query, count)
        return json_response(_answer(result, query=query))

    @app.post("/v1/search", response_model=schema.SearchAnswer, responses=errors,
              openapi_extra={"requestBody": {"required": True, "content": {
                  "multipart/form-data": {"schema": {"$ref": "#/components/schemas/SignUpload"}},
                  "application/json": {"schema": {"$ref": "#/components/schemas/SignRequest"}}}}})
    async def search_by_sign(request: Request) -> Response:
        if request.headers.get("content-type", "").startswith("application/json"):
            body = await parsing.read_json(request)
            name = parsing.index_name(body.get("index"), settings)
            count = parsing.result_count(body.get("k"), settings)
            value = body.get("pose")
            if value is None:
                raise bad_request("the body needs a 'pose' field (a base64-encoded .pose file)", "missing_field",
                                  "pose")
            if not isinstance(value, str):
                raise bad_request(f"'pose' must be a string (a base64-encoded .pose file), not a "
                                  f"{type(value).__name__}; send one clip per request", "invalid_pose", "pose")
            pose = parsing.decode_pose(value, "pose")
        else:
            form = await calls.form(request, max_files=1)
            files = calls.files(form)
            if len(files) != 1:
                raise bad_request("send exactly one .pose file or video as the 'file' field", "missing_field", "file")
            name = parsing.index_name(form.get("index"), settings)
            count = parsing.result_count(form.get("k"), settings)
            upload = files[0]
            data = await upload.read()
            if (upload.filename or "").lower().endswith(POSE_SUFFIX):
                pose = data
            else:  # a video: MediaPipe Holistic first, as /v1/embed/video does
                if not settings.enable_video:
                    raise ApiError(415, f"{upload.filename or 'the upload'}: not a .pose file, and video extraction "
                                   "is not enabled on this server", "unsupported_media_type", "file")
                extracted = await backend.video_to_pose(data, parsing.safe_suffix(upload.filename))
                if isinstance(extracted, Rejected):
                    raise unprocessable(extracted.message, extracted.code, "file")
                assert isinstance(extracted, ExtractedPose)
                pose = extracted.pose
        result = await backend.search_pose(name, pose, count)
        if isinstance(result, Rejected):
            raise unprocessable(result.message, result.code, "pose")
        return json_response(_answer(result))

    @app.get("/v1/poses/{index}/{clip_id:path}", response_class=Response, responses={
        200: {"content": {"application/octet-stream": {}}, "description": "the clip's .pose file"}, **errors})
    async def clip_pose(index: str, clip_id: str) -> Response:
        name = parsing.index_name(index, settings)
        data = await backend.pose_file(name, clip_id)
        if data is None:
            raise ApiError(404, f"index {name!r} has no clip {clip_id!r}", "clip_not_found", "id")
        if isinstance(data, Rejected):
            raise ApiError(404, f"index {name!r}: {data.message}", data.code, "id")
        return Response(data, media_type="application/octet-stream")

    @app.get("/v1/skeleton", response_model=schema.Skeleton)
    async def skeleton() -> Response:
        from signclip.pose.layout import FACE_CONTOUR_LIMBS

        return json_response({"limbs": {"FACE_LANDMARKS": [list(limb) for limb in FACE_CONTOUR_LIMBS]}})
