"""Evaluation metrics for SignCLIP embeddings: text <-> video retrieval and few-shot recognition.

Pure numpy (scikit-learn is imported only by :func:`linear_probe_accuracy`). Similarity is the raw dot
product of the embeddings as given: no normalisation and no temperature; pass L2-normalised embeddings
to get cosine similarity. Scores are computed a block of queries at a time, so memory stays bounded
however many clips and texts there are.

Tie rule, used throughout: ties count against the gold, i.e. ``rank = number of candidates scoring at
least as high as the gold`` (the gold included). Unlike argsort-based ranking it does not depend on the
order of the candidates, and unlike counting ties in the gold's favour it gives a model whose embeddings
collapsed (every score equal) the worst rank, not a perfect one.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import numpy as np

log = logging.getLogger(__name__)

# the retrieval metrics score queries in blocks of about this many (query, candidate) pairs (32 MiB of scores)
_BLOCK_PAIRS = 1 << 22

__all__ = [
    "similarity", "video_to_text", "text_to_video", "unique_texts",
    "split_shots", "prototype_accuracy", "knn_accuracy", "linear_probe_accuracy", "few_shot_report",
]


# --- validation -------------------------------------------------------------------------------------

def _matrix(x, name: str) -> np.ndarray:
    """``x`` as a non-empty, finite 2-D float64 array."""
    a = np.asarray(x)
    if a.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array (items x dim), got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name}: empty array of shape {a.shape}")
    if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
        raise ValueError(f"{name}: expected real numbers, got dtype {a.dtype}")
    a = a.astype(np.float64, copy=False)
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    return a


def _gold(gold_index, n_items: int, n_texts: int) -> np.ndarray:
    g = np.asarray(gold_index)
    if g.ndim != 1 or len(g) != n_items:
        raise ValueError(f"gold_index: expected shape ({n_items},) (one entry per video), got {g.shape}")
    if not np.issubdtype(g.dtype, np.integer):
        raise ValueError(f"gold_index: expected integers, got dtype {g.dtype}")
    if g.min() < 0 or g.max() >= n_texts:
        raise ValueError(f"gold_index: values must lie in [0, {n_texts}), got [{g.min()}, {g.max()}]")
    return g.astype(np.intp, copy=False)


def _ks(ks) -> tuple[int, ...]:
    ks = tuple(ks)
    if not ks or any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 for k in ks):
        raise ValueError(f"ks: expected a non-empty sequence of positive integers, got {ks!r}")
    return tuple(int(k) for k in ks)


def _labels(labels, n: int, name: str) -> np.ndarray:
    lab = np.asarray(labels)
    if lab.ndim != 1 or len(lab) != n:
        raise ValueError(f"{name}: expected {n} labels (one per embedding row), got shape {lab.shape}")
    return lab


def _few_shot_inputs(shot_emb, shot_labels, query_emb, query_labels):
    """Validated arrays plus the sorted shot classes and each shot's class index."""
    shot_emb = _matrix(shot_emb, "shot_emb")
    query_emb = _matrix(query_emb, "query_emb")
    if shot_emb.shape[1] != query_emb.shape[1]:
        raise ValueError(f"query_emb: dimension {query_emb.shape[1]} differs from shot_emb's {shot_emb.shape[1]}")
    shot_labels = _labels(shot_labels, len(shot_emb), "shot_labels")
    query_labels = _labels(query_labels, len(query_emb), "query_labels")
    classes, shot_class = np.unique(shot_labels, return_inverse=True)
    unseen = ~np.isin(query_labels, classes)
    if unseen.any():
        raise ValueError(f"query_labels: {int(unseen.sum())} queries have a label with no shot, "
                         f"e.g. {query_labels[unseen][0]!r}")
    return shot_emb, query_emb, query_labels, classes, shot_class


# --- retrieval ---------------------------------------------------------------------------------------

def similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Raw dot-product similarity ``a @ b.T`` in float64, shape ``(len(a), len(b))``."""
    a, b = _matrix(a, "a"), _matrix(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"b: dimension {b.shape[1]} differs from a's {a.shape[1]}")
    return a @ b.T


def _step(n_candidates: int) -> int:
    """Queries per block."""
    return max(1, _BLOCK_PAIRS // n_candidates)


def video_to_text(video_emb: np.ndarray, text_emb_unique: np.ndarray, gold_index: np.ndarray,
                  ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Rank the unique texts for every video; the gold is the video's own text.

    ``gold_index[i]`` is the row of video ``i``'s text in ``text_emb_unique``. Returns ``R@k`` (fraction of
    videos whose gold text has rank <= k) for each k, and the median and mean 1-based rank of the gold.
    Isolated-sign recognition accuracy is ``R@1``.
    """
    ks = _ks(ks)
    video, text = _pair(video_emb, "video_emb", text_emb_unique, "text_emb_unique")
    gold = _gold(gold_index, len(video), len(text))
    ranks = np.empty(len(video), dtype=np.int64)
    step = _step(len(text))
    for start in range(0, len(video), step):
        scores = video[start:start + step] @ text.T
        g = gold[start:start + len(scores)]
        gold_score = scores[np.arange(len(scores)), g]
        ranks[start:start + len(scores)] = (scores >= gold_score[:, None]).sum(axis=1)  # the tie rule
    out = {f"R@{k}": float(np.mean(ranks <= k)) for k in ks}
    out.update(median_rank=float(np.median(ranks)), mean_rank=float(np.mean(ranks)))
    return out


