"""Request bodies -> validated Python values, or an ``ApiError`` (4xx) that names the field and the problem.

Poses arrive as bytes only (base64 in JSON, file contents in multipart); nothing a client sends is ever
used as a path, so no request can make the server read a file.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import orjson
import pybase64

from signclip.api.errors import ApiError, bad_request, unprocessable
from signclip.api.settings import ServiceSettings

if TYPE_CHECKING:
    from starlette.requests import Request


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


async def read_json(request: "Request") -> dict[str, Any]:
    """The body as a JSON object, whatever the method (the original clients send GET with a body)."""
    raw = await request.body()
    try:
        body = orjson.loads(raw)  # 3x the standard library's speed on a pose request (1 MB of base64)
    except orjson.JSONDecodeError:
        body = _loads_or_explain(raw)
    if not isinstance(body, dict):
        raise bad_request(f"expected a JSON object, got {_type_name(body)}", "wrong_type")
    return body


def _loads_or_explain(raw: bytes) -> Any:
    """The standard library's reading of a body orjson refused: it is the arbiter (it also takes NaN, UTF-16 and
    lone surrogates), and its errors say where the body goes wrong. One difference stays: orjson reads integers
    beyond 64 bits as floats, and no field of the API takes such a number either way."""
    if not raw.strip():
        raise bad_request("the request has no body; expected a JSON object", "empty_body")
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise bad_request(f"malformed JSON: {e.msg} at line {e.lineno} column {e.colno}", "malformed_json") from None
    except UnicodeDecodeError:
        raise bad_request("malformed JSON: the body is not UTF-8 text", "malformed_json") from None
    except RecursionError:
        raise bad_request("malformed JSON: nested too deeply", "malformed_json") from None


def _items(body: dict[str, Any], key: str, what: str, limit: int) -> list[Any]:
    if key not in body or body[key] is None:
        raise bad_request(f"the body needs a '{key}' field ({what} or a list of them)", "missing_field", key)
    value = body[key]
    items = value if isinstance(value, list) else [value]
    if not items:
        raise bad_request(f"'{key}' is an empty list; send at least one item", "empty_input", key)
    if len(items) > limit:
        raise bad_request(f"'{key}' has {len(items)} items; at most {limit} per request", "too_many_items", key)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            param = f"{key}[{i}]" if isinstance(value, list) else key
            raise bad_request(f"{param} must be {what}, got {_type_name(item)}", "wrong_type", param)
    return items


def texts(body: dict[str, Any], settings: ServiceSettings, key: str = "text") -> list[str]:
    """``body[key]``: a string or a non-empty list of strings, each within ``max_text_chars``."""
    items = _items(body, key, "a string", settings.max_items)
    for i, text in enumerate(items):
        if len(text) > settings.max_text_chars:
            param = f"{key}[{i}]" if isinstance(body[key], list) else key
            raise bad_request(f"{param} has {len(text)} characters; the limit is {settings.max_text_chars}",
                              "text_too_long", param)
    return items


def decode_pose(text: str, param: str) -> bytes:
    """The bytes of a base64 ``.pose`` (standard alphabet, line breaks allowed)."""
    if any(space in text for space in " \n\r\t"):  # line-wrapped base64 (a copy of a large string otherwise)
        text = "".join(text.split())
    try:
        # pybase64 (SIMD): 0.2 ms for a 1 MB pose where the standard library's decoder takes 6 ms
        data = pybase64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        try:  # the standard library's decoder is the arbiter, and it says more precisely what is wrong
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as e:
            raise bad_request(f"{param}: not valid base64 ({e})", "invalid_base64", param) from None
    if not data:
        raise unprocessable(f"{param}: empty; expected the bytes of a .pose file", "invalid_pose", param)
    return data


def poses(body: dict[str, Any], settings: ServiceSettings, key: str = "pose") -> list[bytes]:
    """``body[key]``: one base64 ``.pose`` or a non-empty list of them, decoded."""
    items = _items(body, key, "a base64-encoded .pose file", settings.max_poses)
    listed = isinstance(body[key], list)
    return [decode_pose(item, f"{key}[{i}]" if listed else key) for i, item in enumerate(items)]


def model_name(value: Any, settings: ServiceSettings, param: str = "model_name") -> str:
    """A served model's name (the default one when ``value`` is absent)."""
    if value is None or value == "":
        return settings.default_model
    if not isinstance(value, str):
        raise bad_request(f"'{param}' must be a string, got {_type_name(value)}", "wrong_type", param)
    if value not in settings.models:
        raise ApiError(404, f"model {value!r} is not served; available: {sorted(settings.models)}",
                       "model_not_found", param)
    return value


