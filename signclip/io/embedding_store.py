"""Embedding shards: the output layout of ``signclip embed``, read back by evaluate and search.

An embedding directory (local or ``s3://``) holds::

    shards/part-<run>-<ids>.parquet    one row per item (SCHEMA), written atomically: complete or absent;
                                       <ids> hashes the shard's ids, so a rewrite replaces it
    manifest.parquet                   every item once, without the embeddings (rewritten after each run)
    summary.json                       the last run's counts and speed (signclip.jobs.contract)
    npy/<id>.npy                       optional (--npy-dir, named by --npy-name), one float32 (E,) array per clip

Shards are plain Parquet, readable without this package (``pyarrow.parquet.read_table(".../shards")``).
An id normally appears once. If a rerun re-embedded failed items (``--retry-failed``) or an interrupted
run's worker finished late, readers keep one row per id: an ``ok`` row over a failed one, then the row in
the newest shard (shard names sort by run).
"""

from __future__ import annotations

import io
import logging
import posixpath
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from signclip.io import storage
from signclip.io.status import OK

log = logging.getLogger(__name__)

SHARDS = "shards"
MANIFEST = "manifest.parquet"
SHARD_SUFFIX = ".parquet"

# What fixes an embedding besides the clip: a rerun into the same directory must match these.
VARIANT_COLUMNS = ("model_hash", "feature_set", "flip", "anonymized", "long_clips", "window_stride", "precision")
DEFAULT_WINDOW_STRIDE = 128  # `signclip embed`'s --window-stride default
# Columns that shards of older versions lack, read as the value those versions used.
LEGACY_DEFAULTS = {"window_stride": DEFAULT_WINDOW_STRIDE, "spoken_language": ""}
# Shards read at once. An object store answers each request after a round trip (tens of ms on S3), and a
# corpus has hundreds of shards of a few requests each: read one at a time, a replica spent minutes starting.
REMOTE_READERS = 16

_T = TypeVar("_T")


def schema(embedding_dim: int) -> pa.Schema:
    """The shard schema; ``embedding`` is null on failed rows."""
    return pa.schema([
        pa.field("id", pa.string()),  # item id: manifest id, or the input path relative to its root without suffix
        pa.field("kind", pa.string()),  # pose / video / text
        pa.field("source", pa.string()),  # the input as given: a path or URI, or "FILE:LINE" for a prompt
        pa.field("pose_path", pa.string()),  # the .pose that was read ("" for texts; for videos the extracted one)
        pa.field("text", pa.string()),  # the prompt (texts), or the clip's text from the input manifest ("" if none)
        pa.field("gloss", pa.string()),  # from the input manifest ("" if none)
        pa.field("language", pa.string()),  # sign-language code from the input manifest, e.g. "ase" ("" if none)
        pa.field("spoken_language", pa.string()),  # the gloss's language from the input manifest ("" if none)
        pa.field("split", pa.string()),  # from the input manifest ("" if none)
        pa.field("model", pa.string()),  # the model directory as given to the job
        pa.field("model_name", pa.string()),  # the model's config name, e.g. "e7.2"
        pa.field("model_hash", pa.string()),  # signclip.io.model_cache.fingerprint of the model's files
        pa.field("feature_set", pa.string()),  # see signclip.pose.features.FEATURE_SETS
        pa.field("flip", pa.bool_()),  # test-time mirroring of left-handed clips (the paper's E8)
        pa.field("anonymized", pa.bool_()),  # appearance removed before embedding (the paper's E8.1)
        pa.field("long_clips", pa.string()),  # the model's long-clip policy for this run: truncate / window
        pa.field("window_stride", pa.int64()),  # frames between windows (used when long_clips is window)
        pa.field("precision", pa.string()),  # fp32 / bf16
        pa.field("frames", pa.int64()),  # the clip's frame count before any truncation (null for texts / unread)
        pa.field("long_clip", pa.string()),  # policy applied to THIS clip: "" when it fits, else truncate / window
        pa.field("segments", pa.int64()),  # inputs the pose tower saw (windows are averaged); null for texts
        pa.field("embedding", pa.list_(pa.float32(), embedding_dim)),
        pa.field("status", pa.string()),  # ok / failed
        pa.field("error", pa.string()),  # why it failed ("" otherwise)
        pa.field("run_id", pa.string()),  # the run that wrote the row
    ])


def shards_dir(output: str) -> str:
    return storage.join(output, SHARDS)


