"""The whole system on a laptop, on the real sample data: extract -> train -> embed -> evaluate -> serve.

    make demo                                   # or: .venv/bin/python -m signclip.jobs.demo [--output runs/demo]

1. extract poses from the two sample videos (Ray Data, MediaPipe Holistic);
2. train a small model briefly on augmented copies of the real poses (Ray Train, 2 workers): the four
   labelled ASL clips (HOUSE x2, SAD, LIBRARY) and the two extracted clips as further classes;
3. bulk-embed the validation clips (different augmented copies) and every sample pose, the invalid
   ones included, which get a status row instead of an embedding (Ray Data);
4. evaluate retrieval and recognition (results table printed, plots written);
5. start the server on 127.0.0.1 with the sample poses as a dictionary index, query it like the original
   API's clients, print a prompt x clip similarity table and the page's address; in a terminal, keep serving
   the page until Ctrl-C, else shut everything down.
Every stage writes into one run directory.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from signclip.io import embedding_store, sample_data
from signclip.io.status import OK
from signclip.jobs import contract

log = logging.getLogger("signclip.jobs.demo")

VIDEO_GLOSSES = {"test_video": "test video", "sample_video": "sample video"}  # unlabelled clips as classes


def banner(step: int, text: str) -> None:
    print(f"\n=== [{step}/5] {text}", flush=True)


def table(rows: list[str], columns: list[str], scores: np.ndarray) -> str:
    width = max(map(len, rows))
    head = " " * width + "  " + "  ".join(f"{c[:16]:>16}" for c in columns)
    return "\n".join([head] + [f"{r:<{width}}  " + "  ".join(f"{v:16.3f}" for v in row)
                               for r, row in zip(rows, scores)])


def write_validation_copies(sources: dict[str, tuple[str, str]], folder: Path) -> list[dict[str, str]]:
    """Augmented copies of each source, different from anything the training stage will draw."""
    from pose_format import Pose

    from signclip.extraction.holistic import pose_to_bytes
    from signclip.pose.augment import Augmentation, augmented_copies

    folder.mkdir(parents=True, exist_ok=True)
    aug = Augmentation(temporal_std=0.15, rotation_std=0.1, shear_std=0.1, scale_std=0.1)
    rows = []
    for i, (name, (path, gloss)) in enumerate(sources.items()):
        for k, pose in enumerate(augmented_copies(Pose.read(Path(path).read_bytes()), 2, 1000 + i, aug)):
            target = folder / f"{name}-{k}.pose"
            target.write_bytes(pose_to_bytes(pose))
            rows.append({"id": f"{name}-{k}", "path": str(target), "gloss": gloss, "sign_language": "ase"})
    return rows


def serve_and_query(model_dir: Path, index: Path, clips: dict[str, str], prompts: list[str], port: int,
                    keep_serving: bool) -> np.ndarray:
    """Start the server (the model, and ``index`` for the page), embed prompts and poses through the original API's
    routes, print the page's address; stop the server, or when ``keep_serving`` first wait for Ctrl-C."""
    import httpx
    from ray import serve

    from signclip.api.settings import ServiceSettings
    from signclip.service import APP_NAME, make_app

    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        settings = ServiceSettings.from_mapping({"models": {"default": str(model_dir)}, "enable_video": False,
                                                "indexes": {"samples": str(index)}})
        serve.run(make_app(settings), name=APP_NAME, route_prefix="/")
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while httpx.get(f"{url}/ready", timeout=5).status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not become ready")
            time.sleep(1)
        # the original clients send GET requests with a JSON body
        texts = httpx.request("GET", f"{url}/api/embed/text", json={"text": prompts}, timeout=60).json()
        poses = httpx.request("GET", f"{url}/api/embed/pose", timeout=60, json={
            "pose": [base64.b64encode(Path(p).read_bytes()).decode() for p in clips.values()]}).json()
        found = httpx.get(f"{url}/v1/search", params={"q": prompts[0], "k": 3}, timeout=60).json()
        print(f"dictionary search for {prompts[0]!r}: " + ", ".join(f"{h['id']} ({h['score']:.3f})"
                                                                  for h in found["hits"]))
        print(f"the dictionary page over the sample poses: {url}/")
        if keep_serving:
            print("serving until Ctrl-C", flush=True)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                print()
        return np.asarray(texts["embeddings"]) @ np.asarray(poses["embeddings"]).T
    finally:
        serve.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="signclip demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    contract.add_output(parser, help="run directory (default runs/demo-<time>)", old="--out", required=False)
    parser.add_argument("--preset", default="small", help="model preset to train (default small)")
    parser.add_argument("--epochs", type=contract.positive_int, default=1)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--serve", action=argparse.BooleanOptionalAction, default=None,
                        help="keep serving the page until Ctrl-C (default: when run in a terminal)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    from signclip.jobs import embed, evaluate, extract, train
    from signclip.service import use_serve_mode

    run = Path(args.output or f"runs/demo-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    run.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    data = sample_data.data_dir()
    print(f"SignCLIP demo: sample data {data}, run directory {run}")
    use_serve_mode("fast")  # the service at the end runs as `signclip serve` runs it
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             _node_ip_address="127.0.0.1")
    try:
        banner(1, "extract poses from the sample videos (Ray Data + MediaPipe Holistic)")
        if extract.main(["--input", str(data / "videos"), "--output", str(run / "poses"), "--no-progress"]) != 0:
            return 1
        sources = {Path(rel).stem: (str(data / rel), gloss) for rel, gloss in sample_data.LABELLED_POSES.items()}
        sources.update({name: (str(run / "poses" / f"{name}.pose"), gloss) for name, gloss in VIDEO_GLOSSES.items()})

        banner(2, f"train a '{args.preset}' model on augmented real poses (Ray Train, 2 workers)")
        train_rows = [{"path": p, "gloss": g, "sign_language": "ase"} for p, g in sources.values()] * 10
        pd.DataFrame(train_rows).to_csv(run / "train.csv", index=False)
        val_rows = write_validation_copies(sources, run / "val_poses")
        pd.DataFrame(val_rows).to_csv(run / "val.csv", index=False)
        code = train.main(["--train", str(run / "train.csv"), "--val", str(run / "val.csv"), "--output",
                           str(run / "train"), "--preset", args.preset, "--epochs", str(args.epochs),
                           "--batch-size", "4", "--unique-texts", "--lr", "2e-4", "--warmup-steps", "10",
                           "--rotation-std", "0.1", "--shear-std", "0.1", "--scale-std", "0.1",
                           "--workers", "2", "--cpus-per-worker", "0.75"])
        if code != 0:
            return 1
        model_dir = run / "train" / "best"

        banner(3, "bulk-embed the validation clips and every sample pose (Ray Data)")
        if embed.main(["--model", str(model_dir), "--input", str(run / "val.csv"),
                       "--output", str(run / "embeddings")]) != 0:
            return 1
        if embed.main(["--model", str(model_dir), "--input", str(data / "poses"),
                       "--output", str(run / "sample_embeddings"), "--npy-dir", str(run / "npy")]) not in (0, 1):
            return 1
        refused = embedding_store.read_index(str(run / "sample_embeddings"), ("id", "status", "error"))
        refused = refused[refused["status"] != OK]
        if len(refused):  # the sample data holds poses no model can take, to show how bad input is reported
            print("expected: the sample data's unusable poses are reported, and the rest embedded:")
            for item, error in zip(refused["id"], refused["error"]):
                print(f"  {item}: {error}")

        banner(4, "evaluate retrieval and recognition on the validation clips")
        # few-shot with 1 shot only: no sign of the sample data has more than 5 clips
        if evaluate.main(["--embeddings", str(run / "embeddings"), "--output", str(run / "evaluation"),
                          "--shots", "1"]) != 0:
            return 1
        results = json.loads((run / "evaluation" / "results.json").read_text())
        print(json.dumps({k: results[k] for k in ("v2t", "t2v") if k in results}, indent=1))

        banner(5, f"serve the model on http://127.0.0.1:{args.port}: the original API and the dictionary page")
        clips = {Path(rel).stem: str(data / rel) for rel in sample_data.LABELLED_POSES}
        prompts = [f"<en> <ase> {g}" for g in ["house", "sad", "library", "police"]] + ["random text"]
        keep_serving = args.serve if args.serve is not None else sys.stdin.isatty() and sys.stdout.isatty()
        scores = serve_and_query(model_dir, run / "sample_embeddings", clips, prompts, args.port, keep_serving)
        print(table(prompts, list(clips), scores))
    finally:
        ray.shutdown()
    print(f"\ndone in {time.perf_counter() - started:.0f}s; everything is in {run}")
    return 0


if __name__ == "__main__":
    contract.command_line(main)
