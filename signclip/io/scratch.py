"""Private temporary files on this node (a remote video copied for FFmpeg, an uploaded video), removed when done
and also when their process died before it could: a video that crashes its worker on every attempt left one
full copy in ``/tmp`` per attempt. Each name carries its process id; the next scratch file made on the node
removes those of processes that are gone.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def scratch_file(prefix: str, suffix: str = "") -> Iterator[str]:
    """The path of a new empty file ``<tmp>/<prefix><pid>-<random><suffix>``, removed on exit."""
    sweep(prefix)
    fd, path = tempfile.mkstemp(prefix=f"{prefix}{os.getpid()}-", suffix=suffix)
    os.close(fd)
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def sweep(prefix: str) -> int:
    """Remove the ``prefix`` scratch files of processes that no longer run; how many were removed."""
    removed = 0
    for path in glob.glob(os.path.join(glob.escape(tempfile.gettempdir()), glob.escape(prefix) + "*")):
        pid = os.path.basename(path)[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
                removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as e:
        return e.errno == errno.EPERM  # it runs, as another user
    return True
