"""The stages of the bulk-embedding pipeline, as plain callables on numpy batches (no Ray import here).

``signclip/jobs/embed.py`` chains them with Ray Data::

    items -> [PosesFromVideos actors] -> [featurize tasks, for GPU actors] -> EmbedActor pool (model loaded
    once; on CPU it featurises its clips and writes their shards itself) -> [write_shard tasks, for GPU actors]
    -> one small row per shard to the driver

A batch is a dict of equal-length numpy arrays. Between stages a clip's features travel as the bytes of
its float32 ``[T, D]`` array plus ``frames``; a failed row carries ``status="failed"`` and its ``error``
onward and is written like any other row, so one bad clip never stops the others.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from signclip.io import embedding_store, storage
from signclip.io.status import FAILED, OK, lost_error
from signclip.model.long_clips import WINDOW_STRIDE

log = logging.getLogger(__name__)

Batch = dict[str, np.ndarray]


@dataclass(frozen=True)
class RunSpec:
    """What every stage needs to know about one run (picklable, sent to the workers)."""

    model: str  # the model as an absolute local directory or its URL; each worker fetches a remote one itself
    model_name: str
    model_hash: str  # its fingerprint: a worker loads exactly this model or fails
    feature_set: str
    feature_dim: int
    max_frames: int
    embedding_dim: int
    weights_bytes: int  # size of its weights (what an actor holding it needs in memory)
    output: str  # the embedding directory
    run_id: str
    npy_dir: str | None = None  # also write one .npy per ok item here
    npy_name: str = embedding_store.NPY_NAME  # its file name, from {id} and {model} (the model's name)
    poses_dir: str | None = None  # where poses extracted from videos go (default <output>/poses)
    flip: bool = False  # test-time mirroring of left-handed clips
    anonymized: bool = False  # remove the signer's appearance first
    long_clips: str = "truncate"  # the embedder's policy for clips over max_frames: truncate / window
    window_stride: int = WINDOW_STRIDE  # frames between windows ("window" policy)
    precision: str = "fp32"  # fp32 / bf16 (autocast)
    max_batch_size: int = 256  # clips per forward pass
    max_batch_frames: int | None = None  # clips x longest length per forward pass (None: the embedder's default)


# ------------------------------------------------------------------------------------------------ the model

def model_spec(model: str) -> dict[str, Any]:
    """Name, fingerprint and sizes of a native model (local or a URL).

    A remote model is fetched into this process's node cache to be fingerprinted; the workers are given the
    location as the user gave it and the fingerprint, and fetch it onto their own nodes.
    """
    from signclip.io.model_cache import local_model_and_fingerprint
    from signclip.model.checkpoint import WEIGHTS, CheckpointError, read_config

    try:
        local, model_hash = local_model_and_fingerprint(model)
        cfg = read_config(local)
    except OSError as e:
        raise CheckpointError(f"{model}: not a usable SignCLIP model ({type(e).__name__}: {e})") from e
    weights = os.path.getsize(os.path.join(local, WEIGHTS))
    return {"model": model if storage.is_remote(model) else local, "model_name": cfg.name,
            "model_hash": model_hash, "weights_bytes": weights, "feature_set": cfg.feature_set,
            "feature_dim": cfg.feature_dim, "max_frames": cfg.max_frames, "embedding_dim": cfg.embedding_dim}


# ------------------------------------------------------------------------------------------------ helpers

def _strings(batch: Batch, name: str, n: int) -> list[str]:
    if name not in batch:
        return [""] * n
    return ["" if v is None else str(v) for v in batch[name].tolist()]


def _ints(batch: Batch, name: str, n: int) -> np.ndarray:
    return np.asarray(batch[name], dtype=np.int64) if name in batch else np.full(n, -1, dtype=np.int64)


def _count(batch: Batch) -> int:
    return len(next(iter(batch.values()))) if batch else 0


# ------------------------------------------------------------------------------------------------ stages

class PosesFromVideos:
    """Videos -> ``.pose`` files (MediaPipe Holistic, one graph per actor), reusing a pose already there.

    Rows of other kinds pass through. The pose of item ``id`` goes to ``<poses_dir>/<id>.pose``.
    """

    def __init__(self, spec: RunSpec, holistic_options: dict[str, Any] | None = None):
        from signclip.extraction.holistic import HolisticConfig, HolisticRunner

        self.spec = spec
        self.poses_dir = spec.poses_dir or storage.join(spec.output, "poses")
        self.runner = HolisticRunner(HolisticConfig.from_options(holistic_options or {}))

    def __call__(self, batch: Batch) -> Batch:
        from signclip.extraction.extract_video import VideoTask, process_video

        n = _count(batch)
        ids, kinds, sources = _strings(batch, "id", n), _strings(batch, "kind", n), _strings(batch, "source", n)
        pose_paths, status, error = _strings(batch, "pose_path", n), _strings(batch, "status", n), \
            _strings(batch, "error", n)
        for i in range(n):
            if kinds[i] != "video" or status[i] == FAILED:
                continue
            target = storage.join(self.poses_dir, *ids[i].split("/")) + ".pose"
            row = process_video(VideoTask(ids[i], sources[i], target, pose_exists=storage.exists(target)),
                                self.runner)
            if row["status"] == FAILED:
                status[i], error[i] = FAILED, f"video -> pose: {row['error']}"
            else:
                pose_paths[i] = target
        return {**batch, "pose_path": np.array(pose_paths, dtype=object), "status": np.array(status, dtype=object),
                "error": np.array(error, dtype=object)}


def _features(batch: Batch, spec: RunSpec) -> tuple[Batch, list[np.ndarray | None]]:
    """Each clip's model features (None for texts and failures), and the batch with what was learnt."""
    from signclip.model.long_clips import windows
    from signclip.pose.features import feature_error, pose_features

    n = _count(batch)
    kinds, sources = _strings(batch, "kind", n), _strings(batch, "source", n)
    pose_paths, status, error = _strings(batch, "pose_path", n), _strings(batch, "status", n), \
        _strings(batch, "error", n)
    clips: list[np.ndarray | None] = [None] * n
    frames = np.full(n, -1, dtype=np.int64)
    segments = np.full(n, -1, dtype=np.int64)
    long_clip = [""] * n
    for i in range(n):
        if status[i] == FAILED or kinds[i] == "text":
            continue
        if kinds[i] not in ("pose", "video"):
            status[i], error[i] = FAILED, (f"{sources[i]}: unsupported file type (expected a .pose file, "
                                           "a Google landmark .parquet or a video)")
            continue
        path = pose_paths[i] or sources[i]
        pose_paths[i] = path
        try:
            clip = pose_features(path, spec.feature_set, flip=spec.flip, anonymized=spec.anonymized)
        except Exception as e:  # noqa: BLE001 - one bad clip must not stop the run; the row says why
            status[i], error[i] = FAILED, feature_error(e)
            log.warning("%s: %s", sources[i], error[i])
            continue
        clips[i] = clip
        frames[i] = clip.shape[0]
        if clip.shape[0] > spec.max_frames:
            long_clip[i] = spec.long_clips
            segments[i] = (len(windows(clip.shape[0], spec.max_frames, spec.window_stride))
                           if spec.long_clips == "window" else 1)
        else:
            segments[i] = 1
    return {**batch, "pose_path": np.array(pose_paths, dtype=object), "status": np.array(status, dtype=object),
            "error": np.array(error, dtype=object), "frames": frames, "segments": segments,
            "long_clip": np.array(long_clip, dtype=object)}, clips


