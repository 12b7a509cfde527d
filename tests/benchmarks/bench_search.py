"""Dictionary search at scale: exact search against the approximate index (FAISS HNSW) over >= 100,000 clips.

    .venv/bin/python tests/benchmarks/bench_search.py                          # 100,000 clips, 8 clients
    .venv/bin/python tests/benchmarks/bench_search.py --clips 20000 --seconds 6   # quick

The corpus: the sample data's real poses embedded by a full-size model (``signclip.create("e7.2")``, random
weights: 768-dimensional unit vectors, as the released checkpoint's) through the embed job's own stages, then
copied with noise to ``--clips`` clips (along ``--noise-rank`` shared directions, so that the corpus has a low
intrinsic dimension as real embeddings do) and written as embedding shards, as ``signclip embed`` writes them.

Two measurements, both modes side by side:

- **the service**: two HTTP servers (``signclip.api`` with the in-process backend, under uvicorn), one per mode,
  over the same corpus; ``--clients`` closed-loop clients send ``GET /v1/search?q=<a prompt>&k=10`` (the text is
  embedded by the model, then searched). Both are up for the whole run and loaded in turn, in rounds whose order
  alternates. p50/p99 latency and answered requests per second.
- **the index alone** (in this process, one query at a time): p50/p99 of ``VectorIndex.search``, and the
  approximate index's recall@10 against exact search over queries that are prompts' text embeddings and noisy
  copies of corpus clips (a search by sign).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

GLOSSES = ["house", "sad", "library", "police", "mother", "school", "water", "thank you", "good morning", "book",
           "friend", "teacher", "coffee", "tomorrow", "how are you", "random text"]
MODES = ("exact", "approximate")


def percentiles_ms(latencies_s: list[float]) -> dict[str, float]:
    return {f"p{q}_ms": 1000 * float(np.percentile(latencies_s, q)) for q in (50, 99)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the corpus ------------------------------------------------------------------------------------------
def _noise(rng: np.random.Generator, n: int, directions: np.ndarray, scale: float) -> np.ndarray:
    along = rng.normal(0, scale / np.sqrt(len(directions)), (n, len(directions))) @ directions
    return along + rng.normal(0, 0.05 * scale / np.sqrt(directions.shape[1]), (n, directions.shape[1]))


def build_corpus(work: Path, clips: int, noise: float, seed: int, noise_rank: int) -> tuple[str, str]:
    """An embedding directory of ``clips`` noisy copies of the real clips' embeddings; returns (it, model)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    import signclip
    from signclip.io import embedding_store, sample_data
    from tests.embed_helpers import write_corpus

    model_dir = work / "model"
    signclip.create("e7.2", seed=seed).save(str(model_dir))
    stages_log = logging.getLogger("signclip.embedding.stages")
    stages_log.setLevel(logging.ERROR)  # write_corpus's deliberately refused clip (an OpenPose file) is not news here
    small = write_corpus(work / "real", sample_data.data_dir() / "poses", model_dir)
    stages_log.setLevel(logging.NOTSET)
    # shards are plain Parquet (see embedding_store): read whole, rows kept as written
    table = pa.concat_tables([pq.read_table(path) for path in embedding_store.list_shards(small)])
    ok = [i for i, (s, k) in enumerate(zip(table.column("status").to_pylist(), table.column("kind").to_pylist()))
          if s == "ok" and k == "pose"]
    base = table.take(ok)
    vectors = np.asarray(base.column("embedding").to_pylist(), dtype=np.float32)
    rng = np.random.default_rng(seed)
    # copies vary along a few shared directions (+ a little isotropic noise): like real embeddings, the corpus has
    # a low intrinsic dimension; isotropic noise alone makes ~7 clusters of equidistant points with no true top-10
    directions = np.linalg.qr(rng.normal(size=(vectors.shape[1], noise_rank)))[0].T
    out = str(work / "corpus")
    per_shard = 10_000
    for start in range(0, clips, per_shard):
        n = min(per_shard, clips - start)
        pick = np.arange(start, start + n) % len(base)
        rows = base.take(pa.array(pick))
        noisy = vectors[pick] + _noise(rng, n, directions, noise)
        noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
        ids = [f"{i}-{start + j:07d}" for j, i in enumerate(rows.column("id").to_pylist())]
        rows = rows.set_column(rows.schema.get_field_index("id"), "id", pa.array(ids))
        emb_type = rows.schema.field("embedding").type
        flat = pa.array(noisy.astype(np.float32).ravel())
        rows = rows.set_column(rows.schema.get_field_index("embedding"), "embedding",
                               pa.FixedSizeListArray.from_arrays(flat, emb_type.list_size))
        embedding_store.write_shard(rows, out, "bench", f"{start // per_shard:05d}")
    return out, str(model_dir)


