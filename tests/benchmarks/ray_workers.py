"""Ray worker processes that start while a benchmark runs. Ray keeps as many idle workers as a node has unreserved
CPUs and ends the others after a second idle; a task that then comes pays for a new Python process (Ray, Ray Data,
pyarrow: about 1.5 s of CPU)."""

from __future__ import annotations

import os
import threading
import time


class WorkerStarts:
    """Ray worker processes started while it runs, seen in ``/proc`` (Linux) every 20 ms: a pool that ends idle
    workers and starts new ones shows up here as starts in the steady state."""

    def __init__(self) -> None:
        self.started: list[float] = []
        self._seen = set(self._pids())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    @staticmethod
    def _pids() -> list[str]:
        return [p for p in os.listdir("/proc") if p.isdigit()] if os.path.isdir("/proc") else []

    def _watch(self) -> None:
        while not self._stop.wait(0.02):
            for pid in self._pids():
                if pid in self._seen:
                    continue
                self._seen.add(pid)
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        command = f.read().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    continue
                if "default_worker.py" in command or command.startswith("ray::"):
                    self.started.append(time.time())

    def stop(self) -> list[float]:
        self._stop.set()
        self._thread.join()
        return self.started
