"""What every dataset adapter shares: the manifest columns, the pose-file index, split lists, random splits.

An adapter turns a dataset as published on disk into one DataFrame with :data:`MANIFEST_COLUMNS` (plus
columns of its own) and hands it to :func:`finalize`, which cleans whitespace out of glosses, builds the
prompts, assigns class ids, orders the columns and reports the pose files the dataset lists but the folder
lacks. Rows whose pose file is absent are kept with ``missing=True``: the caller decides what to drop, and
the count is logged, never a crash.
"""

from __future__ import annotations

import io
import logging
import posixpath
import random
from collections.abc import Callable, Iterable, Mapping

import pandas as pd

from signclip.io import storage
from signclip.model.prompts import PromptError, build_prompt

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
# The columns every adapter's DataFrame has, in this order; dataset-specific columns follow.
MANIFEST_COLUMNS = ("id", "pose", "gloss", "text", "sign_language", "spoken_language", "split", "signer",
                    "class_id", "missing")
SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "dev": "val",
                 "test": "test"}
POSE_SUFFIX = ".pose"
MISSING_COLUMNS = ("id", "split", "gloss", "pose")  # missing.csv: clips whose pose file is absent
FAILED_COLUMNS = MISSING_COLUMNS + ("error",)  # failed.csv: clips whose source failed to convert


class DatasetError(ValueError):
    """The folder does not hold the dataset in its published layout; the message names what is wrong."""


def read_text(path: str) -> str:
    """A text file (local or remote) as a string, a leading byte-order mark dropped."""
    return storage.read_bytes(path).decode("utf-8-sig")


def read_csv(path: str, required: Iterable[str] = (), what: str = "CSV") -> pd.DataFrame:
    """A CSV with every column as a string (empty cells stay ``""``); ``required`` columns are checked."""
    try:
        df = pd.read_csv(io.BytesIO(storage.read_bytes(path)), dtype=str, keep_default_na=False,
                         encoding="utf-8-sig")  # a byte-order mark would hide the first column's name
    except FileNotFoundError as e:
        raise DatasetError(f"{what} {path} does not exist") from e
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: not a readable {what} ({e})") from e
    absent = [c for c in required if c not in df.columns]
    if absent:
        raise DatasetError(f"{path}: the {what} lacks column(s) {', '.join(map(repr, absent))}; "
                           f"found {', '.join(map(repr, df.columns))}")
    return df


def list_dir(folder: str) -> list[str]:
    """Names (not paths) of the entries directly inside ``folder``; empty when it does not exist."""
    fs, path = storage.filesystem(folder)
    if not fs.isdir(path):
        return []
    return sorted(posixpath.basename(p.rstrip("/")) for p in fs.ls(path, detail=False))


def is_dir(path: str) -> bool:
    """Whether ``path`` is an existing folder (local or remote)."""
    fs, p = storage.filesystem(path)
    return bool(fs.isdir(p))


def find_index_file(root: str, given: str | None, names: Iterable[str], what: str, option: str,
                    suffix: str = ".csv") -> str:
    """The dataset's index file: ``given`` (a path, or a name inside ``root``), else the first of ``names``
    in ``root``, else the only ``*suffix`` file in ``root``. ``option`` names the adapter option that
    points at it, for the error message."""
    if given:
        return given if storage.exists(given) else storage.join(root, given)
    names = list(names)
    for name in names:
        if storage.exists(storage.join(root, name)):
            return storage.join(root, name)
    found = [n for n in list_dir(root) if n.lower().endswith(suffix)]
    if len(found) == 1:
        return storage.join(root, found[0])
    several = f"several {suffix} files ({', '.join(found)})" if found else f"no other {suffix} file"
    raise DatasetError(f"{root}: no {what} (looked for {', '.join(names)}; {several}); "
                       f"pass {option}=PATH (signclip manifest: --set {option}=PATH)")


def default_poses_dir(root: str, poses_dir: str | None, *subfolders: str) -> str:
    """``poses_dir`` when given, else the first of ``root/<subfolder>`` that is a folder, else ``root``."""
    if poses_dir:
        if not is_dir(poses_dir):
            raise DatasetError(f"poses folder {poses_dir} does not exist")
        return poses_dir
    for sub in subfolders:
        candidate = storage.join(root, sub)
        if is_dir(candidate):
            return candidate
    return root


