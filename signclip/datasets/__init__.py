"""Dataset adapters: a sign-language dataset as published on disk -> this project's manifest rows.

    from signclip.datasets import ADAPTERS, load
    df = load("asl_citizen", "data/ASL_Citizen", clean_glosses=True)

Every adapter has the signature ``adapter(root: str, **options) -> pd.DataFrame`` and returns the columns
``id, pose, gloss, text, sign_language, spoken_language, split, signer, class_id, missing`` followed by
columns of its own (frame ranges, ASL-LEX codes, ...). ``pose`` is the pose file's path (for Google's
landmark data the parquet's); ``missing`` marks clips the dataset lists whose file is absent (kept, so
they can be reported). ``signclip manifest`` writes the train / val / test manifests from them.

May import ``signclip.io``, ``signclip.pose`` and ``signclip.model`` (prompts).
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from signclip.datasets.asl_citizen import asl_citizen
from signclip.datasets.asl_signs import asl_signs
from signclip.datasets.common import MANIFEST_COLUMNS, SPLITS, DatasetError, failed_files, missing_files, present
from signclip.datasets.rwth_fingerspelling import rwth_fingerspelling
from signclip.datasets.sem_lex import sem_lex
from signclip.datasets.spreadthesign import spreadthesign
from signclip.datasets.wlasl import wlasl
from signclip.pose.google_parquet import GoogleParquetError, google_parquet_to_pose

# dataset name -> adapter(root, **options) -> DataFrame
ADAPTERS: dict[str, Callable[..., pd.DataFrame]] = {
    "spreadthesign": spreadthesign,
    "asl_citizen": asl_citizen,
    "sem_lex": sem_lex,
    "wlasl": wlasl,
    "rwth_fingerspelling": rwth_fingerspelling,
    "asl_signs": asl_signs,
}


def adapter(name: str) -> Callable[..., pd.DataFrame]:
    """The adapter registered as ``name`` (``-`` and ``_`` are interchangeable, case is ignored)."""
    key = name.strip().lower().replace("-", "_")
    try:
        return ADAPTERS[key]
    except KeyError:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(ADAPTERS)}") from None


def load(name: str, root: str, **options: object) -> pd.DataFrame:
    """Run the adapter registered as ``name`` on ``root``."""
    return adapter(name)(root, **options)


__all__ = ["ADAPTERS", "MANIFEST_COLUMNS", "SPLITS", "DatasetError", "GoogleParquetError", "adapter",
           "failed_files", "google_parquet_to_pose", "load", "missing_files", "present"]
