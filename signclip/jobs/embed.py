"""Bulk embedding of poses, videos or prompts on Ray Data, streaming, resumable.

    python -m signclip.jobs.embed --model models/e7.2 --input data/poses/ --output runs/emb --npy-dir runs/emb/npy
    signclip embed --model models/e7.2 --input s3://bucket/clips.parquet --output s3://bucket/emb
    signclip embed --model models/e7.2 --texts prompts.txt --output runs/prompts

Pipeline: list the items -> [videos: MediaPipe Holistic actors write .pose files] -> read + featurise and
embed on an actor pool that loads the model once per actor (on GPUs: featurising tasks on every other core
feed one actor per GPU), batches formed by clip length -> write Parquet shards atomically (+ optional
``<id>.npy`` files; on CPU each actor writes its own batches' shards).
The CPUs go where the time goes (:mod:`signclip.embedding.resources`); items lost with a worker or a
node are embedded again in a new pass (:mod:`signclip.jobs.ray_data`).
Ray Data streams blocks through the stages, so memory stays bounded whatever the corpus size.

Output layout: see :mod:`signclip.io.embedding_store`. A rerun skips the ids already written (failed ones
too, unless ``--retry-failed``). Bad inputs (unreadable or non-Holistic poses, zero frames, missing
files) give ``failed`` rows with the reason; clips over the model's 256 frames follow ``--long-clips``
and are recorded (``frames``, ``long_clip``, ``segments``). Exit codes (:mod:`signclip.jobs.contract`): 0 every
item ok or skipped, 1 some failed in this run, 2 bad arguments / empty input / unusable model.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING

from signclip.embedding.items import InputError, Item, list_items
from signclip.embedding.resources import MIN_BLOCK_ROWS, TASK_MEMORY, StageResources, actor_memory, block_rows, plan
from signclip.embedding.stages import (
    EmbedActor,
    PosesFromVideos,
    RunSpec,
    featurize,
    lost_rows,
    model_spec,
    write_shard,
)
from signclip.io import embedding_store, manifests, storage
from signclip.io.status import ItemStatus
from signclip.jobs import contract
from signclip.jobs.ray_data import DEFAULT_ATTEMPTS, in_passes, lenient_execution, map_with_actors
from signclip.jobs.scaling import wait_for_gpus
from signclip.model.long_clips import WINDOW_STRIDE

if TYPE_CHECKING:
    from ray.data import Dataset

log = logging.getLogger("signclip.jobs.embed")


@dataclass
class EmbedOptions:
    """Everything one run needs; the command line maps onto these fields one to one."""

    model: str  # native model directory (local or s3://)
    output: str  # embedding directory (local or s3://), created if absent
    input: str | None = None  # .pose / video file, folder, glob, or manifest (.parquet / .csv)
    texts: str | None = None  # text file with one prompt per line
    path_column: str | None = None  # manifest column with the file paths (None: pose, pose_path or path)
    id_column: str | None = None  # manifest column with the item ids (default: id if present)
    text_column: str | None = None  # embed this manifest column's prompts instead of files
    npy_dir: str | None = None  # also write one .npy, float32 (E,), per item here
    npy_name: str = embedding_store.NPY_NAME  # the .npy files' name from {id} and {model} (the model's name)
    poses_dir: str | None = None  # where poses extracted from videos go (default <output>/poses)
    holistic: str | None = None  # MediaPipe Holistic options for videos, "name=value,..."
    flip: bool = False  # test-time flip: mirror clips whose right hand is never seen
    anonymized: bool = False  # remove the signer's appearance before embedding
    long_clips: str = "truncate"  # clips over the model's frame limit: truncate (reference) or window
    window_stride: int = WINDOW_STRIDE  # frames between windows for --long-clips window
    precision: str = "fp32"  # fp32, or bf16 autocast (faster on recent CPUs/GPUs; moves embeddings a little)
    actors: int | None = None  # embedding actors, max size of the pool (None: one per GPU, else per CPU)
    min_actors: int | None = None  # min size of the pool (default: actors)
    threads: int | None = None  # torch threads per actor (default: see signclip.embedding.resources)
    device: str = "auto"  # auto (GPU when the cluster has one per actor), cpu, cuda
    wait_for_gpus: int = 0  # with device cuda: seconds to wait for an autoscaling cluster's GPUs (0: no wait)
    batch_size: int = 256  # clips handed to an actor at once (sorted by length inside, so little padding)
    max_batch_frames: int | None = None  # clips x longest length per forward pass (default: the embedder's)
    shard_rows: int = 256  # rows per output shard (on CPU at most batch_size); the unit of work a killed run loses
    rows_per_block: int | None = None  # items per input block (None: see signclip.embedding.resources.block_rows)
    retry_failed: bool = False  # re-embed ids whose earlier row failed
    attempts: int = DEFAULT_ATTEMPTS  # passes over items lost with their worker before they are reported failed
    address: str | None = None  # Ray cluster to join (default: RAY_ADDRESS, else a local one)


@dataclass
class EmbedSummary:
    """What a run did; also written to ``<output>/summary.json``."""

    run_id: str
    output: str
    model: str
    model_name: str
    model_hash: str
    items: int  # items named by the input
    skipped: int  # already in the output, not redone
    ok: int  # embedded by this run
    failed: int  # failed in this run
    seconds: float  # wall time of the pipeline
    clips_per_s: float  # (ok + failed) / seconds
    shards: int  # shards written by this run
    total_ok: int  # ok ids in the output after this run
    total_failed: int  # failed ids in the output after this run
    resources: dict

    def line(self) -> str:
        # the workers' own warnings do not reach the driver: say where each failure's reason is
        why = (f"; why each failed: {storage.join(self.output, embedding_store.MANIFEST)} (error column)"
               if self.total_failed else "")
        return (f"{self.ok} ok, {self.failed} failed, {self.skipped} skipped (already done) of {self.items} items "
                f"in {self.seconds:.1f}s ({self.clips_per_s:.2f} clips/s); output {self.output} holds "
                f"{self.total_ok} ok / {self.total_failed} failed{why}")


# ------------------------------------------------------------------------------------------------ planning

def _variant(opts: EmbedOptions, spec: dict) -> dict:
    variant = {"model_hash": spec["model_hash"], "feature_set": spec["feature_set"], "flip": opts.flip,
               "anonymized": opts.anonymized, "long_clips": opts.long_clips, "precision": opts.precision}
    if opts.long_clips == "window":  # the stride changes nothing for truncated clips
        variant["window_stride"] = opts.window_stride
    return variant


def pending(items: list[Item], opts: EmbedOptions, spec: dict) -> list[Item]:
    """The items not yet in ``opts.output``; refuses an output written with another model or options."""
    done = embedding_store.read_index(opts.output)
    if done.empty:
        return items
    wanted = _variant(opts, spec)
    for column, value in wanted.items():
        other = sorted({str(v) for v in done[column].dropna().unique()} - {str(value)})
        if other:
            raise InputError(f"{opts.output} holds embeddings made with {column}={other[0]}, this run uses "
                             f"{column}={value}: write to another --output (embeddings of different models or "
                             "options must not be mixed)")
    keep = set(done["id"] if not opts.retry_failed else done.loc[done["status"] == ItemStatus.OK, "id"])
    return [item for item in items if item.id not in keep]


def _blocks(items: list[Item], rows_per_block: int) -> int:
    return max(1, math.ceil(len(items) / rows_per_block))


def _resources(opts: EmbedOptions, items: list[Item]) -> StageResources:
    import ray

    total = ray.cluster_resources()
    nodes = [n.get("Resources", {}).get("CPU", 0) for n in ray.nodes() if n.get("Alive")]
    use_gpu = {"auto": None, "cpu": False, "cuda": True}[opts.device]
    try:
        res = plan(nodes, total.get("GPU", 0), opts.actors, videos=any(i.kind == "video" for i in items),
                   use_gpu=use_gpu, threads=opts.threads, min_actors=opts.min_actors,
                   blocks=_blocks(items, opts.rows_per_block or MIN_BLOCK_ROWS))
    except ValueError as e:
        hint = " (on a cluster that autoscales its GPUs, add --wait-for-gpus SECONDS)" if use_gpu else ""
        raise InputError(f"cannot place the pipeline on this cluster: {e}{hint}") from e
    return replace(res, block_rows=opts.rows_per_block or block_rows(len(items), res, opts.batch_size))


def build_pipeline(items: list[Item], spec: RunSpec, res: StageResources, opts: EmbedOptions) -> Dataset:
    """The Ray Data pipeline: items -> (videos -> poses) -> features -> embeddings -> one row per shard."""
    import ray

    ds = ray.data.from_items([i.as_row() for i in items], override_num_blocks=_blocks(items, res.block_rows))
    if res.extract_actors:
        ds = map_with_actors(ds, PosesFromVideos, fn_constructor_kwargs={"spec": spec,
                                                                         "holistic_options": _holistic(opts)},
                             compute=ray.data.ActorPoolStrategy(min_size=1, max_size=res.extract_actors),
                             batch_size=1, batch_format="numpy", num_cpus=res.extract_cpus)
    if res.feature_tasks:  # GPU actors: every other core featurises for them
        ds = ds.map_batches(featurize, fn_kwargs={"spec": spec}, batch_size=res.block_rows,
                            batch_format="numpy", num_cpus=res.feature_cpus, memory=TASK_MEMORY,
                            compute=ray.data.TaskPoolStrategy(size=res.feature_tasks))
    actors_write = not res.writer_tasks  # on CPU the actors write their batches' shards themselves
    ds = map_with_actors(ds, EmbedActor, fn_constructor_kwargs={"spec": spec, "device": res.device,
                                                                "threads": res.threads,
                                                                "shard_rows": opts.shard_rows if actors_write
                                                                else None},
                         compute=ray.data.ActorPoolStrategy(min_size=res.min_actors, max_size=res.actors),
                         batch_size=opts.batch_size, batch_format="numpy", num_cpus=res.actor_cpus,
                         num_gpus=res.actor_gpus or None, memory=actor_memory(spec.weights_bytes))
    if actors_write:
        return ds
    return ds.map_batches(write_shard, fn_kwargs={"spec": spec}, batch_size=opts.shard_rows,
                          batch_format="numpy", num_cpus=res.writer_cpus, memory=TASK_MEMORY,
                          compute=ray.data.TaskPoolStrategy(size=res.writer_tasks))


def _holistic(opts: EmbedOptions) -> dict:
    from signclip.extraction.holistic import parse_options

    return parse_options(opts.holistic) if opts.holistic else {}


# ------------------------------------------------------------------------------------------------ running

def _init_ray(address: str | None) -> None:
    import ray

    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False)


def write_outputs(opts: EmbedOptions, summary: EmbedSummary) -> EmbedSummary:
    """Rewrite ``manifest.parquet`` (every id once, no embeddings) and ``summary.json``."""
    import pyarrow as pa

    index = embedding_store.read_index(opts.output, columns=(
        "id", "kind", "source", "pose_path", "text", "gloss", "language", "spoken_language", "split", "model_name",
        "model_hash",
        "frames", "long_clip", "segments", "status", "error", "run_id"))
    counts = index["status"].value_counts()
    # this run's own rows, counted from what was written (a pass cut short by a lost node may have written
    # shards whose reports the driver never read)
    mine = index.loc[index["run_id"] == summary.run_id, "status"].value_counts()
    summary = replace(summary, total_ok=int(counts.get(ItemStatus.OK, 0)),
                      total_failed=int(counts.get(ItemStatus.FAILED, 0)))
    if len(mine):
        summary = replace(summary, ok=int(mine.get(ItemStatus.OK, 0)), failed=int(mine.get(ItemStatus.FAILED, 0)))
    if len(index):
        manifests.write_manifest(pa.Table.from_pandas(index, preserve_index=False),
                                storage.join(opts.output, embedding_store.MANIFEST))
    contract.write_summary(opts.output, asdict(summary))
    return summary


def run(opts: EmbedOptions) -> EmbedSummary:
    """Embed everything ``opts`` names that ``opts.output`` lacks. Raises ``InputError`` on an empty input,
    ``CheckpointError`` on an unusable model."""
    if opts.long_clips not in ("truncate", "window"):
        raise InputError(f"--long-clips {opts.long_clips!r}: expected truncate or window")
    if opts.wait_for_gpus and opts.device != "cuda":
        raise InputError(f"--wait-for-gpus {opts.wait_for_gpus}: only with --device cuda (the job then waits for "
                         "GPUs instead of running on CPUs)")
    try:
        embedding_store.check_npy_name(opts.npy_name)
    except ValueError as e:
        raise InputError(f"--{e}") from None
    items = list_items(opts.input, opts.texts, opts.path_column, opts.id_column, opts.text_column)
    spec_fields = model_spec(opts.model)
    todo = pending(items, opts, spec_fields)
    run_id = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
    spec = RunSpec(**spec_fields, output=opts.output, run_id=run_id, npy_dir=opts.npy_dir, npy_name=opts.npy_name,
                   poses_dir=opts.poses_dir, flip=opts.flip, anonymized=opts.anonymized,
                   long_clips=opts.long_clips, window_stride=opts.window_stride, precision=opts.precision,
                   max_batch_size=opts.batch_size, max_batch_frames=opts.max_batch_frames)
    summary = EmbedSummary(run_id=run_id, output=opts.output, model=opts.model, model_name=spec.model_name,
                           model_hash=spec.model_hash, items=len(items), skipped=len(items) - len(todo), ok=0,
                           failed=0, seconds=0.0, clips_per_s=0.0, shards=0, total_ok=0, total_failed=0,
                           resources={})
    if todo:
        log.info("%d items to embed (%d already in %s)", len(todo), summary.skipped, opts.output)
        for folder in (opts.output, opts.npy_dir, opts.poses_dir):
            if folder:
                try:
                    storage.check_writable(folder)
                except PermissionError as e:
                    raise InputError(str(e)) from None
        _init_ray(opts.address)
        if opts.wait_for_gpus:
            try:
                wait_for_gpus(opts.actors or 1, opts.wait_for_gpus)
            except TimeoutError as e:
                raise InputError(str(e)) from None
        started = time.perf_counter()
        done, res = _embed_in_passes(todo, spec, opts)
        seconds = time.perf_counter() - started
        summary = replace(summary, **done, seconds=round(seconds, 3),
                          clips_per_s=round((done["ok"] + done["failed"]) / seconds, 3) if seconds > 0 else 0.0,
                          resources=asdict(res))
    else:
        log.info("nothing to do: all %d items are already in %s", len(items), opts.output)
    return write_outputs(opts, summary)


def _embed_in_passes(todo: list[Item], spec: RunSpec, opts: EmbedOptions) -> tuple[dict[str, int], StageResources]:
    """Embeds ``todo`` in passes (:func:`~signclip.jobs.ray_data.in_passes`); items lost in every pass get a
    failed row. Returns the ok / failed / shards counts and the last pass's plan."""
    done = {"ok": 0, "failed": 0, "shards": 0}
    planned: list[StageResources] = []

    def run_pass(left: list[Item], attempt: int) -> Iterator[dict]:
        # planned per pass on the nodes alive now; a retry pass starts as soon as one actor is up
        res = _resources(opts, left)
        if attempt > 1:
            res = replace(res, min_actors=1)
        planned.append(res)
        log.info("stages: %s; up to %s frames per forward pass", res,
                 opts.max_batch_frames or "the embedder's default for the device")
        return build_pipeline(left, spec, res, opts).iter_rows()

    def count(row: dict) -> None:
        done.update(ok=done["ok"] + int(row["ok"]), failed=done["failed"] + int(row["failed"]),
                    shards=done["shards"] + 1)
        log.info("shard %s: %d ok, %d failed (%d/%d done)", row["shard"], row["ok"], row["failed"],
                 done["ok"] + done["failed"], len(todo))

    def not_written(left: list[Item]) -> list[Item]:
        written = set(embedding_store.read_index(opts.output, columns=("id",))["id"])
        return [item for item in left if item.id not in written]

    with lenient_execution(progress=True):
        lost = in_passes(todo, opts.attempts, run_pass, count, not_written, ("items", "embedding"))
    if lost:
        write_shard(lost_rows(lost, spec, opts.attempts), spec)
        done.update(failed=done["failed"] + len(lost), shards=done["shards"] + 1)
    return done, planned[-1]


