"""Dictionary search over an embedded corpus: a text or a clip -> the nearest clips; a clip -> the best labels.

    from signclip.search.lookup import SignSearch
    index = SignSearch.load("runs/emb")               # the model named in the shards, or model_dir=...
    for hit in index.search("<en> <ase> house", k=10):
        print(hit.rank, round(hit.score, 2), hit.id, hit.source)
    index.recognize_poses([open("clip.pose", "rb").read()], k=5)   # the corpus's best glosses / texts

The corpus is the ``ok`` pose/video rows of an embedding directory written by ``signclip embed``. Queries are
embedded with the model the shards name (its fingerprint must match theirs) and clips are ranked by the
model's similarity (:class:`signclip.search.index.VectorIndex`: the dot product; unit vectors for ``cosine``
models). Recognition ranks the corpus's distinct labels (a clip's text, else its gloss prompt) the same way,
each label embedded once by the text tower.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from signclip.io import embedding_store
from signclip.model.embedder import Embedder
from signclip.model.prompts import gloss_prompt
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


class SignSearch:
    """Ranks the clips (and the labels) of an embedded corpus for text and clip queries."""

    def __init__(self, corpus: embedding_store.Corpus, embedder: Embedder, mode: SearchMode = "auto",
                 approximate_above: int = APPROXIMATE_ABOVE):
        if len(corpus) == 0:
            raise ValueError("the corpus holds no embedded clips")
        self.corpus = corpus
        self.embedder = embedder
        self.index = VectorIndex(corpus.embeddings, mode, approximate_above)
        self._labels: tuple[list[tuple[str, str, str, int]], VectorIndex | None] | None = None
        self._rows = {str(i): n for n, i in enumerate(corpus.meta["id"])}

    @classmethod
    def load(cls, embeddings: str, model_dir: str | None = None, device: str = "cpu", mode: SearchMode = "auto",
             approximate_above: int = APPROXIMATE_ABOVE) -> "SignSearch":
        """The ``ok`` clips under ``embeddings`` and the model that made them."""
        corpus = embedding_store.load(embeddings, kinds=("pose", "video"))
        if len(corpus) == 0:
            raise ValueError(f"{embeddings}: no successfully embedded clips to search")
        model = load_model_for(corpus, model_dir, device)
        precision = str(corpus.meta["precision"].iloc[0])
        search = cls(corpus, Embedder(model, precision=precision, flip=bool(corpus.meta["flip"].iloc[0]),
                                      anonymized=bool(corpus.meta["anonymized"].iloc[0])), mode, approximate_above)
        log.info("searching %d clips of %s (%s)", len(corpus), embeddings, search.index.mode)
        return search

    # -- clips --------------------------------------------------------------------------------------------
    def _hits(self, vectors: np.ndarray, k: int) -> list[list[Hit]]:
        if k < 1:
            raise ValueError(f"k {k}: expected a positive number of results")
        meta = self.corpus.meta
        scores, rows = self.index.search(vectors, k)
        return [[Hit(rank=r + 1, score=float(s), id=str(meta["id"].iloc[i]), source=str(meta["source"].iloc[i]),
                     gloss=str(meta["gloss"].iloc[i]), text=str(meta["text"].iloc[i]),
                     language=str(meta["language"].iloc[i]))
                 for r, (s, i) in enumerate(zip(row_scores, row_ids)) if i >= 0]
                for row_scores, row_ids in zip(scores, rows)]

    def search_many(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        """The top ``k`` clips for each text query, best first."""
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
    def _label_index(self) -> tuple[list[tuple[str, str, str, int]], VectorIndex | None]:
        if self._labels is None:
            meta = self.corpus.meta
            counts: dict[tuple[str, str, str], int] = {}
            for text, gloss, language in zip(meta["text"], meta["gloss"], meta["language"]):
                text, gloss, language = str(text or ""), str(gloss or ""), str(language or "")
                if text:
                    key = (text, language, text)
                elif gloss and language:
                    key = (gloss, language, gloss_prompt(gloss, language))
                else:
                    continue  # a clip without a label names nothing to recognise
                counts[key] = counts.get(key, 0) + 1
            labels = [(label, language, prompt, n) for (label, language, prompt), n in counts.items()]
            index = (VectorIndex(self.embedder.embed_texts([p for _, _, p, _ in labels]), "exact")
                     if labels else None)
            self._labels = (labels, index)
        return self._labels

    @property
    def labels(self) -> list[tuple[str, str, str, int]]:
        """The distinct labels it recognises: (label, language, prompt, clips with it)."""
        return self._label_index()[0]

    def recognize(self, vectors: np.ndarray, k: int = 5) -> list[list[Label]]:
        """The ``k`` labels of the corpus (distinct glosses / texts) most similar to each embedded query clip."""
        labels, index = self._label_index()
        if index is None:
            return [[] for _ in range(len(np.atleast_2d(vectors)))]
        scores, rows = index.search(vectors, k)
        return [[Label(rank=r + 1, score=float(s), label=labels[i][0], language=labels[i][1], prompt=labels[i][2],
                       clips=labels[i][3]) for r, (s, i) in enumerate(zip(row_s, row_i))]
                for row_s, row_i in zip(scores, rows)]

    # -- the clips' files --------------------------------------------------------------------------------------
    def pose_path(self, clip_id: str) -> str | None:
        """Where the ``.pose`` of clip ``clip_id`` is (as the embed job read it), or None for an unknown id."""
        row = self._rows.get(clip_id)
        if row is None:
            return None
        path = str(self.corpus.meta["pose_path"].iloc[row] or "")
        return path or None
