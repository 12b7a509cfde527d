"""Unit tests for signclip.evaluation.metrics on small cases worked out by hand (pure numpy, no Ray)."""

from __future__ import annotations

import numpy as np
import pytest

from signclip.evaluation.report import metrics as M

# Two unique texts on the axes, so a video's score for text j is just its j-th coordinate.
T2 = np.array([[1.0, 0.0], [0.0, 1.0]])


def test_similarity_is_raw_dot_product_in_float64():
    a = np.array([[1, 2], [3, 4]], dtype=np.float32)
    b = np.array([[1, 0], [2, 2], [0, -1]], dtype=np.int64)
    s = M.similarity(a, b)
    assert s.dtype == np.float64
    np.testing.assert_array_equal(s, [[1, 6, -2], [3, 14, -4]])


# --- video -> text -----------------------------------------------------------------------------------

def test_video_to_text_hand_computed():
    # v0=[2,1] gold 0: scores [2,1] -> rank 1
    # v1=[1,3] gold 0: scores [1,3] -> rank 2
    # v2=[0,1] gold 1: scores [0,1] -> rank 1
    # R@1 = 2/3, R@2 = R@5 = 1, median rank 1, mean rank 4/3
    videos = np.array([[2.0, 1.0], [1.0, 3.0], [0.0, 1.0]])
    r = M.video_to_text(videos, T2, np.array([0, 0, 1]), ks=(1, 2, 5))
    assert r == pytest.approx({"R@1": 2 / 3, "R@2": 1.0, "R@5": 1.0, "median_rank": 1.0, "mean_rank": 4 / 3})


def test_video_to_text_default_keys():
    r = M.video_to_text(np.array([[0.0, 1.0]]), T2, np.array([0]))
    # scores [0, 1], gold 0 -> rank 2
    assert r == {"R@1": 0.0, "R@5": 1.0, "R@10": 1.0, "median_rank": 2.0, "mean_rank": 2.0}


def test_video_to_text_uses_dot_product_not_cosine():
    # video [1, 0.2], texts t0=[1,0], t1=[3,3]: dot 1 vs 3.6 -> gold t0 has rank 2;
    # cosine would be 0.981 vs 0.832 and give rank 1.
    texts = np.array([[1.0, 0.0], [3.0, 3.0]])
    r = M.video_to_text(np.array([[1.0, 0.2]]), texts, np.array([0]), ks=(1,))
    assert r["R@1"] == 0.0 and r["mean_rank"] == 2.0


