"""How the Ray Data jobs (extract, embed) survive a lost worker or a lost node, in one place.

Ray Data restarts a dead pool actor in place by default and holds the tasks it was running until the restart.
On a cluster whose pools fill their nodes, the restart of an actor from a lost node fits nowhere (the
surviving nodes are full with their own actors), so those tasks wait forever. So the pools here never restart
an actor (``max_restarts=0``): the blocks a dead actor held fail, Ray Data skips them (``max_errored_blocks``
-1 for the run), and the job embeds or extracts the items that came back with no row again in a new pass over
a fresh pool, up to ``attempts`` passes. An item lost in every pass (one that kills its worker each time) is
reported ``failed``. Tasks (stateless) are simply re-run by Ray wherever there is room.

A lost node can also take results of the pass with it (blocks in its object store that the driver had not read
yet): reading them raises ``ObjectLostError`` out of the pass. :func:`until_lost` ends such a pass early instead of
failing the job; what it had delivered is kept and the next pass redoes the rest. Each pass is planned on the
cluster as it is then (a lost node's CPUs are gone), and a retry pass needs only one live actor to start.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_ATTEMPTS = 3  # passes over the items whose worker died before an item is reported failed


def _lost_with_a_worker(error: BaseException) -> bool:
    import ray.exceptions as rex

    lost = (rex.ObjectLostError, rex.RayActorError, rex.WorkerCrashedError, rex.NodeDiedError)
    seen: BaseException | None = error
    while seen is not None:  # Ray Data may re-raise a system error as the cause of its own
        if isinstance(seen, lost):
            return True
        seen = seen.__cause__
    return False


def until_lost(results: Iterable[T], attempt: int, attempts: int) -> Iterator[T]:
    """The results of one pass; a pass cut short by a lost worker or node ends early with a warning (what it
    delivered stays delivered), any other error propagates."""
    try:
        yield from results
    except Exception as e:
        if not _lost_with_a_worker(e):
            raise
        log.warning("pass %d of %d ended early: results were lost with a worker or node (%s: %s)", attempt,
                    attempts, type(e).__name__, str(e).splitlines()[0] if str(e) else "")


def in_passes(items: list[T], attempts: int, run_pass: Callable[[list[T], int], Iterable[R]],
              on_result: Callable[[R], None], left_after: Callable[[list[T]], list[T]],
              what: tuple[str, str]) -> list[T]:
    """Runs ``run_pass(left, attempt)`` for attempt 1, 2, ... ``attempts`` over the items still left, handing
    each result to ``on_result``; ``left_after(left)`` says which items of a pass came back with no result.
    Returns the items lost in every pass. ``what``: the items' plural noun and the work, for the warning
    (``("videos", "extracting")``)."""
    left = items
    for attempt in range(1, attempts + 1):
        for result in until_lost(run_pass(left, attempt), attempt, attempts):
            on_result(result)
        left = left_after(left)
        if not left:
            break
        if attempt < attempts:
            one = len(left) == 1
            log.warning("%d %s came back without a result (lost with a worker that was killed, crashed, ran out of "
                        "memory or lost its node); %s %s again (attempt %d of %d)", len(left),
                        what[0].removesuffix("s") if one else what[0], what[1], "it" if one else "them",
                        attempt + 1, attempts)
    return left


def _not_the_progress_off_notice(record: logging.LogRecord) -> bool:
    # Ray Data warns once per process that progress bars are off; here they are off because the user asked
    return not record.getMessage().startswith("Progress bars disabled.")


@contextlib.contextmanager
def lenient_execution(progress: bool) -> Iterator[None]:
    """Ray Data settings for one run: a block lost with its worker is skipped (the job redoes it), not fatal."""
    from ray.data import DataContext

    if not progress:
        logging.getLogger("ray.data._internal.progress").addFilter(_not_the_progress_off_notice)
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
