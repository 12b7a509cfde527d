"""How much of the cluster each stage of the embedding pipeline reserves, so that every stage can run.

Actors hold their CPUs for the whole run. If the embedding actors reserved every CPU, the reading /
featurising tasks upstream could never be scheduled and the stream would stall (on a 2-core machine one
actor at ``num_cpus=2`` hangs the job). So the CPUs are split in ``actors + 1`` shares: one per actor
and one for the CPU stages. Ray accepts fractional CPUs below 1 and whole numbers above, so shares are
rounded accordingly. With GPUs each actor takes one GPU and one CPU.

Torch threads are a separate matter from Ray's bookkeeping: an actor with 2 or more CPUs runs that many
threads; on smaller machines the actors share the cores (``cores / actors`` threads each), since
featurising is light next to the transformer.

The default number of actors is one per GPU, or on CPU one per core up to ``AUTO_CPU_ACTORS``: several
single-threaded actors embed more clips per second than one multi-threaded actor (measured on 2 cores:
10.4 against 8.8 clips/s at E7.2 size, ``tests/benchmarks/bench_embed.py``), at the cost of one model
copy in memory per actor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

AUTO_CPU_ACTORS = 8  # most CPU actors chosen by default (each holds a copy of the model)


@dataclass(frozen=True)
class StageResources:
    """Ray resources per stage of one embedding run."""

    actors: int  # embedding actors (max size of the pool)
    min_actors: int  # the pool's min size
    actor_cpus: float  # num_cpus per embedding actor
    actor_gpus: float  # num_gpus per embedding actor (0 on CPU)
    threads: int  # torch threads per embedding actor
    feature_cpus: float  # num_cpus per read + featurise task
    writer_cpus: float  # num_cpus per shard-writing task
    extract_actors: int  # video -> pose actors (0 when the input has no videos)
    extract_cpus: float  # num_cpus per video -> pose actor

    @property
    def device(self) -> str:
        return "cuda" if self.actor_gpus > 0 else "cpu"


def ray_quantity(x: float) -> float:
    """``x`` rounded down to what Ray accepts: a whole number if >= 1, else 2 decimals (at least 0.01)."""
    if x >= 1:
        return float(math.floor(x))
    return max(0.01, math.floor(x * 100) / 100)


def plan(cpus: float, gpus: float, actors: int | None, *, videos: bool = False, use_gpu: bool | None = None,
         threads: int | None = None, max_node_cpus: float | None = None, min_actors: int | None = None,
         extract_actors: int = 1, blocks: int | None = None) -> StageResources:
    """Split ``cpus`` / ``gpus`` (the cluster's totals) between the stages.

    ``actors`` None means: one per GPU, else one per CPU (at most ``AUTO_CPU_ACTORS``). ``use_gpu`` None
    means: use GPUs when the cluster has at least one per actor. ``blocks``: how many blocks the input
    makes; neither pool gets more actors than that, since an actor without a block would only load its
    model and wait. Raises ``ValueError`` when the request cannot fit (more GPU actors than GPUs, or no
    CPU at all).
    """
    if actors is None:
        actors = int(gpus) if gpus >= 1 and use_gpu is not False else max(1, min(int(cpus), AUTO_CPU_ACTORS))
    if actors < 1:
        raise ValueError(f"actors {actors}: need at least 1")
    if blocks is not None:
        useful = max(1, blocks)
        actors, extract_actors = min(actors, useful), min(extract_actors, useful)
    if cpus <= 0:
        raise ValueError("the Ray cluster has no CPU")
    min_actors = actors if min_actors is None else max(1, min(min_actors, actors))
    gpu = (gpus >= actors) if use_gpu is None else use_gpu
    if gpu and gpus < actors:
        raise ValueError(f"{actors} GPU actors asked for, the cluster has {gpus:g} GPUs")
    shares = actors + 1 + (extract_actors if videos else 0)
    if gpu:
        actor_cpus = 1.0 if cpus >= shares else ray_quantity(cpus / shares)
    else:
        actor_cpus = ray_quantity(cpus / shares)
    extract_cpus = ray_quantity(min(1.0, cpus / shares)) if videos else 0.0
    left = cpus - actors * actor_cpus - (extract_actors * extract_cpus if videos else 0.0)
    writer_cpus = ray_quantity(min(0.25, left / 4))
    feature_cpus = ray_quantity(max(0.01, min(1.0, left - writer_cpus)))
    node = max_node_cpus or cpus
    if gpu:
        default_threads = 1
    elif actor_cpus >= 2:
        default_threads = int(actor_cpus)
    else:  # small machines: the actors share the cores, the light CPU stages squeeze in
        default_threads = max(1, int(min(node, cpus / actors)))
    return StageResources(actors=actors, min_actors=min_actors, actor_cpus=actor_cpus,
                          actor_gpus=1.0 if gpu else 0.0, threads=threads or default_threads,
                          feature_cpus=feature_cpus, writer_cpus=writer_cpus,
                          extract_actors=extract_actors if videos else 0, extract_cpus=extract_cpus)