def featurize(batch: Batch, spec: RunSpec) -> Batch:
    """Read each clip and compute its model features (CPU), as bytes for the embedding actors. Bad input gives
    a failed row with the reason."""
    out, clips = _features(batch, spec)
    out["features"] = np.array([b"" if c is None else np.ascontiguousarray(c, dtype=np.float32).tobytes()
                                for c in clips], dtype=object)
    return out


class EmbedActor:
    """Loads the model once (on ``device``) and embeds batches with :class:`signclip.Embedder`.

    With ``shard_rows`` it also writes each batch it embedded, as shards of at most that many rows, and returns
    :func:`write_shard`'s summary rows instead of the embeddings (on CPU: ``signclip.embedding.resources`` says
    why).
    """

    def __init__(self, spec: RunSpec, device: str = "cpu", threads: int | None = None,
                 shard_rows: int | None = None):
        import torch

        from signclip.model.embedder import Embedder
        from signclip.model.factory import load

        if threads:
            torch.set_num_threads(threads)
        self.spec = spec
        self.shard_rows = shard_rows
        started = time.perf_counter()
        model = load(spec.model, device=device, fingerprint=spec.model_hash)
        self.embedder = Embedder(model, max_batch_size=spec.max_batch_size, max_batch_frames=spec.max_batch_frames,
                                 long_clips=spec.long_clips, window_stride=spec.window_stride, flip=spec.flip,
                                 anonymized=spec.anonymized, precision=spec.precision)
        log.info("embedding actor: %s on %s, %s threads, loaded in %.1fs", spec.model_name, device,
                 torch.get_num_threads(), time.perf_counter() - started)

    def _embed(self, rows: list[int], inputs: list, embed, out: np.ndarray, status: list[str],
               error: list[str]) -> None:
        if not rows:
            return
        try:
            out[rows] = embed(inputs)
        except Exception:  # noqa: BLE001 - retry one by one so that only the culprit fails
            for r, x in zip(rows, inputs):
                try:
                    out[r] = embed([x])[0]
                except Exception as e:  # noqa: BLE001
                    from signclip.pose.features import feature_error

                    status[r], error[r] = FAILED, f"embedding failed: {feature_error(e)}"
        for r in rows:  # a NaN in one vector would poison every search and metric that reads the corpus
            if status[r] != FAILED and not np.isfinite(out[r]).all():
                status[r], error[r] = FAILED, "embedding failed: the model gave non-finite values (NaN or inf)"

    def __call__(self, batch: Batch) -> Batch:
        if "features" in batch:  # featurised by tasks (GPU actors)
            frames = _ints(batch, "frames", _count(batch))
            features = [np.frombuffer(f, dtype=np.float32).reshape(int(t), self.spec.feature_dim) if t > 0 else None
                        for f, t in zip(batch["features"], frames)]
        else:  # on CPU the actor featurises its own clips (resources.py says why)
            batch, features = _features(batch, self.spec)
        n = _count(batch)
        kinds, status, error = _strings(batch, "kind", n), _strings(batch, "status", n), _strings(batch, "error", n)
        out = np.zeros((n, self.spec.embedding_dim), dtype=np.float32)
        clips, clip_rows, texts, text_rows = [], [], [], []
        for i in range(n):
            if status[i] == FAILED:
                continue
            if kinds[i] == "text":
                texts.append(str(batch["text"][i]))
                text_rows.append(i)
            else:
                clips.append(features[i])
                clip_rows.append(i)
        self._embed(clip_rows, clips, self.embedder.embed_features, out, status, error)
        self._embed(text_rows, texts, self.embedder.embed_texts, out, status, error)
        status = [s if s == FAILED else OK for s in status]
        result = {k: v for k, v in batch.items() if k != "features"}
        result.update(embedding=out, status=np.array(status, dtype=object), error=np.array(error, dtype=object))
        return result if self.shard_rows is None else write_shards(result, self.spec, self.shard_rows)


