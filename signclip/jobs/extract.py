"""Parallel video -> pose extraction on Ray Data: one MediaPipe Holistic ``.pose`` per video.

    python -m signclip.jobs.extract --input ../shared/data/videos --output ./runs/poses
    signclip extract --input 's3://bucket/videos/**/*.mp4' --output s3://bucket/poses --max-actors 16

Input: a video, a folder, a glob or a manifest (Parquet/CSV with a ``path`` column, optional ``id``), local
or ``s3://``. Output: ``OUTPUT/<same relative path>.pose`` per video and ``OUTPUT/manifest.parquet`` with
one row per video (id, paths, frames, fps, size, seconds, status ok/failed/skipped, error, warning, the
Holistic options that made the pose).
A rerun skips videos whose pose is already complete (``--overwrite`` redoes them), unless the manifest
records that other Holistic options made it (its ``holistic`` column); the manifest keeps the rows of videos
that earlier runs into the same output listed and this one does not.

Each actor of an autoscaling pool holds one Holistic graph, reset to a fresh state per video; videos
are decoded as a stream. The videos of a worker that died (killed, crashed, out of memory, its node lost)
are extracted again in a new pass, up to ``--attempts``; a video that keeps killing its worker is reported
``failed`` and the others finish (:mod:`signclip.jobs.ray_data`).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa

from signclip.extraction.extract_video import MANIFEST_SCHEMA, VideoTask, process_video
from signclip.extraction.holistic import HolisticConfig, HolisticRunner, parse_options
from signclip.extraction.plan import plan
from signclip.io import manifests, storage
from signclip.io.status import ItemStatus, lost_error
from signclip.jobs import contract
from signclip.jobs.ray_data import DEFAULT_ATTEMPTS, in_passes, lenient_execution, map_with_actors

log = logging.getLogger("signclip.jobs.extract")

MANIFEST_NAME = "manifest.parquet"


@dataclass
class ExtractConfig:
    """Everything one extraction run needs (command-line flags map one to one)."""

    input: str  # video file, folder, glob, or Parquet/CSV manifest; local or s3://
    output: str  # folder for the .pose files and manifest.parquet; local or s3://
    holistic: HolisticConfig = field(default_factory=HolisticConfig)  # Holistic options
    overwrite: bool = False  # redo videos whose pose already exists and is valid
    path_column: str = "path"  # manifest column holding video paths
    id_column: str | None = None  # manifest column holding ids (default: id if present, else derived from paths)
    cpus_per_actor: float = 0.9  # CPUs reserved per extraction actor (fractional leaves room for other stages)
    min_actors: int = 1  # the actor pool never shrinks below this
    max_actors: int | None = None  # grows up to this (default: as many as the cluster's CPUs allow)
    max_tasks_in_flight_per_actor: int = 2  # queued videos per actor (overlaps fetching with work)
    decode_threads: int = 1  # FFmpeg decoder threads per video (0: FFmpeg decides)
    decode_ahead: int = 0  # frames a background thread decodes ahead of Holistic (0: decode inline)
    attempts: int = DEFAULT_ATTEMPTS  # passes over videos whose worker died; lost in every pass: reported failed
    progress: bool = True  # Ray Data progress bars
    address: str | None = None  # Ray cluster to join when Ray is not initialised yet (None: local/auto)


@dataclass
class ExtractSummary:
    """What a run did."""

    videos: int
    ok: int
    failed: int
    skipped: int
    frames: int  # frames of the videos extracted in this run (status ok)
    seconds: float  # wall time of the run
    manifest_path: str

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else math.nan

    def __str__(self) -> str:
        return (f"{self.videos} videos: {self.ok} ok, {self.skipped} skipped, {self.failed} failed; "
                f"{self.frames} frames in {self.seconds:.1f} s = {self.frames_per_second:.1f} frames/s; "
                f"manifest {self.manifest_path}")


class ExtractVideos:
    """Ray Data callable class: one per actor; one Holistic graph reused across the actor's videos."""

    def __init__(self, holistic: dict[str, Any], overwrite: bool, decode_threads: int, decode_ahead: int,
                 cpus: float = 1.0) -> None:
        import cv2

        # OpenCV parallelises the BGR->RGB conversion over every core of the node; an actor owns about
        # `cpus` of them, so extra threads only contend with Holistic (measured: ~2.5 ms CPU per frame)
        cv2.setNumThreads(max(1, int(cpus)))
        self._runner = HolisticRunner(HolisticConfig(**holistic))
        self._overwrite = overwrite
        self._decode = {"decode_threads": decode_threads, "decode_ahead": decode_ahead}

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = [process_video(VideoTask(**task), self._runner, self._overwrite, **self._decode)
                for task in batch.to_pylist()]
        return manifests.to_table(rows, MANIFEST_SCHEMA)


