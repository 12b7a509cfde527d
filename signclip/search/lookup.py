"""Text-to-sign lookup over an embedded corpus (dictionary search).

    from signclip.search.lookup import SignSearch
    index = SignSearch.load("runs/emb")               # the model named in the shards, or model_dir=...
    for hit in index.search("<en> <ase> house", k=10):
        print(hit.rank, round(hit.score, 2), hit.id, hit.source)

The corpus is the ``ok`` pose/video rows of an embedding directory written by ``signclip embed``. The
query is embedded with the model the shards name (its fingerprint must match theirs) and clips are ranked
by the model's similarity: the raw dot product (for ``cosine`` models the embeddings are unit vectors,
so the dot product is the cosine). Equal scores keep corpus order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from signclip.evaluation import metrics
from signclip.io import embedding_store
from signclip.model.embedder import Embedder

if TYPE_CHECKING:
    from signclip.model.network import SignCLIP

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


def load_model_for(corpus: embedding_store.Corpus, model_dir: str | None = None, device: str = "cpu") -> SignCLIP:
    """The model that made ``corpus``: ``model_dir`` or the one its shards name (local or a URL, fetched into
    this node's cache), checked by fingerprint."""
    from signclip.io.model_cache import fingerprint, local_model
    from signclip.model.checkpoint import CheckpointError
    from signclip.model.factory import load

    hashes = sorted(set(corpus.meta["model_hash"]))
    if len(hashes) != 1:
        raise CheckpointError(f"the corpus mixes embeddings of {len(hashes)} models: {hashes}")
    named = model_dir or str(corpus.meta["model"].iloc[0])
    try:
        local = local_model(named)
        found = fingerprint(local)
    except OSError as e:
        raise CheckpointError(f"{named}: cannot read the model the embeddings were made with ({e}); "
                              "pass its location with --model") from e
    if found != hashes[0]:
        raise CheckpointError(f"{named} has fingerprint {found}, the embeddings were made with {hashes[0]}: "
                              "a query embedded with another model is not comparable")
    return load(local, device=device)


class SignSearch:
    """Ranks the clips of an embedded corpus for text queries."""

    def __init__(self, corpus: embedding_store.Corpus, embedder: Embedder):
        if len(corpus) == 0:
            raise ValueError("the corpus holds no embedded clips")
        self.corpus = corpus
        self.embedder = embedder

    @classmethod
    def load(cls, embeddings: str, model_dir: str | None = None, device: str = "cpu") -> "SignSearch":
        """The ``ok`` clips under ``embeddings`` and the model that made them."""
        corpus = embedding_store.load(embeddings, kinds=("pose", "video"))
        if len(corpus) == 0:
            raise ValueError(f"{embeddings}: no successfully embedded clips to search")
        model = load_model_for(corpus, model_dir, device)
        precision = str(corpus.meta["precision"].iloc[0])
        log.info("searching %d clips of %s", len(corpus), embeddings)
        return cls(corpus, Embedder(model, precision=precision))

    def scores(self, queries: Sequence[str]) -> np.ndarray:
        """Similarity of every query to every clip, float64 ``[Q, N]``."""
        return metrics.similarity(self.embedder.embed_texts(list(queries)), self.corpus.embeddings)

    def search_many(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        """The top ``k`` clips for each query, best first."""
        if k < 1:
            raise ValueError(f"k {k}: expected a positive number of results")
        meta = self.corpus.meta
        results = []
        for row in self.scores(queries):
            order = np.argsort(-row, kind="stable")[:k]
            results.append([Hit(rank=r + 1, score=float(row[i]), id=str(meta["id"].iloc[i]),
                                source=str(meta["source"].iloc[i]), gloss=str(meta["gloss"].iloc[i]),
                                text=str(meta["text"].iloc[i]), language=str(meta["language"].iloc[i]))
                            for r, i in enumerate(order)])
        return results

    def search(self, query: str, k: int = 10) -> list[Hit]:
        """The top ``k`` clips for ``query``, e.g. ``"<en> <ase> house"``, best first."""
        return self.search_many([query], k)[0]
