"""Dictionary search over an embedded corpus: a text or a clip -> the nearest clips; a clip -> the best labels.

    from signclip.search.lookup import SignSearch
    index = SignSearch.load("runs/emb")               # the model named in the shards, or model_dir=...
    for hit in index.search("<en> <ase> house", k=10):
        print(hit.rank, round(hit.score, 2), hit.id, hit.source)
    index.recognize(index.embed_clips([open("clip.pose", "rb").read()]), k=5)   # the best glosses / texts

The corpus is the ``ok`` pose/video rows of an embedding directory written by ``signclip embed``. Queries are
embedded with the model the shards name (its fingerprint must match theirs) and clips are ranked by the
model's similarity (:class:`signclip.search.index.VectorIndex`: the dot product; unit vectors for ``cosine``
models). Query clips are embedded as the corpus's clips were (flip, anonymisation, long-clip policy and window
stride, precision: what the shards record). Recognition ranks the corpus's distinct labels (a clip's text,
else its gloss prompt; labels the text tower cannot tell apart are one) the same way, each label embedded
once by the text tower, the first time a clip is recognised.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Sequence

import numpy as np
import pandas as pd

from signclip.io import embedding_store
from signclip.model.embedder import Embedder
from signclip.model.prompts import PromptError, gloss_prompt
from signclip.search.index import APPROXIMATE_ABOVE, SearchMode, VectorIndex

if TYPE_CHECKING:
    from signclip.model.network import SignCLIP
    from signclip.pose.reader import PoseSource

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hit:
    """One ranked clip."""

    rank: int  # 1-based
    score: float  # the model's similarity to the query
    id: str
    source: str  # the clip's input path
    gloss: str
    text: str
    language: str


@dataclass(frozen=True)
class Label:
    """One ranked gloss or text of the corpus (recognition)."""

    rank: int  # 1-based
    score: float  # the model's similarity of the query clip to the label's prompt
    label: str  # the gloss, or the text when the corpus gives one
    language: str  # its sign language ("" when the corpus does not say)
    prompt: str  # what the text tower embedded
    clips: int  # clips of the corpus with this label


class LabelEntry(NamedTuple):
    """One distinct label of the corpus."""

    label: str  # the gloss, or the text when the corpus gives one (as its first clip spells it)
    language: str  # its sign language ("" when the corpus does not say)
    prompt: str  # what the text tower embeds
    clips: int  # clips of the corpus with this label


def load_model_for(corpus: embedding_store.Corpus, model_dir: str | None = None, device: str = "cpu") -> SignCLIP:
    """The model that made ``corpus``: ``model_dir`` or the one its shards name (local or a URL, fetched into
    this node's cache), checked by fingerprint."""
    from signclip.io.model_cache import local_model_and_fingerprint
    from signclip.model.checkpoint import CheckpointError
    from signclip.model.factory import load

    hashes = sorted(set(corpus.meta["model_hash"]))
    if len(hashes) != 1:
        raise CheckpointError(f"the corpus mixes embeddings of {len(hashes)} models: {hashes}")
    named = model_dir or str(corpus.meta["model"].iloc[0])
    try:
        local, found = local_model_and_fingerprint(named)
    except OSError as e:
        raise CheckpointError(f"{named}: cannot read the model the embeddings were made with ({e}); "
                              "pass its location with --model") from e
    if found != hashes[0]:
        raise CheckpointError(f"{named} has fingerprint {found}, the embeddings were made with {hashes[0]}: "
                              "a query embedded with another model is not comparable")
    return load(local, device=device)


# how the corpus's clips were embedded, which a query clip must follow (Embedder arguments, shard columns alike)
EMBEDDING_VARIANT = ("flip", "anonymized", "long_clips", "window_stride", "precision")


def _one_value(meta: pd.DataFrame, column: str) -> Any:
    values = sorted({v.item() if isinstance(v, np.generic) else v for v in meta[column].dropna()}, key=str)
    if len(values) != 1:
        raise ValueError(f"the corpus's clips were embedded with {column} {values}: a query clip can be embedded "
                         "like them only when they agree")
    return values[0]


def corpus_variant(corpus: embedding_store.Corpus) -> dict[str, Any]:
    """The :class:`Embedder` arguments the corpus's clips were embedded with; ``ValueError`` when its clips
    disagree."""
    variant = {name: _one_value(corpus.meta, name) for name in EMBEDDING_VARIANT if name != "window_stride"}
    variant["window_stride"] = (_one_value(corpus.meta, "window_stride") if variant["long_clips"] == "window"
                                else embedding_store.DEFAULT_WINDOW_STRIDE)  # unused: long clips are truncated
    return variant


def check_queries(queries: Sequence[str]) -> None:
    """Raise ``ValueError`` for a text query that is empty after stripping (it names nothing to look up)."""
    for n, query in enumerate(queries, 1):
        if not isinstance(query, str) or not query.strip():
            raise ValueError(f"query {n} of {len(queries)} ({query!r}) is empty; give a word or phrase to look up")


def label_of(text: str, gloss: str, language: str, spoken_language: str = "") -> tuple[str, str] | None:
    """A clip's label and the prompt the text tower embeds for it: its text, else its gloss's prompt (in its
    spoken language, English when it names none, as training built it); None when it has neither. Raises
    ``PromptError`` when the gloss's prompt cannot be built (e.g. an unknown code)."""
    if text.strip():
        text = " ".join(text.split())
        return text, text
    if gloss.strip() and language:
        return " ".join(gloss.split()), gloss_prompt(gloss, language, spoken_language or "en")
    return None


def _strings(column: Any) -> list[str]:
    return ["" if v is None or v is pd.NA else str(v) for v in column]


class SignSearch:
    """Ranks the clips (and the labels) of an embedded corpus for text and clip queries. Thread-safe."""

    def __init__(self, corpus: embedding_store.Corpus, embedder: Embedder, mode: SearchMode = "auto",
                 approximate_above: int = APPROXIMATE_ABOVE):
        if len(corpus) == 0:
            raise ValueError("the corpus holds no embedded clips")
        self.corpus = corpus
        # where its model was read (load() names the one it used)
        self.model_location = str(corpus.meta["model"].iloc[0]) if len(corpus) and "model" in corpus.meta else ""
        self.embedder = embedder
        self.index = VectorIndex(corpus.embeddings, mode, approximate_above)
        # plain lists: a hit reads its row's fields without going through pandas
        self._column = {c: _strings(corpus.meta[c]) for c in ("id", "source", "gloss", "text", "language",
                                                               "pose_path")}
        # the language a gloss's prompt is written in (shards of older versions have none: English)
        self._column["spoken_language"] = (_strings(corpus.meta["spoken_language"])
                                           if "spoken_language" in corpus.meta else [""] * len(corpus))
        self._rows = {clip_id: n for n, clip_id in enumerate(self._column["id"])}
        self._labels: list[LabelEntry] | None = None
        self._label_vectors: VectorIndex | None = None
        self._labels_lock = threading.Lock()
        self._vectors_lock = threading.Lock()

    @classmethod
    def load(cls, embeddings: str, model_dir: str | None = None, device: str = "cpu", mode: SearchMode = "auto",
             approximate_above: int = APPROXIMATE_ABOVE) -> "SignSearch":
        """The ``ok`` clips under ``embeddings`` and the model that made them."""
        corpus = embedding_store.load(embeddings, kinds=("pose", "video"))
        if len(corpus) == 0:
            raise ValueError(f"{embeddings}: no successfully embedded clips to search")
        try:
            variant = corpus_variant(corpus)
        except ValueError as e:
            raise ValueError(f"{embeddings}: {e}") from e
        model = load_model_for(corpus, model_dir, device)
        search = cls(corpus, Embedder(model, **variant), mode, approximate_above)
        search.model_location = model_dir or search.model_location
        log.info("searching %d clips of %s (%s)", len(corpus), embeddings, search.index.mode)
        return search

    # -- clips --------------------------------------------------------------------------------------------
    def _hits(self, vectors: np.ndarray, k: int) -> list[list[Hit]]:
        if k < 1:
            raise ValueError(f"k {k}: expected a positive number of results")
        scores, rows = self.index.search(vectors, k)
        c = self._column
        return [[Hit(rank=r + 1, score=s, id=c["id"][i], source=c["source"][i], gloss=c["gloss"][i],
                     text=c["text"][i], language=c["language"][i])
                 for r, (s, i) in enumerate(zip(row_scores, row_ids)) if i >= 0]
                for row_scores, row_ids in zip(scores.tolist(), rows.tolist())]

    def search_many(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        """The top ``k`` clips for each text query, best first; ``ValueError`` for an empty query."""
        check_queries(queries)
        return self._hits(self.embedder.embed_texts(list(queries)), k)

    def search(self, query: str, k: int = 10) -> list[Hit]:
        """The top ``k`` clips for ``query``, e.g. ``"<en> <ase> house"``, best first."""
        return self.search_many([query], k)[0]

    def embed_clips(self, clips: Sequence["PoseSource"]) -> np.ndarray:
        """Query clips embedded as the corpus was (same variant); raises ``ValueError`` on a bad clip."""
        return self.embedder.embed_poses(list(clips))

    def search_clips(self, vectors: np.ndarray, k: int = 10) -> list[list[Hit]]:
        """The top ``k`` clips for each embedded query clip (:meth:`embed_clips`), best first."""
        return self._hits(vectors, k)

    # -- labels ---------------------------------------------------------------------------------------------
    def _group_labels(self) -> list[LabelEntry]:
        tokenizer = getattr(self.embedder.model, "tokenizer", None)
        fold_case = bool(getattr(tokenizer, "lower_case", False))  # then HOUSE and house are one text to the model
        groups: dict[tuple[str, str], LabelEntry] = {}
        refused: list[tuple[str, str]] = []
        c = self._column
        for clip_id, text, gloss, language, spoken_language in zip(c["id"], c["text"], c["gloss"], c["language"],
                                                                   c["spoken_language"]):
            try:
                found = label_of(text, gloss, language, spoken_language)
            except PromptError as e:
                refused.append((clip_id, str(e)))
                continue
            if found is None:
                continue  # a clip without a label names nothing to recognise
            label, prompt = found
            key = (prompt.lower() if fold_case else prompt, language)
            seen = groups.get(key)
            groups[key] = seen._replace(clips=seen.clips + 1) if seen else LabelEntry(label, language, prompt, 1)
        if refused:
            log.warning("recognition leaves out %d clip(s) whose label has no prompt the model can read (text and "
                        "clip searches still find them); e.g. clip %r: %s", len(refused), *refused[0])
        return list(groups.values())

    @property
    def labels(self) -> list[LabelEntry]:
        """The distinct labels it recognises (counted once, without embedding them)."""
        if self._labels is None:
            with self._labels_lock:
                if self._labels is None:
                    self._labels = self._group_labels()
        return self._labels

    def _label_index(self) -> VectorIndex:
        """The labels' prompts embedded, once, by the first recognition (the others wait for it)."""
        if self._label_vectors is None:
            labels = self.labels
            with self._vectors_lock:
                if self._label_vectors is None:
                    self._label_vectors = VectorIndex(self.embedder.embed_texts([e.prompt for e in labels]),
                                                      "exact")
        return self._label_vectors

    def recognize(self, vectors: np.ndarray, k: int = 5) -> list[list[Label]]:
        """The ``k`` labels of the corpus (distinct glosses / texts) most similar to each embedded query clip."""
        labels = self.labels
        if not labels:
            return [[] for _ in range(len(np.atleast_2d(vectors)))]
        scores, rows = self._label_index().search(vectors, k)
        return [[Label(rank=r + 1, score=s, label=labels[i].label, language=labels[i].language,
                       prompt=labels[i].prompt, clips=labels[i].clips)
                 for r, (s, i) in enumerate(zip(row_s, row_i))]
                for row_s, row_i in zip(scores.tolist(), rows.tolist())]

    # -- the clips' files --------------------------------------------------------------------------------------
    def pose_path(self, clip_id: str) -> str | None:
        """Where the ``.pose`` of clip ``clip_id`` is (as the embed job read it), or None for an unknown id."""
        row = self._rows.get(clip_id)
        if row is None:
            return None
        return self._column["pose_path"][row] or None
