"""Each job's wall time on a cluster whose nodes share only S3, against the same job on one local Ray.

    flock /tmp/signclip-ray.lock .venv/bin/python tests/benchmarks/bench_cluster.py

The same commands as ``tests/test_isolated_cluster.py``, on the same data (the sample videos and labelled
poses, a tiny model, everything on a local S3 server, moto):

- **isolated**: ``cluster/local_cluster.sh start --isolated``: a head with no task CPUs and two worker nodes of
  one CPU each, in private mount namespaces; each job through ``signclip submit`` (upload of the working
  directory, the driver on the head, every task on a worker, the model fetched by each node).
- **local**: the job run as a laptop user runs it, ``python -m signclip.jobs.<job>`` starting its own Ray on
  this machine's 2 CPUs.

Wall time from the command's start to its exit, Ray's start-up included on both sides.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import signclip
from signclip.io import sample_data, storage
from tests.cluster_helpers import ROOT, local_cluster
from tests.embed_helpers import LABELLED
from tests.s3_server import start_moto


def start_s3() -> subprocess.Popen:
    proc, url = start_moto()
    os.environ.update(AWS_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_DEFAULT_REGION="us-east-1")
    return proc


def upload(bucket: str, work: Path) -> dict[str, str]:
    import pandas as pd

    data = sample_data.data_dir()
    for v in sorted((data / "videos").glob("*.mp4")):
        storage.write_bytes_atomic(f"{bucket}/videos/{v.name}", v.read_bytes())
    clips = {}
    for name in LABELLED:
        clips[name] = f"{bucket}/clips/{name}.pose"
        storage.write_bytes_atomic(clips[name], (data / "poses" / f"{name}.pose").read_bytes())
    signclip.create("tiny", seed=0).save(str(work / "tiny"))
    storage.put_dir(str(work / "tiny"), f"{bucket}/models/tiny")
    rows = [(url, LABELLED[name]) for name, url in clips.items()] * 3
    for key, chosen in (("train", rows), ("val", rows[:4])):
        csv = pd.DataFrame([{"pose": p, "gloss": g, "sign_language": "ase"} for p, g in chosen]).to_csv(index=False)
        storage.write_bytes_atomic(f"{bucket}/manifests/{key}.csv", csv.encode())
    corpus = [{"id": name, "path": url, "gloss": LABELLED[name], "language": "ase"} for name, url in clips.items()]
    storage.write_bytes_atomic(f"{bucket}/manifests/corpus.csv", pd.DataFrame(corpus).to_csv(index=False).encode())
    return {"model": f"{bucket}/models/tiny"}


def jobs(bucket: str, out: str, model: str) -> list[tuple[str, list[str]]]:
    o = f"{bucket}/{out}"
    return [
        ("extract", ["--input", f"{bucket}/videos/", "--output", f"{o}/poses/", "--min-actors", "2",
                     "--max-actors", "2", "--tasks-per-actor", "1", "--no-progress"]),
        ("train", ["--train", f"{bucket}/manifests/train.csv", "--val", f"{bucket}/manifests/val.csv", "--init", model,
                   "--output", f"{o}/run", "--epochs", "1", "--batch-size", "4", "--workers", "2",
                   "--cpus-per-worker", "0.5", "--data-cpus", "0.1"]),
        ("embed", ["--model", model, "--input", f"{bucket}/manifests/corpus.csv", "--output", f"{o}/emb",
                   "--rows-per-block", "1", "--batch-size", "2", "--actors", "2"]),
        ("evaluate", ["--embeddings", f"{o}/emb", "--model", model, "--output", f"{o}/eval", "--language", "ase",
                      "--shots", "1"]),
        ("search", ["--embeddings", f"{o}/emb", "<en> <ase> house", "-k", "3", "--json"]),
    ]


def timed(command: list[str], env: dict[str, str]) -> tuple[int, float]:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        print(f"{' '.join(command[:4])}... exited {done.returncode}: {done.stderr[-1500:]}", file=sys.stderr)
    return done.returncode, seconds


def main() -> int:
    s3 = start_s3()
    import boto3

    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"]).create_bucket(Bucket=bucket)
    bucket = f"s3://{bucket}"
    results: dict[str, dict[str, tuple[int, float]]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            model = upload(bucket, Path(tmp))["model"]
            env = dict(os.environ, RAY_AUTH_MODE="disabled")
            for job, args in jobs(bucket, "local", model):
                results.setdefault(job, {})["local"] = timed([sys.executable, "-m", f"signclip.jobs.{job}", *args], env)
            with local_cluster(workers=2, isolated=True) as cluster:
                if not cluster["isolated"]:
                    print(f"mount namespaces unavailable ({cluster['warning'].strip()}): nodes share this disk")
                for job, args in jobs(bucket, "isolated", model):
                    results[job]["isolated"] = timed(
                        [sys.executable, "-m", "signclip.jobs.submit", job, *args, "--address", cluster["dashboard"],
                         "--working-dir", str(ROOT), "--env", "AWS_*"], env)
    finally:
        s3.terminate()
    print(f"\n{'job':10s} {'local Ray (s)':>14s} {'isolated cluster (s)':>21s} {'isolated/local':>15s}")
    failed = False
    for job, got in results.items():
        (lrc, local), (irc, iso) = got["local"], got.get("isolated", (-1, float("nan")))
        failed |= bool(lrc or irc)
        print(f"{job:10s} {local:14.1f} {iso:21.1f} {iso / local:15.2f}" + ("  (failed)" if lrc or irc else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
