"""Featurising (pose, text) rows for training: the function that Ray Data runs as a CPU stage.

Rows travel as plain columns (``frames`` = float32 bytes, ``length``) so Arrow blocks stay compact.
Augmentation is seeded by (seed, epoch, row), so an epoch's input is reproducible and a resumed run
sees what the interrupted one would have.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from signclip.pose.augment import Augmentation
from signclip.pose.features import feature_error, pose_features


def row_blocks(df: pd.DataFrame, rows_per_block: int) -> list[pd.DataFrame]:
    """Blocks for ``ray.data.from_blocks``: unlike ``from_pandas`` it starts no task (a task of a whole
    CPU that a nearly full cluster, e.g. training workers on 2 cores, could never schedule)."""
    return [df.iloc[i:i + rows_per_block].reset_index(drop=True) for i in range(0, len(df), max(1, rows_per_block))]


def featurize_rows(batch: dict[str, np.ndarray], feature_set: str, augment: dict[str, Any] | None,
                   seed: int, epoch: int) -> dict[str, np.ndarray]:
    """``pose``, ``text``, ``row`` columns in; ``frames`` (bytes), ``length``, ``text``, ``row``, ``error`` out.

    A row that cannot be featurised keeps ``length`` 0 and an ``error`` naming the file and the problem.
    """
    aug = Augmentation(**augment) if augment else None
    frames, lengths, errors = [], [], []
    for path, row in zip(batch["pose"], batch["row"]):
        try:
            x = pose_features(str(path), feature_set, augment=aug,
                              rng=np.random.default_rng([seed, epoch, int(row)]))
            frames.append(x.tobytes())
            lengths.append(x.shape[0])
            errors.append("")
        except Exception as e:  # noqa: BLE001 - one bad clip is rejected with its reason, the rest go on
            frames.append(b"")
            lengths.append(0)
            errors.append(feature_error(e))
    return {"frames": np.array(frames, dtype=object), "length": np.array(lengths, dtype=np.int64),
            "text": batch["text"], "row": batch["row"], "error": np.array(errors, dtype=object)}


def decode_frames(batch: dict[str, np.ndarray], dim: int) -> list[np.ndarray]:
    """The ``[T, D]`` arrays of a featurised batch."""
    return [np.frombuffer(b, dtype=np.float32).reshape(n, dim) for b, n in zip(batch["frames"], batch["length"])]
