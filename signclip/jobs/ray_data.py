"""How the Ray Data jobs (extract, embed) survive a lost worker or a lost node, in one place.

Ray Data restarts a dead pool actor in place by default and holds the tasks it was running until the restart.
On a cluster whose pools fill their nodes, the restart of an actor from a lost node fits nowhere (the
surviving nodes are full with their own actors), so those tasks wait forever. So the pools here never restart
an actor (``max_restarts=0``): the blocks a dead actor held fail, Ray Data skips them (``max_errored_blocks``
-1 for the run), and the job embeds or extracts the items that came back with no row again in a new pass over
a fresh pool, up to ``attempts`` passes. An item lost in every pass (one that kills its worker each time) is
reported ``failed``. Tasks (stateless) are simply re-run by Ray wherever there is room.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

DEFAULT_ATTEMPTS = 3  # passes over the items whose worker died before an item is reported failed


@contextlib.contextmanager
def lenient_execution(progress: bool) -> Iterator[None]:
    """Ray Data settings for one run: a block lost with its worker is skipped (the job redoes it), not fatal."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    saved = (ctx.max_errored_blocks, ctx.enable_progress_bars, ctx.execution_options.preserve_order,
             ctx.memory_usage_poll_interval_s)
    ctx.max_errored_blocks = -1
    ctx.enable_progress_bars = progress
    ctx.execution_options.preserve_order = False
    # Ray Data samples each task's memory (USS, from /proc/PID/smaps) every second; in a MediaPipe or torch
    # process, with its many mappings, that read costs CPU the work needs
    ctx.memory_usage_poll_interval_s = None
    try:
        yield
    finally:
        (ctx.max_errored_blocks, ctx.enable_progress_bars, ctx.execution_options.preserve_order,
         ctx.memory_usage_poll_interval_s) = saved


def map_with_actors(dataset: Any, fn: type, **options: Any) -> Any:
    """``dataset.map_batches(fn, ...)`` on an actor pool whose actors are never restarted (see the docstring)."""
    with warnings.catch_warnings():
        # Ray 2.60 deprecates extra remote args, but has no named parameter for an actor pool's max_restarts /
        # max_task_retries; passing them is still how Ray Data documents an actor pool's fault tolerance.
        warnings.filterwarnings("ignore", message=".*ray_remote_args. is deprecated", category=DeprecationWarning)
        return dataset.map_batches(fn, max_restarts=0, max_task_retries=0, **options)