def to_table(batch: Batch, spec: RunSpec) -> pa.Table:
    """A batch as a shard table (``embedding_store.schema``)."""
    n = _count(batch)
    status = _strings(batch, "status", n)
    failed = np.array([s != OK for s in status], dtype=bool)

    def nullable(name: str) -> pa.Array:
        values = _ints(batch, name, n)
        return pa.array(values, mask=values < 0, type=pa.int64())

    emb = np.asarray(batch["embedding"], dtype=np.float32).reshape(n, spec.embedding_dim)
    columns = {name: pa.array(_strings(batch, name, n), type=pa.string())
               for name in ("id", "kind", "source", "pose_path", "text", "gloss", "language", "spoken_language",
                            "split", "long_clip", "error")}
    columns.update(
        model=pa.array([spec.model] * n), model_name=pa.array([spec.model_name] * n),
        model_hash=pa.array([spec.model_hash] * n), feature_set=pa.array([spec.feature_set] * n),
        flip=pa.array([spec.flip] * n), anonymized=pa.array([spec.anonymized] * n),
        long_clips=pa.array([spec.long_clips] * n), window_stride=pa.array([spec.window_stride] * n, pa.int64()),
        precision=pa.array([spec.precision] * n),
        frames=nullable("frames"), segments=nullable("segments"),
        embedding=pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), spec.embedding_dim,
                                                    mask=pa.array(failed)),
        status=pa.array([OK if not f else FAILED for f in failed]), run_id=pa.array([spec.run_id] * n))
    schema = embedding_store.schema(spec.embedding_dim)
    return pa.Table.from_pydict({f.name: columns[f.name] for f in schema}, schema=schema)