# ------------------------------------------------------------------------------------------------ CLI

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="signclip embed", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--model", required=True, help="native model directory (local or s3://)")
    p.add_argument("--input", help=".pose/video file, folder, glob, or manifest (.parquet/.csv); local or s3://")
    p.add_argument("--texts", help="text file with one prompt per line (embeds texts)")
    contract.add_output(p, help="embedding directory (local or s3://)")
    p.add_argument("--path-column", help="manifest column of file paths (default: the first of "
                   f"{', '.join(manifests.CLIP_COLUMNS)} it has)")
    p.add_argument("--id-column", default=None,
                   help="manifest column of ids (default: id if the manifest has one, else derived from paths)")
    p.add_argument("--text-column", help="embed the prompts of this manifest column instead of files")
    p.add_argument("--npy-dir", help="also write one .npy of shape (E,) per item here")
    p.add_argument("--npy-name", default=embedding_store.NPY_NAME,
                   help="the .npy files' name, from {id} and {model} (the model's name); default {id}.npy; "
                        "pose-evaluation reads '{id}-using-model-{model}.npy'")
    p.add_argument("--poses-dir", help="where poses extracted from videos go (default: OUTPUT/poses)")
    p.add_argument("--holistic", help="MediaPipe Holistic options for videos, e.g. 'model_complexity=1'")
    p.add_argument("--flip", action="store_true", help="test-time flip of left-handed clips (paper E8)")
    p.add_argument("--anonymized", action="store_true", help="remove appearance before embedding (paper E8.1)")
    p.add_argument("--long-clips", choices=("truncate", "window"), default="truncate",
                   help="clips over the model's frame limit: keep the first frames (reference) or average windows")
    p.add_argument("--window-stride", type=contract.positive_int, default=WINDOW_STRIDE,
                   help="frames between windows (default 128)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="inference precision")
    p.add_argument("--actors", type=contract.positive_int,
                   help="embedding actors (default: one per GPU, else one per CPU, at most 8; each holds a copy "
                        "of the model)")
    p.add_argument("--min-actors", type=contract.positive_int, help="minimum pool size (default: --actors)")
    p.add_argument("--threads", type=contract.positive_int, help="torch threads per actor")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: GPU if present")
    p.add_argument("--wait-for-gpus", type=contract.count, default=0, metavar="SECONDS",
                   help="with --device cuda: ask the cluster's autoscaler for a GPU per actor and wait up to this "
                        "long for them (a GPU group that scales from zero); default 0, plan on what is there")
    p.add_argument("--batch-size", type=contract.positive_int, default=256, help="clips per actor call (default 256)")
    p.add_argument("--max-batch-frames", type=contract.positive_int,
                   help="clips x frames per forward pass (default: the embedder's for the device, "
                        "signclip.model.embedder.CPU_BATCH_FRAMES / GPU_BATCH_FRAMES)")
    p.add_argument("--shard-rows", type=contract.positive_int, default=256,
                   help="rows per output shard (default 256; on CPU at most --batch-size: each embedding actor "
                        "writes its own batches' shards)")
    p.add_argument("--rows-per-block", type=contract.positive_int,
                   help="items per input block, the unit of a featurising task (default: as many as an actor's "
                        "batch, at least 16, and 4 blocks per worker)")
    p.add_argument("--retry-failed", action="store_true", help="re-embed ids whose earlier row failed")
    p.add_argument("--attempts", type=contract.positive_int, default=DEFAULT_ATTEMPTS,
                   help="passes over items whose worker died (killed, crashed, node lost) before they are failed")
    contract.add_address(p, old="--ray-address")
    return p


def options(argv: list[str] | None = None) -> EmbedOptions:
    p = parser()
    args = vars(p.parse_args(argv))
    known = {f.name for f in fields(EmbedOptions)}
    return EmbedOptions(**{k: v for k, v in args.items() if k in known})


def main(argv: list[str] | None = None) -> int:
    from signclip.model.checkpoint import CheckpointError

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    opts = options(argv)
    try:
        summary = run(opts)
    except (InputError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return contract.EXIT_USAGE
    print(summary.line())
    return contract.exit_code(summary.failed)


if __name__ == "__main__":
    contract.command_line(main)