# -- the servers -----------------------------------------------------------------------------------------
def run_server(corpus: str, model: str, mode: str, port: int) -> None:
    import uvicorn

    from signclip.api import LocalBackend, ServiceSettings, create_app

    settings = ServiceSettings.from_mapping({"models": {"default": model}, "indexes": {"corpus": corpus},
                                            "search_mode": mode, "enable_video": False})
    uvicorn.run(create_app(LocalBackend(settings), settings, token=""), host="127.0.0.1", port=port,
                log_level="warning")


def _wait_ready(urls: dict[str, str], procs: list[subprocess.Popen], logs: Path) -> None:
    import httpx

    deadline = time.monotonic() + 900  # each server embeds nothing but builds its index first
    for mode, url in urls.items():
        while True:
            try:
                if httpx.get(f"{url}/ready", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"the {mode} server did not start: {(logs / f'{mode}.log').read_text()[-2000:]}")
            time.sleep(1)


@contextlib.contextmanager
def servers(corpus: str, model: str, logs: Path) -> Iterator[dict[str, str]]:
    """One server per mode over ``corpus``; yields mode -> base URL once both answer /ready."""
    procs: list[subprocess.Popen] = []
    urls: dict[str, str] = {}
    with contextlib.ExitStack() as files:
        try:
            for mode in MODES:
                port = free_port()
                log = files.enter_context(open(logs / f"{mode}.log", "w"))
                procs.append(subprocess.Popen([sys.executable, __file__, "--serve", corpus, "--model", model,
                                               "--mode", mode, "--port", str(port)], stdout=log, stderr=log))
                urls[mode] = f"http://127.0.0.1:{port}"
            _wait_ready(urls, procs, logs)
            yield urls
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()


async def load(url: str, clients: int, seconds: float, seed: int) -> tuple[list[float], int]:
    """Closed-loop clients for ``seconds``: latencies (s) of answered requests, and failures."""
    import httpx

    latencies: list[float] = []
    failed = 0
    stop = time.monotonic() + seconds

    async def client(c: int, http: httpx.AsyncClient) -> None:
        nonlocal failed
        rng = random.Random(seed + c)
        while time.monotonic() < stop:
            q = f"<en> <ase> {rng.choice(GLOSSES)}"
            started = time.perf_counter()
            r = await http.get(f"{url}/v1/search", params={"q": q, "k": 10, "index": "corpus"})
            if r.status_code == 200 and len(r.json()["hits"]) == 10:
                latencies.append(time.perf_counter() - started)
            else:
                failed += 1

    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=clients)) as http:
        await asyncio.gather(*(client(c, http) for c in range(clients)))
    return latencies, failed


def service_figures(urls: dict[str, str], clients: int, seconds: float, rounds: int) -> dict[str, dict]:
    for url in urls.values():  # warm-up
        asyncio.run(load(url, clients, 2, 0))
    got: dict[str, dict] = {m: {"lat": [], "failed": 0, "time": 0.0} for m in MODES}
    for r in range(rounds):
        for mode in (MODES if r % 2 == 0 else MODES[::-1]):
            started = time.perf_counter()
            lat, failed = asyncio.run(load(urls[mode], clients, seconds / rounds, r))
            got[mode]["time"] += time.perf_counter() - started
            got[mode]["lat"] += lat
            got[mode]["failed"] += failed
    return {m: {**percentiles_ms(g["lat"]), "rps": len(g["lat"]) / g["time"], "failed": g["failed"]}
            for m, g in got.items()}


