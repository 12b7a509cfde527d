"""What an embedding run covers: one item per clip or prompt, with a stable id.

Inputs (local or ``s3://``):

- a ``.pose`` or video file, a folder (searched recursively) or a glob: ids are the paths relative to the
  input's root, without suffix (``poses/a/b.pose`` under ``poses`` -> ``a/b``);
- a manifest (Parquet/CSV, see :mod:`signclip.io.manifests`) with a path column (``.pose`` files, videos, or
  Google's ASL Signs landmark ``.parquet`` files) and optionally ``id``,
  ``text``, ``gloss``, ``sign_language`` (or ``language``), ``spoken_language``, ``split`` (carried into the
  output); relative paths
  are relative to the manifest;
- prompts: a text file with one prompt per line, or a manifest's text column; a prompt's id is
  ``text-`` + a hash of the prompt, so reordering the file does not change ids and duplicates collapse.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass

from signclip.io import inputs, manifests, storage
from signclip.io.inputs import POSE_SUFFIXES, VIDEO_SUFFIXES

log = logging.getLogger(__name__)

METADATA_COLUMNS = ("text", "gloss", "language", "spoken_language", "split")


class InputError(ValueError):
    """An input that names nothing to embed or cannot be planned (the message says which and why)."""


@dataclass(frozen=True)
class Item:
    """One thing to embed. Every field is a string ("" when absent) so that Ray blocks stay uniform."""

    id: str
    kind: str  # pose / video / text (an unsupported file keeps its kind "" and fails with a clear row)
    source: str  # path or URI of the file, or "FILE:LINE" of a prompt
    text: str = ""  # the prompt (texts) or the clip's text from a manifest
    gloss: str = ""
    language: str = ""
    spoken_language: str = ""  # the language of the gloss (prompts are "<spoken> <sign> gloss"); "" = English
    split: str = ""

    def as_row(self) -> dict[str, str]:
        return asdict(self)


def kind_of(path: str) -> str:
    lower = path.lower()
    # a manifest's row may name one of Google's ASL Signs landmark files (`signclip manifest asl_signs`),
    # which the feature pipeline reads as a Holistic pose
    if lower.endswith(POSE_SUFFIXES) or lower.endswith(manifests.PARQUET_SUFFIXES):
        return "pose"
    if lower.endswith(VIDEO_SUFFIXES):
        return "video"
    return ""


def text_id(prompt: str) -> str:
    return "text-" + hashlib.sha1(prompt.encode("utf-8")).hexdigest()[:16]


def _check_id(item_id: str, where: str) -> str:
    parts = item_id.split("/")
    if not item_id or item_id.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise InputError(f"{where}: id {item_id!r} is not usable as a relative file name")
    return item_id


def _unique(items: list[Item], source: str) -> list[Item]:
    seen: dict[str, Item] = {}
    for item in items:
        if item.id in seen:
            if item.kind == "text" and seen[item.id].text == item.text:
                continue  # the same prompt twice: embed it once
            raise InputError(f"{source}: id {item.id!r} names both {seen[item.id].source} and {item.source}")
        seen[item.id] = item
    return list(seen.values())


def from_files(pattern: str) -> list[Item]:
    """``.pose`` files and videos named by a file, folder or glob."""
    paths, root = inputs.list_files(pattern, POSE_SUFFIXES + VIDEO_SUFFIXES)
    items = []
    for path in paths:
        item_id = _check_id(inputs.relative_id(path, root), path)
        items.append(Item(id=item_id, kind=kind_of(path), source=path))
    return _unique(items, pattern)


def from_manifest(path: str, path_column: str | None = None, id_column: str | None = None,
                  text_column: str | None = None) -> list[Item]:
    """Items from a manifest: prompts from ``text_column`` when given, else files from ``path_column``
    (default: the first of :data:`~signclip.io.manifests.CLIP_COLUMNS` the manifest has)."""
    table = manifests.read_manifest(path)
    columns = list(table.columns)
    if text_column and text_column not in columns:
        raise InputError(f"{path}: no {text_column!r} column (columns: {columns})")
    try:
        column = text_column or manifests.clip_column(columns, path, path_column)
        ids_in = manifests.id_column(columns, path, id_column)
    except ValueError as e:
        raise InputError(str(e)) from None

    def cell(row: dict, name: str | None) -> str:
        return manifests.text_cell(row.get(name)) if name else ""

    items = []
    for i, row in enumerate(table.to_dict("records")):
        meta = {c: cell(row, c) for c in METADATA_COLUMNS}
        # training manifests and the dataset adapters name the sign language `sign_language`
        meta["language"] = meta["language"] or cell(row, "sign_language")
        where = f"{path} row {i + 1}"
        if text_column:
            prompt = cell(row, text_column)
            if not prompt:
                log.warning("%s: empty %r, skipped", where, text_column)
                continue
            meta["text"] = prompt
            item_id = cell(row, ids_in) or text_id(prompt)
            items.append(Item(id=_check_id(item_id, where), kind="text", source=f"{path}:{i + 2}", **meta))
            continue
        file = cell(row, column)
        if not file:
            raise InputError(f"{where}: empty {column!r}")
        file = manifests.resolve(file, path)
        item_id = cell(row, ids_in) or manifests.default_id(file, path)
        items.append(Item(id=_check_id(item_id, where), kind=kind_of(file), source=file, **meta))
    return _unique(items, path)


def from_text_file(path: str) -> list[Item]:
    """One prompt per non-blank line (surrounding whitespace removed)."""
    lines = storage.read_bytes(path).decode("utf-8").splitlines()
    items = [Item(id=text_id(line.strip()), kind="text", source=f"{path}:{n}", text=line.strip())
             for n, line in enumerate(lines, start=1) if line.strip()]
    return _unique(items, path)


def list_items(input_path: str | None = None, texts: str | None = None, path_column: str | None = None,
               id_column: str | None = None, text_column: str | None = None) -> list[Item]:
    """Every item of a run (files and/or prompts). Raises ``InputError`` when there is none."""
    if input_path is None and texts is None:
        raise InputError("nothing to embed: give --input and/or --texts")
    items: list[Item] = []
    try:
        if input_path is not None:
            items += (from_manifest(input_path, path_column, id_column, text_column)
                      if manifests.is_manifest(input_path) else from_files(input_path))
        if texts is not None:
            items += from_text_file(texts)
    except FileNotFoundError as e:
        raise InputError(str(e)) from e
    if not items:
        named = " and ".join(p for p in (input_path, texts) if p)
        raise InputError(f"{named}: empty input, nothing to embed (no .pose files, videos or prompts found)")
    return _unique(items, " + ".join(p for p in (input_path, texts) if p))
