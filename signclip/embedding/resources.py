"""How much of the cluster each stage of the embedding pipeline reserves: the CPUs go where the time goes, and
every stage fits on the nodes as they are.

Where the time goes. On CPU, each embedding actor reads and featurises its own clips and embeds them: the
features never leave the process (for a cheap model, moving them through the object store cost more than
computing them: 2.5 MB per 16 clips), and the cores are shared by featurising and the forward pass in
whatever proportion the model needs (E7.2: nearly all forward; the ``tiny`` preset: nearly all featurising).
On GPUs, an actor per GPU keeps one core and featurising tasks get every other core, feeding it.

What fits. Ray Data spreads pools and tasks over the nodes, and an actor holds its CPUs for the whole run. A
stage that fits the cluster's total but no single node's leftover never runs (two 1-CPU nodes with a
0.66-CPU actor each left 0.34 CPU per node: a 0.5-CPU task waited forever). So the split is made per node:
what the busiest node hosts of each stage must fit together. Ray accepts fractional CPUs below 1 and whole
numbers above, so quantities are rounded to that.

On CPU the actors also write their own shards. Ray's worker pool keeps as many idle workers as a node has
unreserved CPUs and ends the others after a second idle. With the actors holding every CPU, a shard-writing
task's worker was ended whenever shards came less than once a second, and a new one started for the next (a
Python process importing Ray Data and pyarrow, about a second and a half of CPU): with the ``small`` preset on
2 cores, 2 such starts after the first shard; with ``tiny`` on a slow hour, 2 per 10 s (a fifth of the CPU);
none when shards come faster (``tests/benchmarks/bench_embed_pipeline.py`` counts them). Without the writer
the first shard also comes 3-4 s sooner on 2 cores: one process fewer to start. A GPU's featurising tasks and
writer keep busy.

Torch threads are a separate matter from Ray's bookkeeping: an actor with 2 or more CPUs runs that many
threads; on smaller machines the actors share the cores (``cores / actors`` threads each).

The default number of CPU actors is one per core up to ``AUTO_CPU_ACTORS``: several single-threaded actors
embed more clips per second than one multi-threaded actor (measured on 2 cores: 10.4 against 8.8 clips/s at
E7.2 size, ``tests/benchmarks/bench_embed.py``), at the cost of one model copy in memory per actor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

AUTO_CPU_ACTORS = 8  # most CPU actors chosen by default (each holds a copy of the model)
WRITER_CPUS = 0.1  # a shard writer: Parquet encoding and one PUT per shard
# Memory a worker declares (Ray's `memory` resource), measured here so that nodes are not overpacked: an
# embedding actor is a torch process plus about twice its weights; a task worker reads, featurises, writes.
# The torch process peaked at 552 MiB (USS, tiny model, 20,000 clips); Ray Data warns at the end of a run
# ("used up to ... set memory=...") unless a worker declared 25% more than it used, hence 720 MiB.
ACTOR_BASE_MEMORY = 720 << 20
TASK_MEMORY = 300 << 20
# Items per input block. A block costs the driver ~2.5 ms to create and schedule, whatever its size (1,250
# blocks of 16 items took 3.4 s of a 30 s, 20,000-clip job on 2 cores; 79 blocks of 256 took 0.3 s and the job
# ran 12-37% faster, tests/benchmarks/bench_embed_pipeline.py), so blocks are as large as the batch of the
# worker they feed, down to MIN_BLOCK_ROWS so that each worker gets BLOCKS_PER_WORKER of them: the last blocks
# are where the other workers go idle.
MIN_BLOCK_ROWS = 16
BLOCKS_PER_WORKER = 4


@dataclass(frozen=True)
class StageResources:
    """Ray resources per stage of one embedding run: actor pools and task stages, spread over the nodes."""

    actors: int  # embedding actors (max size of the pool)
    min_actors: int  # the pool's min size
    actor_cpus: float  # num_cpus per embedding actor
    actor_gpus: float  # num_gpus per embedding actor (0 on CPU)
    threads: int  # torch threads per embedding actor
    feature_tasks: int  # read + featurise tasks at once; 0: the embedding actors featurise (on CPU)
    feature_cpus: float  # num_cpus per read + featurise task
    writer_tasks: int  # shard-writing tasks at once; 0: the embedding actors write their own shards (on CPU)
    writer_cpus: float  # num_cpus per shard-writing task
    extract_actors: int  # video -> pose actors (0 when the input has no videos)
    extract_cpus: float  # num_cpus per video -> pose actor
    block_rows: int = MIN_BLOCK_ROWS  # items per input block (see block_rows)

    @property
    def device(self) -> str:
        return "cuda" if self.actor_gpus > 0 else "cpu"


def ray_quantity(x: float) -> float:
    """``x`` rounded down to what Ray accepts: a whole number if >= 1, else 2 decimals (at least 0.01)."""
    if x >= 1:
        return float(math.floor(x))
    return max(0.01, math.floor(x * 100) / 100)


def plan(node_cpus: Sequence[float], gpus: float, actors: int | None, *, videos: bool = False,
         use_gpu: bool | None = None, threads: int | None = None, min_actors: int | None = None,
         extract_actors: int = 1, blocks: int | None = None) -> StageResources:
    """Split the CPUs of ``node_cpus`` (one entry per node that has any) and ``gpus`` between the stages.

    ``actors`` None means: one per GPU, else one per CPU (at most ``AUTO_CPU_ACTORS``). ``use_gpu`` None
    means: use GPUs when the cluster has at least one per actor. ``blocks``: how many blocks the input makes;
    no pool gets more actors than that. Raises ``ValueError`` when the request cannot fit (more GPU actors
    than GPUs, or no CPU at all).
    """
    nodes = [float(c) for c in node_cpus if c > 0]
    if not nodes:
        raise ValueError("the Ray cluster has no CPU")
    cpus = sum(nodes)
    if actors is None:
        actors = int(gpus) if gpus >= 1 and use_gpu is not False else max(1, min(int(cpus), AUTO_CPU_ACTORS))
    if actors < 1:
        raise ValueError(f"actors {actors}: need at least 1")
    gpu = (gpus >= actors) if use_gpu is None else use_gpu
    if gpu and gpus < actors:
        raise ValueError(f"{actors} GPU actors asked for, the cluster has {gpus:g} GPUs")
    if blocks is not None:
        useful = max(1, blocks)
        actors, extract_actors = min(actors, useful), min(extract_actors, useful)
    extract_actors = extract_actors if videos else 0
    min_actors = actors if min_actors is None else max(1, min(min_actors, actors))
    feature_tasks = max(1, min(int(cpus) - actors, blocks if blocks is not None else cpus)) if gpu else 0

    # spread over the nodes: the node hosting the most of each stage, with the fewest CPUs, decides what fits
    n, node = len(nodes), min(nodes)
    pa, pf, pe = math.ceil(actors / n), math.ceil(feature_tasks / n), math.ceil(extract_actors / n)
    extract_cpus = ray_quantity(min(1.0, node / (pa + pf + pe + 1))) if extract_actors else 0.0
    writer_tasks = 1 if gpu else 0
    writer_cpus = ray_quantity(min(WRITER_CPUS, node / (4 * (pa + pf + 1)))) if writer_tasks else 0.0
    room = node - pe * extract_cpus - writer_cpus
    if gpu:  # a core per GPU actor when the node can spare one beside its featurising tasks
        actor_cpus = 1.0 if room - pa >= pf * 0.25 else ray_quantity(room * 0.5 / pa)
        feature_cpus = ray_quantity(max(0.01, min(1.0, (room - pa * actor_cpus) / max(1, pf))))
        default_threads = 1
    else:
        actor_cpus = ray_quantity(max(0.01, room / pa))
        feature_cpus = 0.0
        # an actor with whole CPUs runs that many threads; small machines: the actors share the cores
        default_threads = int(actor_cpus) if actor_cpus >= 2 else max(1, int(min(max(nodes), cpus / actors)))
    return StageResources(actors=actors, min_actors=min_actors, actor_cpus=actor_cpus,
                          actor_gpus=1.0 if gpu else 0.0, threads=threads or default_threads,
                          feature_tasks=feature_tasks, feature_cpus=feature_cpus, writer_tasks=writer_tasks,
                          writer_cpus=writer_cpus, extract_actors=extract_actors, extract_cpus=extract_cpus)


def block_rows(items: int, res: StageResources, batch_size: int) -> int:
    """Items per input block for ``items`` items on the stages ``res``, whose embedding actors take
    ``batch_size`` items a call. Videos keep small blocks: a block is one extraction actor's unit of work."""
    if res.extract_actors:
        return MIN_BLOCK_ROWS
    workers = res.feature_tasks or res.actors
    wanted = max(MIN_BLOCK_ROWS, math.ceil(items / (workers * BLOCKS_PER_WORKER)))
    if wanted >= batch_size:
        return max(1, batch_size)
    # Ray Data bundles blocks up to an actor's batch: blocks that divide it make bundles of one batch, not two
    return math.ceil(batch_size / math.ceil(batch_size / wanted))


def actor_memory(weights_bytes: int) -> int:
    """The memory an embedding actor declares, from the size of its model's weights."""
    return ACTOR_BASE_MEMORY + 2 * weights_bytes
