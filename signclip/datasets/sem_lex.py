"""The Sem-Lex Benchmark (ASL), from its metadata CSV.

Layout (column names from the dataset's ``semlex_metadata.csv`` as read by sign-language-processing's
``sem_lex`` builder and pose-evaluation's Sem-Lex loader)::

    ROOT/semlex_metadata.csv    (unnamed index),video_id,signer_id,duration,split,label_type,label,...
                                split: train / val / test; label_type: asllex / freetext / ...
    ROOT/poses/**/<video_id>.pose   (or --poses DIR; searched recursively, e.g. per-split subfolders)

Quirks handled: a video id can be listed more than once, sometimes in two splits (the first listing is
kept in the order train, val, test, as pose-evaluation does, so no clip leaks between splits); labels with
stray spaces; a row without label or split (dropped, logged). ``clean_glosses`` applies the original's
clean-up: drop a trailing ``_<digits>``, underscores become spaces.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pandas as pd

from signclip.datasets.common import (
    SPLITS,
    DatasetError,
    FileIndex,
    as_list,
    default_poses_dir,
    finalize,
    find_index_file,
    locate_by_stem,
    normalize_split,
    read_csv,
)
from signclip.datasets.glosses import clean_sem_lex

log = logging.getLogger(__name__)

NAME = "sem_lex"
REQUIRED = ("video_id", "signer_id", "split", "label")
CSV_NAMES = ("semlex_metadata.csv", "sem-lex-metadata.csv")


def sem_lex(root: str, *, metadata: str | None = None, poses_dir: str | None = None, clean_glosses: bool = False,
            label_types: Sequence[str] | None = None) -> pd.DataFrame:
    """Sem-Lex clips as manifest rows, splits as published (prompt ``"<en> <ase> gloss"``).

    ``label_types``: keep only these label types (e.g. ``("asllex",)``; default all).
    Extra columns: ``raw_gloss``, ``label_type``, ``duration``.
    """
    path = find_index_file(root, metadata, CSV_NAMES, "Sem-Lex metadata", "metadata")
    meta = read_csv(path, REQUIRED, what="Sem-Lex metadata")
    meta["video_id"] = meta["video_id"].str.strip()
    label_types = as_list(label_types)
    if label_types:
        if "label_type" not in meta.columns:
            raise DatasetError(f"{path}: no label_type column to filter on")
        meta = meta[meta["label_type"].str.strip().isin(set(label_types))]
    rank = {s: i for i, s in enumerate(SPLITS)}
    meta = meta.assign(_rank=[rank.get(normalize_split(s) or "", len(SPLITS)) for s in meta["split"]])
    meta = meta.sort_values("_rank", kind="stable")
    repeated = meta["video_id"].duplicated()
    if repeated.any():
        meta = meta[~repeated]
    meta = meta.sort_index()
    folder = default_poses_dir(root, poses_dir, "poses")
    paths, missing = locate_by_stem(FileIndex(folder), meta["video_id"])
    raw = meta["label"].values
    df = pd.DataFrame({
        "id": meta["video_id"].values,
        "pose": paths,
        "gloss": [clean_sem_lex(g) for g in raw] if clean_glosses else raw,
        "sign_language": "ase",
        "spoken_language": "en",
        "split": meta["split"].values,
        "signer": meta["signer_id"].values,
        "missing": missing,
        "raw_gloss": raw,
        "label_type": meta["label_type"].values if "label_type" in meta.columns else None,
        "duration": pd.to_numeric(meta["duration"], errors="coerce").values if "duration" in meta.columns else None,
    })
    if repeated.any():
        log.warning("%s: %d repeated video id(s) dropped (kept the first listing in train, val, test order)",
                    path, int(repeated.sum()))
    return finalize(df, NAME)
