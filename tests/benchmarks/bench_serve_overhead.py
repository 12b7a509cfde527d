"""What the service costs per request beyond the model: Ray Serve against a bare single-process server.

    flock /tmp/signclip-ray.lock .venv/bin/python tests/benchmarks/bench_serve_overhead.py
    flock /tmp/signclip-ray.lock .venv/bin/python tests/benchmarks/bench_serve_overhead.py --modes default fast

With a model that costs almost nothing (the ``tiny`` preset, random weights), a request's time is the
service's own: HTTP, JSON, base64, pose parsing, the hops between Serve's processes. Three servers answer the
original API (``GET /api/embed/text|pose``) on the same model directory, one at a time, never together:

- ``bare``: one uvicorn process holding the same :class:`signclip.Embedder` (one torch thread), each request
  embedded on the event loop as it comes: the least a server can do, and the baseline;
- ``app``: the project's HTTP app (parsing, limits, metrics) over its one-process backend, no Ray: what the
  app itself adds to ``bare``;
- ``noop``: a Serve ingress that reads the body and answers a constant embedding: Ray Serve's own floor;
- ``serve``: the project's service, ``signclip serve`` as a user starts it (autoscaling, batching across
  requests, 503 when queues are full).

``noop`` and ``serve`` run once per Serve mode: ``default`` (Ray Serve as installed) and ``fast``
(``RAY_SERVE_THROUGHPUT_OPTIMIZED=1`` and ``RAY_SERVE_ENABLE_HA_PROXY=1``: HAProxy as the ingress, direct
gRPC between replicas; the mode ``signclip serve --fast`` sets). Each server is loaded with text and with pose
requests at each client count (``--clients``), closed-loop; throughput counts HTTP 200 answers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from http_load import MIXES, Result, embed_once, load, sample_poses, wait_healthy  # noqa: E402

SERVE_MODES = {"default": {}, "fast": {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_HA_PROXY": "1"}}


# -- the servers (each runs in its own process: ``--server KIND``) -----------------------------------------
def run_bare(model_dir: str, port: int) -> None:
    """uvicorn + Starlette, the Embedder called inline: no batching, no queue, nothing between HTTP and torch."""
    import base64

    import torch
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    import signclip

    torch.set_num_threads(1)
    embedder = signclip.Embedder(signclip.load(model_dir))

    def items(value: str | list[str]) -> list[str]:
        return [value] if isinstance(value, str) else value

    async def text(request: Request) -> Response:
        vectors = embedder.embed_texts(items(json.loads(await request.body())["text"]))
        return Response(json.dumps({"embeddings": vectors.tolist()}), media_type="application/json")

    async def pose(request: Request) -> Response:
        poses = [base64.b64decode(p) for p in items(json.loads(await request.body())["pose"])]
        vectors = embedder.embed_poses(poses)
        return Response(json.dumps({"embeddings": vectors.tolist()}), media_type="application/json")

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    app = Starlette(routes=[Route("/api/embed/text", text, methods=["GET", "POST"]),
                            Route("/api/embed/pose", pose, methods=["GET", "POST"]),
                            Route("/health", health)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def run_app(model_dir: str, port: int) -> None:
    """The project's HTTP app (:mod:`signclip.api`) over its one-process backend under uvicorn: no Ray."""
    import torch
    import uvicorn

    from signclip.api import ServiceSettings, create_app
    from signclip.api.backend import LocalBackend

    torch.set_num_threads(1)
    settings = ServiceSettings.from_mapping({"models": {"default": model_dir}, "enable_video": False})
    uvicorn.run(create_app(LocalBackend(settings), settings), host="127.0.0.1", port=port, log_level="warning",
                access_log=False)


def run_noop(port: int, dim: int, cpus: int) -> None:
    """A Serve ingress that reads the body and answers one constant embedding, behind the same proxy."""
    import ray
    from ray import serve
    from starlette.requests import Request
    from starlette.responses import Response

    answer = json.dumps({"embeddings": [[0.0] * dim]}).encode()

    @serve.deployment(max_ongoing_requests=256)
    class Noop:
        async def __call__(self, request: Request) -> Response:
            if request.url.path == "/health":
                return Response(b'{"status": "ok"}', media_type="application/json")
            await request.body()
            return Response(answer, media_type="application/json")

    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(Noop.bind(), name="noop", route_prefix="/")
    _wait_for_stop()
    serve.shutdown()
    ray.shutdown()


