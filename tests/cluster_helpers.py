"""A local Ray cluster for tests (``cluster/local_cluster.sh``): start, talk to it over HTTP only, stop.

Its nodes start without any AWS_* variable, as a real cluster's nodes know nothing of the test's S3 server:
the endpoint and credentials reach the jobs through ``--env`` only. The tests never ``ray.init`` into it
(the test process has its own local Ray); they use the job API and the state API.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "cluster" / "local_cluster.sh"


def _ports_free(base: int, nodes: int) -> bool:
    wanted = [base, base + 1, base + 600] + [base + 10 * k + j for k in range(nodes + 3) for j in range(2, 8)]
    for port in wanted:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def script(*args: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout)


@contextmanager
def local_cluster(workers: int, isolated: bool) -> Iterator[dict[str, Any]]:
    """Head (no task CPUs) + ``workers`` nodes x 1 CPU, own ports and temp dir; stopped at the end."""
    temp = tempfile.mkdtemp(prefix="signclip-cl-")  # short: Ray's socket paths live under it
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RAY_ADDRESS", "RAY_API_SERVER"))}
    env["RAY_AUTH_MODE"] = "disabled"
    # below the ephemeral range (32768-60999 on Linux): a port there may be taken by any outgoing connection
    # between the check and a node's start (seen: add-node refused, "port 36536 is in use")
    base = next((b for b in range(20500, 30500, 700) if _ports_free(b, workers)), None)
    assert base is not None, "no free port range for the test cluster"
    started = script("start", "--workers", str(workers), "--cpus-per-node", "1", "--port-base", str(base),
                     "--dashboard-port", str(base + 600), "--temp-dir", temp, *(["--isolated"] if isolated else []),
                     env=env, timeout=240)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        info = dict(line.split("=", 1) for line in started.stdout.splitlines() if "=" in line and " " not in line)
        yield {**info, "temp": temp, "env": env, "isolated": info.get("isolated") == "1",
               "warning": started.stderr}
    finally:
        stopped = script("stop", "--temp-dir", temp, env=env, timeout=120)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert script("status", "--temp-dir", temp, env=env, timeout=30).returncode == 1, "processes left"
        shutil.rmtree(temp, ignore_errors=True)


def worker_nodes(dashboard: str) -> dict[str, str]:
    """node id -> custom node resource (node_1, node_2, ...) of every live worker node."""
    from ray.util.state import list_nodes

    nodes = {}
    for n in list_nodes(address=dashboard, detail=True):
        names = [r for r in n.resources_total if r.startswith("node_")]
        if n.state == "ALIVE" and names:
            nodes[n.node_id] = names[0]
    return nodes


def tasks_by_node(dashboard: str, job_id: str, expect: set[str], wait_s: float = 20) -> Counter:
    """How many of the job's tasks (actor creation included) ran on each node, once ``expect`` all show."""
    from ray.util.state import list_tasks

    deadline = time.monotonic() + wait_s
    while True:  # task events reach the state API a moment after the tasks ran
        tasks = list_tasks(address=dashboard, filters=[("job_id", "=", job_id)], limit=10_000,
                           raise_on_missing_output=False)
        per_node = Counter(t.node_id for t in tasks if t.node_id)
        if expect <= set(per_node) or time.monotonic() > deadline:
            return per_node
        time.sleep(1)
