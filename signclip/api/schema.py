"""The published shape of every request and response (``GET /openapi.json``), as pydantic models.

The routes parse bodies themselves (:mod:`signclip.api.parsing`: precise 4xx messages naming the field, GET
with a JSON body as the original clients send), so these models document the API; tests check that what the
routes return validates against them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Texts = str | list[str]
Base64Poses = str | list[str]


# -- requests ---------------------------------------------------------------------------------------------------
class TextRequest(BaseModel):
    """The original API's text body."""

    text: Texts = Field(description="a prompt, e.g. '<en> <ase> house', or a list of them")
    model_name: str | None = Field(None, description="a served model (default: the default model)")


class PoseRequest(BaseModel):
    """The original API's pose body."""

    pose: Base64Poses = Field(description="a base64-encoded .pose file, or a list of them")
    model_name: str | None = None


class ScoreRequest(BaseModel):
    """Poses and texts to score against each other."""

    pose: Base64Poses
    text: Texts
    model_name: str | None = None


class OpenAIEmbeddingRequest(BaseModel):
    """OpenAI's embeddings body (texts only)."""

    input: Texts
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, description="must equal the model's embedding size if given")


class PoseUpload(BaseModel):
    """``multipart/form-data`` with one or more ``.pose`` files."""

    file: list[bytes] = Field(description="the .pose files, each as a 'file' part")
    model_name: str | None = None


class VideoUpload(BaseModel):
    """``multipart/form-data`` with one video (when video extraction is enabled)."""

    file: bytes = Field(description="the video file")
    model_name: str | None = None
    return_pose: bool = Field(False, description="also return the extracted .pose, base64-encoded")


class SignUpload(BaseModel):
    """``multipart/form-data`` for a search by sign: a ``.pose`` file, or a video when extraction is enabled."""

    file: bytes = Field(description="the .pose file (by its name's suffix) or a video")
    k: int = Field(10, description="results wanted (1 .. max_k)")
    index: str | None = Field(None, description="a served index (default: the first)")


class SignRequest(BaseModel):
    """A search by sign as JSON."""

    pose: str = Field(description="a base64-encoded .pose file")
    k: int = 10
    index: str | None = None


# -- responses --------------------------------------------------------------------------------------------------
class Response(BaseModel):
    """Every field a response carries is declared: tests validate real responses against these models, so a field
    a route sends but this file does not publish fails them."""

    model_config = ConfigDict(extra="forbid")


class Embeddings(Response):
    embeddings: list[list[float]] = Field(description="one vector per input, in input order")


class VideoEmbedding(Embeddings):
    frames: int
    fps: float
    warnings: list[str]
    pose: str | None = Field(None, description="the extracted .pose, base64 (with return_pose)")


class OpenAIEmbedding(Response):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str = Field(description="floats, or base64 of little-endian float32")


class OpenAIUsage(Response):
    prompt_tokens: int
    total_tokens: int


class OpenAIEmbeddingResponse(Response):
    object: Literal["list"]
    data: list[OpenAIEmbedding]
    model: str
    usage: OpenAIUsage


class OpenAIModel(Response):
    id: str
    object: Literal["model"]
    owned_by: str


class OpenAIModelList(Response):
    object: Literal["list"]
    data: list[OpenAIModel]


class Scores(Response):
    scores: list[list[float]] = Field(description="[pose x text] similarities")
    model: str
    similarity: Literal["dot", "cosine"]


class Health(Response):
    status: Literal["ok"]


class Readiness(Response):
    ready: bool
    models: list[str]
    components: dict[str, str] | None = None


class ModelDescription(Response):
    name: str
    preset: str
    embedding_dim: int
    feature_set: str
    feature_dim: int
    max_frames: int
    max_text_tokens: int
    similarity: str
    fingerprint: str


class Info(Response):
    models: dict[str, ModelDescription]
    default_model: str
    video: bool
    limits: dict[str, Any]
    versions: dict[str, str]


class IndexDescription(Response):
    name: str
    clips: int
    labels: int
    model: str
    fingerprint: str
    similarity: str
    mode: Literal["exact", "approximate"]


class IndexList(Response):
    object: Literal["list"]
    data: list[IndexDescription]


class SearchHit(Response):
    rank: int
    score: float
    id: str
    gloss: str
    text: str
    language: str
    pose_url: str = Field(description="where its .pose is, relative to the service's root")


class GlossHit(Response):
    rank: int
    score: float
    label: str = Field(description="the gloss, or the text when the index gives one")
    language: str
    clips: int = Field(description="clips of the index with this label")


class SearchAnswer(Response):
    index: str
    query: str | None = Field(None, description="the text query (text searches)")
    hits: list[SearchHit]
    glosses: list[GlossHit] = Field(description="the index's best labels for a clip query (empty for text)")


class Skeleton(Response):
    limbs: dict[str, list[list[int]]] = Field(description="per component, connections a .pose header lacks")


class ErrorDetail(Response):
    message: str
    type: str
    code: str
    param: str | None


class Error(Response):
    """Every error, whatever the route (OpenAI's shape)."""

    error: ErrorDetail


REQUEST_MODELS: tuple[type[BaseModel], ...] = (TextRequest, PoseRequest, ScoreRequest, OpenAIEmbeddingRequest,
                                                PoseUpload, VideoUpload, SignUpload, SignRequest)
ERRORS = {code: {"model": Error, "description": text} for code, text in (
    (400, "invalid request (the message names the field)"), (401, "missing or wrong bearer token"),
    (404, "unknown route or model"), (413, "body over the size limit"), (422, "an input the model refuses"),
    (503, "overloaded or restarting; retry after Retry-After seconds"), (504, "the model did not answer in time"))}


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` declaring a JSON request body of ``model``."""
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}}


def form_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` declaring a multipart request body of ``model``."""
    return {"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}}


def add_request_models(openapi: dict[str, Any]) -> dict[str, Any]:
    """``openapi`` with the request models (and what they refer to) among its component schemas."""
    schemas = openapi.setdefault("components", {}).setdefault("schemas", {})
    for model in REQUEST_MODELS:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return openapi
