"""``signclip embed`` on the shared local Ray: real poses, bad inputs, s3://, videos, prompts, resume."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import signclip
from signclip.embedding.items import text_id
from signclip.io import embedding_store, storage
from signclip.jobs import embed
from tests.embed_helpers import LABELLED, NOT_HOLISTIC, bad_inputs, manifest_csv, tiny_model

pytestmark = pytest.mark.ray
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def embedder(model_dir):
    return signclip.Embedder(signclip.load(model_dir))


@pytest.fixture(scope="module")
def local_run(ray_local, poses_dir, model_dir, tmp_path_factory):
    """One run over the labelled real poses, a valid refined-face pose, every kind of bad input and a long clip."""
    work = tmp_path_factory.mktemp("local")
    inputs = {**{k: poses_dir / f"{k}.pose" for k in (*LABELLED, "refined-face-553")},
              **bad_inputs(work / "bad", poses_dir)}
    rows = [{"id": k, "path": str(p), "gloss": LABELLED.get(k, ""), "language": "ase"} for k, p in inputs.items()]
    out, npy = work / "emb", work / "npy"
    argv = ["--model", str(model_dir), "--input", str(manifest_csv(work / "clips.csv", rows)), "--output", str(out),
            "--npy-dir", str(npy), "--batch-size", "4", "--rows-per-block", "3"]
    rc = embed.main(argv)
    return {"rc": rc, "inputs": inputs, "out": out, "npy": npy, "argv": argv}


def shard_rows(out: str) -> pd.DataFrame:
    paths = embedding_store.list_shards(out)
    fs, _ = storage.pyarrow_filesystem(paths[0])
    return pd.concat([pq.read_table(storage.filesystem(p)[1], filesystem=fs).to_pandas() for p in paths])


@pytest.mark.timeout(180)
def test_every_input_gets_one_row_with_a_clear_status(local_run):
    assert local_run["rc"] == 1  # finished, some inputs failed (the job contract)
    rows = shard_rows(str(local_run["out"]))
    assert sorted(rows["id"]) == sorted(local_run["inputs"]) and rows["id"].is_unique
    status, error = dict(zip(rows["id"], rows["status"])), dict(zip(rows["id"], rows["error"]))
    assert {k for k, v in status.items() if v == "ok"} == {*LABELLED, "refined-face-553", "long"}
    assert "not a readable .pose file" in error["garbage"]
    assert "empty file" in error["empty"]
    assert "zero frames" in error["zero-frames"]
    assert "no such file" in error["missing"]
    for name in NOT_HOLISTIC:
        assert "not a MediaPipe Holistic pose" in error[name] and f"{name}.pose" in error[name]
    assert set(rows.loc[rows["status"] == "ok", "error"]) == {""}
    assert (rows["model_name"] == "tiny").all() and rows["model_hash"].nunique() == 1


@pytest.mark.timeout(60)
def test_embeddings_equal_the_in_process_embedder(local_run, embedder):
    corpus = embedding_store.load(str(local_run["out"]))
    expected = embedder.embed_poses([str(local_run["inputs"][i]) for i in corpus.meta["id"]])
    assert corpus.embeddings.shape == (6, embedder.model.cfg.embedding_dim)
    np.testing.assert_allclose(corpus.embeddings, expected, atol=1e-5, rtol=0)


@pytest.mark.timeout(60)
def test_long_clip_policy_is_recorded(local_run):
    meta = embedding_store.load(str(local_run["out"])).meta.set_index("id")
    long = meta.loc["long"]
    assert (long["frames"], long["long_clip"], long["segments"]) == (279, "truncate", 1)
    assert meta.loc["library", "frames"] == 37 and meta.loc["library", "long_clip"] == ""


@pytest.mark.timeout(60)
def test_npy_layout_one_vector_per_clip(local_run):
    corpus = embedding_store.load(str(local_run["out"]))
    files = sorted(p.stem for p in local_run["npy"].glob("*.npy"))
    assert files == sorted(corpus.meta["id"])
    for item_id, emb in zip(corpus.meta["id"], corpus.embeddings):
        arr = np.load(local_run["npy"] / f"{item_id}.npy")
        assert arr.shape == (corpus.embeddings.shape[1],) and arr.dtype == np.float32
        np.testing.assert_array_equal(arr, emb)


@pytest.mark.timeout(60)
def test_summary_manifest_and_a_rerun_that_has_nothing_to_do(local_run, capsys):
    out = local_run["out"]
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["ok"], summary["failed"], summary["skipped"]) == (6, 6, 0) and summary["clips_per_s"] > 0
    assert len(pd.read_parquet(out / "manifest.parquet")) == 12
    shards = embedding_store.list_shards(str(out))
    assert embed.main(local_run["argv"]) == 0  # nothing left: no pipeline, no new shard
    assert "12 skipped" in capsys.readouterr().out
    assert embedding_store.list_shards(str(out)) == shards


@pytest.mark.timeout(60)
def test_refuses_to_mix_models_and_empty_input(local_run, tmp_path, capsys):
    other = tmp_path / "other"
    signclip.create("tiny", seed=1).save(str(other))
    argv = [a if a != local_run["argv"][1] else str(other) for a in local_run["argv"]]
    assert embed.main(argv) == 2
    assert "holds embeddings made with model_hash=" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert embed.main(["--model", str(other), "--input", str(tmp_path / "empty"), "--output", str(tmp_path / "o")]) == 2
    assert "empty input" in capsys.readouterr().err


@pytest.mark.timeout(120)
def test_gpu_actors_on_a_cluster_without_gpus_wait_only_when_asked_to(ray_local, poses_dir, model_dir, tmp_path,
                                                                      capsys):
    base = ["--model", str(model_dir), "--input", str(poses_dir / "library.pose"), "--device", "cuda"]
    assert embed.main([*base, "--output", str(tmp_path / "a")]) == 2
    assert "the cluster has 0 GPUs (on a cluster that autoscales its GPUs, add --wait-for-gpus" in \
        capsys.readouterr().err
    # ray_local has no autoscaler: the request goes unanswered and the job gives up, having written nothing
    assert embed.main([*base, "--output", str(tmp_path / "b"), "--wait-for-gpus", "2", "--actors", "2"]) == 2
    assert "--wait-for-gpus 2: the cluster has 0 of the 2 GPUs asked for after 2 s" in capsys.readouterr().err
    assert not embedding_store.list_shards(str(tmp_path / "b"))
    assert embed.main([*base[:-2], "--output", str(tmp_path / "c"), "--wait-for-gpus", "2"]) == 2
    assert "--wait-for-gpus 2: only with --device cuda" in capsys.readouterr().err


@pytest.mark.timeout(180)
def test_s3_input_output_prompts_and_windows(ray_local, s3_bucket, poses_dir, model_dir, tmp_path):
    for name in ("sad-colin", "library"):
        storage.write_bytes_atomic(f"{s3_bucket}/poses/{name}.pose", (poses_dir / f"{name}.pose").read_bytes())
    long = bad_inputs(tmp_path, poses_dir)["long"]
    storage.write_bytes_atomic(f"{s3_bucket}/poses/long.pose", long.read_bytes())
    storage.write_bytes_atomic(f"{s3_bucket}/prompts.txt", b"<en> <ase> house\n<en> <ase> sad\n<en> <ase> house\n")
    out = f"{s3_bucket}/emb"
    rc = embed.main(["--model", str(model_dir), "--input", f"{s3_bucket}/poses/*.pose", "--texts",
                     f"{s3_bucket}/prompts.txt", "--output", out, "--npy-dir", f"{out}/npy",
                     "--long-clips", "window", "--window-stride", "100"])
    assert rc == 0
    corpus = embedding_store.load(out)
    meta = corpus.meta.set_index("id")
    assert sorted(meta.index) == sorted(["sad-colin", "library", "long", text_id("<en> <ase> house"),
                                         text_id("<en> <ase> sad")])
    assert (meta.loc["long", "long_clip"], meta.loc["long", "segments"]) == ("window", 2)  # 279 frames: 0-256, 23-279
    windowed = signclip.Embedder(signclip.load(model_dir), long_clips="window", window_stride=100)
    clips = corpus.select(corpus.meta["kind"].eq("pose").to_numpy())
    expected = windowed.embed_poses([str(s) for s in clips.meta["source"]])
    np.testing.assert_allclose(clips.embeddings, expected, atol=1e-5, rtol=0)
    texts = corpus.select(corpus.meta["kind"].eq("text").to_numpy())
    np.testing.assert_allclose(texts.embeddings, windowed.embed_texts(list(texts.meta["text"])), atol=1e-5, rtol=0)
    npy = np.load(io.BytesIO(storage.read_bytes(f"{out}/npy/library.npy")))
    np.testing.assert_array_equal(npy, corpus.embeddings[list(corpus.meta["id"]).index("library")])
    assert storage.exists(f"{out}/manifest.parquet") and storage.exists(f"{out}/summary.json")


@pytest.mark.timeout(240)
def test_video_input_runs_extraction_in_the_same_pipeline(ray_local, videos_dir, model_dir, tmp_path, embedder):
    broken = tmp_path / "videos" / "broken.mp4"
    broken.parent.mkdir()
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 200)
    m = manifest_csv(tmp_path / "v.csv", [{"id": "sample", "path": str(videos_dir / "sample_video.mp4")},
                                          {"id": "broken", "path": str(broken)}])
    out = tmp_path / "emb"
    assert embed.main(["--model", str(model_dir), "--input", str(m), "--output", str(out)]) == 1  # broken: failed
    rows = shard_rows(str(out)).set_index("id")
    assert rows.loc["broken", "status"] == "failed" and rows.loc["broken", "error"].startswith("video -> pose:")
    pose = out / "poses" / "sample.pose"
    assert rows.loc["sample", "status"] == "ok", rows.loc["sample", "error"]
    assert rows.loc["sample", "pose_path"] == str(pose) and rows.loc["sample", "frames"] == 9
    np.testing.assert_allclose(rows.loc["sample", "embedding"], embedder.embed_poses([str(pose)])[0], atol=1e-5)


@pytest.mark.timeout(240)
def test_resume_after_a_killed_run_embeds_every_id_exactly_once(ray_local, poses_dir, model_dir, tmp_path):
    """Kill the job's driver (SIGKILL) once its first shards are written, rerun: every id once."""
    n = 120
    rows = [{"id": f"clip-{i:03d}", "path": str(poses_dir / f"{list(LABELLED)[i % 4]}.pose")} for i in range(n)]
    m, out = manifest_csv(tmp_path / "many.csv", rows), tmp_path / "emb"
    argv = ["--model", str(model_dir), "--input", str(m), "--output", str(out), "--shard-rows", "2",
            "--batch-size", "2", "--rows-per-block", "2"]
    env = {**os.environ, "RAY_ADDRESS": ray_local.get_runtime_context().gcs_address, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "signclip.jobs.embed", *argv], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not embedding_store.list_shards(str(out)) and proc.poll() is None:  # the timeout bounds it
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(30)
    # Ray ends a dead driver's actors; until then one may still write a (whole) shard, so wait for that
    while _embed_actor_pids():  # the timeout bounds it
        time.sleep(0.2)
    first = embedding_store.read_index(str(out))
    assert 0 < len(first) < n, "the run should have been killed part-way"
    summary = embed.run(embed.options(argv))
    assert summary.skipped == len(first) and summary.ok == n - len(first)
    ids = shard_rows(str(out))["id"]
    assert ids.is_unique and len(ids) == n


