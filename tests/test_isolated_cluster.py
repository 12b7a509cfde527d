"""Every job and the service on a cluster whose nodes share nothing but object storage.

``cluster/local_cluster.sh start --isolated``: a head with no task CPUs (drivers run there, no task does) and
two worker nodes, each in a mount namespace of its own with private, empty ``/tmp``, ``~/.cache`` and
``/dev/shm``. Videos, poses, manifests, the model, checkpoints and every output live only on S3 (the moto
server); the nodes start without S3 credentials, which reach the jobs through ``--env`` as on a real cluster.
The jobs go through ``signclip submit``; the service through ``signclip serve --address``. At the end, worker
nodes are killed whole in the middle of an embed run, an extract run and a training run.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

import signclip
from signclip.io import embedding_store, manifests, storage
from signclip.jobs import submit
from tests.cluster_helpers import ROOT, local_cluster, script, tasks_by_node, worker_nodes
from tests.embed_helpers import LABELLED, warped_copies

pytestmark = [pytest.mark.ray, pytest.mark.slow]

PROBE = r"""
import json, os, ray
ray.init()
@ray.remote(num_cpus=0.1)
def write():
    for path in ("/tmp/signclip-probe", os.path.expanduser("~/.cache/signclip-probe")):
        with open(path, "w") as f:
            f.write("written on one node")
    return ray.get_runtime_context().get_node_id()
@ray.remote(num_cpus=0.1)
def look():
    return ray.get_runtime_context().get_node_id(), [os.path.exists(p) for p in
        ("/tmp/signclip-probe", os.path.expanduser("~/.cache/signclip-probe"))]
writer = ray.get(write.options(resources={"node_1": 0.01}).remote())
reader, seen = ray.get(look.options(resources={"node_2": 0.01}).remote())
again = ray.get(look.options(resources={"node_1": 0.01}).remote())[1]
print("PROBE " + json.dumps({"writer": writer, "reader": reader, "other_node_sees": seen, "same_node_sees": again,
      "driver_sees": [os.path.exists(p) for p in ("/tmp/signclip-probe",
                                                  os.path.expanduser("~/.cache/signclip-probe"))]}))