def _wait_for_stop() -> None:
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    while not stop:
        time.sleep(0.2)


@contextlib.contextmanager
def server(kind: str, mode: str | None, model_dir: str, port: int, cpus: int, dim: int) -> Iterator[str]:
    """Starts one server in its own process (the Serve mode's variables in its environment), stops it after."""
    env = dict(os.environ, RAY_AUTH_MODE="disabled") | SERVE_MODES[mode or "default"]
    if kind == "serve":
        command = [sys.executable, "-m", "signclip.jobs.serve", "--model", f"default={model_dir}", "--no-video",
                   "--host", "127.0.0.1", "--port", str(port), "--num-cpus", str(cpus)]
    else:
        command = [sys.executable, __file__, "--server", kind, "--model-dir", model_dir, "--port", str(port),
                   "--cpus", str(cpus), "--dim", str(dim)]
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, nargs="+", default=[8, 64], help="closed-loop client counts")
    parser.add_argument("--seconds", type=float, default=8.0, help="load time per (server, mix, clients)")
    parser.add_argument("--mixes", nargs="+", default=["text", "pose"], choices=list(MIXES))
    servers = ["bare", "app"] + [f"{kind}/{mode}" for mode in SERVE_MODES for kind in ("noop", "serve")]
    parser.add_argument("--servers", nargs="+", default=servers, choices=servers,
                        help="which servers to load (bare is the baseline and always runs)")
    parser.add_argument("--cpus", type=int, default=os.cpu_count(), help="CPUs of each Serve server's Ray")
    parser.add_argument("--port", type=int, default=8731)
    parser.add_argument("--out", help="write the figures as JSON here")
    parser.add_argument("--server", choices=("bare", "app", "noop"), help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--dim", type=int, default=768, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.server == "bare":
        run_bare(args.model_dir, args.port)
        return
    if args.server == "app":
        run_app(args.model_dir, args.port)
        return
    if args.server == "noop":
        run_noop(args.port, args.dim, args.cpus)
        return

    import numpy as np

    import signclip

    poses = sample_poses()
    results: dict[str, dict[str, Result]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-serve-overhead-") as tmp:
        model_dir = str(Path(tmp) / "tiny")
        model = signclip.create("tiny")
        model.save(model_dir)
        dim = model.cfg.embedding_dim
        print(f"tiny model (random weights, {dim}-d); {os.cpu_count()} CPUs; clients {args.clients}; "
              f"{args.seconds:g} s per load", flush=True)
        reference: tuple[list[float], list[float]] | None = None
        for name in ["bare"] + [s for s in args.servers if s != "bare"]:
            kind, _, mode = name.partition("/")
            with server(kind, mode, model_dir, args.port, args.cpus, dim) as url:
                vectors = embed_once(url, poses)
                if kind == "bare":
                    reference = vectors
                elif kind != "noop" and reference is not None:
                    diff = max(float(np.max(np.abs(np.subtract(a, b)))) for a, b in zip(reference, vectors))
                    print(f"  {name}: max |bare - {kind}| over one text and one pose embedding = {diff:.1e}")
                for mix in args.mixes:
                    for clients in args.clients:
                        r = load(url, clients, args.seconds, MIXES[mix], poses)
                        results.setdefault(name, {})[f"{mix}/{clients}"] = r
                        print(f"  {name:14s} {mix:5s} {clients:3d} clients {r.line()}", flush=True)

    bare = results["bare"]
    print(f"\n{'server':14s} {'load':10s} {'req/s':>9s} {'bare req/s':>11s} {'ratio':>6s} {'p50 ms':>8s} "
          f"{'p99 ms':>8s}")
    figures = {}
    for name, by_load in results.items():
        for key, r in by_load.items():
            base = bare[key]
            ratio = r.rps / base.rps if base.rps else float("nan")
            print(f"{name:14s} {key:10s} {r.rps:9.1f} {base.rps:11.1f} {ratio:6.2f} {r.percentile(50):8.1f} "
                  f"{r.percentile(99):8.1f}")
            figures.setdefault(name, {})[key] = {"rps": r.rps, "ratio_to_bare": ratio, "p50_ms": r.percentile(50),
                                                 "p99_ms": r.percentile(99), "ok": r.ok, "errors": r.errors}
    if args.out:
        Path(args.out).write_text(json.dumps({"clients": args.clients, "seconds": args.seconds, "figures": figures},
                                             indent=2))


if __name__ == "__main__":
    main()