def write_shard(batch: Batch, spec: RunSpec) -> Batch:
    """Write the ``.npy`` files of the ok rows, then the shard (the shard is the commit: a crash before it
    leaves the ids to be redone). Returns one summary row."""
    table = to_table(batch, spec)
    if spec.npy_dir:
        ok = np.asarray(table.column("status").to_pylist()) == OK
        emb = np.asarray(batch["embedding"], dtype=np.float32)
        for i in np.flatnonzero(ok):
            embedding_store.write_npy(spec.npy_dir, str(batch["id"][i]), emb[i], spec.model_name, spec.npy_name)
    # named by its ids: a write re-run (its worker or node lost after the PUT) replaces the shard, never doubles it
    name = hashlib.sha1("\n".join(sorted(map(str, batch["id"]))).encode()).hexdigest()[:12]
    path = embedding_store.write_shard(table, spec.output, spec.run_id, name)
    n_ok = int(sum(s == OK for s in table.column("status").to_pylist()))
    return _summary([path], [table.num_rows], [n_ok])


def _summary(shards: list[str], rows: list[int], ok: list[int]) -> Batch:
    """The summary rows the job reads back: one per shard written."""
    rows_ = np.array(rows, dtype=np.int64)
    ok_ = np.array(ok, dtype=np.int64)
    return {"shard": np.array(shards, dtype=object), "rows": rows_, "ok": ok_, "failed": rows_ - ok_}


def write_shards(batch: Batch, spec: RunSpec, shard_rows: int) -> Batch:
    """:func:`write_shard` on each run of at most ``shard_rows`` rows of ``batch``; their summary rows."""
    step = max(1, shard_rows)
    summaries = [write_shard({k: v[start:start + step] for k, v in batch.items()}, spec)
                 for start in range(0, _count(batch), step)]
    if not summaries:
        return _summary([], [], [])
    return {k: np.concatenate([s[k] for s in summaries]) for k in summaries[0]}


def lost_rows(items: list, spec: RunSpec, attempts: int) -> Batch:
    """Failed rows for items whose worker died in every attempt (a batch for :func:`write_shard`)."""
    n = len(items)
    rows = [item.as_row() for item in items]
    batch: Batch = {name: np.array([r[name] for r in rows], dtype=object) for name in rows[0]} if rows else {}
    error = lost_error("embedding this item", attempts)
    batch.update(status=np.array([FAILED] * n, dtype=object), error=np.array([error] * n, dtype=object),
                 embedding=np.zeros((n, spec.embedding_dim), dtype=np.float32))
    return batch
