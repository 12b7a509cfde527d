"""Evaluation of embedded clips against their prompts, reported in the reference's results layout.

Every number comes from :mod:`signclip.evaluation.metrics` (its tie rule and definitions); this module only picks
the inputs (each clip's prompt, the unique prompts as candidates, per-sign-language subsets) and names
the results as the reference's ``RWTHFSMetric`` does::

    {"v2t": {"R1", "R5", "R10", "MedianR", "MeanR"},
     "t2v": {"R1", "R5", "R10", "P1", "P5", "P10", "MedianR", "MeanR", "hit1", "hit5", "hit10"}, ...}

(``hit`` k: the share of texts with one of their clips in the top k; the reference reports only ``R``, the
share of all their clips found there.)

A clip's prompt is its ``text`` when the input manifest gave one, else one built from its ``gloss`` and
``language`` (:func:`signclip.model.prompts.gloss_prompt`: ``"<en> <LANG> GLOSS"`` or a recipe's sentence).
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from signclip.evaluation import metrics
from signclip.model.prompts import PromptError, gloss_prompt

log = logging.getLogger(__name__)

_TAGS = re.compile(r"^<([a-z]{2,3})>\s+<([a-z]{3})>\s")


def clip_prompts(meta: pd.DataFrame, default_language: str | None = None, spoken: str = "en",
                 template: str | None = None) -> list[str]:
    """Each clip's prompt: its text, else one built from gloss and language (with ``template``, a sentence
    such as a recipe's, else ``"<en> <LANG> GLOSS"``). Raises ``ValueError`` if a clip has neither text
    nor gloss, or a gloss without a language (and no ``default_language``)."""
    prompts = []
    for row in meta.itertuples(index=False):
        text, gloss = str(getattr(row, "text", "") or ""), str(getattr(row, "gloss", "") or "")
        language = str(getattr(row, "language", "") or "") or default_language
        spoken_here = str(getattr(row, "spoken_language", "") or "") or spoken  # as training built its prompt
        if text.strip():
            prompts.append(" ".join(text.split()))  # texts one space apart are one prompt, as in search
        elif gloss and language:
            try:
                prompts.append(gloss_prompt(gloss, language, spoken_here, template))
            except PromptError as e:
                raise PromptError(f"clip {row.id}: {e}") from e
        else:
            raise ValueError(f"clip {row.id}: no text and no gloss+language to build its prompt from "
                             "(add a text or gloss column to the manifest, or pass --language)")
    return prompts


def clip_languages(meta: pd.DataFrame, prompts: Sequence[str], default_language: str | None = None) -> list[str]:
    """Each clip's sign language: its ``language`` column, else the tag of its prompt, else
    ``default_language`` (``--language``, which also built its prompt), else ""."""
    out = []
    for given, prompt in zip(meta["language"] if "language" in meta else [""] * len(prompts), prompts):
        match = _TAGS.match(prompt)
        out.append(str(given or "") or (match.group(2) if match else "") or (default_language or ""))
    return out


def reference_keys(result: dict[str, float]) -> dict[str, float]:
    """``signclip.evaluation.metrics`` keys in the reference's names: ``R@1`` -> ``R1``, ``median_rank`` ->
    ``MedianR``."""
    names = {"median_rank": "MedianR", "mean_rank": "MeanR"}
    return {names.get(k, k.replace("@", "")): v for k, v in result.items()}


def retrieval(video_emb: np.ndarray, text_emb_unique: np.ndarray, gold: np.ndarray,
              ks: Sequence[int] = (1, 5, 10)) -> dict[str, Any]:
    """Both directions in the reference's layout, plus recognition accuracy (= video->text R@1)."""
    ks = tuple(sorted(set(ks) | {1}))
    v2t = reference_keys(metrics.video_to_text(video_emb, text_emb_unique, gold, ks))
    t2v = reference_keys(metrics.text_to_video(text_emb_unique, video_emb, gold, ks))
    return {"n_clips": int(len(video_emb)), "n_texts": int(len(np.unique(gold))), "v2t": v2t, "t2v": t2v,
            "recognition_accuracy": v2t["R1"]}


def evaluate(video_emb: np.ndarray, prompts: Sequence[str], text_emb_unique: np.ndarray,
             languages: Sequence[str] | None = None, shots: Sequence[int] = (1, 5, 10, 100), seed: int = 0,
             knn_k: int = 1, ks: Sequence[int] = (1, 5, 10)) -> dict[str, Any]:
    """Retrieval over the unique prompts, few-shot on the frozen clip embeddings (labels: the prompts),
    and the same retrieval per sign language (candidates: that language's unique prompts).

    ``text_emb_unique`` rows follow ``signclip.evaluation.metrics.unique_texts(prompts)`` (first-seen order).
    """
    uniq, gold = metrics.unique_texts(list(prompts))
    text_emb = np.asarray(text_emb_unique)
    if len(text_emb) != len(uniq):
        raise ValueError(f"text_emb_unique: {len(text_emb)} rows for {len(uniq)} unique prompts")
    out = retrieval(video_emb, text_emb, gold, ks)
    out["few_shot"] = metrics.few_shot_report(video_emb, np.asarray(prompts, dtype=object), shots, seed, knn_k)
    out["by_language"] = {}
    if languages is not None:
        langs = np.asarray(languages, dtype=object)
        for lang in sorted(set(langs.tolist())):
            rows = np.flatnonzero(langs == lang)
            sub_uniq, sub_gold = np.unique(gold[rows], return_inverse=True)
            out["by_language"][lang or "(none)"] = retrieval(video_emb[rows], text_emb[sub_uniq], sub_gold, ks)
    return out


def results_table(results: dict[str, Any]) -> pd.DataFrame:
    """One row per scope (``all``, then each language): counts, ``v2t_*``, ``t2v_*``, accuracy, few-shot."""
    def flat(scope: str, r: dict[str, Any]) -> dict[str, Any]:
        row: dict[str, Any] = {"scope": scope, "n_clips": r["n_clips"], "n_texts": r["n_texts"]}
        row.update({f"v2t_{k}": v for k, v in r["v2t"].items()})
        row.update({f"t2v_{k}": v for k, v in r["t2v"].items()})
        row["recognition_accuracy"] = r["recognition_accuracy"]
        return row

    rows = [flat("all", results) | {f"few_shot_{k}": v for k, v in results.get("few_shot", {}).items()}]
    rows += [flat(f"language={lang}", r) for lang, r in results.get("by_language", {}).items()]
    return pd.DataFrame(rows)


def table_csv(table: pd.DataFrame) -> bytes:
    buffer = io.StringIO()
    table.to_csv(buffer, index=False, float_format="%.6g")
    return buffer.getvalue().encode("utf-8")
