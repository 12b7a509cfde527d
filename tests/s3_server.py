"""A moto S3 server on 127.0.0.1 in a process of its own, as the tests and benchmarks use it: Ray workers reach
it like any S3 endpoint."""

from __future__ import annotations

import socket
import subprocess
import sys
import time


def start_moto(timeout_s: float = 60) -> tuple[subprocess.Popen, str]:
    """Start the server; returns the process and its URL once it accepts connections."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc, f"http://127.0.0.1:{port}"
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("the moto S3 server did not start") from None
            time.sleep(0.2)
