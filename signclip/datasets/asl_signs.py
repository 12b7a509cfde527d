"""Google's isolated ASL signs (Kaggle "Google - Isolated Sign Language Recognition", ``asl-signs``).

Layout (the competition's data page; the original SignCLIP's ``ASLSignMetaProcessor``)::

    ROOT/train.csv                      path,participant_id,sequence_id,sign
                                        path: train_landmark_files/<participant_id>/<sequence_id>.parquet
    ROOT/train_landmark_files/...       one landmark parquet per clip (see signclip.pose.google_parquet)
    ROOT/sign_to_prediction_index_map.json   optional: {"sign": class index} (250 signs) -> class_id
    ROOT/{train,val,test}.txt           optional split lists (sequence ids), e.g. the original's
                                        data/asl_signs lists; also looked for in ROOT/splits

The manifest's ``pose`` is the parquet's path: :func:`signclip.pose.google_parquet.google_parquet_to_pose` reads it
(``signclip manifest asl_signs --write-poses DIR`` converts every clip to a .pose file instead). The
competition publishes no split: without lists the clips are split at random as the original did (CSV
order, seed 3407, 5 % validation, 5 % test). Prompts: ``prompt="tags"`` gives ``"<en> <ase> sign"`` (the
released ASL fine-tuned model), ``prompt="sentence"`` the original's earlier
``'Sign the sign "sign" in American Sign Language.'``.
"""

from __future__ import annotations

import json

import pandas as pd

from signclip.datasets.common import (
    DatasetError,
    FileIndex,
    finalize,
    find_index_file,
    find_split_lists,
    locate_by_relpath,
    random_split,
    read_csv,
    read_split_lists,
    read_text,
)
from signclip.io import storage
from signclip.model.prompts import sentence_prompt

NAME = "asl_signs"
CSV_NAMES = ("train.csv",)
COLUMNS = ("path", "participant_id", "sequence_id", "sign")
CLASS_MAP = "sign_to_prediction_index_map.json"
SENTENCE = 'Sign the sign "{sign}" in {language}.'
PROMPTS = ("tags", "sentence")


def _class_map(root: str) -> dict[str, int] | None:
    path = storage.join(root, CLASS_MAP)
    if not storage.exists(path):
        return None
    try:
        mapping = json.loads(read_text(path))
        return {" ".join(str(k).split()): int(v) for k, v in mapping.items()}
    except (json.JSONDecodeError, AttributeError, TypeError, ValueError) as e:
        raise DatasetError(f"{path}: expected a JSON object of sign -> class index ({e})") from e


def asl_signs(root: str, *, csv: str | None = None, splits_dir: str | None = None, prompt: str = "tags",
              val_fraction: float = 0.05, test_fraction: float = 0.05, seed: int = 3407) -> pd.DataFrame:
    """Google ASL Signs clips as manifest rows (``pose`` = the landmark parquet).

    ``csv``: the index CSV (a path, or a name inside ``root``; default ``ROOT/train.csv``, else the only
    ``.csv`` file in ``root``).
    Extra columns: ``landmarks`` (the parquet's path as the CSV gives it).
    """
    if prompt not in PROMPTS:
        raise DatasetError(f"{NAME}: prompt must be one of {', '.join(PROMPTS)}, not {prompt!r}")
    path = find_index_file(root, csv, CSV_NAMES, "ASL Signs CSV", "csv")
    meta = read_csv(path, COLUMNS, what="ASL Signs CSV")
    lists_dir = splits_dir or find_split_lists(root, storage.join(root, "splits"))
    if lists_dir:
        assignment = read_split_lists(lists_dir)
        splits = [assignment.get(s.strip()) for s in meta["sequence_id"]]
    else:
        splits = random_split(len(meta), val_fraction, test_fraction, seed)
    relpaths = [p.strip() for p in meta["path"]]
    paths, missing = locate_by_relpath(FileIndex(root, ".parquet"), relpaths)
    df = pd.DataFrame({
        "id": meta["sequence_id"].str.strip().values,
        "pose": paths,
        "gloss": meta["sign"].values,
        "sign_language": "ase",
        "spoken_language": "en",
        "split": splits,
        "signer": meta["participant_id"].values,
        "missing": missing,
        "landmarks": relpaths,
    })
    sentence = None
    if prompt == "sentence":
        def sentence(rows: pd.DataFrame) -> list[str]:
            return [sentence_prompt(SENTENCE, "ase", sign=g) for g in rows["gloss"]]
    return finalize(df, NAME, known_classes=_class_map(root), prompt=sentence)
