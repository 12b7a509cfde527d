"""How much of the cluster each stage of the embedding pipeline reserves: the CPUs follow where the time goes,
and every stage fits on the nodes as they are.

Where the time goes: per frame, the pipeline spends CPU on featurising (reading a ``.pose``, selecting and
normalising points) and, on a CPU device, on the model's forward pass. :func:`forward_share` estimates the
forward pass's share from the model's size (E7.2 on CPU: ~98%; the ``tiny`` preset: ~1%; any model on a GPU:
the host's part only). The embedding actors reserve that share of the CPUs, the featurising tasks the rest, so
a GPU (or a cheap model) gets every core featurising for it while E7.2 on CPU gets them for the transformer.

Featurising and writing are tasks (stateless: Ray re-runs one lost with its node anywhere); the model and
video extraction are actor pools (loaded once per actor).

What fits: Ray Data spreads pools and tasks over the nodes, and an actor holds its CPUs for the whole run.
A stage that fits the cluster's total but no single node's leftover never runs (two 1-CPU nodes with a
0.66-CPU actor each leave 0.34 CPU per node: a 0.5-CPU featurising task waits forever). So the split is
made per node: what the busiest node hosts of each stage must fit together. Ray accepts fractional CPUs
below 1 and whole numbers above, so quantities are rounded to that.

Torch threads are a separate matter from Ray's bookkeeping: an actor with 2 or more CPUs runs that many
threads; on smaller machines the actors share the cores (``cores / actors`` threads each).

The default number of CPU actors, when the model dominates, is one per core up to ``AUTO_CPU_ACTORS``:
several single-threaded actors embed more clips per second than one multi-threaded actor (measured on 2
cores: 10.4 against 8.8 clips/s at E7.2 size, ``tests/benchmarks/bench_embed.py``), at the cost of one model
copy in memory per actor. When featurising dominates, one actor keeps up with all the cores' features.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from signclip.model.config import ModelConfig

AUTO_CPU_ACTORS = 8  # most CPU actors chosen by default (each holds a copy of the model)
# Per frame, in core-seconds: what one core spends featurising (reduced_face, real Holistic poses, measured with
# tests/benchmarks/bench_featurize.py) and how many FLOPs one core's forward pass does per second (fp32 BERT in
# batches, measured with tests/benchmarks/bench_embedder.py at E7.2 size: ~11 GFLOP per 65-frame clip).
FEATURIZE_S_PER_FRAME = 2.0e-5
CPU_FLOPS = 5.0e10
GPU_HOST_SHARE = 0.05  # a GPU actor's CPU work (collating, copying, launching) next to featurising
WRITER_CPUS = 0.1  # a shard writer: Parquet encoding and one PUT per shard
MIN_FEATURE_CPUS = 0.05  # what a featuriser reserves at least, however much the model dominates


@dataclass(frozen=True)
class StageResources:
    """Ray resources per stage of one embedding run: actor pools and task stages, spread over the nodes."""

    actors: int  # embedding actors (max size of the pool)
    min_actors: int  # the pool's min size
    actor_cpus: float  # num_cpus per embedding actor
    actor_gpus: float  # num_gpus per embedding actor (0 on CPU)
    threads: int  # torch threads per embedding actor
    feature_tasks: int  # read + featurise tasks at once
    feature_cpus: float  # num_cpus per read + featurise task
    writer_tasks: int  # shard-writing tasks at once
    writer_cpus: float  # num_cpus per shard-writing task
    extract_actors: int  # video -> pose actors (0 when the input has no videos)
    extract_cpus: float  # num_cpus per video -> pose actor
    forward_share: float = 1.0  # the estimated share of the pipeline's CPU time in the forward pass

    @property
    def device(self) -> str:
        return "cuda" if self.actor_gpus > 0 else "cpu"


def ray_quantity(x: float) -> float:
    """``x`` rounded down to what Ray accepts: a whole number if >= 1, else 2 decimals (at least 0.01)."""
    if x >= 1:
        return float(math.floor(x))
    return max(0.01, math.floor(x * 100) / 100)


def forward_flops_per_frame(cfg: "ModelConfig") -> float:
    """FLOPs of the pose tower per frame: the token MLP and, per layer, attention projections and the FFN."""
    h, d = cfg.video.hidden_size, cfg.feature_dim
    per_layer = 2 * (4 * h * h + 2 * h * cfg.video.intermediate_size)
    return 2 * (d * h + h * h) + cfg.video.num_layers * per_layer


def forward_share(cfg: "ModelConfig", gpu: bool) -> float:
    """The forward pass's estimated share of the pipeline's CPU time per frame (the rest is featurising)."""
    if gpu:
        return GPU_HOST_SHARE
    forward = forward_flops_per_frame(cfg) / CPU_FLOPS
    return forward / (forward + FEATURIZE_S_PER_FRAME)


def plan(node_cpus: Sequence[float], gpus: float, actors: int | None, *, share: float | None = None,
         videos: bool = False, use_gpu: bool | None = None, threads: int | None = None,
         min_actors: int | None = None, extract_actors: int = 1, blocks: int | None = None) -> StageResources:
    """Split the CPUs of ``node_cpus`` (one entry per node that has any) and ``gpus`` between the stages.

    ``share``: the forward pass's share of the CPU time on a CPU device (:func:`forward_share`; None: the model
    dominates); on GPUs the actors only keep ``GPU_HOST_SHARE``.
    ``actors`` None means: one per GPU; on CPU, enough for ``share`` of the cores (one per core, at most
    ``AUTO_CPU_ACTORS``, when the model dominates). ``use_gpu`` None means: use GPUs when the cluster has at
    least one per actor. ``blocks``: how many blocks the input makes; neither pool gets more actors than that.
    Raises ``ValueError`` when the request cannot fit (more GPU actors than GPUs, or no CPU at all).
    """
    nodes = [float(c) for c in node_cpus if c > 0]
    if not nodes:
        raise ValueError("the Ray cluster has no CPU")
    cpus = sum(nodes)
    gpu = (gpus >= 1 and use_gpu is not False) if actors is None and use_gpu is None else bool(use_gpu)
    share = 1.0 if share is None else share
    if actors is None:
        if gpu:
            actors = int(gpus)
        else:
            actors = max(1, min(AUTO_CPU_ACTORS, int(cpus), math.ceil(cpus * share - 0.25)))
    if actors < 1:
        raise ValueError(f"actors {actors}: need at least 1")
    if use_gpu is None:
        gpu = gpus >= actors
    if gpu and gpus < actors:
        raise ValueError(f"{actors} GPU actors asked for, the cluster has {gpus:g} GPUs")
    if gpu:
        share = GPU_HOST_SHARE
    if blocks is not None:
        useful = max(1, blocks)
        actors, extract_actors = min(actors, useful), min(extract_actors, useful)
    extract_actors = extract_actors if videos else 0
    min_actors = actors if min_actors is None else max(1, min(min_actors, actors))

    feature_tasks = max(1, min(round(cpus * (1 - share)), blocks if blocks is not None else cpus))
    writer_tasks = 1
    # the pools are spread: the node hosting the most of each, with the fewest CPUs, decides what fits
    n = len(nodes)
    node = min(nodes)
    pa, pf, pw = math.ceil(actors / n), math.ceil(feature_tasks / n), math.ceil(writer_tasks / n)
    pe = math.ceil(extract_actors / n) if extract_actors else 0
    extract_cpus = ray_quantity(min(1.0, node / (pa + pf + pw + pe))) if extract_actors else 0.0
    writer_cpus = ray_quantity(min(WRITER_CPUS, node / (4 * (pa + pf + pw))))
    room = node - pe * extract_cpus - pw * writer_cpus
    if gpu:  # a GPU actor gets a core of its own when the node can spare one per actor beside the featurisers
        actor_cpus = 1.0 if room - pa >= pf * 0.25 else ray_quantity(room * 0.5 / pa)
        feature_cpus = ray_quantity(max(0.01, min(1.0, (room - pa * actor_cpus) / pf)))
    else:
        actor_cpus = ray_quantity(max(0.01, min(room * share, room - pf * MIN_FEATURE_CPUS) / pa))
        feature_cpus = ray_quantity(max(0.01, min(1.0, (room - pa * actor_cpus) / pf)))
    if gpu or share < 0.5:  # the model is not where the time goes: one thread, the cores featurise
        default_threads = 1
    elif actor_cpus >= 2:
        default_threads = int(actor_cpus)
    else:  # small machines: the actors share the cores, the light CPU stages squeeze in
        default_threads = max(1, int(min(max(nodes), cpus / actors)))
    return StageResources(actors=actors, min_actors=min_actors, actor_cpus=actor_cpus,
                          actor_gpus=1.0 if gpu else 0.0, threads=threads or default_threads,
                          feature_tasks=feature_tasks, feature_cpus=feature_cpus, writer_tasks=writer_tasks,
                          writer_cpus=writer_cpus, extract_actors=extract_actors, extract_cpus=extract_cpus,
                          forward_share=round(share, 4))