def list_shards(output: str) -> list[str]:
    """The complete shards under ``output``, oldest run first (temporary files are never listed)."""
    try:
        found = storage.expand(shards_dir(output), (SHARD_SUFFIX,))
    except FileNotFoundError:
        return []
    return sorted(found, key=lambda p: posixpath.basename(p.replace("\\", "/")))


def write_shard(table: pa.Table, output: str, run_id: str, name: str) -> str:
    """Write one shard atomically; returns its path."""
    path = storage.join(shards_dir(output), f"part-{run_id}-{name}{SHARD_SUFFIX}")
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    storage.write_bytes_atomic(path, buffer.getvalue())
    return path


@contextmanager
def _shard_file(path: str) -> Iterator[pq.ParquetFile]:
    """One shard opened; ``ValueError`` naming it when it is not a readable shard.

    From an object store the whole shard comes in one GET: read through a file object, a shard cost ~8
    requests (two HEADs before the open, then the footer and each column chunk in ranges), each a round trip,
    for a file of a few MB at most that one request brings as fast."""
    try:
        if storage.is_remote(path):
            yield pq.ParquetFile(pa.BufferReader(storage.read_bytes(path)))
        else:
            with pa.OSFile(storage.filesystem(path)[1]) as f:
                yield pq.ParquetFile(f)
    except pa.ArrowException as e:
        raise ValueError(f"{path}: not a readable embedding shard ({type(e).__name__}: {e}); remove it and "
                         "run `signclip embed` again to embed its items anew") from e


def _require(shard: pq.ParquetFile, path: str, columns: list[str]) -> None:
    # Parquet reads leave out a column a file lacks without a word; the reader's KeyError would name no file
    absent = [c for c in columns if c not in shard.schema_arrow.names and c not in LEGACY_DEFAULTS]
    if absent:
        raise ValueError(f"{path}: not an embedding shard (it has no column {', '.join(map(repr, absent))})")


def _read_one(path: str, columns: list[str] | None) -> pa.Table:
    """One shard; a column of :data:`LEGACY_DEFAULTS` that an older shard lacks is filled with its default."""
    with _shard_file(path) as shard:
        wanted = schema(1).names if columns is None else columns
        _require(shard, path, wanted)
        missing = [c for c in wanted if c in LEGACY_DEFAULTS and c not in shard.schema_arrow.names]
        table = shard.read(columns=None if columns is None else [c for c in columns if c not in missing])
    if not missing:
        return table
    for name in missing:
        table = table.append_column(schema(1).field(name), pa.array([LEGACY_DEFAULTS[name]] * table.num_rows))
    return table.select([c for c in wanted if c in table.column_names])  # the column order of newer shards


def _each_shard(read: Callable[[int, str], _T], paths: list[str]) -> list[_T]:
    """``read(i, path)`` for every shard, in order: several at once from an object store, where each
    request waits a round trip; one at a time from a disk, where that only adds threads."""
    readers = REMOTE_READERS if storage.is_remote(paths[0]) else 1
    if readers == 1 or len(paths) == 1:
        return [read(i, p) for i, p in enumerate(paths)]
    with ThreadPoolExecutor(min(readers, len(paths)), thread_name_prefix="shard-reader") as pool:
        return list(pool.map(read, range(len(paths)), paths))


def _read(paths: list[str], columns: list[str] | None) -> pa.Table:
    def read(order: int, path: str) -> pa.Table:
        t = _read_one(path, columns)
        return t.append_column("_order", pa.array(np.full(t.num_rows, order, dtype=np.int64)))

    return pa.concat_tables(_each_shard(read, paths))


def _pandas(table: pa.Table) -> pd.DataFrame:
    # nullable integers stay integers (frames, segments) instead of turning into floats
    return table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)


def _one_per_id(df: pd.DataFrame) -> pd.DataFrame:
    df = df.assign(_row=np.arange(len(df)), _ok=(df["status"] == OK))
    df = df.sort_values(["_ok", "_order", "_row"], kind="stable").drop_duplicates("id", keep="last")
    return df.sort_values(["_order", "_row"], kind="stable").drop(columns=["_ok", "_order", "_row"])


def read_index(output: str, columns: tuple[str, ...] = ("id", "status") + VARIANT_COLUMNS) -> pd.DataFrame:
    """One row per id (see the module docstring) with ``columns`` only; empty when nothing is written."""
    paths = list_shards(output)
    cols = list(dict.fromkeys(("id", "status") + tuple(columns)))
    if not paths:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
    return _one_per_id(_pandas(_read(paths, cols))).reset_index(drop=True)


