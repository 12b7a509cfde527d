"""Closed-loop HTTP load for the service benchmarks (bench_serve.py, bench_serve_overhead.py).

Each client sends its next request when the last one is answered, on real poses and prompts, over its own
keep-alive connection. aiohttp rather than httpx: at several hundred requests a second on a 2-core machine
the client's own CPU matters, and aiohttp is the lighter of the two.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import aiohttp
import numpy as np

GLOSSES = ["house", "sad", "library", "police", "mother", "school", "water", "thank you", "good morning", "book",
           "friend", "teacher", "coffee", "tomorrow", "how are you", "random text"]
POSES = ["house-colin-1", "house-spreadthesign", "sad-colin", "library", "refined-face-553"]
MIXES = {"text": 0.0, "pose": 1.0, "mixed": 0.5}  # share of pose requests


@dataclass
class Result:
    ok: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)  # non-200 answers by status (0: no answer)

    @property
    def rps(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) * 1000 if self.latencies else float("nan")

    def __add__(self, other: Result) -> Result:
        statuses = dict(self.statuses)
        for status, n in other.statuses.items():
            statuses[status] = statuses.get(status, 0) + n
        return Result(self.ok + other.ok, self.errors + other.errors, self.seconds + other.seconds,
                      self.latencies + other.latencies, statuses)

    def line(self) -> str:
        errors = f"{self.errors:4d} errors" + (f" {self.statuses}" if self.statuses else "")
        return (f"{self.ok:6d} ok {errors}  {self.rps:8.1f} req/s  p50 {self.percentile(50):7.1f} ms  "
                f"p99 {self.percentile(99):7.1f} ms")


def sample_poses() -> dict[str, str]:
    """The real sample poses, base64 as the original API takes them."""
    from signclip.io import sample_data

    return {name: base64.b64encode(sample_data.path(f"poses/{name}.pose").read_bytes()).decode() for name in POSES}


def make_request(rng: random.Random, pose_share: float, poses: dict[str, str]) -> tuple[str, dict]:
    if rng.random() < pose_share:
        return "/api/embed/pose", {"pose": poses[rng.choice(POSES)]}
    return "/api/embed/text", {"text": f"<en> <ase> {rng.choice(GLOSSES)}"}


async def _load(url: str, clients: int, seconds: float, pose_share: float, poses: dict[str, str]) -> Result:
    result = Result()
    last_done = 0.0
    connector = aiohttp.TCPConnector(limit=clients, force_close=False)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=300)) as session:
        start = time.perf_counter()
        deadline = start + seconds

        async def one_client(seed: int) -> None:
            nonlocal last_done
            rng = random.Random(seed)
            while time.perf_counter() < deadline:
                path, body = make_request(rng, pose_share, poses)
                sent = time.perf_counter()
                try:
                    async with session.request("GET", url + path, json=body) as r:
                        await r.read()
                        status = r.status
                except aiohttp.ClientError:
                    status = 0
                done = time.perf_counter()
                last_done = max(last_done, done)
                if status == 200:
                    result.latencies.append(done - sent)
                else:
                    result.errors += 1
                    result.statuses[status] = result.statuses.get(status, 0) + 1

        await asyncio.gather(*(one_client(i) for i in range(clients)))
    result.ok, result.seconds = len(result.latencies), last_done - start
    return result


def load(url: str, clients: int, seconds: float, pose_share: float, poses: dict[str, str]) -> Result:
    """``clients`` closed-loop clients for ``seconds``: answered requests, errors, latencies."""
    return asyncio.run(_load(url, clients, seconds, pose_share, poses))


def wait_healthy(url: str, timeout: float = 300, proc: subprocess.Popen | None = None) -> None:
    """Until ``url``/health answers 200; raises if it does not in time or ``proc`` (the server) ends first."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server for {url} exited with status {proc.returncode} before it came up")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not come up in {timeout:g} s")


def embed_once(url: str, poses: dict[str, str]) -> tuple[list[float], list[float]]:
    """One text and one pose embedding (also warms the server up)."""
    import json
    import urllib.request

    vectors = []
    for path, body in (("/api/embed/text", {"text": "<en> <ase> house"}), ("/api/embed/pose",
                                                                           {"pose": poses["house-colin-1"]})):
        request = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=300) as r:
            vectors.append(json.loads(r.read())["embeddings"][0])
    return vectors[0], vectors[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running(command: list[str], env: dict[str, str] | None = None) -> Iterator[str]:
    """A server started by ``command`` (which takes ``--port``), stopped with SIGTERM after; its output is
    shown if it fails to come up."""
    port = free_port()
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(command + ["--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_healthy(url, proc=proc)
        except RuntimeError:
            log.seek(0)
            sys.stderr.write(log.read().decode(errors="replace")[-6000:])
            raise
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
