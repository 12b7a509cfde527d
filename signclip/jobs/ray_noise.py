"""Drops the lines Ray prints on every healthy run that look like errors, and nothing else.

Today that is one line: on every clean shutdown of `signclip serve`, the raylet reports a Serve controller call
it could not finish (see ``KNOWN_LINES``); the driver prints what its raylet reports to stdout. (Ray's core
worker also logs at level E that an actor "has constructor arguments in the object store and max_restarts > 0",
ray-project/ray#53727, for every actor of a Ray Data pool that may restart; the jobs' pools never restart an
actor, see :mod:`signclip.jobs.ray_data`, so it is not printed.) Lines written by C++ go straight to the file
descriptors, so this filter sits on the driver's descriptors (1 and 2): every other byte passes through
unchanged.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import signal
import sys
import threading

KNOWN_LINES = (
    # serve.shutdown() kills Serve's controller while its own graceful_shutdown call is in flight; the raylet
    # reports the call it can no longer finish, on every clean shutdown of `signclip serve`
    re.compile(rb"\(raylet\).*Task ServeController\.graceful_shutdown failed\. There are infinite retries "
               rb"remaining, so the task will be retried\. Error: The actor is dead because it was killed by "
               rb"`ray\.kill`\."),
)


_installed = False
_SENTINEL = b"\x00signclip-output-drained\x00"


def filter_ray_noise(patterns: tuple[re.Pattern[bytes], ...] = KNOWN_LINES) -> None:
    """From now on, lines this process writes to fd 1 or 2 that match ``patterns`` are dropped; the rest is
    copied as is. (Ray's driver prints what its raylet reports, the graceful_shutdown line among it, to stdout;
    C++ writes to fd 2.) Installed once per process, by the command-line entry points only (before Ray starts);
    at exit everything written is copied out before the interpreter goes."""
    global _installed
    if _installed:
        return
    _installed = True
    for fd, stream in ((1, sys.stdout), (2, sys.stderr)):
        _filter(fd, stream, patterns)


def _filter(fd: int, stream: object, patterns: tuple[re.Pattern[bytes], ...]) -> None:
    try:
        stream.flush()  # type: ignore[attr-defined]
        original = os.dup(fd)
    except (AttributeError, OSError, ValueError):  # no usable descriptor (closed): nothing to filter
        return
    read_end, write_end = os.pipe()
    os.dup2(write_end, fd)
    os.close(write_end)
    drained = threading.Event()

    def pump() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())  # signals are the main thread's
        pending = b""
        with os.fdopen(read_end, "rb", buffering=0) as source:
            while chunk := source.read(65536):
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()
                kept = []
                for line in lines:
                    if line.endswith(_SENTINEL):  # after the last line, or after the unfinished end of it
                        kept.append(line[:-len(_SENTINEL)])
                        drained.set()
                    elif not any(p.search(line) for p in patterns):
                        kept.append(line + b"\n")
                if kept:
                    os.write(original, b"".join(kept))

    def drain() -> None:
        with contextlib.suppress(AttributeError, OSError, ValueError):
            stream.flush()  # type: ignore[attr-defined]
            os.write(fd, _SENTINEL + b"\n")
            drained.wait(timeout=5)

    threading.Thread(target=pump, name=f"signclip-fd{fd}-filter", daemon=True).start()
    atexit.register(drain)
