"""Nearest neighbours by the model's similarity (the dot product; unit vectors for ``cosine`` models): exact by
default, approximate (FAISS HNSW over inner products) for large corpora.

    index = VectorIndex(embeddings)                    # exact below APPROXIMATE_ABOVE clips, else HNSW
    scores, rows = index.search(queries, k=10)         # float32 [Q, k], int64 [Q, k], best first

Exact search is one matrix product; equal scores keep corpus order, so results are reproducible. The
approximate index trades a little recall (measured against exact search in ``tests/test_search_service.py``
and ``tests/benchmarks/bench_search.py``) for time that grows slower than the corpus.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np

log = logging.getLogger(__name__)

SearchMode = Literal["auto", "exact", "approximate"]
APPROXIMATE_ABOVE = 200_000  # "auto": corpora larger than this get the approximate index
HNSW_NEIGHBOURS = 32  # graph degree (FAISS's M)
HNSW_BUILD_DEPTH = 128  # efConstruction
HNSW_SEARCH_DEPTH = 128  # efSearch; at least k
# Exact search scores this many (query, clip) pairs at a time: the score matrix and argpartition's int64
# indices of a batch then take ~0.8 GB at most (128 queries against 1M clips at once took ~1.5 GB more)
EXACT_PAIRS_PER_STEP = 1 << 26


class VectorIndex:
    """The vectors of a corpus, searchable by inner product."""

    def __init__(self, vectors: np.ndarray, mode: SearchMode = "auto", approximate_above: int = APPROXIMATE_ABOVE):
        if mode not in ("auto", "exact", "approximate"):
            raise ValueError(f"search mode {mode!r}: expected auto, exact or approximate")
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if self.vectors.ndim != 2 or len(self.vectors) == 0:
            raise ValueError(f"an index needs vectors [N>0, E], got shape {self.vectors.shape}")
        self.approximate = mode == "approximate" or (mode == "auto" and len(self.vectors) > approximate_above)
        self._hnsw = self._build_hnsw() if self.approximate else None

    @property
    def mode(self) -> str:
        return "approximate" if self.approximate else "exact"

    def __len__(self) -> int:
        return len(self.vectors)

    def _build_hnsw(self):
        try:
            import faiss
        except ImportError as e:
            raise ValueError(f"approximate search over {len(self.vectors)} vectors needs faiss, which is not "
                             "installed: pip install 'signclip[search]', or use search mode exact") from e
        index = faiss.IndexHNSWFlat(self.vectors.shape[1], HNSW_NEIGHBOURS, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_BUILD_DEPTH
        index.add(self.vectors)
        log.info("built an HNSW index over %d vectors", len(self.vectors))
        return index

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best rows per query (fewer when the corpus is smaller), best first."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, min(int(k), len(self.vectors)))
        if self._hnsw is not None:
            self._hnsw.hnsw.efSearch = max(HNSW_SEARCH_DEPTH, k)
            scores, rows = self._hnsw.search(queries, k)
            return scores, rows.astype(np.int64)
        step = max(1, EXACT_PAIRS_PER_STEP // len(self.vectors))
        parts = [exact_top_k(queries[i:i + step] @ self.vectors.T, k) for i in range(0, len(queries), step)]
        if len(parts) == 1:
            return parts[0]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def exact_top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``scores`` [Q, N]: the ``k`` largest, best first, ties in column order."""
    n = scores.shape[1]
    if k < n:
        candidates = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        # a tie at the k-th score may be cut arbitrarily by argpartition: widen to every column at least as good
        threshold = np.take_along_axis(scores, candidates, axis=1).min(axis=1, keepdims=True)
        rows_out, scores_out = [], []
        for i in range(scores.shape[0]):
            keep = np.flatnonzero(scores[i] >= threshold[i, 0])
            order = keep[np.lexsort((keep, -scores[i, keep]))][:k]
            rows_out.append(order)
            scores_out.append(scores[i, order])
        return np.stack(scores_out), np.stack(rows_out).astype(np.int64)
    order = np.lexsort((np.broadcast_to(np.arange(n), scores.shape), -scores), axis=1)
    return np.take_along_axis(scores, order, axis=1), order.astype(np.int64)
