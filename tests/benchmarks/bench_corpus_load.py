"""Loading a search corpus (embedding shards -> metadata + one float32 [N, E] array): peak memory from a disk,
time from an object store.

    .venv/bin/python tests/benchmarks/bench_corpus_load.py               # both stores, each at its default size
    .venv/bin/python tests/benchmarks/bench_corpus_load.py --clips 20000 # quick
    .venv/bin/python tests/benchmarks/bench_corpus_load.py --store s3    # 50,000 clips in 196 shards on S3 only

Both sides load the same shards, each in a fresh process, and report the process's peak resident memory above
what it held before loading (``VmHWM`` - ``VmRSS`` from ``/proc/self/status``) and the time.

From a disk (``--store local``):

- **baseline**: the previous ``embedding_store.load``, kept here: every shard's columns read into one table, the
  embedding column combined into one array, then the selected rows copied out of it;
- **signclip**: ``embedding_store.load``, which reads the metadata, selects, then gathers the selected rows'
  embeddings one shard at a time into the final array.

From an object store (``--store s3``): a moto S3 server behind a proxy that makes each request wait
``--latency-ms`` (a remote store's round trip), shards of 256 rows as ``signclip embed`` writes them:

- **baseline**: ``embedding_store.load`` as it read an object store before: one shard at a time, each through
  pyarrow's file object over fsspec (two HEADs, then the footer and each column chunk in ranged GETs), kept here;
- **signclip**: ``embedding_store.load``: ``REMOTE_READERS`` shards at once, each in one GET.

It also counts the requests each side sends (through the proxy).

A tenth of the rows are failed and every shard repeats some ids of the one before (a rerun), so selection is real.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).parent))


def write_corpus(out: str, clips: int, dim: int, shards: int) -> None:
    import pyarrow as pa

    from signclip.io import embedding_store

    rng = np.random.default_rng(0)
    per = -(-clips // shards)
    fields = embedding_store.schema(dim)
    for shard in range(shards):
        first = max(0, shard * per - per // 20)  # 5% of the previous shard's ids again
        ids = [f"clip-{i:07d}" for i in range(first, min(clips, (shard + 1) * per))]
        n = len(ids)
        vectors = rng.normal(size=(n, dim)).astype(np.float32)
        failed = rng.random(n) < 0.1
        columns = {f.name: pa.array([""] * n, f.type) for f in fields if pa.types.is_string(f.type)}
        columns.update(id=pa.array(ids), kind=pa.array(["pose"] * n), status=pa.array(np.where(failed, "failed", "ok")),
                       flip=pa.array([False] * n), anonymized=pa.array([False] * n),
                       window_stride=pa.array([128] * n, pa.int64()), frames=pa.array([60] * n, pa.int64()),
                       segments=pa.array([1] * n, pa.int64()),
                       embedding=pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim,
                                                                   mask=pa.array(failed)))
        table = pa.table({f.name: columns[f.name] for f in fields}, schema=fields)
        embedding_store.write_shard(table, out, f"r{shard:03d}", "x")


def baseline_load(output: str) -> tuple[int, np.ndarray]:
    """The previous loader: all columns of every shard, the embedding column combined, then selected."""
    from signclip.io import embedding_store as store

    table = store._read(store.list_shards(output), None)
    meta = store._pandas(table.drop(["embedding"]))
    meta["_emb"] = np.arange(len(meta))
    meta = store._one_per_id(meta)
    meta = meta[(meta["status"] == "ok") & meta["kind"].isin(("pose", "video"))]
    column = table.column("embedding").combine_chunks()
    flat = column.values.to_numpy(zero_copy_only=False).reshape(-1, column.type.list_size)
    emb = flat[column.offset:column.offset + len(column)][meta["_emb"].to_numpy()].astype(np.float32, copy=False)
    return len(meta), np.ascontiguousarray(emb)


def signclip_load(output: str) -> tuple[int, np.ndarray]:
    from signclip.io import embedding_store

    corpus = embedding_store.load(output, kinds=("pose", "video"))
    return len(corpus), corpus.embeddings


def serial_load(output: str) -> tuple[int, np.ndarray]:
    """The previous object-store reads: one shard at a time, through a file object."""
    from contextlib import contextmanager

    import pyarrow.parquet as pq

    from signclip.io import embedding_store, storage

    @contextmanager
    def file_object(path: str):
        fs, _ = storage.pyarrow_filesystem(path)
        with fs.open_input_file(storage.filesystem(path)[1]) as f:
            yield pq.ParquetFile(f)

    embedding_store.REMOTE_READERS = 1
    embedding_store._shard_file = file_object
    corpus = embedding_store.load(output, kinds=("pose", "video"))
    return len(corpus), corpus.embeddings


def _status_kib(name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise KeyError(name)


def child(side: str, output: str) -> None:
    import pyarrow  # noqa: F401 - imported before the baseline RSS is read, as both sides need it

    import signclip.io.embedding_store  # noqa: F401

    before = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    started = time.perf_counter()
    rows, emb = {"baseline": baseline_load, "serial": serial_load, "signclip": signclip_load}[side](output)
    seconds = time.perf_counter() - started
    print(json.dumps({"rows": rows, "peak_mib": (_status_kib("VmHWM") - before) / 1024, "seconds": seconds,
                      "array_mib": emb.nbytes / 2**20, "checksum": float(emb[:: max(1, rows // 100)].sum())}))


def measure(side: str, output: str, env: dict[str, str] | None = None) -> dict:
    run = subprocess.run([sys.executable, __file__, "--child", side, output], capture_output=True, text=True,
                         check=True, env=env)
    return json.loads(run.stdout.strip().splitlines()[-1])


def measure_s3(clips: int, dim: int, shards: int, latency_ms: float) -> tuple[dict, dict]:
    """Both sides from a moto bucket behind the latency proxy (the corpus is written to moto directly)."""
    import os

    import boto3
    from latency_proxy import start as start_proxy

    from signclip.io import storage
    from tests.s3_server import start_moto

    moto, url = start_moto()
    proxy = None
    try:
        os.environ.update(AWS_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                          AWS_DEFAULT_REGION="us-east-1")
        storage._filesystem.cache_clear()
        boto3.client("s3", endpoint_url=url).create_bucket(Bucket="bench")
        write_corpus("s3://bench/emb", clips, dim, shards)
        counts = Path(tempfile.mkdtemp(prefix="bench-corpus-load-")) / "requests.json"
        proxy, slow_url = start_proxy(url, latency_ms, str(counts))
        env = {**os.environ, "AWS_ENDPOINT_URL": slow_url}
        sides = []
        for side in ("serial", "signclip"):
            before = json.loads(counts.read_text()) if counts.exists() else {}
            sides.append(measure(side, "s3://bench/emb", env))
            after = json.loads(counts.read_text())
            sides[-1]["requests"] = {m: n - before.get(m, 0) for m, n in sorted(after.items()) if n > before.get(m, 0)}
        return sides[0], sides[1]
    finally:
        for proc in (proxy, moto):
            if proc is not None:
                proc.terminate()
                proc.wait(10)


def compare(store: str, clips: int | None, dim: int, shards: int | None, latency_ms: float) -> None:
    """Load one corpus both ways from ``store`` and print both and their ratio."""
    clips = clips or (200_000 if store == "local" else 50_000)
    shards = shards or (10 if store == "local" else -(-clips // 256))
    if store == "s3":
        base, ours = measure_s3(clips, dim, shards, latency_ms)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-corpus-load-") as tmp:
            write_corpus(tmp, clips, dim, shards)
            base, ours = measure("baseline", tmp), measure("signclip", tmp)
    assert base["rows"] == ours["rows"] and abs(base["checksum"] - ours["checksum"]) < 1e-3 * abs(base["checksum"])
    where = f"on S3 ({latency_ms:g} ms a request)" if store == "s3" else "on disk"
    print(f"{ours['rows']} clips x {dim} ({ours['array_mib']:.0f} MiB of embeddings) in {shards} shards {where}")
    base_name = "serial" if store == "s3" else "baseline"
    for name, r in ((base_name, base), ("signclip", ours)):
        sent = ", ".join(f"{n / shards:.1f} {m}" for m, n in r.get("requests", {}).items())
        print(f"  {name:<9} peak +{r['peak_mib']:7.0f} MiB ({r['peak_mib'] / r['array_mib']:.2f}x the array), "
              f"{r['seconds']:.2f} s" + (f", requests a shard: {sent}" if sent else ""))
    print(f"  signclip / {base_name}: peak memory {ours['peak_mib'] / base['peak_mib']:.2f}x, "
          f"time {ours['seconds'] / base['seconds']:.2f}x (speed {base['seconds'] / ours['seconds']:.1f}x)", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", choices=("local", "s3", "both"), default="both")
    p.add_argument("--clips", type=int, help="default: 200,000 from a disk, 50,000 from S3")
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--shards", type=int, help="default: 10 from a disk, 256 rows each (the embed job's) from S3")
    p.add_argument("--latency-ms", type=float, default=20.0, help="the object store's round trip (--store s3)")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(*args.child)
        return
    for store in ("local", "s3") if args.store == "both" else (args.store,):
        compare(store, args.clips, args.dim, args.shards, args.latency_ms)


if __name__ == "__main__":
    main()
