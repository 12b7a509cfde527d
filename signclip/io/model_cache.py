"""Models named by a URL (``s3://...``, any fsspec URL), fetched by the process that loads them into its own
node's cache (SignCLIP models, and the BERT directories new models start from). Nothing here is shared
between nodes: each node fetches a model once, whoever asks first.

Cache layout under ``$SIGNCLIP_CACHE/models`` (default ``~/.cache/signclip/models``)::

    <fingerprint>/           a complete model (config.json, model.safetensors, tokenizer files)
    sources/<key>.json       what a URL held when it was fetched: {url, listing, fingerprint}
    locks/<key>.lock         held (flock) while one process of this node fetches that URL
    tmp/<random>/            a download in progress; renamed to <fingerprint>/ once complete and verified

``<key>`` hashes the URL and its listing (every file's name, size and ETag, or modification time where the
store has no ETag), so a model rewritten in place (same sizes, new weights) has a new key and is fetched
again. The directory of a model is named by its content (:func:`fingerprint`), appears in one rename and
only after every file arrived with its listed size, so a partial or corrupt download is never used; a
caller that knows which model it wants (``expected``) gets that one or an error, never another.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from signclip.io import storage

log = logging.getLogger(__name__)

FINGERPRINTED = ("config.json", "model.safetensors")  # the files that decide what a model computes


class ModelFetchError(OSError):
    """A remote model that cannot be fetched, or is not the one expected; the message names the URL."""


def cache_root() -> Path:
    """Where this node keeps fetched models."""
    return Path(storage.cache_home()) / "models"


def fingerprint(directory: str | os.PathLike) -> str:
    """A short content hash of a native model (config + weights): names the model in outputs and caches."""
    digest = hashlib.sha256()
    for name in FINGERPRINTED:
        with open(Path(directory) / name, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def local_model(location: str, expected: str | None = None) -> str:
    """A local directory holding the model at ``location``.

    A local path is returned as it is (absolute), after hashing it when a model is ``expected``. A URL is
    fetched into this node's cache unless the cache already holds what the URL holds now (or, with
    ``expected``, that exact model). Raises ``ModelFetchError`` when the URL holds nothing, or when the model
    found is not ``expected``.
    """
    if not storage.is_remote(location):
        directory = os.path.abspath(location)
        if expected:
            _check_expected(location, _local_fingerprint(location, directory), expected)
        return directory
    root = cache_root()
    if expected and (root / expected).is_dir():
        return str(root / expected)
    listing = _listing(location)
    key = hashlib.sha256(json.dumps([location, listing]).encode()).hexdigest()[:24]
    with _locked(root / "locks" / f"{key}.lock"):
        known = _known(root, key)
        if known is None:
            known = _fetch(location, listing, root)
            storage.write_bytes_atomic(str(root / "sources" / f"{key}.json"), json.dumps(
                {"url": location, "listing": listing, "fingerprint": known}, indent=1).encode())
    if expected:
        _check_expected(location, known, expected)
    return str(root / known)


def local_model_and_fingerprint(location: str, expected: str | None = None) -> tuple[str, str]:
    """:func:`local_model` and the model's :func:`fingerprint`; a fetched model's directory is named by it,
    so only a local directory is hashed (once)."""
    if storage.is_remote(location):
        directory = local_model(location, expected)
        return directory, Path(directory).name
    directory = os.path.abspath(location)
    found = _local_fingerprint(location, directory)
    if expected:
        _check_expected(location, found, expected)
    return directory, found


def _local_fingerprint(location: str, directory: str) -> str:
    try:
        return fingerprint(directory)
    except FileNotFoundError as e:
        raise ModelFetchError(f"{location}: not a SignCLIP model directory (no {Path(e.filename).name})") from None
    except OSError as e:
        raise ModelFetchError(f"{location}: cannot read the model ({type(e).__name__}: {e})") from e


def _check_expected(location: str, found: str, expected: str) -> None:
    # a local path names another model where it was rewritten, or where this node's copy differs from the one
    # the job was planned with (nodes that share no disk)
    if found != expected:
        raise ModelFetchError(f"{location} now holds model {found}, not the expected {expected}: it was replaced "
                              "after the job (or service) started, or this node's copy differs; rerun to use "
                              "the model it holds now")


def _listing(location: str) -> list[list[Any]]:
    fs, path = storage.filesystem(location)
    try:
        found = fs.find(path, detail=True)
    except (OSError, ValueError) as e:
        raise ModelFetchError(f"{location}: cannot list the model ({type(e).__name__}: {e})") from e
    base = path.rstrip("/") + "/"
    listing = []
    for name, info in sorted(found.items()):
        if info.get("type") == "directory" or not name.startswith(base):
            continue
        version = next((str(info[k]) for k in ("ETag", "etag", "LastModified", "mtime", "created") if k in info), "")
        listing.append([name[len(base):], int(info.get("size") or 0), version])
    names = {entry[0] for entry in listing}
    missing = [n for n in FINGERPRINTED if n not in names]
    if missing:
        raise ModelFetchError(f"{location}: not a SignCLIP model directory (no {', '.join(missing)})")
    return listing


def _known(root: Path, key: str) -> str | None:
    try:
        fp = json.loads((root / "sources" / f"{key}.json").read_text())["fingerprint"]
    except (OSError, ValueError, KeyError):
        return None
    return fp if (root / fp).is_dir() else None


def _fetch(location: str, listing: list[list[Any]], root: Path) -> str:
    fs, path = storage.filesystem(location)
    tmp = root / "tmp" / uuid.uuid4().hex
    tmp.mkdir(parents=True)
    try:
        for name, size, _ in listing:
            target = tmp / name
            target.parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(f"{path.rstrip('/')}/{name}", str(target))
            if target.stat().st_size != size:
                raise ModelFetchError(f"{location}/{name}: fetched {target.stat().st_size} bytes, listed {size}")
        found = fingerprint(tmp)
        final = root / found
        try:
            os.rename(tmp, final)
            log.info("fetched %s (%d files) into %s", location, len(listing), final)
        except OSError:  # another process of this node (without our lock: another URL) put it there first
            if not final.is_dir():
                raise
        return found
    except (OSError, ValueError) as e:
        if isinstance(e, ModelFetchError):
            raise
        raise ModelFetchError(f"{location}: fetching the model failed ({type(e).__name__}: {e})") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