class FileIndex:
    """The files with one suffix under a folder, listed once (one listing, not one request per file).

    Look a file up by its path relative to the folder (``relpath``) or by its name without the suffix
    (``stem``); a stem found in several subfolders resolves to the first in sorted order (logged).
    """

    def __init__(self, folder: str, suffix: str = POSE_SUFFIX):
        self.folder = folder
        self.suffix = suffix
        try:
            files = storage.expand(folder, (suffix,))
        except FileNotFoundError as e:
            raise DatasetError(f"folder {folder} does not exist") from e
        self._by_relpath: dict[str, str] = {}
        self._by_stem: dict[str, str] = {}
        clashes = 0
        for path in files:
            self._by_relpath[storage.relative_to(path, folder)] = path
            stem = posixpath.basename(path.replace("\\", "/"))[: -len(suffix)]
            if stem in self._by_stem:
                clashes += 1
                continue
            self._by_stem[stem] = path
        if clashes:
            log.warning("%s: %d %s files share a name with another in a different subfolder; the first in "
                        "sorted order is used", folder, clashes, suffix)

    def __len__(self) -> int:
        return len(self._by_relpath)

    def stems(self) -> list[str]:
        return sorted(self._by_stem)

    def by_stem(self, stem: str) -> str | None:
        return self._by_stem.get(stem)

    def by_relpath(self, relpath: str) -> str | None:
        return self._by_relpath.get(posixpath.normpath(relpath.replace("\\", "/")))

    def expected(self, relpath: str) -> str:
        """Where a file that is absent would be (for the missing-files report)."""
        return storage.join(self.folder, relpath)


def locate_by_stem(index: FileIndex, stems: Iterable[str]) -> tuple[list[str], list[bool]]:
    """Pose paths (found, or where they would be) and a ``missing`` flag for each stem."""
    paths, missing = [], []
    for stem in stems:
        found = index.by_stem(stem)
        paths.append(found or index.expected(stem + index.suffix))
        missing.append(found is None)
    return paths, missing


def locate_by_relpath(index: FileIndex, relpaths: Iterable[str]) -> tuple[list[str], list[bool]]:
    """Like :func:`locate_by_stem`, for datasets that list each file's path relative to the folder."""
    paths, missing = [], []
    for rel in relpaths:
        found = index.by_relpath(rel)
        paths.append(found or index.expected(rel))
        missing.append(found is None)
    return paths, missing


def normalize_split(value: str) -> str | None:
    """``train`` / ``val`` / ``test`` for the spellings datasets use (``valid``, ``dev``...), else ``None``."""
    return SPLIT_ALIASES.get(str(value).strip().lower())


def find_split_lists(*folders: str) -> str | None:
    """The first folder that holds a ``train.txt`` split list, else ``None``."""
    return next((f for f in folders if f and storage.exists(storage.join(f, "train.txt"))), None)


def read_split_lists(folder: str) -> dict[str, str]:
    """``{id: split}`` from ``train.txt`` / ``val.txt`` / ``test.txt`` (one id a line; absent files are empty).

    An id listed in two splits is an error: it would leak between training and evaluation.
    """
    assignment: dict[str, str] = {}
    for split in SPLITS:
        path = storage.join(folder, f"{split}.txt")
        if not storage.exists(path):
            log.warning("%s: no %s.txt, so no %s split", folder, split, split)
            continue
        for line in read_text(path).splitlines():
            key = line.strip()
            if not key:
                continue
            if assignment.get(key, split) != split:
                raise DatasetError(f"{folder}: id {key!r} is listed in both {assignment[key]}.txt and {split}.txt")
            assignment[key] = split
    if not assignment:
        raise DatasetError(f"{folder}: the split lists are empty")
    return assignment


def random_split(n: int, val_fraction: float, test_fraction: float, seed: int) -> list[str]:
    """A split name for each of ``n`` items in their given order, reproducing the original's split scripts.

    The original SignCLIP shuffled its id list with Python's ``random`` seeded with ``seed`` (3407), took
    the first ``int(n * val_fraction)`` as validation, the next ``int(n * test_fraction)`` as test and the
    rest as training. A shuffle's permutation depends only on the list's length and the seed, so the same
    ids in the same order get the same splits here.
    """
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DatasetError(f"split fractions val={val_fraction}, test={test_fraction}: each must be in [0, 1) "
                           "and together below 1")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_val, n_test = int(n * val_fraction), int(n * test_fraction)
    labels = ["train"] * n
    for rank, position in enumerate(order):
        if rank < n_val:
            labels[position] = "val"
        elif rank < n_val + n_test:
            labels[position] = "test"
    return labels