def actor_pool_sizes(config: ExtractConfig, cluster_cpus: float, videos: int) -> tuple[int, int, int]:
    """Actor pool (min, initial, max).

    By default the pool may grow to as many actors as fit in the cluster's CPUs minus 0.1 (a pool that
    held every CPU would starve Ray Data's other work); it starts at the size the work needs, up to that.
    """
    fit = max(1, int((cluster_cpus - 0.1 + 1e-9) // config.cpus_per_actor))
    high = max(1, config.max_actors or fit)
    low = max(1, min(config.min_actors, high))
    return low, max(low, min(high, videos)), high


def _plan_pass(config: ExtractConfig, videos: int, attempt: int) -> tuple[int, int, int]:
    """The actor pool of one pass, on the cluster's CPUs as they are now (a lost node's are gone); a retry
    pass starts with whatever one live actor can do rather than wait for a pool the cluster no longer fits."""
    import ray

    cluster_cpus = float(ray.cluster_resources().get("CPU", 1.0))
    low, initial, high = actor_pool_sizes(config, cluster_cpus, videos)
    if attempt > 1:
        low = initial = 1
    if high * config.cpus_per_actor > cluster_cpus - 0.1:
        if config.max_actors:  # asked for: on an autoscaling cluster (the RayJob spec) the pool grows with it
            log.info("up to %d actors x %.2f CPU is more than the %g CPUs the cluster has now: the pool grows "
                     "as nodes join", high, config.cpus_per_actor, cluster_cpus)
        else:
            log.warning("one actor needs %.2f CPU and the cluster has %g CPUs now: the run waits for a node "
                        "that large (lower --cpus-per-actor on a fixed cluster)", config.cpus_per_actor, cluster_cpus)
    log.info("actor pool %d..%d actors (starting with %d) x %.2f CPU", low, high, initial, config.cpus_per_actor)
    return low, initial, high


def _extract_stage(dataset: Any, config: ExtractConfig, low: int, initial: int, high: int) -> Any:
    """The actor-pool stage: one video per call (see :mod:`signclip.jobs.ray_data` for lost workers)."""
    import ray

    return map_with_actors(
        dataset, ExtractVideos,
        fn_constructor_kwargs={"holistic": asdict(config.holistic), "overwrite": config.overwrite,
                               "decode_threads": config.decode_threads, "decode_ahead": config.decode_ahead,
                               "cpus": config.cpus_per_actor},
        batch_size=1,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(min_size=low, max_size=high, initial_size=initial,
                                           max_tasks_in_flight_per_actor=config.max_tasks_in_flight_per_actor),
        num_cpus=config.cpus_per_actor,
    )


def _lost_row(task: VideoTask, attempts: int) -> dict[str, Any]:
    return {"id": task.id, "video_path": task.video_path, "pose_path": None, "seconds": 0.0,
            "status": ItemStatus.FAILED, "warning": "", "worker": "",
            "error": lost_error("extracting this video", attempts)}


def run(config: ExtractConfig, on_row: Callable[[dict[str, Any]], None] | None = None) -> ExtractSummary:
    """Extract every video of ``config.input``; write poses and the manifest; return the summary.

    Uses the Ray already initialised in this process, else starts or joins one (``config.address``).
    ``on_row`` is called with each manifest row as soon as its video is done.
    """
    import ray

    config.holistic.validate()
    started = time.perf_counter()
    manifest_path = storage.join(config.output, MANIFEST_NAME)
    earlier = earlier_manifest(manifest_path)
    tasks = with_recorded_options(plan(config.input, config.output, config.path_column, config.id_column), earlier)
    log.info("%d videos from %s -> %s (%d already have a pose)", len(tasks), config.input, config.output,
             sum(t.pose_exists for t in tasks))
    rows: dict[str, dict[str, Any]] = {}
    if tasks:
        storage.check_writable(config.output)
        if not ray.is_initialized():
            ray.init(address=config.address, configure_logging=False)

        def run_pass(todo: list[VideoTask], attempt: int) -> Iterator[pa.Table]:
            low, initial, high = _plan_pass(config, len(todo), attempt)
            # the workers make each pose once; the other ids of its video are the driver's to record
            dataset = ray.data.from_items([{k: v for k, v in asdict(t).items() if k != "also_ids"} for t in todo],
                                          override_num_blocks=len(todo))
            return _extract_stage(dataset, config, low, initial, high).iter_batches(batch_size=None,
                                                                                    batch_format="pyarrow")

        def keep(batch: pa.Table) -> None:
            for row in batch.to_pylist():
                if row["id"] in rows:
                    log.warning("%s reported twice; keeping the last report", row["id"])
                rows[row["id"]] = row
                if on_row is not None:
                    on_row(row)

        with lenient_execution(config.progress):
            in_passes(tasks, config.attempts, run_pass, keep, lambda todo: [t for t in todo if t.id not in rows],
                      ("videos", "extracting"))
    made = [rows.get(t.id) or _lost_row(t, config.attempts) for t in tasks]
    ordered = [{**row, "id": video_id} for t, row in zip(tasks, made) for video_id in (t.id, *t.also_ids)]
    table = manifests.to_table(ordered, MANIFEST_SCHEMA)
    others = rows_of_other_videos(earlier, {row["id"] for row in ordered} | set(rows))
    manifests.write_manifest(pa.concat_tables([table, others]), manifest_path)
    counts = manifests.status_counts(manifests.to_table(made, MANIFEST_SCHEMA))  # videos, not ids
    frames = sum(r["frames"] or 0 for r in made if r["status"] == ItemStatus.OK)
    summary = ExtractSummary(videos=len(tasks), ok=counts[ItemStatus.OK], failed=counts[ItemStatus.FAILED],
                             skipped=counts[ItemStatus.SKIPPED], frames=frames,
                             seconds=time.perf_counter() - started, manifest_path=manifest_path)
    rate = round(summary.frames_per_second, 3) if summary.seconds > 0 else None
    contract.write_summary(config.output, {**dataclasses.asdict(summary), "frames_per_second": rate})
    log.info("%s", summary)
    return summary


def earlier_manifest(manifest_path: str) -> pa.Table:
    """The manifest an earlier run left in the output, in :data:`MANIFEST_SCHEMA` (columns an older version did
    not write are null); empty when there is none or it cannot be read (said in a warning)."""
    import pyarrow.parquet as pq

    if not storage.exists(manifest_path):
        return MANIFEST_SCHEMA.empty_table()
    try:
        table = pq.read_table(io.BytesIO(storage.read_bytes(manifest_path)))
        columns = [table[f.name].cast(f.type) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
                   for f in MANIFEST_SCHEMA]
        return pa.Table.from_arrays(columns, schema=MANIFEST_SCHEMA)
    except (OSError, ValueError, KeyError, pa.ArrowException) as e:
        log.warning("%s: the earlier manifest cannot be read (%s: %s); it is replaced by this run's rows",
                    manifest_path, type(e).__name__, e)
        return MANIFEST_SCHEMA.empty_table()


def with_recorded_options(tasks: list[VideoTask], earlier: pa.Table) -> list[VideoTask]:
    """``tasks`` whose pose an earlier run made, with the Holistic options its manifest recorded for it."""
    recorded = {(row["id"], row["pose_path"]): row["holistic"] or ""
                for row in earlier.select(["id", "pose_path", "holistic"]).to_pylist()}
    return [dataclasses.replace(t, made_with=recorded.get((t.id, t.pose_path), "")) if t.pose_exists else t
            for t in tasks]


def rows_of_other_videos(earlier: pa.Table, ids: set[str]) -> pa.Table:
    """The earlier manifest's rows of videos this run does not list (a run over part of the input, or another
    input into the same output): their poses are still there, so the manifest keeps them."""
    import pyarrow.compute as pc

    return earlier.filter(pc.invert(pc.is_in(earlier["id"], pa.array(sorted(ids), pa.string()))))


def build_parser() -> argparse.ArgumentParser:
    d = ExtractConfig(input="", output="")
    p = argparse.ArgumentParser(prog="signclip extract", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--input", required=True, help="video, folder, glob, or Parquet/CSV manifest (local or s3://)")
    contract.add_output(p, help="folder for .pose files and manifest.parquet (local or s3://)")
    p.add_argument("--overwrite", action="store_true", help="redo videos whose pose already exists")
    p.add_argument("--model-complexity", type=int, default=HolisticConfig.model_complexity, choices=(0, 1, 2),
                   help="Holistic pose model (only 1 is bundled with mediapipe; 0 and 2 need the model file)")
    p.add_argument("--holistic-options", default="",
                   help="more Holistic options as name=value,... e.g. refine_face_landmarks=true")
    p.add_argument("--path-column", default=d.path_column, help="manifest column with video paths")
    p.add_argument("--id-column", default=d.id_column,
                   help="manifest column with ids (default: id if the manifest has one, else the videos' paths)")
    p.add_argument("--cpus-per-actor", type=contract.positive_number, default=d.cpus_per_actor,
                   help="CPUs per extraction actor")
    p.add_argument("--min-actors", type=contract.positive_int, default=d.min_actors, help="smallest actor pool")
    p.add_argument("--max-actors", type=contract.positive_int, default=None,
                   help="largest actor pool (unset: as many as the cluster CPUs allow)")
    p.add_argument("--tasks-per-actor", type=contract.positive_int, default=d.max_tasks_in_flight_per_actor,
                   help="videos queued per actor")
    p.add_argument("--decode-threads", type=contract.count, default=d.decode_threads,
                   help="FFmpeg threads per video (0: auto)")
    p.add_argument("--decode-ahead", type=contract.count, default=d.decode_ahead,
                   help="frames decoded ahead of Holistic in a background thread (0: inline)")
    p.add_argument("--attempts", type=contract.positive_int, default=d.attempts,
                   help="passes over videos whose worker died (killed, crashed, node lost) before they are failed")
    p.add_argument("--max-task-retries", type=lambda v: int(v) + 1, dest="attempts", action=contract.Deprecated,
                   preferred="--attempts (retries + 1)", help=argparse.SUPPRESS)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    contract.add_address(p, help="Ray cluster address (default: start or find a local one)")
    p.add_argument("--log-level", default="INFO", help="logging level")
    return p


def config_from_args(args: argparse.Namespace) -> ExtractConfig:
    options = parse_options(args.holistic_options)
    options.setdefault("model_complexity", args.model_complexity)
    return ExtractConfig(
        input=args.input, output=args.output, holistic=HolisticConfig.from_options(options),
        overwrite=args.overwrite, path_column=args.path_column, id_column=args.id_column,
        cpus_per_actor=args.cpus_per_actor, min_actors=args.min_actors, max_actors=args.max_actors,
        max_tasks_in_flight_per_actor=args.tasks_per_actor, decode_threads=args.decode_threads,
        decode_ahead=args.decode_ahead,
        attempts=args.attempts, progress=not args.no_progress,
        address=args.address)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns 0 when every video is ok or skipped, 1 if any failed, 2 on bad usage."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = config_from_args(args)
        summary = run(config)
    except (ValueError, FileNotFoundError, PermissionError) as e:
        log.error("%s", e)
        return contract.EXIT_USAGE
    print(summary)
    return contract.exit_code(summary.failed)


if __name__ == "__main__":
    contract.command_line(main)
