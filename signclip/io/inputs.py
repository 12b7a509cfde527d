"""Which files a job's ``--input`` names, and the folder their ids and output paths are relative to.

One lister for every job: a file, a folder (searched recursively) or a glob, local or ``s3://``. The
root is the folder itself, a glob's static prefix (``s3://b/v/**/*.mp4`` -> ``s3://b/v``), or a single
file's folder; ``videos/a/b.mp4`` under ``videos`` has the id ``a/b``.
"""

from __future__ import annotations

import os
import posixpath

from signclip.io import storage

VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm", ".flv", ".wmv", ".mpg", ".mpeg", ".ts")
POSE_SUFFIXES = (".pose",)


def _static_prefix(pattern: str) -> str:
    scheme, sep, rest = pattern.rpartition("://")
    static = []
    for part in rest.split("/")[:-1]:
        if any(ch in part for ch in storage.GLOB_CHARS):
            break
        static.append(part)
    prefix = "/".join(static) or ("/" if rest.startswith("/") else "")  # "/*.mp4": the root folder
    return f"{scheme}{sep}{prefix}" if prefix or sep else "."


def root_of(pattern: str) -> str:
    """The folder ids are relative to: the folder itself, a glob's static prefix, or a file's folder."""
    if storage.is_glob(pattern):
        return _static_prefix(pattern)
    fs, stripped = storage.filesystem(pattern)
    if fs.isdir(stripped):
        return pattern
    return posixpath.dirname(pattern) if storage.is_remote(pattern) else os.path.dirname(os.path.abspath(pattern))


def list_files(pattern: str, suffixes: tuple[str, ...]) -> tuple[list[str], str]:
    """The files ``pattern`` names with one of ``suffixes`` (sorted, in the caller's scheme), and their root.

    Raises ``FileNotFoundError`` when ``pattern`` names nothing that exists.
    """
    return storage.expand(pattern, suffixes), root_of(pattern)


def relative_id(path: str, root: str) -> str:
    """``path`` relative to ``root`` without its suffix: the item's id (``a/b`` for ``root/a/b.pose``)."""
    return posixpath.splitext(storage.relative_to(path, root))[0]