def _embed_actor_pids() -> list[int]:
    import psutil

    return [p.pid for p in psutil.process_iter(["cmdline"])
            if " ".join(p.info["cmdline"] or []).startswith("ray::MapWorker(MapBatches(EmbedActor))")]


@pytest.mark.timeout(300)
def test_items_of_a_killed_embedding_actor_are_embedded_again_once(ray_local, poses_dir, model_dir, tmp_path):
    """An embedding actor killed mid-run (as when its node is lost): the run ends with every id ok, once."""
    import threading

    n = 160  # enough 2-clip shards that the run outlasts the killer's first look, even on a busy machine
    rows = [{"id": f"clip-{i:03d}", "path": str(poses_dir / f"{list(LABELLED)[i % 4]}.pose")} for i in range(n)]
    m, out = manifest_csv(tmp_path / "many.csv", rows), tmp_path / "emb"
    killed: list[int] = []
    run_ended = threading.Event()

    def kill_an_actor() -> None:
        # no deadline of its own: on a loaded machine the actors can take minutes to start (the timeout bounds it)
        while not run_ended.wait(0.05) and not killed:
            if embedding_store.list_shards(str(out)) and (pids := _embed_actor_pids()):
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])

    killer = threading.Thread(target=kill_an_actor, daemon=True)
    killer.start()
    try:
        summary = embed.run(embed.options(["--model", str(model_dir), "--input", str(m), "--output", str(out),
                                           "--shard-rows", "2", "--batch-size", "2", "--rows-per-block", "2",
                                           "--actors", "2"]))
    finally:
        run_ended.set()
        killer.join(5)
    assert killed, "no embedding actor was killed"
    index = embedding_store.read_index(str(out))
    assert sorted(index["id"]) == [r["id"] for r in rows] and set(index["status"]) == {"ok"}
    assert summary.ok == n and summary.failed == 0