"""


@pytest.fixture(scope="module")
def cluster():
    with local_cluster(workers=2, isolated=True) as c:
        yield c


@pytest.fixture(scope="module")
def client(cluster):
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(cluster["dashboard"])


@pytest.fixture(scope="module")
def bucket(s3_endpoint) -> str:
    import uuid

    import boto3

    name = f"isolated-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return f"s3://{name}"


@pytest.fixture(scope="module")
def model(bucket, tmp_path_factory) -> dict:
    """A tiny model, on S3 only (the local copy is the test's, for comparing answers)."""
    local = tmp_path_factory.mktemp("model") / "tiny"
    signclip.create("tiny", seed=0).save(str(local))
    storage.put_dir(str(local), f"{bucket}/models/tiny")
    return {"url": f"{bucket}/models/tiny", "local": local}


def submit_argv(cluster, job: str, *job_args: str, env: tuple[str, ...] = ()) -> list[str]:
    envs = [arg for spec in ("AWS_*", *env) for arg in ("--env", spec)]
    return [job, *job_args, "--address", cluster["dashboard"], "--working-dir", str(ROOT), *envs]


def run_job(cluster, job: str, *job_args: str, env: tuple[str, ...] = ()) -> tuple[int, float]:
    started = time.monotonic()
    return submit.main(submit_argv(cluster, job, *job_args, env=env)), time.monotonic() - started


def job_id_of(client, job: str, job_args: list[str]) -> str:
    base = submit.submission_id(job, job_args)
    (found,) = [j for j in client.list_jobs() if j.submission_id == base]
    return found.job_id


def assert_ran_on_every_worker(cluster, client, job: str, job_args: list[str]) -> None:
    nodes = worker_nodes(cluster["dashboard"])
    per_node = tasks_by_node(cluster["dashboard"], job_id_of(client, job, job_args), set(nodes))
    assert set(nodes) <= set(per_node), {nodes.get(n, "head"): c for n, c in per_node.items()}


# ----------------------------------------------------------------------------------------------- the cluster

@pytest.mark.timeout(180)
def test_worker_nodes_share_no_disk(cluster, client):
    assert cluster["isolated"], f"mount namespaces unavailable: {cluster['warning']}"
    job = client.submit_job(entrypoint=f"python -c {shlex.quote(PROBE)}")
    deadline = time.monotonic() + 150
    while not client.get_job_status(job).is_terminal():
        assert time.monotonic() < deadline
        time.sleep(1)
    logs = client.get_job_logs(job)
    lines = [ln for ln in logs.splitlines() if ln.startswith("PROBE ")]
    assert len(lines) == 1, logs[-3000:]
    line = lines[0]
    probe = json.loads(line.removeprefix("PROBE "))
    assert probe["writer"] != probe["reader"]
    assert probe["same_node_sees"] == [True, True], "a node sees its own /tmp and ~/.cache"
    assert probe["other_node_sees"] == [False, False], "another node sees none of it"
    assert probe["driver_sees"] == [False, False], "nor does the head, where drivers run"


# ----------------------------------------------------------------------------------------------- extract

@pytest.fixture(scope="module")
def extracted(cluster, bucket, videos_dir):
    videos = sorted(videos_dir.glob("*.mp4"))
    for v in videos:
        storage.write_bytes_atomic(f"{bucket}/videos/{v.name}", v.read_bytes())
    job_args = ["--input", f"{bucket}/videos/", "--output", f"{bucket}/poses/", "--min-actors", "2",
                "--max-actors", "2", "--tasks-per-actor", "1", "--no-progress"]
    rc, seconds = run_job(cluster, "extract", *job_args)
    return {"rc": rc, "job_args": job_args, "videos": videos, "seconds": seconds}


@pytest.mark.timeout(300)
def test_extract_videos_on_s3_to_poses_on_s3(extracted, cluster, client, bucket):
    from pose_format import Pose

    assert extracted["rc"] == 0
    rows = manifests.read_manifest(f"{bucket}/poses/manifest.parquet")
    assert sorted(rows["status"]) == ["ok"] * len(extracted["videos"]), rows[["id", "status", "error"]]
    frames = {"test_video": 58, "sample_video": 9}  # SOURCES.md
    for row in rows.itertuples():
        assert row.pose_path.startswith(f"{bucket}/poses/")
        assert Pose.read(storage.read_bytes(row.pose_path)).body.data.shape[0] == frames[row.id] == row.frames
    assert json.loads(storage.read_bytes(f"{bucket}/poses/summary.json"))["ok"] == len(extracted["videos"])
    assert_ran_on_every_worker(cluster, client, "extract", extracted["job_args"])
    # the same command again is the same job: followed, not redone
    assert submit.main(submit_argv(cluster, "extract", *extracted["job_args"])) == 0
    base = submit.submission_id("extract", extracted["job_args"])
    assert [j.submission_id for j in client.list_jobs()].count(base) == 1


# ----------------------------------------------------------------------------------------------- train

def _pairs_manifest(bucket: str, key: str, rows: list[tuple[str, str]]) -> str:
    import pandas as pd

    url = f"{bucket}/manifests/{key}.csv"
    csv = pd.DataFrame([{"pose": p, "gloss": g, "sign_language": "ase"} for p, g in rows]).to_csv(index=False)
    storage.write_bytes_atomic(url, csv.encode())
    return url


@pytest.fixture(scope="module")
def clips(bucket, poses_dir) -> dict[str, str]:
    """The labelled real poses, on S3: id -> URL."""
    urls = {}
    for name in LABELLED:
        urls[name] = f"{bucket}/clips/{name}.pose"
        storage.write_bytes_atomic(urls[name], (poses_dir / f"{name}.pose").read_bytes())
    return urls


def _train_args(bucket: str, clips: dict[str, str], model_url: str, run: str, epochs: int, workers: int,
                checkpoint_every: int = 0) -> list[str]:
    rows = [(url, LABELLED[name]) for name, url in clips.items()] * 3
    return ["--train", _pairs_manifest(bucket, "train", rows), "--val", _pairs_manifest(bucket, "val", rows[:4]),
            "--init", model_url, "--output", run, "--epochs", str(epochs), "--batch-size", "4",
            "--checkpoint-every", str(checkpoint_every), "--workers", str(workers), "--cpus-per-worker", str(0.5 if workers > 1 else 0.8),
            "--data-cpus", "0.1", "--max-failures", "3"]


def _history(run: str) -> list[dict]:
    return [json.loads(line) for line in storage.read_bytes(f"{run}/metrics.jsonl").decode().splitlines()]


# ----------------------------------------------------------------------------------------------- embed, evaluate, search

@pytest.fixture(scope="module")
def embedded(cluster, bucket, clips, model, extracted):
    import pandas as pd

    rows = [{"id": name, "path": url, "gloss": LABELLED[name], "language": "ase"} for name, url in clips.items()]
    rows += [{"id": f"video-{p.stem}", "path": f"{bucket}/poses/{p.stem}.pose", "gloss": p.stem.replace("_", " "),
              "language": "ase"} for p in extracted["videos"]]
    storage.write_bytes_atomic(f"{bucket}/manifests/corpus.csv", pd.DataFrame(rows).to_csv(index=False).encode())
    job_args = ["--model", model["url"], "--input", f"{bucket}/manifests/corpus.csv", "--output", f"{bucket}/emb",
                "--npy-dir", f"{bucket}/emb/npy", "--rows-per-block", "1", "--batch-size", "2", "--actors", "2"]
    # Ray Data hands blocks to the first actor that is up; on 2 loaded cores it can embed all six clips before
    # the other node's actor has started, and this test is about every node fetching the model itself
    rc, seconds = run_job(cluster, "embed", *job_args, env=("RAY_DATA_DEFAULT_WAIT_FOR_MIN_ACTORS_S=120",))
    return {"rc": rc, "job_args": job_args, "ids": [r["id"] for r in rows], "seconds": seconds}


@pytest.mark.timeout(300)
def test_embed_with_the_model_on_s3(embedded, cluster, client, bucket, model, poses_dir):
    assert embedded["rc"] == 0
    corpus = embedding_store.load(f"{bucket}/emb")
    assert sorted(corpus.meta["id"]) == sorted(embedded["ids"])
    assert set(corpus.meta["model"]) == {model["url"]}  # the model as given, not a path of some node's cache
    local = signclip.load(str(model["local"]))
    house = list(corpus.meta["id"]).index("house-colin-1")
    np.testing.assert_allclose(corpus.embeddings[house], local.embed_poses([poses_dir / "house-colin-1.pose"])[0],
                               atol=1e-5)
    npy = np.load(__import__("io").BytesIO(storage.read_bytes(f"{bucket}/emb/npy/house-colin-1.npy")))
    np.testing.assert_array_equal(npy, corpus.embeddings[house])
    assert_ran_on_every_worker(cluster, client, "embed", embedded["job_args"])


@pytest.mark.timeout(300)
def test_evaluate_with_model_and_embeddings_on_s3(embedded, cluster, bucket, model):
    assert embedded["rc"] == 0
    rc, _ = run_job(cluster, "evaluate", "--embeddings", f"{bucket}/emb", "--model", model["url"],
                    "--output", f"{bucket}/eval", "--language", "ase", "--shots", "1")
    assert rc == 0
    results = json.loads(storage.read_bytes(f"{bucket}/eval/results.json"))
    assert results["n_clips"] == len(embedded["ids"]) and results["model"] == model["url"]
    assert storage.exists(f"{bucket}/eval/similarity_heatmap.png")


@pytest.mark.timeout(300)
def test_search_an_s3_corpus(embedded, cluster, bucket, capsys):
    assert embedded["rc"] == 0
    capsys.readouterr()
    rc, _ = run_job(cluster, "search", "--embeddings", f"{bucket}/emb", "<en> <ase> house", "-k", "3", "--json")
    assert rc == 0
    (line,) = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith('{"query"')]
    hits = json.loads(line)["hits"]
    assert [h["rank"] for h in hits] == [1, 2, 3] and {h["id"] for h in hits} <= set(embedded["ids"])


