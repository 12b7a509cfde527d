"""The per-epoch batch plan: reshuffled each epoch, deterministic, optionally without repeated texts."""

from __future__ import annotations

import numpy as np
import pytest

from signclip.training.batching import plan_epoch, shard


def test_plan_covers_rows_once_and_drops_the_last_partial_batch():
    plan = plan_epoch([str(i) for i in range(10)], 4, seed=0, epoch=0)
    assert [len(b) for b in plan] == [4, 4]
    rows = np.concatenate(plan)
    assert len(set(rows.tolist())) == 8 and rows.max() < 10


def test_plan_is_deterministic_and_changes_every_epoch():
    texts = [str(i) for i in range(40)]
    a, b = plan_epoch(texts, 8, 1, 0), plan_epoch(texts, 8, 1, 0)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    c = plan_epoch(texts, 8, 1, 1)
    assert not all(set(x.tolist()) == set(y.tolist()) for x, y in zip(a, c))  # batch membership moves


def test_unique_texts_never_repeat_inside_a_batch():
    texts = ["a"] * 30 + ["b"] * 10 + ["c"] * 10 + ["d"] * 10 + ["e"] * 5
    plan = plan_epoch(texts, 4, seed=3, epoch=2, unique_texts=True)
    for batch in plan:
        assert len({texts[i] for i in batch}) == 4
    # Every batch needs >= 3 of the 35 rows that are not "a": at most 11 batches. Taking the most
    # frequent texts first reaches that bound (a naive round-robin strands rows of b/c/d).
    assert len(plan) == 11


def test_unique_texts_needs_enough_distinct_texts():
    with pytest.raises(ValueError, match="at least 4 distinct texts, the data has 2"):
        plan_epoch(["a", "b", "a", "b"], 4, 0, 0, unique_texts=True)


def test_shard_splits_a_global_batch_contiguously():
    batch = np.arange(8)
    assert shard(batch, 0, 2).tolist() == [0, 1, 2, 3] and shard(batch, 1, 2).tolist() == [4, 5, 6, 7]
    with pytest.raises(ValueError, match="does not split over 3 workers"):
        shard(batch, 0, 3)
