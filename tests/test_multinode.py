"""Jobs on a real multi-node Ray cluster: cluster/local_cluster.sh starts a head and two worker raylets
(1 CPU each) on 127.0.0.1; extract and embed are submitted through Ray's job API (``signclip submit``),
read their input from and write their output to S3 (the moto server), and their tasks run on both workers.

The cluster's processes start without any AWS_* variable: the S3 endpoint and credentials reach the jobs
only through ``--env``, as on a real cluster. This module never uses the in-process ``ray_local`` fixture;
it talks to its own cluster over HTTP (job API, state API) only.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest

from signclip.io import embedding_store, manifests, storage
from signclip.jobs import submit

pytestmark = [pytest.mark.ray, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "cluster" / "local_cluster.sh"
WORKERS = 2
NOT_HOLISTIC = ("reduced-holistic-178", "openpose-137")


def _ports_free(base: int, dashboard: int) -> bool:
    wanted = [base, base + 1, dashboard] + [base + 10 * k + j for k in range(WORKERS + 1) for j in range(2, 8)]
    for port in wanted:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def _script(*args: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def cluster():
    """Head (no task CPUs) + 2 worker nodes x 1 CPU, own ports and temp dir; stopped at the end."""
    temp = tempfile.mkdtemp(prefix="signclip-mn-")  # short: Ray's socket paths live under it
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RAY_ADDRESS", "RAY_API_SERVER"))}
    env["RAY_AUTH_MODE"] = "disabled"
    base = next((b for b in range(36500, 46500, 700) if _ports_free(b, b + 600)), None)
    assert base is not None, "no free port range for the test cluster"
    started = _script("start", "--workers", str(WORKERS), "--cpus-per-node", "1", "--port-base", str(base),
                      "--dashboard-port", str(base + 600), "--temp-dir", temp, env=env, timeout=180)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        info = dict(line.split("=", 1) for line in started.stdout.splitlines() if "=" in line and " " not in line)
        yield {"dashboard": info["dashboard"], "address": info["address"], "temp": temp, "env": env}
    finally:
        stopped = _script("stop", "--temp-dir", temp, env=env, timeout=120)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert _script("status", "--temp-dir", temp, env=env, timeout=30).returncode == 1, "processes left"
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def client(cluster):
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(cluster["dashboard"])


@pytest.fixture(scope="module")
def worker_nodes(cluster) -> dict[str, str]:
    """node id -> custom node resource (node_1, node_2) of every worker node."""
    from ray.util.state import list_nodes

    nodes = {}
    for n in list_nodes(address=cluster["dashboard"], detail=True):
        names = [r for r in n.resources_total if r.startswith("node_")]
        assert n.state == "ALIVE"
        if names:
            nodes[n.node_id] = names[0]
        else:
            assert n.is_head_node and n.resources_total.get("CPU", 0) == 0
    assert sorted(nodes.values()) == [f"node_{k}" for k in range(1, WORKERS + 1)]
    return nodes


@pytest.fixture(scope="module")
def bucket(s3_endpoint) -> str:
    """One bucket for the module (the conftest's s3_bucket is per test)."""
    import uuid

    import boto3

    name = f"multinode-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return f"s3://{name}"


def submit_argv(cluster, job: str, *job_args: str) -> list[str]:
    """``signclip submit`` for ``job`` on the test cluster, the S3 settings forwarded with --env."""
    return [job, *job_args, "--address", cluster["dashboard"], "--working-dir", str(ROOT), "--env", "AWS_*"]


def tasks_by_node(dashboard: str, job_id: str, expect: set[str], wait_s: float = 20) -> Counter:
    """How many of the job's tasks (actor creation included) ran on each node, once ``expect`` all show."""
    from ray.util.state import list_tasks

    deadline = time.monotonic() + wait_s
    while True:  # task events reach the state API a moment after the tasks ran
        tasks = list_tasks(address=dashboard, filters=[("job_id", "=", job_id)], limit=10_000, raise_on_missing_output=False)
        per_node = Counter(t.node_id for t in tasks if t.node_id)
        if expect <= set(per_node) or time.monotonic() > deadline:
            return per_node
        time.sleep(1)


def assert_ran_on_every_worker(cluster, client, worker_nodes: dict[str, str], job: str, job_args: list[str]) -> None:
    """The one submission of ``job`` ran tasks on every worker node (the head may have had some too)."""
    (submission,) = attempts_of(client, job, job_args)
    job_id = client.get_job_info(submission).job_id
    per_node = tasks_by_node(cluster["dashboard"], job_id, set(worker_nodes))
    assert set(worker_nodes) <= set(per_node), {worker_nodes.get(n, "head"): c for n, c in per_node.items()}


def attempts_of(client, job: str, job_args: list[str]) -> list[str]:
    base = submit.submission_id(job, job_args)
    return [j.submission_id for j in client.list_jobs() if submit.attempt_number(base, j.submission_id or "")]


@pytest.fixture(scope="module")
def extracted(cluster, client, bucket, videos_dir, s3_endpoint):
    """The extract job over the real videos in S3; returns what a test needs to check it."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    name = bucket.removeprefix("s3://")
    videos = sorted(videos_dir.glob("*.mp4"))
    for v in videos:
        s3.upload_file(str(v), name, f"videos/{v.name}")
    job_args = ["--input", f"{bucket}/videos/", "--output", f"{bucket}/poses/", "--min-actors", "2",
                "--max-actors", "2", "--tasks-per-actor", "1", "--no-progress"]
    started = time.monotonic()
    rc = submit.main(submit_argv(cluster, "extract", *job_args))
    return {"rc": rc, "job_args": job_args, "videos": videos, "seconds": time.monotonic() - started}


@pytest.mark.timeout(240)
def test_extract_job_reads_and_writes_s3(extracted, bucket):
    assert extracted["rc"] == 0
    rows = manifests.read_manifest(f"{bucket}/poses/manifest.parquet")
    assert sorted(rows["status"]) == ["ok"] * len(extracted["videos"]), rows[["id", "status", "error"]]
    frames = {"test_video": 58, "sample_video": 9}  # SOURCES.md
    from pose_format import Pose

    for row in rows.itertuples():
        assert row.pose_path.startswith(f"{bucket}/poses/")
        pose = Pose.read(storage.read_bytes(row.pose_path))
        assert pose.body.data.shape[0] == frames[row.id] == row.frames


@pytest.mark.timeout(120)
def test_extract_tasks_ran_on_both_workers(extracted, cluster, client, worker_nodes):
    assert_ran_on_every_worker(cluster, client, worker_nodes, "extract", extracted["job_args"])


@pytest.mark.timeout(120)
def test_resubmitting_extract_does_not_duplicate_it(extracted, cluster, client):
    assert extracted["rc"] == 0
    assert submit.main(submit_argv(cluster, "extract", *extracted["job_args"])) == 0
    assert len(attempts_of(client, "extract", extracted["job_args"])) == 1


@pytest.fixture(scope="module")
def embedded(extracted, cluster, client, bucket, poses_dir, tmp_path_factory):
    """The embed job over the extracted poses plus the real sample poses, with a tiny model from S3.

    Submitted with --no-wait, then submitted again: the second submission follows the running job."""
    import signclip

    model = tmp_path_factory.mktemp("model") / "tiny"
    signclip.create("tiny").save(str(model))
    storage.put_dir(str(model), f"{bucket}/models/tiny")
    samples = sorted(poses_dir.glob("*.pose"))
    for p in samples:
        storage.write_bytes_atomic(f"{bucket}/poses/samples/{p.name}", p.read_bytes())
    job_args = ["--model", f"{bucket}/models/tiny", "--input", f"{bucket}/poses/", "--output", f"{bucket}/emb",
                "--actors", "1", "--rows-per-block", "1", "--batch-size", "4"]
    first = submit.main(submit_argv(cluster, "embed", *job_args, "--no-wait"))
    second = submit.main(submit_argv(cluster, "embed", *job_args))
    return {"first": first, "second": second, "job_args": job_args, "samples": samples}


@pytest.mark.timeout(240)
def test_embed_job_reads_and_writes_s3(embedded, bucket):
    assert embedded["first"] == 0 and embedded["second"] == 0
    index = embedding_store.read_index(f"{bucket}/emb")
    status = dict(zip(index["id"], index["status"]))
    expected = 2 + len(embedded["samples"])  # the two extracted videos and every sample pose
    assert len(status) == expected, status
    bad = {i for i in status if any(i.endswith(n) for n in NOT_HOLISTIC)}
    assert bad and all(status[i] == "failed" for i in bad)
    assert all(s == "ok" for i, s in status.items() if i not in bad), status
    summary = json.loads(storage.read_bytes(f"{bucket}/emb/summary.json"))
    assert summary["total_ok"] == expected - len(bad)
    corpus = embedding_store.load(f"{bucket}/emb")
    assert len(corpus) == expected - len(bad) and corpus.embeddings.shape[0] == len(corpus)


@pytest.mark.timeout(120)
def test_embed_tasks_ran_on_both_workers(embedded, cluster, client, worker_nodes):
    assert_ran_on_every_worker(cluster, client, worker_nodes, "embed", embedded["job_args"])


@pytest.mark.timeout(120)
def test_resubmitting_embed_does_not_duplicate_it(embedded, cluster, client):
    """The --no-wait submission and the one that followed it are one job; a third after success is none."""
    assert submit.main(submit_argv(cluster, "embed", *embedded["job_args"])) == 0
    assert len(attempts_of(client, "embed", embedded["job_args"])) == 1