# ----------------------------------------------------------------------------------------------- the service

def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as r:
        return json.load(r)


@pytest.mark.timeout(420)
def test_service_with_a_model_on_s3_answers_the_original_api(cluster, model, poses_dir, tmp_path):
    from ray.util.state import list_actors

    port = int(cluster["dashboard"].rsplit(":", 1)[1]) + 10
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "signclip.jobs.serve", "--address", cluster["address"],
                             "--model", f"default={model['url']}", "--no-video", "--port", str(port),
                             "--env", "AWS_*"], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{base}/ready", timeout=5) as r:
                    if json.load(r)["ready"]:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the service did not become ready"
            time.sleep(2)
        local = signclip.load(str(model["local"]))
        texts = _post(f"{base}/api/embed/text", {"text": ["<en> <ase> house", "<en> <ase> sad"]})["embeddings"]
        np.testing.assert_allclose(texts, local.embed_texts(["<en> <ase> house", "<en> <ase> sad"]), atol=1e-5)
        pose = (poses_dir / "sad-colin.pose").read_bytes()
        poses = _post(f"{base}/api/embed/pose", {"pose": base64.b64encode(pose).decode()})["embeddings"]
        np.testing.assert_allclose(poses, local.embed_poses([pose]), atol=1e-5)
        workers = set(worker_nodes(cluster["dashboard"]))
        actors = list_actors(address=cluster["dashboard"], filters=[("state", "=", "ALIVE")], limit=1000)
        replicas = [a for a in actors if "Embedder" in a.class_name or "Gateway" in a.class_name]
        # the nodes run Serve in the mode the image sets (local_cluster.sh --serve-mode fast): an HAProxy ingress
        assert any(a.class_name == "HAProxyManager" for a in actors), sorted({a.class_name for a in actors})
        # the default layout keeps the models in the Gateway's replicas, which fetched the model onto their node
        assert replicas and all("Gateway" in a.class_name and a.node_id in workers for a in replicas), replicas
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    assert proc.returncode == 0, (tmp_path / "serve.log").read_text()[-3000:]


