"""Manifests: the tables that drive every job and that every job writes back.

An input manifest is Parquet or CSV (local or ``s3://``), one row per item with at least a path column.
An output manifest is one Parquet file with one row per item and a ``status`` column
(:class:`~signclip.io.status.ItemStatus`) plus an error message. Nothing here knows which job it serves.
"""

from __future__ import annotations

import io
import logging
import os
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from signclip.io import storage
from signclip.io.status import STATUSES

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv",)
MANIFEST_SUFFIXES = PARQUET_SUFFIXES + CSV_SUFFIXES
# where a manifest names its clips, in the order tried: the dataset adapters write `pose`, the jobs' output
# manifests `pose_path`, a hand-written manifest often `path`
CLIP_COLUMNS = ("pose", "pose_path", "path")


def is_manifest(path: str) -> bool:
    """Whether ``path`` names a manifest file by its suffix (Parquet or CSV)."""
    return path.lower().endswith(MANIFEST_SUFFIXES)


def read_manifest(path: str) -> pd.DataFrame:
    """A Parquet or CSV manifest as a DataFrame (CSV columns are read as strings; Parquet integers with
    nulls stay integers, not floats: id 101 must not become "101.0")."""
    import pandas as pd
    import pyarrow.parquet as pq

    data = storage.read_bytes(path)
    lower = path.lower()
    if lower.endswith(PARQUET_SUFFIXES):
        return pq.read_table(io.BytesIO(data)).to_pandas(integer_object_nulls=True)
    if lower.endswith(CSV_SUFFIXES):
        return pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)
    raise ValueError(f"{path}: a manifest must be .parquet, .pq or .csv")


def clip_column(columns: Sequence[str], manifest_path: str, given: str | None = None) -> str:
    """The column of ``columns`` that holds the clips' paths: ``given``, else the first of
    :data:`CLIP_COLUMNS` present. Raises ``ValueError`` naming the manifest when there is none."""
    if given is not None:
        if given not in columns:
            raise ValueError(f"{manifest_path}: no {given!r} column (columns: {list(columns)})")
        return given
    for name in CLIP_COLUMNS:
        if name in columns:
            return name
    raise ValueError(f"{manifest_path}: no column of clip paths: expected one of {', '.join(CLIP_COLUMNS)} "
                     f"or the one named by --path-column (columns: {list(columns)})")


def id_column(columns: Sequence[str], manifest_path: str, given: str | None = None) -> str | None:
    """The column of ``columns`` that holds the items' ids: ``given`` (``ValueError`` naming the manifest when
    it has no such column: a mistyped flag must not silently fall back to derived ids), else ``id`` if present,
    else None (ids are then derived from the paths)."""
    if given is not None:
        if given not in columns:
            raise ValueError(f"{manifest_path}: no {given!r} column for the ids (columns: {list(columns)})")
        return given
    return "id" if "id" in columns else None


def text_cell(value: Any) -> str:
    """A manifest cell as stripped text; ``""`` for an empty or null one (None, NaN)."""
    return "" if value is None or (isinstance(value, float) and value != value) else str(value).strip()


def resolve(path: str, manifest_path: str) -> str:
    """``path`` as written in a manifest, made absolute: relative paths are relative to the manifest's folder."""
    if storage.is_remote(path) or os.path.isabs(path):
        return path
    folder = _folder(manifest_path)
    if storage.is_remote(folder):
        scheme, rest = folder.split("://", 1)
        return f"{scheme}://" + posixpath.normpath(posixpath.join(rest, path))
    return os.path.normpath(os.path.join(folder, path))


def _folder(manifest_path: str) -> str:
    return posixpath.dirname(manifest_path) if storage.is_remote(manifest_path) else \
        os.path.dirname(os.path.abspath(manifest_path))


def default_id(path: str, manifest_path: str) -> str:
    """The id of a manifest row's file when the row names none: its path relative to the manifest's folder,
    without the suffix (``videos/a/b.mp4`` beside the manifest -> ``videos/a/b``); for a file outside that
    folder, its whole path without scheme and suffix (``s3://bucket/videos/a/b.mp4`` -> ``bucket/videos/a/b``).
    It depends on the row alone: appending rows to a manifest never renames another row's outputs."""
    folder = _folder(manifest_path)

    def scheme(location: str) -> str:
        return location.split("://", 1)[0] if storage.is_remote(location) else ""

    same_store = scheme(path) == scheme(folder)
    relative = storage.relative_to(path, folder) if same_store else ".."
    if relative == ".." or relative.startswith("../"):
        relative = (path.split("://", 1)[1] if storage.is_remote(path) else os.path.abspath(path)).lstrip("/")
    return posixpath.splitext(relative.replace(os.sep, "/"))[0]


def to_table(rows: Iterable[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
    """Rows (dicts) as a table of exactly ``schema``'s columns, in its order (missing values are null)."""
    rows = list(rows)
    columns = {f.name: [r.get(f.name) for r in rows] for f in schema}
    return pa.Table.from_pydict(columns, schema=schema)


def write_manifest(table: pa.Table | Sequence[Mapping[str, Any]], path: str,
                   schema: pa.Schema | None = None) -> None:
    """Write an output manifest as one Parquet file, atomically (readers never see half a file)."""
    if not isinstance(table, pa.Table):
        if schema is None:
            raise ValueError("rows need a schema")
        table = to_table(table, schema)
    elif schema is not None:
        table = table.select(schema.names).cast(schema)
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    storage.write_bytes_atomic(path, buffer.getvalue())
    log.info("wrote %s (%d rows)", path, table.num_rows)


def status_counts(table: pa.Table) -> dict[str, int]:
    """Number of rows per status, every status present (0 when absent)."""
    counts = dict.fromkeys(STATUSES, 0)
    for status in table.column("status").to_pylist():
        counts[status] = counts.get(status, 0) + 1
    return counts
