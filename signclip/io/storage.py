"""One storage layer for every job: local paths and ``s3://`` URIs through fsspec.

``./data/x.pose`` and ``s3://bucket/x.pose`` take the same code path. An S3-compatible endpoint
(MinIO, moto, ...) is picked up from ``AWS_ENDPOINT_URL`` by botocore itself, so Ray workers that
inherit the environment reach the same store as the driver.
"""

from __future__ import annotations

import os
import posixpath
import uuid
from functools import lru_cache
from typing import TYPE_CHECKING

import fsspec

if TYPE_CHECKING:
    import pyarrow.fs


def cache_home() -> str:
    """Where this node keeps what it fetched (models, sample data): ``$SIGNCLIP_CACHE``, else
    ``~/.cache/signclip`` (also when the variable is set but empty)."""
    return os.environ.get("SIGNCLIP_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "signclip")


def is_remote(path: str) -> bool:
    """True for URIs with a scheme other than ``file`` (``s3://``, ``gs://``, ``memory://``)."""
    return "://" in path and not path.startswith("file://")


# Object stores whose fsspec filesystems cache directory listings. Other processes of a job (on other nodes)
# write into the same folders, so a cached listing is a stale one: a shard listed but "not found", a pose
# that exists reported missing. Listings are always asked afresh.
_LISTING_CACHES = ("s3", "gs", "gcs")


@lru_cache(maxsize=8)
def _filesystem(protocol: str, endpoint: str | None) -> fsspec.AbstractFileSystem:
    kwargs: dict = {}
    if protocol == "s3" and endpoint:
        kwargs["client_kwargs"] = {"endpoint_url": endpoint}
    if protocol in _LISTING_CACHES:
        kwargs["use_listings_cache"] = False
    return fsspec.filesystem(protocol, **kwargs)


def _split(path: str) -> tuple[str, str]:
    protocol, stripped = fsspec.core.split_protocol(path)
    protocol = protocol or "file"
    return protocol, os.path.abspath(stripped) if protocol == "file" else stripped


def filesystem(path: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem that holds ``path`` and the path as that filesystem names it."""
    protocol, stripped = _split(path)
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    return _filesystem(protocol, endpoint if protocol == "s3" else None), stripped


def pyarrow_filesystem(path: str) -> tuple["pyarrow.fs.FileSystem", str]:
    """The same filesystem wrapped for pyarrow and Ray Data (``filesystem=`` arguments)."""
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    fs, stripped = filesystem(path)
    return PyFileSystem(FSSpecHandler(fs)), stripped


def join(base: str, *parts: str) -> str:
    """Join path parts with ``/`` for URIs and ``os.path`` for local paths."""
    if is_remote(base):
        return posixpath.join(base.rstrip("/"), *parts)
    return os.path.join(base, *parts)


def relative_to(path: str, root: str) -> str:
    """``path`` relative to ``root`` (both local or both URIs of one store), ``/``-separated."""
    (_, p), (_, r) = _split(path), _split(root)
    inside = r.rstrip("/") + "/"
    rest = p[len(inside):] if p.startswith(inside) else ""
    if rest and not {"", ".", ".."} & set(rest.split("/")):  # already normal: relpath's answer, without its work
        return rest
    return posixpath.relpath(p, r) if is_remote(path) else os.path.relpath(p, r).replace(os.sep, "/")


def exists(path: str) -> bool:
    fs, p = filesystem(path)
    return fs.exists(p)


def size(path: str) -> int:
    fs, p = filesystem(path)
    return int(fs.size(p))


def read_bytes(path: str) -> bytes:
    """The whole file. Raises ``FileNotFoundError`` naming ``path`` when it is absent."""
    if not is_remote(path):  # the common case of a corpus on disk, without fsspec's layers
        try:
            with open(path.removeprefix("file://"), "rb") as f:
                return f.read()
        except FileNotFoundError as e:
            raise FileNotFoundError(f"{path}: no such file") from e
    fs, p = filesystem(path)
    # s3fs first asks an object's size (a HEAD: one more round trip per file) to fetch one over 50 MB in
    # parallel ranges; what is read whole here (poses, shards, manifests) is smaller than that
    one_request = {"max_concurrency": 1} if _split(path)[0] in ("s3", "s3a") else {}
    try:
        # one GET of the whole object: a consistent copy even while another node replaces it (a file
        # object reads in ranges pinned to the first ETag, and fails when the object changes between them)
        return fs.cat_file(p, **one_request)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{path}: no such file") from e


def write_bytes_atomic(path: str, data: bytes) -> None:
    """Write ``data`` so that ``path`` is either absent or complete, never truncated.

    Locally: write a temporary sibling, fsync, rename. On object stores a PUT is already atomic.
    """
    fs, p = filesystem(path)
    if is_remote(path):
        fs.pipe_file(p, data)
        return
    os.makedirs(os.path.dirname(p) or ".", exist_ok=True)
    tmp = f"{p}.tmp-{uuid.uuid4().hex}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def makedirs(path: str) -> None:
    fs, p = filesystem(path)
    if not is_remote(path):
        fs.makedirs(p, exist_ok=True)


def check_writable(folder: str) -> None:
    """Create ``folder`` if needed, then write and remove a small file in it, so that a job learns its output
    cannot be written (no such bucket, no permission) before it does any work rather than after. Raises
    ``PermissionError`` naming the folder."""
    probe = join(folder, f".signclip-write-check-{uuid.uuid4().hex}")
    try:
        makedirs(folder)
        write_bytes_atomic(probe, b"")
        fs, p = filesystem(probe)
        fs.rm_file(p)
    except Exception as e:  # each store raises its own errors (botocore's are not OSErrors)
        raise PermissionError(f"{folder}: cannot write there ({type(e).__name__}: {e})") from e


GLOB_CHARS = "*?["


def is_glob(location: str) -> bool:
    """Whether ``location`` is a pattern: it has ``*``, ``?`` or ``[`` and names no file or folder itself
    (a folder called ``Signs [ASL]`` is that folder, not a character class)."""
    return any(ch in location for ch in GLOB_CHARS) and not exists(location)


def expand(pattern: str, suffixes: tuple[str, ...]) -> list[str]:
    """Files named by a file, a directory (searched recursively) or a glob, filtered by suffix.

    The result is sorted and keeps the caller's scheme (``s3://`` in, ``s3://`` out). Raises
    ``FileNotFoundError`` when ``pattern`` names nothing: no such path, or a glob that matches no file.
    """
    fs, p = filesystem(pattern)
    scheme = pattern.split("://", 1)[0] + "://" if is_remote(pattern) else ""
    if is_glob(pattern):
        found = [f for f, info in fs.glob(p, detail=True).items() if info.get("type") != "directory"]
        if not found:
            raise FileNotFoundError(f"{pattern}: the pattern matches no file")
    elif not scheme and os.path.isdir(p):  # a folder on disk: os.walk reads entry types without a stat per file
        found = [os.path.join(folder, name) for folder, _, names in os.walk(p) for name in names]
    elif fs.isdir(p):
        found = list(fs.find(p))  # files only
    elif fs.exists(p):
        found = [p]
    else:
        raise FileNotFoundError(f"{pattern}: no such file or directory")
    found = [f for f in found if f.lower().endswith(suffixes)]
    return sorted(scheme + f if scheme else f for f in found)


def put_dir(local_dir: str, target: str) -> None:
    """Copy a local directory's files to ``target`` (local or remote), replacing files of the same name."""
    for root, _, files in os.walk(local_dir):
        for name in files:
            rel = os.path.relpath(os.path.join(root, name), local_dir).replace(os.sep, "/")
            with open(os.path.join(root, name), "rb") as f:
                write_bytes_atomic(join(target, rel), f.read())