@dataclass
class Corpus:
    """The ``ok`` rows of an embedding directory: metadata and float32 embeddings, aligned by row."""

    meta: pd.DataFrame  # every shard column but the embedding, one row per id
    embeddings: np.ndarray  # float32 [N, E]

    def __len__(self) -> int:
        return len(self.meta)

    def select(self, mask: np.ndarray) -> "Corpus":
        mask = np.asarray(mask, dtype=bool)
        return Corpus(self.meta[mask].reset_index(drop=True), self.embeddings[mask])


def load(output: str, kinds: tuple[str, ...] | None = None) -> Corpus:
    """The embedded items under ``output`` (status ``ok``, one row per id), optionally of some kinds only.

    The embeddings go shard by shard into one array of the selected rows, so loading holds little more than
    that array (reading every shard's column, then selecting, held three copies of the corpus at its peak).
    Raises ``FileNotFoundError`` when ``output`` holds no shards.
    """
    paths = list_shards(output)
    if not paths:
        raise FileNotFoundError(f"{output}: no embedding shards (expected {shards_dir(output)}/part-*.parquet)")
    table = _read(paths, [name for name in schema(1).names if name != "embedding"])
    sizes = np.bincount(table.column("_order").to_numpy(), minlength=len(paths))
    meta = _pandas(table)
    del table
    meta["_emb"] = np.arange(len(meta))
    meta = _one_per_id(meta)
    meta = meta[meta["status"] == OK]
    if kinds is not None:
        meta = meta[meta["kind"].isin(kinds)]
    emb = _gather_embeddings(paths, sizes, meta["_emb"].to_numpy())
    return Corpus(meta.drop(columns=["_emb"]).reset_index(drop=True), emb)


def _gather_embeddings(paths: list[str], sizes: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """float32 [len(rows), E]: row ``rows[i]`` of the shards' rows in order, each shard's column read on its own
    and copied into place (at most :func:`_each_shard`'s readers hold one at a time)."""
    with _shard_file(paths[0]) as first:
        _require(first, paths[0], ["embedding"])
        width = first.schema_arrow.field("embedding").type.list_size
    out = np.empty((len(rows), width), dtype=np.float32)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    by_row = np.argsort(rows, kind="stable")
    spans = np.searchsorted(rows[by_row], np.stack([starts[:-1], starts[1:]], axis=1))
    wanted = [(shard, path) for shard, path in enumerate(paths) if spans[shard, 0] < spans[shard, 1]]

    def copy(i: int, path: str) -> None:
        shard = wanted[i][0]
        column = _read_one(path, ["embedding"]).column("embedding").combine_chunks()
        if column.type.list_size != width:
            raise ValueError(f"{path}: embeddings of {column.type.list_size} values, the other shards' have {width}")
        # rows of a fixed-size list column are contiguous, so row i's values are flat[i] (offset included)
        flat = column.values.to_numpy(zero_copy_only=False).reshape(-1, width)
        flat = flat[column.offset:column.offset + len(column)]
        picks = by_row[spans[shard, 0]:spans[shard, 1]]
        out[picks] = flat[rows[picks] - starts[shard]]  # each shard's rows are its own: no two threads share one

    if wanted:
        _each_shard(copy, [path for _, path in wanted])
    return out


NPY_NAME = "{id}.npy"  # the default per-clip file name; pose-evaluation's is "{id}-using-model-{model}.npy"


def check_npy_name(template: str) -> None:
    """Raise ``ValueError`` unless ``template`` names one ``.npy`` file per clip from ``{id}`` and ``{model}``."""
    import string

    fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    unknown = sorted(fields - {"id", "model"})
    if unknown or "id" not in fields:
        raise ValueError(f"npy name {template!r}: use the fields {{id}} (required) and {{model}} only"
                         + (f", not {unknown}" if unknown else ""))
    if not template.endswith(".npy") or "/" in template:
        raise ValueError(f"npy name {template!r}: a file name ending in .npy, without folders")


def npy_path(npy_dir: str, item_id: str, model_name: str = "", template: str = NPY_NAME) -> str:
    """Where item ``item_id``'s ``.npy`` goes (an id with ``/`` makes subfolders)."""
    *folders, name = item_id.split("/")
    return storage.join(npy_dir, *folders, template.format(id=name, model=model_name))


def write_npy(npy_dir: str, item_id: str, embedding: np.ndarray, model_name: str = "",
              template: str = NPY_NAME) -> None:
    """One float32 ``(E,)`` array, the layout the pose-evaluation project loads."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(embedding, dtype=np.float32).reshape(-1))
    storage.write_bytes_atomic(npy_path(npy_dir, item_id, model_name, template), buffer.getvalue())
