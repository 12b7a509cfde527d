"""Peak memory of loading a search corpus: embedding shards -> metadata + one float32 [N, E] array.

    .venv/bin/python tests/benchmarks/bench_corpus_load.py                  # 200,000 clips x 768, 10 shards
    .venv/bin/python tests/benchmarks/bench_corpus_load.py --clips 20000    # quick

Both sides load the same shards, each in a fresh process, and report the process's peak resident memory above
what it held before loading (``VmHWM`` - ``VmRSS`` from ``/proc/self/status``) and the time:

- **baseline**: the previous ``embedding_store.load``, kept here: every shard's columns read into one table, the
  embedding column combined into one array, then the selected rows copied out of it;
- **signclip**: ``embedding_store.load``, which reads the metadata, selects, then gathers the selected rows'
  embeddings one shard at a time into the final array.

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


def write_corpus(out: Path, clips: int, dim: int, shards: int) -> None:
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
        embedding_store.write_shard(table, str(out), f"r{shard:03d}", "x")


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
    rows, emb = (baseline_load if side == "baseline" else signclip_load)(output)
    seconds = time.perf_counter() - started
    print(json.dumps({"rows": rows, "peak_mib": (_status_kib("VmHWM") - before) / 1024, "seconds": seconds,
                      "array_mib": emb.nbytes / 2**20, "checksum": float(emb[:: max(1, rows // 100)].sum())}))


def measure(side: str, output: str) -> dict:
    run = subprocess.run([sys.executable, __file__, "--child", side, output], capture_output=True, text=True,
                         check=True)
    return json.loads(run.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", type=int, default=200_000)
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--shards", type=int, default=10)
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(*args.child)
        return
    with tempfile.TemporaryDirectory(prefix="bench-corpus-load-") as tmp:
        write_corpus(Path(tmp), args.clips, args.dim, args.shards)
        base, ours = measure("baseline", tmp), measure("signclip", tmp)
    assert base["rows"] == ours["rows"] and abs(base["checksum"] - ours["checksum"]) < 1e-3 * abs(base["checksum"])
    print(f"{ours['rows']} clips x {args.dim} ({ours['array_mib']:.0f} MiB of embeddings) in {args.shards} shards")
    for name, r in (("baseline", base), ("signclip", ours)):
        print(f"  {name:<9} peak +{r['peak_mib']:7.0f} MiB ({r['peak_mib'] / r['array_mib']:.2f}x the array), "
              f"{r['seconds']:.2f} s")
    print(f"  peak memory signclip / baseline: {ours['peak_mib'] / base['peak_mib']:.2f}x; "
          f"time: {ours['seconds'] / base['seconds']:.2f}x")


if __name__ == "__main__":
    main()
