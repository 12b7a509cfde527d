"""Where the real sample videos and poses live (they are never copied into this repository).

Search order: ``$SIGNCLIP_DATA``; ``../shared/data`` beside the checkout; a cache filled by downloading
each file from its public source (``~/.cache/signclip/data`` or ``$SIGNCLIP_CACHE``).
"""

from __future__ import annotations

import logging
import os
import urllib.request
from pathlib import Path

from signclip.io import storage

log = logging.getLogger(__name__)

_RAW = "https://raw.githubusercontent.com"
_POSE = f"{_RAW}/sign-language-processing/pose"
_EVAL = (f"{_RAW}/sign-language-processing/pose-evaluation/d8129232615f540b3ad332298a8ba6a309c08e0b/"
         "pose_evaluation/utils/test/test_data/mediapipe")

# relative path in the data folder -> public source (repository, commit, path), as in SOURCES.md
SOURCES: dict[str, str] = {
    "videos/test_video.mp4": f"{_POSE}/7a36fcfab24c6cf137dfad1e5d00b3854fc6c1d5/src/python/tests/data/test_video.mp4",
    "videos/sample_video.mp4": f"{_POSE}/22a7f2e6c5ba703ab1586913360c913068853b3c/sample-data/video/video.mp4",
    "poses/house-colin-1.pose": f"{_EVAL}/standard_landmarks/colin-1-HOUSE.pose",
    "poses/sad-colin.pose": f"{_EVAL}/standard_landmarks/colin-SAD.pose",
    "poses/library.pose": f"{_EVAL}/mixed/000017451997373907346-LIBRARY.pose",
    "poses/refined-face-553.pose": f"{_EVAL}/mixed/SbTU6uS4cc1tZpqCnE3g.pose",
    "poses/house-spreadthesign.pose": (f"{_RAW}/J22Melody/fairseq/a819944093876443119f294a2c50c663cecd65b0/"
                                      "examples/MMPT/house.pose"),
    "poses/reduced-holistic-178.pose": f"{_POSE}/7a36fcfab24c6cf137dfad1e5d00b3854fc6c1d5/src/python/tests/data/mediapipe.pose",
    "poses/openpose-137.pose": f"{_POSE}/7a36fcfab24c6cf137dfad1e5d00b3854fc6c1d5/src/python/tests/data/openpose.pose",
}

# The labelled real clips: file -> gloss (ASL).
LABELLED_POSES: dict[str, str] = {
    "poses/house-colin-1.pose": "house",
    "poses/house-spreadthesign.pose": "house",
    "poses/sad-colin.pose": "sad",
    "poses/library.pose": "library",
}


def _candidates() -> list[Path]:
    found = []
    if os.environ.get("SIGNCLIP_DATA"):
        found.append(Path(os.environ["SIGNCLIP_DATA"]))
    repo_root = Path(__file__).resolve().parents[2]
    found.append(repo_root.parent / "shared" / "data")
    found.append(Path.cwd().parent / "shared" / "data")
    return found


def cache_dir() -> Path:
    """Where the sample data is downloaded to when no copy is found."""
    return Path(storage.cache_home()) / "data"


def data_dir(download: bool = True) -> Path:
    """The folder holding ``videos/`` and ``poses/``; downloads into the cache as a last resort."""
    for candidate in _candidates():
        if (candidate / "poses").is_dir():
            return candidate
    cache = cache_dir()
    if all((cache / rel).exists() for rel in SOURCES):
        return cache
    if not download:
        raise FileNotFoundError(
            "sample data not found: set SIGNCLIP_DATA, or place it at ../shared/data beside the checkout")
    for rel, url in SOURCES.items():
        target = cache / rel
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        log.info("downloading %s", url)
        tmp = target.with_suffix(target.suffix + ".part")
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
            out.write(response.read())
        tmp.replace(target)
    return cache


def path(relative: str) -> Path:
    """A sample file by its path inside the data folder, e.g. ``poses/sad-colin.pose``."""
    if relative not in SOURCES:
        raise KeyError(f"{relative}: not a known sample file (known: {sorted(SOURCES)})")
    return data_dir() / relative