def as_list(value: str | Iterable[str] | None) -> list[str]:
    """A list of names from a sequence or a comma-separated string (``"en,de"``); ``None`` -> ``[]``."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else value
    return [str(v).strip() for v in items if str(v).strip()]


def normalize_gloss(value: object) -> str:
    """A gloss with surrounding whitespace removed and inner runs collapsed to one space."""
    return " ".join(str(value).split())


def class_ids(glosses: Iterable[str], known: Mapping[str, int] | None = None) -> dict[str, int]:
    """``{gloss: class_id}``: ``known`` ids first (a dataset's published numbering), then the remaining
    glosses in sorted order after the largest known id."""
    mapping = dict(known or {})
    rest = sorted(set(glosses) - set(mapping))
    if known and rest:
        log.warning("%d glosses have no published class id; numbered after the published ones", len(rest))
    start = max(mapping.values(), default=-1) + 1
    mapping.update({g: start + i for i, g in enumerate(rest)})
    return mapping


def _prompts(df: pd.DataFrame, dataset: str) -> list[str]:
    cache: dict[tuple[str, str, str], str] = {}
    texts = []
    for row_id, gloss, signed, spoken in zip(df["id"], df["gloss"], df["sign_language"], df["spoken_language"]):
        key = (gloss, signed, spoken)
        if key not in cache:
            try:
                cache[key] = build_prompt(gloss, signed, spoken)
            except PromptError as e:
                raise DatasetError(f"{dataset}: clip {row_id}: {e}") from e
        texts.append(cache[key])
    return texts


def finalize(df: pd.DataFrame, dataset: str, *, known_classes: Mapping[str, int] | None = None,
             prompt: Callable[[pd.DataFrame], list[str]] | None = None) -> pd.DataFrame:
    """The adapter's rows as a manifest DataFrame: columns checked and ordered, prompts and class ids added.

    ``df`` needs ``id``, ``pose``, ``gloss``, ``sign_language``, ``spoken_language``, ``split``, ``signer``
    and ``missing``; ``text`` is built from gloss and language tags (``"<en> <ase> house"``) unless
    ``prompt`` builds it. Rows without a gloss or with an unknown split are dropped (logged); a clip id
    listed twice keeps its first row (logged). Class ids are assigned over all rows, present or missing,
    so every split numbers a gloss the same way.
    """
    needed = [c for c in MANIFEST_COLUMNS if c not in ("text", "class_id")]
    absent = [c for c in needed if c not in df.columns]
    if absent:
        raise ValueError(f"{dataset}: adapter produced no {absent} column(s)")
    df = df.copy()
    df["id"] = df["id"].astype(str)
    df["gloss"] = [normalize_gloss(g) for g in df["gloss"]]
    df["split"] = [normalize_split(s) for s in df["split"]]
    unlabelled = df["gloss"] == ""
    if unlabelled.any():
        log.warning("%s: %d clip(s) without a gloss dropped (e.g. %s)", dataset, int(unlabelled.sum()),
                    ", ".join(df.loc[unlabelled, "id"].head(5)))
    no_split = df["split"].isna() & ~unlabelled
    if no_split.any():
        log.warning("%s: %d clip(s) in no train/val/test split dropped (e.g. %s)", dataset, int(no_split.sum()),
                    ", ".join(df.loc[no_split, "id"].head(5)))
    df = df[~unlabelled & ~no_split]
    duplicated = df["id"].duplicated()
    if duplicated.any():
        log.warning("%s: %d clip id(s) listed more than once; the first listing is kept (e.g. %s)", dataset,
                    int(duplicated.sum()), ", ".join(df.loc[duplicated, "id"].head(5)))
        df = df[~duplicated]
    df = df.reset_index(drop=True)
    df["signer"] = [None if s is None or pd.isna(s) or str(s).strip() == "" else str(s).strip()
                    for s in df["signer"]]
    df["missing"] = df["missing"].astype(bool)
    df["text"] = prompt(df) if prompt is not None else _prompts(df, dataset)
    mapping = class_ids(df["gloss"], known_classes)
    df["class_id"] = df["gloss"].map(mapping).astype("int64")
    missing = int(df["missing"].sum())
    if missing:
        log.warning("%s: %d of %d listed pose files are missing (e.g. %s)", dataset, missing, len(df),
                    ", ".join(df.loc[df["missing"], "pose"].head(3)))
    extras = [c for c in df.columns if c not in MANIFEST_COLUMNS]
    return df[list(MANIFEST_COLUMNS) + extras]


def failed(df: pd.DataFrame) -> pd.Series:
    """Which rows failed to convert to a .pose file (an ``error`` set by
    :func:`signclip.datasets.pose_files.write_pose_files`); all ``False`` when there is no ``error`` column."""
    if "error" not in df.columns:
        return pd.Series(False, index=df.index)
    return df["error"].notna()


def usable(df: pd.DataFrame) -> pd.Series:
    """Which rows have a pose file that exists and did not fail to convert."""
    return ~df["missing"] & ~failed(df)


def present(df: pd.DataFrame) -> pd.DataFrame:
    """The rows whose pose file exists (and, after a conversion, was written)."""
    return df[usable(df)].reset_index(drop=True)


def missing_files(df: pd.DataFrame) -> pd.DataFrame:
    """The rows whose pose file the dataset lists but the folder lacks: id, split, gloss, expected path."""
    return df.loc[df["missing"], list(MISSING_COLUMNS)].reset_index(drop=True)


def failed_files(df: pd.DataFrame) -> pd.DataFrame:
    """The rows whose source failed to convert: id, split, gloss, source path and the error."""
    return df.loc[failed(df)].reindex(columns=list(FAILED_COLUMNS)).reset_index(drop=True)
