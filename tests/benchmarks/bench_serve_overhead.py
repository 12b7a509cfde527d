"""What the service costs per request beyond the model: Ray Serve against a bare single-process server.

    flock /tmp/signclip-ray.lock .venv/bin/python tests/benchmarks/bench_serve_overhead.py
    flock /tmp/signclip-ray.lock .venv/bin/python tests/benchmarks/bench_serve_overhead.py --servers serve/fast

With a model that costs almost nothing (the ``tiny`` preset, random weights), a request's time is the
service's own: HTTP, JSON, base64, pose parsing, the hops between Serve's processes. The servers answer the
original API (``GET /api/embed/text|pose``) on the same model directory. Each is loaded against the baseline
in alternating rounds (never both at once), so drifting background load hits both alike; the baseline is up
the whole time, the others one after another (an idle Ray beside the baseline costs its turns a little CPU):

- ``bare``: one uvicorn process holding the same :class:`signclip.Embedder` (one torch thread), each request
  embedded on the event loop as it comes: the least a server can do, and the baseline;
- ``app``: the project's HTTP app (parsing, limits, metrics) over its one-process backend, no Ray: what the
  app itself adds to ``bare``;
- ``noop``: a Serve ingress that reads the body and answers a constant embedding: Ray Serve's own floor;
- ``serve``: the project's service, ``signclip serve`` as a user starts it (autoscaling, batching across
  requests, 503 when queues are full), its models in the gateway's replicas (layout ``combined``);
- ``split``: the same with the models in their own deployments (``--layout split``).

Each Serve server runs once per Serve mode (``signclip serve --serve-mode``): ``default`` (Ray Serve's Python
proxy) and ``fast`` (``RAY_SERVE_THROUGHPUT_OPTIMIZED=1``, ``RAY_SERVE_ENABLE_HA_PROXY=1``: HAProxy as the
ingress, direct gRPC between replicas). Each server is loaded with text and with pose requests at each client
count (``--clients``), closed-loop; throughput counts HTTP 200 answers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from http_load import MIXES, Result, embed_once, load, running, sample_poses  # noqa: E402

from signclip.service import SERVE_MODES, use_serve_mode  # noqa: E402


# -- the servers (each runs in its own process: ``--server KIND``) -----------------------------------------
def run_bare(model_dir: str, port: int) -> None:
    """uvicorn + Starlette, the Embedder called inline: no batching, no queue, nothing between HTTP and torch.
    Bodies and poses are decoded with the app's own functions (orjson, pybase64), so the ratio is what Serve and
    the app's framework cost, not what a decoder saves."""
    import torch
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    import signclip
    from signclip.api.parsing import decode_pose, read_json

    torch.set_num_threads(1)
    embedder = signclip.Embedder(signclip.load(model_dir))

    def items(value: str | list[str]) -> list[str]:
        return [value] if isinstance(value, str) else value

    async def text(request: Request) -> Response:
        vectors = embedder.embed_texts(items((await read_json(request))["text"]))
        return Response(json.dumps({"embeddings": vectors.tolist()}), media_type="application/json")

    async def pose(request: Request) -> Response:
        poses = [decode_pose(p, "pose") for p in items((await read_json(request))["pose"])]
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


def run_noop(port: int, dim: int, cpus: int, mode: str) -> None:
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

    use_serve_mode(mode)
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