# ----------------------------------------------------------------------------------------------- a node lost

def _wait(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def _kill_node(cluster, node: int) -> None:
    killed = script("kill-node", str(node), "--temp-dir", cluster["temp"], env=cluster["env"], timeout=60)
    assert killed.returncode == 0 and "killed worker node" in killed.stdout, killed.stdout + killed.stderr


def _add_node(cluster) -> None:
    added = script("add-node", "--temp-dir", cluster["temp"], env=cluster["env"], timeout=180)
    assert added.returncode == 0, added.stdout + added.stderr


def _finish(client, submission: str, timeout_s: float) -> str:
    _wait(lambda: client.get_job_status(submission).is_terminal(), timeout_s, f"{submission} to end")
    return client.get_job_status(submission).value


@pytest.mark.timeout(600)
def test_embed_survives_a_lost_node(cluster, client, bucket, model, poses_dir, tmp_path):
    copies = []
    for seed, name in enumerate(LABELLED):
        copies += warped_copies(poses_dir / f"{name}.pose", tmp_path, 5, seed)
    for p in copies:
        storage.write_bytes_atomic(f"{bucket}/many/{p.name}", p.read_bytes())
    job_args = ["--model", model["url"], "--input", f"{bucket}/many/", "--output", f"{bucket}/emb-lost",
                "--rows-per-block", "1", "--batch-size", "1", "--shard-rows", "1", "--actors", "2"]
    assert submit.main(submit_argv(cluster, "embed", *job_args, "--no-wait")) == 0
    _wait(lambda: len(embedding_store.list_shards(f"{bucket}/emb-lost")) >= 3, 240, "the first shards")
    _kill_node(cluster, 1)
    status = _finish(client, submit.submission_id("embed", job_args), 420)
    _add_node(cluster)
    assert status == "SUCCEEDED", client.get_job_logs(submit.submission_id("embed", job_args))[-3000:]
    index = embedding_store.read_index(f"{bucket}/emb-lost")
    assert sorted(index["id"]) == sorted(p.stem for p in copies) and set(index["status"]) == {"ok"}
    written = manifests.read_manifest(f"{bucket}/emb-lost/manifest.parquet")
    assert written["id"].is_unique and len(written) == len(copies)


@pytest.mark.timeout(600)
def test_extract_survives_a_lost_node(cluster, client, bucket, videos_dir):
    videos = []
    for k in range(4):
        for v in sorted(videos_dir.glob("*.mp4")):
            videos.append(f"{v.stem}-{k}")
            storage.write_bytes_atomic(f"{bucket}/many-videos/{v.stem}-{k}.mp4", v.read_bytes())
    job_args = ["--input", f"{bucket}/many-videos/", "--output", f"{bucket}/poses-lost/", "--min-actors", "2",
                "--max-actors", "2", "--tasks-per-actor", "1", "--no-progress"]
    assert submit.main(submit_argv(cluster, "extract", *job_args, "--no-wait")) == 0

    def some_poses() -> bool:
        try:
            return len(storage.expand(f"{bucket}/poses-lost/", (".pose",))) >= 2
        except FileNotFoundError:
            return False

    _wait(some_poses, 240, "the first poses")
    _kill_node(cluster, 2)
    status = _finish(client, submit.submission_id("extract", job_args), 420)
    _add_node(cluster)
    assert status == "SUCCEEDED", client.get_job_logs(submit.submission_id("extract", job_args))[-3000:]
    rows = manifests.read_manifest(f"{bucket}/poses-lost/manifest.parquet")
    assert rows["id"].is_unique and sorted(rows["id"]) == sorted(videos)
    assert set(rows["status"]) == {"ok"}, rows[["id", "status", "error"]]


@pytest.mark.timeout(900)
def test_training_resumes_from_s3_and_survives_a_lost_node(cluster, client, bucket, clips, model):
    """Train one epoch (two workers, checkpoints on S3); the same command for three epochs resumes from the S3
    checkpoint, and losing its trainer's node mid-run, Ray Train restarts from the last S3 checkpoint."""
    from ray.util.state import list_actors

    run = f"{bucket}/runs/fine-tune"
    first, _ = run_job(cluster, "train", *_train_args(bucket, clips, model["url"], run, 1, 2))
    assert first == 0
    per_epoch = 12 // 4
    steps_first = [h["step"] for h in _history(run)]
    assert steps_first[-1] == per_epoch

    job_args = _train_args(bucket, clips, model["url"], run, 3, 1, checkpoint_every=1)
    assert submit.main(submit_argv(cluster, "train", *job_args, "--no-wait")) == 0
    _wait(lambda: len(_history(run)) >= len(steps_first) + 2, 300, "a checkpoint of the resumed run")
    nodes = worker_nodes(cluster["dashboard"])
    (trainer,) = [a for a in list_actors(address=cluster["dashboard"], filters=[("state", "=", "ALIVE")], limit=1000)
                  if a.class_name.startswith("RayTrainWorker")]
    _kill_node(cluster, int(nodes[trainer.node_id].removeprefix("node_")))
    status = _finish(client, submit.submission_id("train", job_args), 480)
    assert status == "SUCCEEDED", client.get_job_logs(submit.submission_id("train", job_args))[-3000:]
    steps = [h["step"] for h in _history(run)]
    # the second command continued from the first one's checkpoint on S3, and rows logged after the checkpoint
    # restored on the lost node are dropped and redone: every step once, in order
    assert steps == steps_first + list(range(per_epoch + 1, 3 * per_epoch + 1)), steps
    best = signclip.load(f"{run}/best")
    assert best.embed_texts(["<en> <ase> house"]).shape == (1, 32)
