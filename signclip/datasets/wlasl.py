"""WLASL (Word-Level ASL), from its JSON index.

Layout (the dataset's ``WLASL_v0.3.json`` and start kit, github.com/dxli94/WLASL)::

    ROOT/WLASL_v0.3.json     [{"gloss": "book", "instances": [{"video_id": "69241", "split": "train",
                             "signer_id": 118, "frame_start": 1, "frame_end": -1, "fps": 25, "url": ...,
                             "source": ..., "variation_id": 0, "instance_id": 0, "bbox": [...]}, ...]}, ...]
    ROOT/poses/<stem>.pose   (or --poses DIR; searched recursively)

Frame ranges: ``frame_start`` is 1-based, ``frame_end`` is inclusive and ``-1`` means "to the last frame",
counted when decoding at ``fps`` (25). Both are kept as published, and converted to 0-based half-open
``[start_frame, end_frame)`` (``end_frame`` null = to the end).

Which pose file covers which frames depends on where the poses were extracted from:

* ``source_videos="preprocessed"`` (default): from the start kit's ``videos/<video_id>.mp4``. Its
  ``preprocess.py`` cuts YouTube instances to their range (when ``frame_end`` > 1) and copies every other
  video whole, even when ``frame_start`` > 1. Column ``trimmed`` says whether the pose already covers only
  the range; where it is False a consumer must cut ``[start_frame, end_frame)`` itself.
* ``source_videos="raw"``: from the downloaded ``raw_videos``: YouTube instances are named by the YouTube
  id (the URL's last 11 characters, as the start kit does; several instances share one file), others by
  ``video_id``; no pose is trimmed.

``class_id`` is the gloss's position in the JSON, the dataset's own numbering: WLASL100/300/1000/2000 are
the first K glosses (``subset=K``).
"""

from __future__ import annotations

import json
import logging

import pandas as pd

from signclip.datasets.common import (
    DatasetError,
    FileIndex,
    default_poses_dir,
    finalize,
    list_dir,
    locate_by_stem,
    normalize_gloss,
    read_text,
)
from signclip.io import storage

log = logging.getLogger(__name__)

NAME = "wlasl"
SOURCE_VIDEOS = ("preprocessed", "raw")


def _find_json(root: str, index: str | None) -> str:
    if index:
        return index if storage.exists(index) else storage.join(root, index)
    for folder in (root, storage.join(root, "start_kit")):
        names = [n for n in list_dir(folder) if n.startswith("WLASL_v") and n.endswith(".json")]
        if names:
            newest = max(names, key=lambda n: tuple(int(x) for x in n[7:-5].split(".") if x.isdigit()))
            return storage.join(folder, newest)
    raise DatasetError(f"{root}: no WLASL_v*.json index; pass index=PATH")


def _is_youtube(url: str) -> bool:
    return "youtube" in url or "youtu.be" in url


def _int(value: object, default: int) -> int:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default


def wlasl(root: str, *, index: str | None = None, poses_dir: str | None = None,
          source_videos: str = "preprocessed", subset: int | None = None) -> pd.DataFrame:
    """WLASL instances as manifest rows, splits as published (prompt ``"<en> <ase> gloss"``).

    Extra columns: ``frame_start`` / ``frame_end`` (as published), ``start_frame`` / ``end_frame``
    (0-based, half-open, nullable), ``trimmed``, ``fps``, ``source``, ``url``, ``variation_id``,
    ``instance_id``.
    """
    if source_videos not in SOURCE_VIDEOS:
        raise DatasetError(f"{NAME}: source_videos must be one of {', '.join(SOURCE_VIDEOS)}, not {source_videos!r}")
    path = _find_json(root, index)
    try:
        entries = json.loads(read_text(path))
    except FileNotFoundError as e:
        raise DatasetError(f"WLASL index {path} does not exist") from e
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "gloss" in e for e in entries):
        raise DatasetError(f"{path}: expected a list of {{'gloss': ..., 'instances': [...]}} entries")
    order: dict[str, int] = {}
    rows = []
    for entry in entries:
        gloss = normalize_gloss(entry["gloss"])
        order.setdefault(gloss, len(order))
        if subset is not None and order[gloss] >= subset:
            continue
        for inst in entry.get("instances") or []:
            video_id = str(inst.get("video_id", "")).strip()
            url = str(inst.get("url") or "")
            start = _int(inst.get("frame_start"), 1)
            end = _int(inst.get("frame_end"), -1)
            youtube = _is_youtube(url)
            stem = url[-11:] if source_videos == "raw" and youtube else video_id
            if end > 0 and end < start:
                log.warning("%s: video %s has frame_end %d before frame_start %d", path, video_id, end, start)
            rows.append({
                "id": video_id, "stem": stem, "gloss": gloss, "split": inst.get("split", ""),
                "signer": None if inst.get("signer_id") is None else str(inst["signer_id"]),
                "frame_start": start, "frame_end": end,
                "start_frame": max(start - 1, 0), "end_frame": end if end > 0 else None,
                "trimmed": source_videos == "preprocessed" and youtube and end > 1,
                "fps": inst.get("fps"), "source": inst.get("source"), "url": url,
                "variation_id": inst.get("variation_id"), "instance_id": inst.get("instance_id"),
            })
    if not rows:
        raise DatasetError(f"{path}: no instances" + (f" in the first {subset} glosses" if subset else ""))
    meta = pd.DataFrame(rows)
    folder = default_poses_dir(root, poses_dir, "poses")
    paths, missing = locate_by_stem(FileIndex(folder), meta["stem"])
    meta["pose"] = paths
    meta["missing"] = missing
    meta["sign_language"] = "ase"
    meta["spoken_language"] = "en"
    for column in ("frame_start", "frame_end", "start_frame", "end_frame"):
        meta[column] = meta[column].astype("Int64")
    meta = meta.drop(columns=["stem"])
    return finalize(meta, NAME, known_classes=order)