def server(kind: str, mode: str | None, model_dir: str, cpus: int, dim: int) -> contextlib.AbstractContextManager[str]:
    """One server in its own process; a Serve one in ``mode`` (``use_serve_mode``, as ``signclip serve``)."""
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    if kind in ("serve", "split"):
        return running([sys.executable, "-m", "signclip.jobs.serve", "--model", f"default={model_dir}",
                        "--no-video", "--host", "127.0.0.1", "--num-cpus", str(cpus), "--serve-mode",
                        mode or "default", "--layout", "combined" if kind == "serve" else "split"], env)
    return running([sys.executable, __file__, "--server", kind, "--model-dir", model_dir, "--cpus", str(cpus),
                    "--dim", str(dim), "--serve-mode", mode or "default"], env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, nargs="+", default=[8, 64], help="closed-loop client counts")
    parser.add_argument("--seconds", type=float, default=8.0, help="load time per server, mix and client count")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds the load time is split into")
    parser.add_argument("--mixes", nargs="+", default=["text", "pose"], choices=list(MIXES))
    servers = ["app"] + [f"{kind}/{mode}" for mode in ("default", "fast") for kind in ("noop", "serve", "split")]
    parser.add_argument("--servers", nargs="+", default=servers, choices=servers,
                        help="which servers to load, each against bare (the baseline, always up)")
    parser.add_argument("--cpus", type=int, default=os.cpu_count(), help="CPUs of each Serve server's Ray")
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help="write the figures as JSON here")
    parser.add_argument("--server", choices=("bare", "app", "noop"), help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--dim", type=int, default=768, help=argparse.SUPPRESS)
    parser.add_argument("--serve-mode", choices=list(SERVE_MODES), default="default", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.server == "bare":
        run_bare(args.model_dir, args.port)
        return
    if args.server == "app":
        run_app(args.model_dir, args.port)
        return
    if args.server == "noop":
        run_noop(args.port, args.dim, args.cpus, args.serve_mode)
        return

    import numpy as np

    import signclip

    poses = sample_poses()
    # figures[server][load] = (server's result, bare's result in the same rounds)
    figures: dict[str, dict[str, tuple[Result, Result]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-serve-overhead-") as tmp:
        model_dir = str(Path(tmp) / "tiny")
        model = signclip.create("tiny")
        model.save(model_dir)
        dim = model.cfg.embedding_dim
        print(f"tiny model (random weights, {dim}-d); {os.cpu_count()} CPUs; clients {args.clients}; "
              f"{args.seconds:g} s per load and server in {args.rounds} alternating rounds", flush=True)
        with server("bare", None, model_dir, args.cpus, dim) as bare_url:
            reference = embed_once(bare_url, poses)
            for name in [s for s in args.servers if s != "bare"]:
                kind, _, mode = name.partition("/")
                with server(kind, mode or None, model_dir, args.cpus, dim) as url:
                    vectors = embed_once(url, poses)
                    if kind != "noop":
                        diff = max(float(np.max(np.abs(np.subtract(a, b)))) for a, b in zip(reference, vectors))
                        print(f"  {name}: max |bare - {kind}| over one text and one pose embedding = {diff:.1e}")
                    for mix in args.mixes:
                        for clients in args.clients:
                            figures.setdefault(name, {})[f"{mix}/{clients}"] = measure(
                                {name: url, "bare": bare_url}, args, clients, MIXES[mix], poses)
    report(figures, args.out)


def measure(urls: dict[str, str], args: argparse.Namespace, clients: int, pose_share: float,
            poses: dict[str, str]) -> tuple[Result, Result]:
    """One load on a server and on bare in alternating rounds (drifting background load hits both alike)."""
    totals = {name: Result() for name in urls}
    for round_ in range(args.rounds):
        for name in (list(urls) if round_ % 2 == 0 else list(urls)[::-1]):
            totals[name] = totals[name] + load(urls[name], clients, args.seconds / args.rounds, pose_share, poses)
    name, other = list(urls)
    kind = "pose" if pose_share else "text"
    for label in (name, other):
        print(f"  {label:14s} {kind:5s} {clients:3d} clients {totals[label].line()}", flush=True)
    return totals[name], totals[other]


def report(figures: dict[str, dict[str, tuple[Result, Result]]], out: str | None) -> None:
    print(f"\n{'server':14s} {'load':9s} {'req/s':>8s} {'bare req/s':>10s} {'ratio':>6s} {'p50 ms':>7s} "
          f"{'bare p50':>8s} {'p99 ms':>7s} {'bare p99':>8s}")
    table: dict[str, dict[str, dict[str, float]]] = {}
    for name, by_load in figures.items():
        for key, (r, base) in by_load.items():
            ratio = r.rps / base.rps if base.rps else float("nan")
            print(f"{name:14s} {key:9s} {r.rps:8.1f} {base.rps:10.1f} {ratio:6.2f} {r.percentile(50):7.1f} "
                  f"{base.percentile(50):8.1f} {r.percentile(99):7.1f} {base.percentile(99):8.1f}")
            table.setdefault(name, {})[key] = {"rps": r.rps, "bare_rps": base.rps, "ratio_to_bare": ratio,
                                               "p50_ms": r.percentile(50), "p99_ms": r.percentile(99),
                                               "errors": r.errors}
    if out:
        Path(out).write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
