"""Turn a manifest's landmark files (Google's parquet) into .pose files, so every job can read them.

Each present row's source is converted and written to ``OUT/<path of the source relative to its
folder, with .pose>``; a file already there is kept (a rerun skips done work). A source that fails to
convert keeps its own path in ``pose`` and gets its error in the ``error`` column: it is neither missing nor
usable (see :func:`signclip.datasets.common.failed`), and a rerun tries it again.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Callable

import pandas as pd
from pose_format import Pose

from signclip.io import storage
from signclip.pose.google_parquet import google_parquet_to_pose

log = logging.getLogger(__name__)


def write_pose_files(df: pd.DataFrame, out_dir: str, relpath_column: str = "landmarks",
                     convert: Callable[[str], Pose] = google_parquet_to_pose) -> pd.DataFrame:
    """``df`` with ``pose`` pointing at the written .pose files and an ``error`` column (None when ok).

    ``relpath_column`` names the column with each source's path relative to the dataset root; the
    .pose file gets the same relative path under ``out_dir``.
    """
    from tqdm import tqdm

    df = df.copy()
    errors: list[str | None] = [None] * len(df)
    poses = list(df["pose"])
    written = kept = 0
    for i, (source, rel, absent) in enumerate(tqdm(list(zip(df["pose"], df[relpath_column], df["missing"])),
                                                   desc="to .pose", unit="clip", disable=None)):
        if absent:
            continue
        target = storage.join(out_dir, posixpath.splitext(str(rel).replace("\\", "/"))[0] + ".pose")
        poses[i] = target
        if storage.exists(target):
            kept += 1
            continue
        try:
            pose = convert(source)
            buffer = _pose_bytes(pose)
        except (ValueError, OSError) as e:
            errors[i] = f"{type(e).__name__}: {e}"
            poses[i] = source
            continue
        storage.write_bytes_atomic(target, buffer)
        written += 1
    failed = sum(e is not None for e in errors)
    log.info("%s: %d .pose files written, %d already there, %d failed", out_dir, written, kept, failed)
    if failed:
        log.warning("%d clip(s) could not be converted (e.g. %s)", failed,
                    next(e for e in errors if e is not None))
    df["pose"], df["error"] = poses, errors
    return df


def _pose_bytes(pose: Pose) -> bytes:
    import io

    buffer = io.BytesIO()
    pose.write(buffer)
    return buffer.getvalue()