# -- the index alone -------------------------------------------------------------------------------------
def index_figures(corpus: str, model: str, queries: int, noise: float, seed: int) -> dict[str, dict]:
    from signclip.io import embedding_store
    from signclip.model.embedder import Embedder
    from signclip.model.factory import load as load_model
    from signclip.search.index import VectorIndex

    vectors = embedding_store.load(corpus).embeddings
    texts = Embedder(load_model(model)).embed_texts([f"<en> <ase> {g}" for g in GLOSSES])
    rng = np.random.default_rng(seed + 1)
    picked = vectors[rng.choice(len(vectors), queries - len(texts), replace=False)]
    signs = picked + rng.normal(0, 0.2 * noise / np.sqrt(vectors.shape[1]), picked.shape)  # a new take of a clip
    signs /= np.linalg.norm(signs, axis=1, keepdims=True)
    asked = np.vstack([texts, signs]).astype(np.float32)
    figures, found = {}, {}
    for mode in MODES:
        started = time.perf_counter()
        index = VectorIndex(vectors, mode)  # type: ignore[arg-type]
        built = time.perf_counter() - started
        lat, rows = [], []
        for q in asked:
            t = time.perf_counter()
            rows.append(index.search(q[None], 10)[1][0])
            lat.append(time.perf_counter() - t)
        found[mode] = rows
        figures[mode] = {**percentiles_ms(lat), "build_s": built}
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(found["approximate"], found["exact"])])
    figures["exact"]["recall"], figures["approximate"]["recall"] = 1.0, float(recall)
    return figures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", type=int, default=100_000)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=24, help="load time per mode, split into rounds")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--queries", type=int, default=500, help="queries for the index-alone figures and recall")
    p.add_argument("--noise", type=float, default=0.5, help="norm of the noise added to a copy (unit vectors)")
    p.add_argument("--noise-rank", type=int, default=16, help="directions the copies vary along")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--serve", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--mode", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        run_server(args.serve, args.model, args.mode, args.port)
        return 0

    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        corpus, model = build_corpus(work, args.clips, args.noise, args.seed, args.noise_rank)
        print(f"corpus: {args.clips} clips (768-d, noisy copies of the sample poses' embeddings) written in "
              f"{time.perf_counter() - started:.0f} s", flush=True)
        alone = index_figures(corpus, model, args.queries, args.noise, args.seed)
        with servers(corpus, model, work) as urls:
            http = service_figures(urls, args.clients, args.seconds, args.rounds)

    e, a = "exact", "approximate"
    rows = [("service p50 (ms)", http[e]["p50_ms"], http[a]["p50_ms"]),
            ("service p99 (ms)", http[e]["p99_ms"], http[a]["p99_ms"]),
            (f"service req/s ({args.clients} clients)", http[e]["rps"], http[a]["rps"]),
            ("index alone p50 (ms)", alone[e]["p50_ms"], alone[a]["p50_ms"]),
            ("index alone p99 (ms)", alone[e]["p99_ms"], alone[a]["p99_ms"]),
            ("index build (s)", alone[e]["build_s"], alone[a]["build_s"]),
            (f"recall@10 vs exact ({args.queries} queries)", alone[e]["recall"], alone[a]["recall"])]
    print(f"\n{'':40s} {'exact':>10s} {'approximate':>12s} {'exact/approx':>13s}")
    for name, x, y in rows:
        print(f"{name:40s} {x:10.3f} {y:12.3f} {x / y if y else float('nan'):13.2f}")
    failed = http[e]["failed"] + http[a]["failed"]
    if failed:
        print(f"\n{failed} requests were not answered with 10 hits", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
