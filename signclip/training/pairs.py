"""(pose, text) pairs for training and evaluation, from a manifest.

Columns: a pose path (``pose``, ``pose_path`` or ``path``; relative paths are relative to the manifest),
and either ``text`` (the prompt itself) or ``gloss`` plus ``sign_language`` (and optionally
``spoken_language``, default ``en``) from which the E7.2 prompt ``"<en> <ase> gloss"`` is built.
Optional: ``split`` (``train`` / ``val`` / ``test``), ``class_id``, ``id``.
"""

from __future__ import annotations

import pandas as pd

from signclip.io.manifests import clip_column, read_manifest, resolve, text_cell
from signclip.model.prompts import gloss_prompt


def read_pairs(manifest: str, split: str | None = None, prompt_template: str | None = None) -> pd.DataFrame:
    """A DataFrame with ``pose`` (absolute path or URI), ``text`` and any optional columns.

    ``prompt_template`` (e.g. ``'Sign the sign "{gloss}" in {language}.'``) replaces the E7.2 prompt
    when the text is built from ``gloss`` and ``sign_language``.

    Raises ``ValueError`` naming the manifest and the problem (missing columns, bad language codes
    with the row number, no rows for ``split``).
    """
    df = read_manifest(manifest).reset_index(drop=True)
    path_column = clip_column(list(df.columns), manifest)
    if "text" not in df.columns and not {"gloss", "sign_language"} <= set(df.columns):
        raise ValueError(f"{manifest}: needs a 'text' column, or 'gloss' and 'sign_language' columns")
    if split is not None and "split" in df.columns:
        df = df[df["split"] == split]
    if df.empty:
        raise ValueError(f"{manifest}: no rows" + (f" for split {split!r}" if split else ""))
    out = pd.DataFrame({"pose": [resolve(str(p), manifest) for p in df[path_column]]}, index=df.index)
    if "text" in df.columns:
        out["text"] = df["text"].astype(str)
    else:
        spoken = df["spoken_language"] if "spoken_language" in df.columns else pd.Series("en", index=df.index)
        texts = []
        # rows counted from 1 in the whole manifest (the index survives the split filter), as the jobs count them
        for row, gloss, signed, lang in zip(df.index, df["gloss"], df["sign_language"], spoken):
            try:
                texts.append(gloss_prompt(text_cell(gloss), text_cell(signed), text_cell(lang) or "en",
                                          prompt_template))
            except ValueError as e:
                raise ValueError(f"{manifest}: row {row + 1}: {e}") from e
        out["text"] = texts
    for column in ("id", "class_id", "split", "gloss", "sign_language"):
        if column in df.columns:
            out[column] = df[column].values
    return out.reset_index(drop=True)
