"""ASL Citizen (Microsoft Research), as published: split CSVs plus one pose per video.

Layout (the dataset's ``ASL_Citizen/splits/*.csv``; poses as in the ``asl_citizen`` builder of
sign-language-processing/datasets, ``poses/<video file with .pose for .mp4>``)::

    ROOT/splits/{train,val,test}.csv    Participant ID,Video file,Gloss,ASL-LEX Code
                                        (also found at ROOT/ASL_Citizen/splits or directly in ROOT)
    ROOT/poses/<video stem>.pose        (or --poses DIR; searched recursively)

Glosses are upper-case with variant digits (``HOUSE``, ``HOUSE2``) and some trailing spaces.
``clean_glosses`` applies the original's clean-up (lower-case, trailing digits dropped), which merges
variants into one class.
"""

from __future__ import annotations

import posixpath

import pandas as pd

from signclip.datasets.common import (
    SPLITS,
    DatasetError,
    FileIndex,
    default_poses_dir,
    finalize,
    locate_by_stem,
    read_csv,
)
from signclip.datasets.glosses import clean_asl_citizen
from signclip.io import storage

NAME = "asl_citizen"
COLUMNS = ("Participant ID", "Video file", "Gloss", "ASL-LEX Code")


def _splits_dir(root: str) -> str:
    for candidate in (storage.join(root, "splits"), storage.join(root, "ASL_Citizen", "splits"), root):
        if storage.exists(storage.join(candidate, "train.csv")) or storage.exists(storage.join(candidate, "test.csv")):
            return candidate
    raise DatasetError(f"{root}: no ASL Citizen split CSVs (looked for splits/train.csv, "
                       "ASL_Citizen/splits/train.csv and train.csv)")


def asl_citizen(root: str, *, poses_dir: str | None = None, clean_glosses: bool = False) -> pd.DataFrame:
    """ASL Citizen clips as manifest rows, splits as published (prompt ``"<en> <ase> gloss"``).

    Extra columns: ``raw_gloss`` (as published), ``asl_lex_code``, ``video_file``.
    """
    folder = _splits_dir(root)
    parts = []
    for split in SPLITS:
        path = storage.join(folder, f"{split}.csv")
        if not storage.exists(path):
            continue
        part = read_csv(path, COLUMNS, what="ASL Citizen split CSV")
        part["split"] = split
        parts.append(part)
    meta = pd.concat(parts, ignore_index=True)
    videos = [v.strip() for v in meta["Video file"]]
    stems = [posixpath.splitext(posixpath.basename(v))[0] for v in videos]
    paths, missing = locate_by_stem(FileIndex(default_poses_dir(root, poses_dir, "poses", "ASL_Citizen/poses")),
                                    stems)
    raw = meta["Gloss"].values
    df = pd.DataFrame({
        "id": stems,
        "pose": paths,
        "gloss": [clean_asl_citizen(g) for g in raw] if clean_glosses else raw,
        "sign_language": "ase",
        "spoken_language": "en",
        "split": meta["split"].values,
        "signer": meta["Participant ID"].values,
        "missing": missing,
        "raw_gloss": raw,
        "asl_lex_code": meta["ASL-LEX Code"].values,
        "video_file": videos,
    })
    return finalize(df, NAME)