def text_to_video(text_emb_unique: np.ndarray, video_emb: np.ndarray, gold_index: np.ndarray,
                  ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Rank all videos for every text; each video whose text it is counts as a hit.

    ``gold_index[i]`` is the row of video ``i``'s text in ``text_emb_unique``. The queries are the texts
    that at least one video has (a text without videos has no defined rank and is left out). Returns the
    original's measures (``RWTHFST2VMetric``): ``R@k``, the share of all hits (videos of the query's text)
    found in the top k, summed over queries; ``P@k``, hits in the top k over ``k`` per query; and the median
    and mean rank of a query's first hit. Also ``hit@k``, the share of queries with a hit in the top k.
    Among videos with equal scores, misses are ordered before hits (the module's tie rule).
    """
    ks = _ks(ks)
    text, video = _pair(text_emb_unique, "text_emb_unique", video_emb, "video_emb")
    gold = _gold(gold_index, len(video), len(text))
    queries = np.unique(gold)
    first_rank = np.empty(len(queries), dtype=np.int64)
    found = {k: np.empty(len(queries), dtype=np.int64) for k in ks}
    step = _step(len(video))
    for start in range(0, len(queries), step):
        q = queries[start:start + step]
        hit = gold[None, :] == q[:, None]
        order = np.lexsort((hit, -(text[q] @ video.T)), axis=-1)  # score descending; misses first on ties
        hit_sorted = np.take_along_axis(hit, order, axis=-1)
        first_rank[start:start + len(q)] = hit_sorted.argmax(axis=1) + 1  # every query has >= 1 hit
        for k in ks:
            found[k][start:start + len(q)] = hit_sorted[:, :k].sum(axis=1)
    positives = np.bincount(gold)[queries]
    out = {f"P@{k}": float(found[k].sum() / (len(queries) * k)) for k in ks}
    out.update({f"R@{k}": float(found[k].sum() / positives.sum()) for k in ks})
    out.update({f"hit@{k}": float(np.mean(found[k] > 0)) for k in ks})
    out.update(median_rank=float(np.median(first_rank)), mean_rank=float(np.mean(first_rank)))
    return out


def _pair(a, a_name: str, b, b_name: str) -> tuple[np.ndarray, np.ndarray]:
    a, b = _matrix(a, a_name), _matrix(b, b_name)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"{b_name}: dimension {b.shape[1]} differs from {a_name}'s {a.shape[1]}")
    return a, b


def unique_texts(texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """The distinct texts in first-seen order, and for every item the index of its text among them."""
    if len(texts) == 0:
        raise ValueError("texts: empty")
    position: dict[str, int] = {}
    gold = np.array([position.setdefault(t, len(position)) for t in texts], dtype=np.intp)
    return list(position), gold


# --- few-shot on frozen video embeddings ------------------------------------------------------------

def split_shots(labels: Sequence, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Pick ``k`` random shots per class; the class's other examples are queries.

    Classes with ``<= k`` examples are skipped entirely (neither shots nor queries): every evaluated
    class then has exactly ``k`` shots and at least one query, so "k-shot" means the same for all
    classes. Note that the label space therefore shrinks as ``k`` grows. Returns sorted shot and query
    indices into ``labels``; the draw depends only on ``labels``, ``k`` and ``seed``.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k: expected a positive integer, got {k!r}")
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) == 0:
        raise ValueError(f"labels: expected a non-empty 1-D sequence, got shape {labels.shape}")
    rng = np.random.default_rng(seed)
    _, cls = np.unique(labels, return_inverse=True)
    shots, queries = [], []
    for c in range(cls.max() + 1):
        idx = np.flatnonzero(cls == c)
        if len(idx) <= k:
            continue
        idx = rng.permutation(idx)
        shots.append(idx[:k])
        queries.append(idx[k:])
    if not shots:
        return np.empty(0, dtype=np.intp), np.empty(0, dtype=np.intp)
    return np.sort(np.concatenate(shots)), np.sort(np.concatenate(queries))


def prototype_accuracy(shot_emb: np.ndarray, shot_labels: Sequence, query_emb: np.ndarray,
                       query_labels: Sequence) -> float:
    """Accuracy of classifying queries by the highest dot product with class means of the shots."""
    shot_emb, query_emb, query_labels, classes, shot_class = _few_shot_inputs(
        shot_emb, shot_labels, query_emb, query_labels)
    protos = np.zeros((len(classes), shot_emb.shape[1]))
    np.add.at(protos, shot_class, shot_emb)
    protos /= np.bincount(shot_class)[:, None]
    pred = classes[np.argmax(query_emb @ protos.T, axis=1)]
    return float(np.mean(pred == query_labels))


def knn_accuracy(shot_emb: np.ndarray, shot_labels: Sequence, query_emb: np.ndarray, query_labels: Sequence,
                 k: int = 1) -> float:
    """Accuracy of a k-nearest-neighbour vote over the shots, neighbours by dot product.

    The class with most votes wins; a tie in votes goes to the class with the highest summed similarity
    of its neighbours. ``k`` larger than the number of shots is capped at it; neighbours with equal
    scores at the k-th place are taken in shot order.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k: expected a positive integer, got {k!r}")
    shot_emb, query_emb, query_labels, classes, shot_class = _few_shot_inputs(
        shot_emb, shot_labels, query_emb, query_labels)
    k = min(k, len(shot_emb))
    pred = np.empty(len(query_emb), dtype=np.intp)
    step = _step(len(shot_emb))
    for start in range(0, len(query_emb), step):  # a block of queries at a time: memory stays bounded
        scores = query_emb[start:start + step] @ shot_emb.T
        nb = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        rows = np.repeat(np.arange(len(scores)), k)
        votes = np.zeros((len(scores), len(classes)))
        sims = np.zeros_like(votes)
        np.add.at(votes, (rows, shot_class[nb].ravel()), 1)
        np.add.at(sims, (rows, shot_class[nb].ravel()), np.take_along_axis(scores, nb, axis=1).ravel())
        tied_top = votes == votes.max(axis=1, keepdims=True)
        pred[start:start + len(scores)] = np.argmax(np.where(tied_top, sims, -np.inf), axis=1)
    return float(np.mean(classes[pred] == query_labels))


def linear_probe_accuracy(shot_emb: np.ndarray, shot_labels: Sequence, query_emb: np.ndarray, query_labels: Sequence,
                          seed: int = 0) -> float:
    """Accuracy of a scikit-learn logistic regression (default L2, C=1) fitted on the shots."""
    shot_emb, query_emb, query_labels, classes, _ = _few_shot_inputs(
        shot_emb, shot_labels, query_emb, query_labels)
    if len(classes) < 2:
        raise ValueError("shot_labels: a linear probe needs at least 2 classes")
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(max_iter=10_000, random_state=seed)
    with warnings.catch_warnings():
        # one shot per class is what a 1-shot probe is, not a mistake to warn about on every run
        warnings.filterwarnings("ignore", message="The number of unique classes is greater than 50%")
        clf.fit(shot_emb, np.asarray(shot_labels))
    return float(np.mean(clf.predict(query_emb) == query_labels))


def few_shot_report(emb: np.ndarray, labels: Sequence, shots: Sequence[int] = (1, 5, 10, 100), seed: int = 0,
                    knn_k: int = 1) -> dict[str, float]:
    """Prototype, kNN (``knn_k`` neighbours) and linear-probe accuracy for each shot count in ``shots``.

    Keys: ``proto@k``, ``knn@k``, ``probe@k``, plus ``classes@k`` and ``queries@k`` (how many classes
    and queries were evaluated, since :func:`split_shots` drops classes with ``<= k`` examples). A
    shot count is skipped (no keys, logged) when fewer than 2 classes have more than ``k`` examples:
    with a single class every classifier is trivially right.
    """
    emb = _matrix(emb, "emb")
    labels = _labels(labels, len(emb), "labels")
    out: dict[str, float] = {}
    for k in shots:
        shot_idx, query_idx = split_shots(labels, k, seed)
        n_classes = len(np.unique(labels[shot_idx]))
        if n_classes < 2:
            log.warning("few-shot k=%d skipped: %d class(es) have more than %d examples, need 2",
                        k, n_classes, k)
            continue
        args = emb[shot_idx], labels[shot_idx], emb[query_idx], labels[query_idx]
        out[f"proto@{k}"] = prototype_accuracy(*args)
        out[f"knn@{k}"] = knn_accuracy(*args, k=knn_k)
        out[f"probe@{k}"] = linear_probe_accuracy(*args, seed=seed)
        out[f"classes@{k}"] = float(n_classes)
        out[f"queries@{k}"] = float(len(query_idx))
    return out