def test_video_to_text_ties_count_against_the_gold_whatever_its_position():
    # texts t0 = t1 = [1,0], t2 = [2,0]; video [1,0] scores [1, 1, 2].
    # Gold t0 or t1: three scores at least as high (t2, t0, t1) -> rank 3 either way. Gold t2 -> rank 1.
    texts = np.array([[1.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    v = np.array([[1.0, 0.0]] * 3)
    r = M.video_to_text(v, texts, np.array([0, 1, 2]), ks=(1, 2))
    # ranks [3, 3, 1]: R@1 = R@2 = 1/3, median 3, mean 7/3
    assert r == pytest.approx({"R@1": 1 / 3, "R@2": 1 / 3, "median_rank": 3.0, "mean_rank": 7 / 3})
    # a full tie: rank 2 of 2
    assert M.video_to_text(v[:1], texts[:2], np.array([1]), ks=(1,))["R@1"] == 0.0


def test_a_collapsed_model_scores_no_better_than_the_worst_rank():
    """Every embedding the same: counting ties for the gold gave perfect scores in every direction."""
    same = np.ones((30, 8))
    gold = np.repeat(np.arange(10), 3)
    v2t = M.video_to_text(same, same[:10], gold)
    t2v = M.text_to_video(same[:10], same, gold)
    assert v2t["R@1"] == 0.0 and v2t["median_rank"] == 10
    assert t2v["P@1"] == 0.0 and t2v["hit@1"] == 0.0 and t2v["median_rank"] == 28


# --- text -> video -----------------------------------------------------------------------------------

# Videos (gold text): v0=[3,0] (0), v1=[2,1] (1), v2=[1,0] (0), v3=[0,2] (1), v4=[0.5,3] (0)
VIDEOS5 = np.array([[3.0, 0.0], [2.0, 1.0], [1.0, 0.0], [0.0, 2.0], [0.5, 3.0]])
GOLD5 = np.array([0, 1, 0, 1, 0])


def test_text_to_video_hand_computed_several_hits():
    # t0 scores (x): v0 3, v1 2, v2 1, v4 .5, v3 0 -> hits in order [1,0,1,1,0] (3 hits), first hit rank 1
    # t1 scores (y): v4 3, v3 2, v1 1, v0 0, v2 0 -> hits in order [0,1,1,0,0] (2 hits), first hit rank 2
    # hits in the top k, both queries: k=1: 1, k=2: 2, k=3: 4, k=10: 5, of 5 hits in all
    # R@k (the original's: hits found / hits) .2, .4, .8, 1; P@k (hits found / 2k) .5, .5, 2/3, .25
    # hit@k (queries with a hit in the top k) .5, 1, 1, 1; ranks [1, 2]
    r = M.text_to_video(T2, VIDEOS5, GOLD5, ks=(1, 2, 3, 10))
    assert r == pytest.approx({
        "P@1": 0.5, "P@2": 0.5, "P@3": 2 / 3, "P@10": 0.25,
        "R@1": 0.2, "R@2": 0.4, "R@3": 0.8, "R@10": 1.0,
        "hit@1": 0.5, "hit@2": 1.0, "hit@3": 1.0, "hit@10": 1.0,
        "median_rank": 1.5, "mean_rank": 1.5})


def test_text_to_video_default_keys():
    r = M.text_to_video(T2, VIDEOS5, GOLD5)
    assert set(r) == {"P@1", "P@5", "P@10", "R@1", "R@5", "R@10", "hit@1", "hit@5", "hit@10", "median_rank",
                      "mean_rank"}
    assert r["P@5"] == pytest.approx(0.5) and r["P@10"] == pytest.approx(0.25)


def test_text_to_video_ties_put_misses_first_in_any_order():
    # v_a=[1,0] has text 1, v_b=[1,0] has text 0. t0 scores both 1 (tie) -> its hit v_b ranks second;
    # t1 scores both 0 (tie) -> its hit v_a ranks second. So P@1 = R@1 = 0 whatever the video order.
    videos = np.array([[1.0, 0.0], [1.0, 0.0]])
    for gold in (np.array([1, 0]), np.array([0, 1])):
        r = M.text_to_video(T2, videos, gold, ks=(1,))
        assert r == {"P@1": 0.0, "R@1": 0.0, "hit@1": 0.0, "median_rank": 2.0, "mean_rank": 2.0}


def _original_text_to_video(scores: np.ndarray, texts: list[str]) -> dict[str, float]:
    """RWTHFST2VMetric of the original (examples/MMPT/mmpt/evaluators/metric.py) as written there, over one
    text row per video, without its ``tp5 = tp1 + tp5_`` slip."""
    rows = [i for i, t in enumerate(texts) if t not in texts[:i]]
    found = {1: 0, 5: 0, 10: 0}
    missed = {1: 0, 5: 0, 10: 0}
    first = []
    for i in rows:
        candidates = [texts[j] for j, _ in sorted(enumerate(scores[i]), key=lambda c: -c[1])]
        for k in found:
            hits = candidates[:k].count(texts[i])
            found[k] += hits
            missed[k] += candidates.count(texts[i]) - hits
        first.append(candidates.index(texts[i]) + 1)
    out = {f"R{k}": found[k] / (found[k] + missed[k]) for k in found}
    out.update({f"P{k}": found[k] / (len(rows) * k) for k in found})
    out.update(MedianR=float(np.median(first)), MeanR=float(np.mean(first)))
    return out


def test_text_to_video_is_the_originals_measure_with_many_clips_per_text():
    rng = np.random.default_rng(0)
    texts = rng.normal(size=(20, 16))
    gold = np.repeat(np.arange(20), 10)  # ten clips a gloss, as in ASL Citizen
    videos = texts[gold] + 0.8 * rng.normal(size=(200, 16))
    ours = M.text_to_video(texts, videos, gold)
    original = _original_text_to_video(texts[gold] @ videos.T, [f"g{g}" for g in gold])
    for k in (1, 5, 10):
        assert ours[f"R@{k}"] == pytest.approx(original[f"R{k}"]) and ours[f"P@{k}"] == pytest.approx(original[f"P{k}"])
    assert (ours["median_rank"], ours["mean_rank"]) == pytest.approx((original["MedianR"], original["MeanR"]))
    assert ours["R@1"] < 0.2 < ours["hit@1"]  # most texts find a clip first; a tenth of all clips is one per text


def test_text_to_video_blocks_match_brute_force(monkeypatch):
    rng = np.random.default_rng(0)
    t, v, g = rng.normal(size=(7, 4)), rng.normal(size=(30, 4)), rng.integers(0, 7, 30)
    whole, whole_v2t = M.text_to_video(t, v, g, ks=(1, 3)), M.video_to_text(v, t, g, ks=(1, 3))
    monkeypatch.setattr(M, "_BLOCK_PAIRS", 60)  # 2 texts (8 videos) per block, last block shorter
    assert M.text_to_video(t, v, g, ks=(1, 3)) == whole and M.video_to_text(v, t, g, ks=(1, 3)) == whole_v2t
    # brute force, one query at a time (random scores: no ties)
    s = t @ v.T
    ranks, top3 = [], []
    for q in np.unique(g):
        best_hit = s[q][g == q].max()
        ranks.append(1 + int((s[q] > best_hit).sum()))
        top3.append(int((g[np.argsort(-s[q])[:3]] == q).sum()))
    assert whole["mean_rank"] == pytest.approx(np.mean(ranks))
    assert whole["median_rank"] == pytest.approx(np.median(ranks))
    assert whole["hit@1"] == pytest.approx(np.mean(np.array(ranks) <= 1))
    assert whole["P@3"] == pytest.approx(np.sum(top3) / (len(ranks) * 3))
    assert whole["R@3"] == pytest.approx(np.sum(top3) / len(g))


def test_text_to_video_skips_texts_without_videos():
    extra = np.vstack([T2, [[5.0, 5.0]]])  # a third text no video has
    assert M.text_to_video(extra, VIDEOS5, GOLD5) == M.text_to_video(T2, VIDEOS5, GOLD5)


# --- unique texts and the combined report ------------------------------------------------------------

def test_unique_texts_first_seen_order():
    uniq, gold = M.unique_texts(["b", "a", "b", "c", "a"])
    assert uniq == ["b", "a", "c"]
    np.testing.assert_array_equal(gold, [0, 1, 0, 2, 1])


# --- input validation --------------------------------------------------------------------------------

@pytest.mark.parametrize("call, pattern", [
    (lambda: M.similarity(np.ones((2, 3)), np.ones((2, 4))), "b: dimension 4"),
    (lambda: M.similarity(np.ones(3), np.ones((2, 3))), "a: expected a 2-D"),
    (lambda: M.similarity(np.ones((0, 3)), np.ones((2, 3))), "a: empty"),
    (lambda: M.video_to_text(VIDEOS5, T2, GOLD5[:4]), r"gold_index: expected shape \(5,\)"),
    (lambda: M.video_to_text(VIDEOS5, T2, GOLD5 + 1), r"gold_index: values must lie in \[0, 2\)"),
    (lambda: M.video_to_text(VIDEOS5, T2, GOLD5.astype(float)), "gold_index: expected integers"),
    (lambda: M.video_to_text(VIDEOS5, T2, GOLD5, ks=(0, 1)), "ks:"),
    (lambda: M.video_to_text(np.full((5, 2), np.nan), T2, GOLD5), "video_emb: contains NaN"),
    (lambda: M.video_to_text(VIDEOS5, np.ones((2, 3)), GOLD5), "text_emb_unique: dimension 3 differs"),
    (lambda: M.text_to_video(T2, VIDEOS5, np.array([0, 1])), "gold_index"),
    (lambda: M.text_to_video(np.empty((0, 2)), VIDEOS5, GOLD5), "text_emb_unique: empty"),
    (lambda: M.unique_texts([]), "texts: empty"),
    (lambda: M.split_shots([0, 1], 0), "k: expected a positive integer"),
    (lambda: M.split_shots([], 1), "labels:"),
    (lambda: M.prototype_accuracy(np.ones((2, 2)), [0], np.ones((1, 2)), [0]), "shot_labels: expected 2"),
    (lambda: M.prototype_accuracy(np.ones((2, 2)), [0, 1], np.ones((1, 3)), [0]), "query_emb: dimension 3"),
    (lambda: M.knn_accuracy(np.ones((2, 2)), [0, 1], np.ones((1, 2)), [2]), "query_labels: 1 queries"),
    (lambda: M.knn_accuracy(np.ones((2, 2)), [0, 1], np.ones((1, 2)), [0], k=0), "k: expected"),
    (lambda: M.linear_probe_accuracy(np.ones((2, 2)), [0, 0], np.ones((1, 2)), [0]), "at least 2 classes"),
    (lambda: M.few_shot_report(np.ones((3, 2)), [0, 1]), "labels: expected 3 labels"),
])
def test_validation_errors(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


# --- few-shot ----------------------------------------------------------------------------------------

def _clusters(counts, seed=0):
    """Tight clusters around unit directions 0, 120, 240 degrees (scaled 10): separable by dot product."""
    rng = np.random.default_rng(seed)
    angles = np.deg2rad([0, 120, 240])
    centres = 10 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    emb = np.concatenate([centres[c] + rng.normal(scale=0.3, size=(n, 2)) for c, n in enumerate(counts)])
    labels = np.repeat(np.array(["a", "b", "c"])[: len(counts)], counts)
    return emb, labels


def test_split_shots_counts_skips_and_determinism():
    labels = np.array(["x"] * 6 + ["y"] * 3 + ["z"] * 2)
    shots, queries = M.split_shots(labels, 2, seed=1)
    # x: 2 shots + 4 queries; y: 2 + 1; z has only 2 (<= k) -> skipped entirely
    assert len(shots) == 4 and len(queries) == 5
    assert sorted(labels[shots]) == ["x", "x", "y", "y"]
    assert sorted(labels[queries]) == ["x"] * 4 + ["y"]
    assert not set(shots) & set(queries)
    assert np.all(np.diff(shots) > 0) and np.all(np.diff(queries) > 0)
    again = M.split_shots(labels, 2, seed=1)
    np.testing.assert_array_equal(again[0], shots)
    other = M.split_shots(labels, 2, seed=2)
    assert not np.array_equal(other[0], shots)  # fixed seeds, checked to differ
    empty = M.split_shots(labels, 6)
    assert empty[0].size == 0 and empty[1].size == 0


def test_separable_clusters_all_classifiers_perfect():
    emb, labels = _clusters([8, 8, 8])
    shots, queries = M.split_shots(labels, 3)
    args = emb[shots], labels[shots], emb[queries], labels[queries]
    assert M.prototype_accuracy(*args) == 1.0
    assert M.knn_accuracy(*args, k=1) == 1.0
    assert M.knn_accuracy(*args, k=3) == 1.0
    assert M.linear_probe_accuracy(*args) == 1.0
    # wrong labels on the queries must show up as errors
    assert M.prototype_accuracy(*args[:3], np.roll(args[3], len(args[3]) // 3)) == 0.0


def test_prototypes_and_1nn_disagree():
    # A shots [4,0], [0,-4] -> prototype [2,-2];  B shots [3,1], [3,-1] -> prototype [3,0]
    # q1=[1,0] (A): prototypes A 2, B 3 -> B (wrong); shots 4, 0 | 3, 3 -> 1-NN is [4,0] -> A (right)
    # q2=[0,-1] (A): prototypes A 2, B 0 -> A; shots 0, 4 | -1, 1 -> 1-NN [0,-4] -> A
    # prototype accuracy 1/2, 1-NN accuracy 1
    shot_emb = np.array([[4.0, 0.0], [0.0, -4.0], [3.0, 1.0], [3.0, -1.0]])
    shot_labels = ["A", "A", "B", "B"]
    query_emb = np.array([[1.0, 0.0], [0.0, -1.0]])
    assert M.prototype_accuracy(shot_emb, shot_labels, query_emb, ["A", "A"]) == 0.5
    assert M.knn_accuracy(shot_emb, shot_labels, query_emb, ["A", "A"], k=1) == 1.0


def test_prototype_is_the_mean_not_the_sum():
    # A: three shots [1,0] -> mean [1,0] (sum [3,0]); B: one shot [0,2].
    # q=[1,1]: means give A 1, B 2 -> B; sums would give A 3 -> A.
    shot_emb = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    assert M.prototype_accuracy(shot_emb, ["A", "A", "A", "B"], np.array([[1.0, 1.0]]), ["B"]) == 1.0


def test_knn_vote_tie_broken_by_summed_similarity():
    # shots a=[1,0], b=[0,1]; k=2 -> one vote each. q=[1,2]: sums a 1, b 2 -> b.
    # (a first-class-wins rule would say a.)  q=[2,1]: sums a 2, b 1 -> a.
    shot_emb, shot_labels = np.array([[1.0, 0.0], [0.0, 1.0]]), ["a", "b"]
    q = np.array([[1.0, 2.0], [2.0, 1.0]])
    assert M.knn_accuracy(shot_emb, shot_labels, q, ["b", "a"], k=2) == 1.0
    assert M.knn_accuracy(shot_emb, shot_labels, q, ["a", "b"], k=2) == 0.0


def test_knn_majority_beats_similarity():
    # shots a=[5,0], b=[1,0], b=[1,0]; q=[1,0] scores 5, 1, 1.
    # k=1 -> a; k=3 -> votes b 2, a 1 -> b, although a's summed similarity (5) > b's (2).
    # k=10 is capped at the 3 shots -> b.
    shot_emb = np.array([[5.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    shot_labels, q = ["a", "b", "b"], np.array([[1.0, 0.0]])
    assert M.knn_accuracy(shot_emb, shot_labels, q, ["a"], k=1) == 1.0
    assert M.knn_accuracy(shot_emb, shot_labels, q, ["b"], k=3) == 1.0
    assert M.knn_accuracy(shot_emb, shot_labels, q, ["b"], k=10) == 1.0


def test_linear_probe_is_deterministic_and_learns():
    # 1-D task the probe must learn a threshold for: class by the sign of the first coordinate
    rng = np.random.default_rng(3)
    x = rng.normal(size=(60, 3))
    x[:, 0] += np.where(np.arange(60) % 2 == 0, 4.0, -4.0)
    y = np.where(np.arange(60) % 2 == 0, 1, 0)
    acc = M.linear_probe_accuracy(x[:40], y[:40], x[40:], y[40:], seed=5)
    assert acc == 1.0
    assert M.linear_probe_accuracy(x[:40], y[:40], x[40:], 1 - y[40:], seed=5) == 0.0


def test_few_shot_report_keys_and_skips(caplog):
    # a: 12, b: 11, c: 6 examples.
    # k=1, 5: all 3 classes; k=10: a and b only (c skipped); k=100: no class -> k skipped
    emb, labels = _clusters([12, 11, 6])
    with caplog.at_level("WARNING", logger="signclip.evaluation.metrics"):
        r = M.few_shot_report(emb, labels, shots=(1, 5, 10, 100), seed=0)
    assert set(r) == {f"{m}@{k}" for m in ("proto", "knn", "probe", "classes", "queries") for k in (1, 5, 10)}
    assert r["classes@1"] == 3 and r["queries@1"] == 29 - 3
    assert r["classes@5"] == 3 and r["queries@5"] == 7 + 6 + 1
    assert r["classes@10"] == 2 and r["queries@10"] == 2 + 1
    for k in (1, 5, 10):
        assert r[f"proto@{k}"] == r[f"knn@{k}"] == r[f"probe@{k}"] == 1.0
    assert "k=100 skipped" in caplog.text


def test_few_shot_report_skips_single_class():
    # a: 12, b: 8, c: 6 -> at k=10 only a has more than 10 examples: a 1-class task, skipped
    emb, labels = _clusters([12, 8, 6])
    r = M.few_shot_report(emb, labels, shots=(5, 10))
    assert "proto@5" in r and r["classes@5"] == 3
    assert not any(key.endswith("@10") for key in r)
