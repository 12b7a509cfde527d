"""Load test: the Ray Serve embedding service (signclip serve) against a server with the original API's semantics.

    flock /tmp/signclip-ray.lock .venv/bin/python tests/benchmarks/bench_serve.py            # 32 clients, 30 s a mix
    flock /tmp/signclip-ray.lock .venv/bin/python tests/benchmarks/bench_serve.py --quick    # 8 clients, 8 s a mix

Both servers hold the same weights (``signclip.create("e7.2")``: full size, random) and answer the original
API (``GET /api/embed/text|pose`` with a JSON body). The baseline is what the original deployment did per
process: one Flask process answering one request at a time, each pose alone and zero-padded to 256 frames,
each text padded to 63 tokens and followed by a pass of the pose tower on a dummy 256-frame pose.
Clients are closed-loop (each sends its next request when the last is answered), on real poses and prompts.
Both servers are up for the whole run, warmed up first, and loaded in turn, never together: the load time of
a mix is split into rounds whose server order alternates, so drifting background load affects both alike
(the idle Ray processes cost the baseline's turns a little CPU). The service is ``signclip serve`` as a user starts
it (``--layout``, ``--serve-mode``: the defaults unless given); the baseline gets ``--threads`` torch threads.
Throughput counts answered requests (HTTP 200) over the time until the last one came back.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from http_load import MIXES, Result, embed_once, load, running, sample_poses  # noqa: E402


# -- the baseline server ---------------------------------------------------------------------------------
def run_baseline(model_dir: str, port: int, threads: int) -> None:
    """One Flask process, one request at a time, the original inference path."""
    import torch
    from flask import Flask, jsonify, request

    import signclip
    from signclip.pose.features import collate, pose_features

    torch.set_num_threads(threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"  # the original ran on a GPU when it had one
    model = signclip.load(model_dir, device=device)
    tok = model.tokenizer
    max_tokens = model.cfg.max_text_tokens + 2
    app = Flask("baseline")

    def embed_text(text: str) -> list[float]:
        ids, mask = tok.batch(tok.ids([text]))
        padded, padded_mask = np.full((1, max_tokens), tok.pad_id), np.zeros((1, max_tokens), bool)
        padded[:, : ids.shape[1]], padded_mask[:, : ids.shape[1]] = ids, mask
        with torch.inference_mode():
            emb = model.encode_text(torch.from_numpy(padded).to(device), torch.from_numpy(padded_mask).to(device))
            model.encode_pose(torch.randn(1, 256, model.cfg.feature_dim, device=device),
                              torch.ones(1, 256, dtype=torch.bool, device=device))
        return emb[0].tolist()

    def embed_pose(data: bytes) -> list[float]:
        frames, mask = collate([pose_features(data, model.cfg.feature_set)[:256]], max_frames=256)
        with torch.inference_mode():
            return model.encode_pose(torch.from_numpy(frames).to(device), torch.from_numpy(mask).to(device))[0].tolist()

    @app.route("/api/embed/text", methods=["GET", "POST"])
    def text_route():  # noqa: ANN202
        texts = request.get_json()["text"]
        return jsonify({"embeddings": [embed_text(t) for t in ([texts] if isinstance(texts, str) else texts)]})

    @app.route("/api/embed/pose", methods=["GET", "POST"])
    def pose_route():  # noqa: ANN202
        poses = request.get_json()["pose"]
        return jsonify({"embeddings": [embed_pose(base64.b64decode(p))
                                       for p in ([poses] if isinstance(poses, str) else poses)]})

    @app.route("/health")
    def health():  # noqa: ANN202
        return jsonify({"status": "ok"})

    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app.run(host="127.0.0.1", port=port, threaded=False)


# -- the two servers ------------------------------------------------------------------------------------------
def baseline_server(model_dir: str, threads: int) -> contextlib.AbstractContextManager[str]:
    return running([sys.executable, __file__, "--baseline-server", model_dir, "--threads", str(threads)])


def serve_server(model_dir: str, args: argparse.Namespace) -> contextlib.AbstractContextManager[str]:
    """``signclip serve`` as a user starts it (its default deployment options, autoscaling included), video off."""
    return running([sys.executable, "-m", "signclip.jobs.serve", "--model", f"default={model_dir}", "--no-video",
                    "--host", "127.0.0.1", "--num-cpus", str(args.cpus), "--layout", args.layout,
                    "--serve-mode", args.serve_mode, "--precision", args.precision,
                    *(["--gpus", str(args.gpus)] if args.gpus else [])], env=dict(os.environ, RAY_AUTH_MODE="disabled"))


def measure(urls: dict[str, str], args: argparse.Namespace, poses: dict[str, str]) -> dict[str, dict[str, Result]]:
    """Rounds of (mix x server), the server order alternating, so drifting background load hits both alike."""
    results: dict[str, dict[str, Result]] = {name: {} for name in urls}
    for round_ in range(args.rounds):
        for mix in args.mixes:
            for name in (list(urls) if round_ % 2 == 0 else list(urls)[::-1]):
                r = load(urls[name], args.clients, args.seconds / args.rounds, MIXES[mix], poses)
                results[name][mix] = results[name].get(mix, Result()) + r
                print(f"  round {round_ + 1} {name:8s} {mix:6s} {r.line()}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=32, help="concurrent closed-loop clients")
    parser.add_argument("--seconds", type=float, default=30.0, help="load time per mix and server (all rounds)")
    parser.add_argument("--mixes", nargs="+", default=list(MIXES), choices=list(MIXES))
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds the load time is split into")
    parser.add_argument("--quick", action="store_true", help="8 clients, 8 s, text and pose mixes")
    parser.add_argument("--cpus", type=int, default=os.cpu_count(), help="CPUs of the local Ray")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the baseline process")
    parser.add_argument("--layout", choices=("combined", "split"), default="combined", help="signclip serve --layout")
    parser.add_argument("--serve-mode", choices=("fast", "default"), default="fast", help="signclip serve --serve-mode")
    parser.add_argument("--gpus", type=float, default=None, help="signclip serve --gpus (GPUs per model replica)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="signclip serve --precision")
    parser.add_argument("--out", help="write the figures as JSON here")
    parser.add_argument("--baseline-server", metavar="MODEL_DIR", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_server:
        run_baseline(args.baseline_server, args.port, args.threads)
        return
    if args.quick:
        args.clients, args.seconds, args.mixes, args.rounds = 8, 8.0, ["text", "pose"], 1

    import signclip

    poses = sample_poses()
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        model_dir = str(Path(tmp) / "e7.2")
        model = signclip.create("e7.2")
        model.save(model_dir)
        print(f"e7.2 (random weights), {sum(p.numel() for p in model.parameters()) / 1e6:.0f}M parameters; "
              f"{args.clients} clients, {args.seconds:g} s per mix; {os.cpu_count()} CPUs; baseline "
              f"{args.threads} torch thread(s); signclip serve --layout {args.layout} --serve-mode "
              f"{args.serve_mode} --precision {args.precision}" + (f" --gpus {args.gpus:g}" if args.gpus else ""),
              flush=True)
        del model
        with baseline_server(model_dir, args.threads) as base_url, serve_server(model_dir, args) as serve_url:
            base_vectors, our_vectors = embed_once(base_url, poses), embed_once(serve_url, poses)
            results = measure({"baseline": base_url, "serve": serve_url}, args, poses)
    baseline, ours = results["baseline"], results["serve"]
    diff = max(float(np.max(np.abs(np.subtract(a, b)))) for a, b in zip(base_vectors, our_vectors, strict=True))
    print(f"same weights: max |baseline - serve| over one text and one pose embedding = {diff:.2e}")
    print(f"\n{'mix':6s} {'baseline req/s':>15s} {'serve req/s':>12s} {'ratio':>7s}   "
          f"{'baseline p50/p99 ms':>20s} {'serve p50/p99 ms':>18s}")
    figures = {}
    for mix in args.mixes:
        b, o = baseline[mix], ours[mix]
        ratio = o.rps / b.rps if b.rps else float("inf")
        print(f"{mix:6s} {b.rps:15.2f} {o.rps:12.2f} {ratio:6.1f}x   {b.percentile(50):9.0f}/{b.percentile(99):<9.0f} "
              f"{o.percentile(50):8.0f}/{o.percentile(99):<8.0f}")
        figures[mix] = {"baseline": {"rps": b.rps, "p50_ms": b.percentile(50), "p99_ms": b.percentile(99),
                                     "ok": b.ok, "errors": b.errors},
                        "serve": {"rps": o.rps, "p50_ms": o.percentile(50), "p99_ms": o.percentile(99),
                                  "ok": o.ok, "errors": o.errors},
                        "throughput_ratio": ratio}
    if args.out:
        Path(args.out).write_text(json.dumps({"clients": args.clients, "seconds": args.seconds, "rounds": args.rounds,
                                              "threads": args.threads, "layout": args.layout,
                                              "serve_mode": args.serve_mode, "mixes": figures}, indent=2))


if __name__ == "__main__":
    main()
