"""Which rows form each global batch of an epoch: reshuffled every epoch, optionally without repeated texts.

The plan is a pure function of (texts, batch size, seed, epoch), so every worker computes the same one,
takes its own slice of every batch, and a resumed run continues at the exact batch where it stopped.
The last incomplete batch is dropped so every worker does the same number of steps.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np


def plan_epoch(texts: Sequence[str], batch_size: int, seed: int, epoch: int,
               unique_texts: bool = False) -> list[np.ndarray]:
    """Row indices of each global batch of ``epoch``."""
    n = len(texts)
    if batch_size < 1:
        raise ValueError(f"batch size {batch_size}: must be >= 1")
    rng = np.random.default_rng([seed, epoch])
    if not unique_texts:
        order = rng.permutation(n)
        return [order[i:i + batch_size] for i in range(0, n - batch_size + 1, batch_size)]
    by_text: dict[str, list[int]] = defaultdict(list)
    for i in rng.permutation(n):
        by_text[texts[i]].append(int(i))
    if len(by_text) < batch_size:
        raise ValueError(f"batches without repeated texts need at least {batch_size} distinct texts, "
                         f"the data has {len(by_text)}: lower the batch size")
    queues = list(by_text.values())
    batches = []
    while True:
        # the texts with the most rows left go first (ties at random), so no text is left stranded
        remaining = np.array([len(q) for q in queues])
        if np.count_nonzero(remaining) < batch_size:
            break
        keys = rng.random(len(queues))
        chosen = np.lexsort((keys, -remaining))[:batch_size]
        batches.append(np.array([queues[j].pop() for j in chosen]))
    rng.shuffle(batches)
    return batches


def shard(batch: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """This worker's rows of a global batch (contiguous, so the gathered order is the batch order)."""
    if len(batch) % world_size:
        raise ValueError(f"global batch of {len(batch)} does not split over {world_size} workers")
    size = len(batch) // world_size
    return batch[rank * size:(rank + 1) * size]
