"""Spreadthesign, in the CSV layout the original SignCLIP trained E7.2 on.

Layout (from the original's ``SignCLIPPretrainMetaProcessor`` and the ``spread_the_sign`` builder of
sign-language-processing/datasets)::

    ROOT/SpreadTheSign.csv     pose,videoLanguage,language,text
                               pose: the .pose file's path relative to the poses folder (<id>.pose);
                               videoLanguage: sign-language code (ase, gsg, ...); language: spoken-language
                               code of the text (en, de, ...); text: the word or phrase
    ROOT/poses/<id>.pose       (or the poses directly in ROOT, or --poses DIR)
    ROOT/splits/{train,val,test}.txt   optional: 0-based CSV row numbers, one a line (the 1.0.0-uzh split)

Without split lists the rows are split at random as the original did (seed 3407, 0.1 % validation,
0.1 % test), over ALL rows before the spoken-language filter, so the same CSV gives the same split. The
original trained on English texts only (``spoken_languages=("en",)``, the default).
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence

import pandas as pd

from signclip.datasets.common import (
    DatasetError,
    FileIndex,
    as_list,
    default_poses_dir,
    finalize,
    find_index_file,
    find_split_lists,
    locate_by_relpath,
    random_split,
    read_csv,
    read_split_lists,
)
from signclip.io import storage

NAME = "spreadthesign"
COLUMNS = ("pose", "videoLanguage", "language", "text")
# the original's metadata file was named SperadTheSign.csv (sic)
CSV_NAMES = ("SpreadTheSign.csv", "SperadTheSign.csv", "spreadthesign.csv", "spread_the_sign.csv")


def spreadthesign(root: str, *, csv: str | None = None, poses_dir: str | None = None,
                  splits_dir: str | None = None, spoken_languages: Sequence[str] | None = ("en",),
                  val_fraction: float = 0.001, test_fraction: float = 0.001, seed: int = 3407) -> pd.DataFrame:
    """Spreadthesign clips as manifest rows (gloss = the CSV's text, prompt ``"<en> <ase> text"``).

    ``spoken_languages``: keep rows whose text is in one of these languages (``None`` or empty: all).
    Extra columns: ``row`` (the CSV row number the split lists use).
    """
    path = find_index_file(root, csv, CSV_NAMES, "Spreadthesign CSV", "csv")
    meta = read_csv(path, COLUMNS, what="Spreadthesign CSV")
    meta["row"] = range(len(meta))
    lists_dir = splits_dir or find_split_lists(storage.join(root, "splits"), root)
    if lists_dir:
        assignment = read_split_lists(lists_dir)
        meta["split"] = [assignment.get(str(r)) for r in meta["row"]]
    else:
        meta["split"] = random_split(len(meta), val_fraction, test_fraction, seed)
    spoken_languages = as_list(spoken_languages)
    if spoken_languages:
        wanted = set(spoken_languages)
        meta = meta[meta["language"].str.strip().isin(wanted)]
        if meta.empty:
            raise DatasetError(f"{path}: no rows with spoken language {', '.join(sorted(wanted))}")
    folder = default_poses_dir(root, poses_dir, "poses")
    relpaths = [p.strip() for p in meta["pose"]]
    paths, missing = locate_by_relpath(FileIndex(folder), relpaths)
    df = pd.DataFrame({
        "id": [posixpath.splitext(r)[0] if r.endswith(".pose") else r for r in relpaths],
        "pose": paths,
        "gloss": meta["text"].values,
        "sign_language": meta["videoLanguage"].str.strip().values,
        "spoken_language": meta["language"].str.strip().values,
        "split": meta["split"].values,
        "signer": None,
        "missing": missing,
        "row": meta["row"].values,
    })
    return finalize(df, NAME)
