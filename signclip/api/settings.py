"""What the embedding service serves and the limits it enforces: one dataclass, validated up front.

Settings come from a mapping (the ``args:`` of a Serve config, or command-line flags) with the environment
filling what the mapping leaves out:

- ``SIGNCLIP_MODELS``: ``name=dir,name=dir`` when no ``models`` are given;
- ``SIGNCLIP_INDEXES``: ``name=dir,name=dir`` (embedding directories to search) when no ``indexes`` are given;
- ``SIGNCLIP_CORS_ORIGINS``: comma-separated origins when no ``cors_origins`` are given;
- the bearer token itself is never a setting: it is read from the environment variable named by
  ``api_token_env`` (``SIGNCLIP_API_TOKEN``) where the gateway runs, so it stays out of configs and logs.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MODELS_ENV = "SIGNCLIP_MODELS"
INDEXES_ENV = "SIGNCLIP_INDEXES"
CORS_ENV = "SIGNCLIP_CORS_ORIGINS"
MiB = 1 << 20
LAYOUTS = ("combined", "split")


def parse_models(spec: str | Mapping[str, str] | list[str], what: str = "model") -> dict[str, str]:
    """``{"name": dir}`` from a mapping, ``["name=dir", ...]`` or ``"name=dir,name=dir"``."""
    if isinstance(spec, Mapping):
        pairs = [(str(k), str(v)) for k, v in spec.items()]
    else:
        items = spec.split(",") if isinstance(spec, str) else list(spec)
        pairs = []
        for item in (i.strip() for i in items):
            if not item:
                continue
            name, sep, directory = item.partition("=")
            if not sep or not name.strip() or not directory.strip():
                raise ValueError(f"{what} {item!r}: expected NAME=DIRECTORY")
            pairs.append((name.strip(), directory.strip()))
    models: dict[str, str] = {}
    for name, directory in pairs:
        if name in models:
            raise ValueError(f"{what} name {name!r} is given twice")
        models[name] = directory
    return models


@dataclass
class ServiceSettings:
    """Models by name and the request limits; the same object configures every deployment."""

    models: dict[str, str] = field(default_factory=dict)  # model name -> native model directory or URL
    # model name -> the fingerprint every replica must load (from_mapping pins what each model is when the app
    # is built, so a replica started after a model was replaced in place refuses to start instead of serving it)
    model_fingerprints: dict[str, str] = field(default_factory=dict)
    default_model: str = ""  # the model used when a request names none ("" -> "default" if listed, else the first)
    max_items: int = 64  # texts per request (original API, /v1/embeddings, /score)
    max_poses: int = 16  # poses per request (JSON or multipart)
    max_text_chars: int = 1000  # characters per text; the model reads at most 61 word pieces anyway
    max_body_bytes: int = 32 * MiB  # JSON request bodies (base64 poses included)
    max_upload_bytes: int = 64 * MiB  # multipart uploads (.pose files, a video)
    max_video_seconds: float = 60.0  # longest video accepted for extraction
    enable_video: bool = True  # deploy the video -> pose extractor (MediaPipe Holistic)
    holistic_options: dict[str, Any] = field(default_factory=dict)  # signclip.extraction.holistic.HolisticConfig fields
    api_token_env: str = "SIGNCLIP_API_TOKEN"  # environment variable holding the bearer token ("" or unset: none)
    cors_origins: list[str] = field(default_factory=list)  # allowed browser origins (empty: no CORS headers)
    retry_after_s: int = 1  # Retry-After sent with 503 (overloaded / replica restarting)
    request_timeout_s: float = 120.0  # longest wait for a model deployment's answer (504 after)
    torch_threads: int = 0  # intra-op threads per model replica (0: the replica's CPUs, at least 1)
    # a replica's models go on its GPU when it was given one (ray_actor_options num_gpus), else on CPU
    precision: str = "fp32"  # fp32, or bf16 autocast (faster on recent GPUs; moves embeddings a little)
    # "combined": the models live in the HTTP gateway's replicas (no hop per request: small or GPU models);
    # "split": separately scaled text and pose deployments behind a model-free gateway (large models on CPUs)
    layout: str = "combined"
    indexes: dict[str, str] = field(default_factory=dict)  # index name -> embedding directory (signclip embed)
    index_models: dict[str, str] = field(default_factory=dict)  # index name -> its model, if not where it says
    search_mode: str = "auto"  # exact, approximate (FAISS HNSW) or auto (approximate above approximate_above)
    approximate_above: int = 200_000  # clips beyond which "auto" builds the approximate index
    max_k: int = 100  # results a search may ask for

    def __post_init__(self) -> None:
        if not isinstance(self.models, dict):
            self.models = parse_models(self.models)
        if not self.models:
            raise ValueError(f"no models to serve: list them (name -> directory) in the config's args.models, "
                             f"with --model NAME=DIR, or in {MODELS_ENV}=name=dir,...")
        if not self.default_model:
            self.default_model = "default" if "default" in self.models else next(iter(self.models))
        if self.default_model not in self.models:
            raise ValueError(f"default_model {self.default_model!r} is not among the models {sorted(self.models)}")
        if not isinstance(self.indexes, dict):
            self.indexes = parse_models(self.indexes, "index")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision {self.precision!r}: expected fp32 or bf16")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout {self.layout!r}: expected one of {list(LAYOUTS)}")
        if self.search_mode not in ("auto", "exact", "approximate"):
            raise ValueError(f"search_mode {self.search_mode!r}: expected auto, exact or approximate")
        unpinned = sorted(set(self.model_fingerprints) - set(self.models))
        if unpinned:
            raise ValueError(f"model_fingerprints name models that are not served: {unpinned}")
        unknown = sorted(set(self.index_models) - set(self.indexes))
        if unknown:
            raise ValueError(f"index_models name indexes that are not served: {unknown}")
        for name in ("max_items", "max_poses", "max_text_chars", "max_body_bytes", "max_upload_bytes", "max_k"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)!r}")
        for name in ("max_video_seconds", "request_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, not {getattr(self, name)!r}")
        if self.retry_after_s < 0:
            raise ValueError(f"retry_after_s must be >= 0, not {self.retry_after_s!r}")
        if isinstance(self.cors_origins, str):
            self.cors_origins = [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    @classmethod
    def from_mapping(cls, args: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None,
                     base_dir: str | os.PathLike | None = None) -> "ServiceSettings":
        """Settings from ``args`` (unknown keys are an error), the environment filling models and CORS.

        Models are directories or URLs (``s3://...``); relative directories are resolved against ``base_dir``
        (the current directory by default), and every model must hold a native model (``config.json`` +
        ``model.safetensors``). Each model is pinned to its fingerprint as it is now (a remote one is fetched
        into this node's cache to be hashed), unless ``model_fingerprints`` names one already.
        """
        args = dict(args or {})
        env = os.environ if environ is None else environ
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(args) - known)
        if unknown:
            raise ValueError(f"unknown service setting(s) {unknown}; known: {sorted(known)}")
        if not args.get("models") and env.get(MODELS_ENV):
            args["models"] = env[MODELS_ENV]
        if not args.get("indexes") and env.get(INDEXES_ENV):
            args["indexes"] = env[INDEXES_ENV]
        if not args.get("cors_origins") and env.get(CORS_ENV):
            args["cors_origins"] = env[CORS_ENV]
        if "models" in args:
            args["models"] = parse_models(args["models"])
        for key in ("indexes", "index_models"):
            if key in args:
                args[key] = parse_models(args[key], "index")
        settings = cls(**args)
        settings.models = {name: resolve_model(d, base_dir) for name, d in settings.models.items()}
        settings.model_fingerprints = {name: settings.model_fingerprints.get(name) or pin_model(location)
                                       for name, location in settings.models.items()}
        settings.indexes = {name: resolve_index(d, base_dir) for name, d in settings.indexes.items()}
        settings.index_models = {name: resolve_model(d, base_dir) for name, d in settings.index_models.items()}
        return settings

    def api_token(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The bearer token the API's routes require (not ``/health``, the page and its schema: see
        ``signclip.api.middleware.PUBLIC_PATHS``), or None when none is set."""
        if not self.api_token_env:
            return None
        return (os.environ if environ is None else environ).get(self.api_token_env) or None

    def public_limits(self) -> dict[str, Any]:
        """The limits a client may want to know (``GET /info``)."""
        return {name: getattr(self, name) for name in ("max_items", "max_poses", "max_text_chars", "max_body_bytes",
                                                       "max_upload_bytes", "max_video_seconds", "max_k")}


def resolve_model(location: str, base_dir: str | os.PathLike | None = None) -> str:
    """The model as every replica can name it: a URL as given, or an absolute local directory.

    Raises ``ValueError`` unless it holds a native SignCLIP model (``config.json`` + ``model.safetensors``);
    a remote model is only looked at here, each replica fetches it onto its own node.
    """
    from signclip.io import storage
    from signclip.model.checkpoint import CONFIG, WEIGHTS

    if storage.is_remote(location):
        present = [storage.exists(storage.join(location, name)) for name in (CONFIG, WEIGHTS)]
        if not all(present):
            raise ValueError(f"model {location!r} holds no native SignCLIP model (needs {CONFIG} and {WEIGHTS}; "
                             "see `signclip import-checkpoint`)")
        return location
    path = Path(location).expanduser()
    if not path.is_absolute():
        path = Path(base_dir or os.getcwd()) / path
    path = path.resolve()
    if not ((path / CONFIG).is_file() and (path / WEIGHTS).is_file()):
        raise ValueError(f"model directory {location!r} ({path}) holds no native SignCLIP model "
                         f"(needs {CONFIG} and {WEIGHTS}; see `signclip import-checkpoint`)")
    return str(path)


def pin_model(location: str) -> str:
    """The fingerprint of the model at ``location`` now; ``ValueError`` naming it when it cannot be read."""
    from signclip.io.model_cache import ModelFetchError, local_model_and_fingerprint

    try:
        return local_model_and_fingerprint(location)[1]
    except ModelFetchError as e:
        raise ValueError(str(e)) from e
    except OSError as e:
        raise ValueError(f"model {location!r}: cannot read it to pin its fingerprint "
                         f"({type(e).__name__}: {e})") from e


def resolve_index(location: str, base_dir: str | os.PathLike | None = None) -> str:
    """An embedding directory as every replica can name it (a URL as given, else absolute); ``ValueError``
    unless it holds embedding shards written by ``signclip embed``."""
    from signclip.io import embedding_store, storage

    if not storage.is_remote(location):
        path = Path(location).expanduser()
        location = str((path if path.is_absolute() else Path(base_dir or os.getcwd()) / path).resolve())
    if not embedding_store.list_shards(location):
        raise ValueError(f"index {location!r} holds no embeddings (expected {embedding_store.shards_dir(location)}/"
                         "part-*.parquet, written by `signclip embed`)")
    rows = embedding_store.read_index(location, ("kind",))
    if not ((rows["status"] == "ok") & rows["kind"].isin(("pose", "video"))).any():
        raise ValueError(f"index {location!r} holds no successfully embedded clips to search (its {len(rows)} "
                         "rows are texts or failed; see its manifest.parquet)")
    return location
