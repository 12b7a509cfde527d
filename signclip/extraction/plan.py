"""Which videos an extraction run covers and where each one's ``.pose`` goes.

The input is a video file, a folder (searched recursively), a glob, or a manifest (Parquet/CSV with a
path column and, optionally, an id column); local or ``s3://``. Poses mirror the videos' paths relative
to the input's root: ``videos/a/b.mp4`` with root ``videos`` -> ``OUTPUT/a/b.pose`` (:func:`list_inputs`).
"""

from __future__ import annotations

import logging
from dataclasses import replace

from signclip.extraction.extract_video import VideoTask
from signclip.io import inputs, manifests, storage

log = logging.getLogger(__name__)


def list_inputs(source: str, path_column: str = "path",
                id_column: str | None = None) -> list[tuple[str | None, str, str]]:
    """The videos ``source`` names, as ``(id or None, path, name)``: ``name`` is the video's path without its
    suffix relative to the input's root (a folder, a glob's static prefix, a manifest's folder; a manifest's
    video outside its folder: the whole path, see :func:`signclip.io.manifests.default_id`). It names the pose
    and, without an id, the video; it depends on that video alone, so adding videos never renames others."""
    if manifests.is_manifest(source):
        table = manifests.read_manifest(source)
        path_column = manifests.clip_column(list(table.columns), source, path_column)
        ids_in = manifests.id_column(list(table.columns), source, id_column)
        # an empty id falls back to the video's path, as in the embed job
        ids = [manifests.text_cell(v) or None for v in table[ids_in]] if ids_in else [None] * len(table)
        listed = []
        for row, (given_id, cell) in enumerate(zip(ids, table[path_column].tolist()), start=1):
            path = manifests.text_cell(cell)
            if not path:
                raise ValueError(f"{source} row {row}: empty {path_column!r}")
            video = manifests.resolve(path, source)
            listed.append((given_id, video, manifests.default_id(video, source)))
        return listed
    videos, root = inputs.list_files(source, inputs.VIDEO_SUFFIXES)
    return [(None, v, inputs.relative_id(v, root)) for v in videos]


def existing_poses(output: str) -> set[str]:
    """Every ``.pose`` under ``output``, as the filesystem names them (empty if the folder is absent)."""
    try:
        found = storage.expand(output, (".pose",))
    except FileNotFoundError:
        return set()
    return {storage.filesystem(p)[1] for p in found}


def plan(source: str, output: str, path_column: str = "path", id_column: str | None = None) -> list[VideoTask]:
    """One :class:`VideoTask` per distinct video, in input order (a video listed under several ids carries the
    others in ``also_ids``); refuses two videos mapping to one pose, and one id naming two videos."""
    listed = list_inputs(source, path_column, id_column)
    tasks: list[VideoTask] = []
    task_of_video: dict[str, int] = {}
    by_pose: dict[str, str] = {}
    by_id: dict[str, str] = {}
    for given_id, video, name in listed:
        video_id = given_id if given_id is not None else name
        pose = storage.join(output, name + ".pose")
        if by_pose.get(pose, video) != video:
            raise ValueError(f"{by_pose[pose]} and {video} would both write {pose}; rename one of them")
        if by_id.get(video_id, video) != video:
            raise ValueError(f"id {video_id!r} names both {by_id[video_id]} and {video}")
        if video in task_of_video:
            n = task_of_video[video]
            if video_id in by_id:
                log.warning("%s is listed more than once as %r; extracting it once", video, video_id)
            else:
                tasks[n] = replace(tasks[n], also_ids=tasks[n].also_ids + (video_id,))
                by_id[video_id] = video
            continue
        by_pose[pose] = video
        by_id[video_id] = video
        task_of_video[video] = len(tasks)
        tasks.append(VideoTask(id=video_id, video_path=video, pose_path=pose))
    existing = existing_poses(output)
    return [replace(t, pose_exists=storage.filesystem(t.pose_path)[1] in existing) for t in tasks]