@dataclass(frozen=True)
class OpenAIEmbeddingRequest:
    """A validated ``POST /v1/embeddings`` body."""

    texts: list[str]
    model: str
    encoding_format: Literal["float", "base64"]
    dimensions: int | None


def openai_request(body: dict[str, Any], settings: ServiceSettings) -> OpenAIEmbeddingRequest:
    """OpenAI's embeddings body: ``input`` (string or list of strings), ``model``, ``encoding_format``."""
    value = body.get("input")
    if isinstance(value, list) and value and all(isinstance(v, (int, list)) and not isinstance(v, bool)
                                                 for v in value):
        raise bad_request("token-id input is not supported: send text", "unsupported_input", "input")
    items = texts(body, settings, key="input")
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise bad_request(f"encoding_format {encoding!r}: expected 'float' or 'base64'", "invalid_value",
                          "encoding_format")
    dimensions = body.get("dimensions")
    if dimensions is not None and (isinstance(dimensions, bool) or not isinstance(dimensions, int)):
        raise bad_request(f"'dimensions' must be an integer, got {_type_name(dimensions)}", "wrong_type",
                          "dimensions")
    return OpenAIEmbeddingRequest(items, model_name(body.get("model"), settings, "model"), encoding, dimensions)


def safe_suffix(filename: str | None) -> str:
    """An upload's extension if it is a plain short one (FFmpeg may use it as a hint), else ``.video``."""
    ext = os.path.splitext(filename or "")[1].lower()
    return ext if re.fullmatch(r"\.[a-z0-9]{1,5}", ext) else ".video"


def index_name(value: Any, settings: ServiceSettings, param: str = "index") -> str:
    """A served index's name (the first one when ``value`` is absent)."""
    if not settings.indexes:
        raise ApiError(404, "this server serves no index (start it with --index NAME=DIR)", "no_index", param)
    if value is None or value == "":
        return next(iter(settings.indexes))
    if not isinstance(value, str):
        raise bad_request(f"'{param}' must be a string, got {_type_name(value)}", "wrong_type", param)
    if value not in settings.indexes:
        raise ApiError(404, f"index {value!r} is not served; available: {sorted(settings.indexes)}",
                       "index_not_found", param)
    return value


def result_count(value: Any, settings: ServiceSettings, default: int = 10, param: str = "k") -> int:
    """How many results a search asks for: 1 .. ``max_k``."""
    if value is None or value == "":
        return min(default, settings.max_k)
    try:
        k = int(value)
        if isinstance(value, bool) or str(k) != str(value).strip():
            raise ValueError
    except (TypeError, ValueError):
        raise bad_request(f"'{param}' must be a whole number, got {value!r}", "wrong_type", param) from None
    if not 1 <= k <= settings.max_k:
        raise bad_request(f"'{param}' is {k}; ask for 1 to {settings.max_k} results", "invalid_value", param)
    return k


def search_query(value: Any, settings: ServiceSettings, param: str = "q") -> str:
    """A text query: a non-empty string within ``max_text_chars``."""
    if not isinstance(value, str) or not value.strip():
        raise bad_request(f"'{param}' is empty; send a word or phrase to look up", "empty_query", param)
    if len(value) > settings.max_text_chars:
        raise bad_request(f"'{param}' has {len(value)} characters; the limit is {settings.max_text_chars}",
                          "text_too_long", param)
    return value.strip()
