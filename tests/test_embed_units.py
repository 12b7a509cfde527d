"""The pieces of the embed job without Ray: input listing, resource sizing, the stages, the shard store."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import signclip
from signclip.embedding import items as embed_items
from signclip.embedding.items import InputError
from signclip.embedding.resources import (
    AUTO_CPU_ACTORS,
    BLOCKS_PER_WORKER,
    MIN_BLOCK_ROWS,
    actor_memory,
    block_rows,
    plan,
    ray_quantity,
)
from signclip.embedding.stages import EmbedActor, RunSpec, featurize, model_spec, to_table, write_shard
from signclip.io import embedding_store
from tests.embed_helpers import LABELLED, bad_inputs, manifest_csv, tiny_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("model") / "tiny")


def spec_for(model_dir: Path, output: Path, **kw) -> RunSpec:
    return RunSpec(**model_spec(str(model_dir)), output=str(output), run_id="r1", **kw)


# --- inputs ------------------------------------------------------------------------------------------

def test_folder_ids_are_relative_paths_without_suffix(poses_dir):
    items = embed_items.from_files(str(poses_dir))
    assert [i.id for i in items] == sorted(p.stem for p in poses_dir.glob("*.pose"))
    assert {i.kind for i in items} == {"pose"}
    glob_items = embed_items.from_files(str(poses_dir / "house-*.pose"))
    assert [i.id for i in glob_items] == ["house-colin-1", "house-spreadthesign"]


def test_manifest_resolves_relative_paths_and_carries_labels(tmp_path, poses_dir):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.pose").write_bytes((poses_dir / "sad-colin.pose").read_bytes())
    m = manifest_csv(tmp_path / "m.csv", [
        {"path": "sub/a.pose", "gloss": "sad", "language": "ase", "split": "test"},
        {"path": str(poses_dir / "library.pose"), "id": "lib", "gloss": "library", "language": "ase", "split": ""}])
    a, b = embed_items.list_items(str(m))
    assert (a.id, a.source, a.gloss, a.language, a.split) == ("sub/a", str(tmp_path / "sub" / "a.pose"), "sad",
                                                            "ase", "test")
    assert (b.id, b.kind, b.gloss) == ("lib", "pose", "library")
    with pytest.raises(embed_items.InputError, match=r"m\.csv: no 'clip_id' column for the ids"):
        embed_items.list_items(str(m), id_column="clip_id")


def test_a_manifest_row_outside_its_folder_is_named_by_its_whole_path(tmp_path, poses_dir):
    """Sign-per-folder corpora repeat file names (house/001.pose, sad/001.pose): a file outside the manifest's
    folder without an id is named by its whole path, so two such files never collide."""
    for sign in ("house", "sad"):
        (tmp_path / "corpus" / sign).mkdir(parents=True)
        (tmp_path / "corpus" / sign / "001.pose").write_bytes((poses_dir / "sad-colin.pose").read_bytes())
    (tmp_path / "lists").mkdir()
    m = manifest_csv(tmp_path / "lists" / "m.csv", [{"path": f"../corpus/{s}/001.pose"} for s in ("house", "sad")])
    ids = [i.id for i in embed_items.list_items(str(m))]
    assert ids == [str(tmp_path / "corpus" / s / "001").lstrip("/") for s in ("house", "sad")]


def test_manifests_name_their_clips_in_the_column_the_other_jobs_write(tmp_path, poses_dir):
    library = str(poses_dir / "library.pose")
    # `signclip manifest` writes `pose`, the jobs' output manifests `pose_path` (beside the videos' path)
    dataset = manifest_csv(tmp_path / "dataset.csv", [{"id": "lib", "pose": library, "gloss": "library"}])
    assert [(i.id, i.source) for i in embed_items.list_items(str(dataset))] == [("lib", library)]
    extracted = manifest_csv(tmp_path / "extracted.csv", [{"id": "lib", "path": "video.mp4", "pose_path": library}])
    assert [i.source for i in embed_items.list_items(str(extracted))] == [library]
    assert [i.source for i in embed_items.list_items(str(extracted), path_column="path")] == \
        [str(tmp_path / "video.mp4")]
    unnamed = manifest_csv(tmp_path / "unnamed.csv", [{"id": "lib", "file": library}])
    with pytest.raises(InputError, match=r"unnamed\.csv: no column of clip paths: expected one of pose, pose_path, "
                                         r"path or the one named by --path-column \(columns: \['id', 'file'\]\)"):
        embed_items.list_items(str(unnamed))
    with pytest.raises(InputError, match=r"dataset\.csv: no 'clip' column"):
        embed_items.list_items(str(dataset), path_column="clip")


def test_prompts_from_file_collapse_duplicates(tmp_path):
    f = tmp_path / "prompts.txt"
    f.write_text("<en> <ase> house\n\n  <en> <ase> sad  \n<en> <ase> house\n")
    items = embed_items.list_items(texts=str(f))
    assert [i.text for i in items] == ["<en> <ase> house", "<en> <ase> sad"]
    assert items[0].id == embed_items.text_id("<en> <ase> house") and items[0].kind == "text"
    assert items[1].source == f"{f}:3"


def test_prompts_from_a_manifest_column(tmp_path):
    m = manifest_csv(tmp_path / "p.csv", [{"prompt": "<en> <ase> house"}, {"prompt": "<en> <gsg> haus"}])
    items = embed_items.list_items(str(m), text_column="prompt")
    assert [(i.kind, i.text) for i in items] == [("text", "<en> <ase> house"), ("text", "<en> <gsg> haus")]


@pytest.mark.parametrize("case", ["empty-folder", "missing", "duplicate-ids", "unsafe-id", "nothing"])
def test_unusable_inputs_raise_input_error(tmp_path, poses_dir, case):
    kwargs = {}
    if case == "empty-folder":
        (tmp_path / "empty").mkdir()
        kwargs["input_path"], match = str(tmp_path / "empty"), "empty input"
    elif case == "missing":
        kwargs["input_path"], match = str(tmp_path / "nope"), "no such file"
    elif case == "duplicate-ids":
        kwargs["input_path"] = str(manifest_csv(tmp_path / "d.csv", [
            {"id": "x", "path": str(poses_dir / "library.pose")},
            {"id": "x", "path": str(poses_dir / "sad-colin.pose")}]))
        match = "id 'x' names both"
    elif case == "unsafe-id":
        kwargs["input_path"] = str(manifest_csv(tmp_path / "u.csv", [{"id": "../x", "path": "a.pose"}]))
        match = "not usable as a relative file name"
    else:
        match = "nothing to embed"
    with pytest.raises(InputError, match=match):
        embed_items.list_items(**kwargs)


# --- resources ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("nodes,gpus,actors,videos", [
    ([2], 0, 1, False), ([2], 0, 2, False), ([2], 0, 1, True), ([16], 0, 3, True), ([1], 0, 1, False),
    ([2], 0, None, True), ([64], 0, None, False), ([1, 1], 0, 2, False), ([1, 1], 0, None, True),
    ([4, 4, 4], 0, 5, True), ([16], 1, None, False), ([8, 8], 2, None, True)])
def test_every_stage_fits_beside_the_actors_on_every_node(nodes, gpus, actors, videos):
    """Stages are spread over the nodes: what the busiest node hosts of each must fit on it."""
    r = plan(nodes, gpus, actors, videos=videos)
    n = len(nodes)
    held = sum(math.ceil(count / n) * cpus for count, cpus in (
        (r.actors, r.actor_cpus), (r.feature_tasks, r.feature_cpus), (r.writer_tasks, r.writer_cpus),
        (r.extract_actors, r.extract_cpus)))
    assert held <= min(nodes) + 1e-9, r
    assert r.actor_cpus > 0 and r.device == ("cuda" if gpus else "cpu")
    # on CPU the actors write their own shards: no writer task whose idle worker Ray would end between shards
    assert (r.writer_tasks, r.writer_cpus > 0) == ((1, True) if gpus else (0, False))
    assert (r.extract_actors >= 1) == videos
    for q in (r.actor_cpus, r.feature_cpus, r.writer_cpus, r.extract_cpus):
        assert q < 1 or q == int(q), "Ray takes fractions below 1 and whole numbers above"


def test_two_one_cpu_nodes_leave_room_beside_each_actor():
    # the stall seen on a 2 x 1-CPU cluster: two 0.66-CPU actors left 0.34 CPU per node for a 0.5-CPU task
    r = plan([1, 1], 0, 2)
    assert r.actor_cpus + r.writer_cpus <= 1.0 and r.feature_tasks == 0


def test_cpus_go_where_the_time_goes():
    """On CPU the actors featurise their own clips and hold the cores; with a GPU, featurising tasks get every
    core but the actor's, to feed it."""
    cpu = plan([2], 0, None)
    assert (cpu.actors, cpu.feature_tasks, cpu.threads) == (2, 0, 1) and cpu.actors * cpu.actor_cpus >= 1.8
    gpu = plan([16], 1, None)
    assert (gpu.device, gpu.actors, gpu.actor_cpus, gpu.feature_tasks) == ("cuda", 1, 1.0, 15)
    assert gpu.feature_tasks * gpu.feature_cpus >= 14
    assert actor_memory(440 << 20) > actor_memory(8 << 20) > 0


def test_gpu_actors_and_threads():
    r = plan([16], 2, 2)
    assert (r.actor_gpus, r.actor_cpus, r.device) == (1.0, 1.0, "cuda")
    assert plan([2], 0, 1).threads == 2 and plan([2], 0, 2).threads == 1
    with pytest.raises(ValueError, match="GPU"):
        plan([8], 1, 2, use_gpu=True)
    with pytest.raises(ValueError, match="no CPU"):
        plan([0], 0, 1)
    assert ray_quantity(1.7) == 1.0 and ray_quantity(0.667) == 0.66


def test_default_actor_count_follows_the_hardware():
    # one per GPU; on CPU one single-threaded actor per core (faster than one multi-threaded), capped
    assert plan([16], 4, None).actors == 4 and plan([16], 4, None).device == "cuda"
    assert plan([16], 4, None, use_gpu=False).actors == AUTO_CPU_ACTORS
    two = plan([2], 0, None)
    assert (two.actors, two.threads, two.device) == (2, 1, "cpu")
    assert plan([1], 0, None).actors == 1


def test_pools_get_no_more_actors_than_the_input_has_blocks():
    one = plan([2], 0, None, blocks=1)  # a single block: one actor, given both cores
    assert (one.actors, one.min_actors, one.threads) == (1, 1, 2)
    assert plan([16], 4, None, blocks=2).actors == 2 and plan([16], 4, None, blocks=9).actors == 4
    assert plan([16], 0, 3, videos=True, extract_actors=4, blocks=2).extract_actors == 2
    assert plan([16], 0, 3, min_actors=3, blocks=0).actors == 1  # an empty input still plans one actor


def test_blocks_are_as_large_as_a_batch_while_every_worker_gets_several():
    cpu, gpu = plan([2], 0, None), plan([16], 1, None)
    assert block_rows(20_000, cpu, 256) == 256  # 79 blocks, not 1,250: each block costs the driver the same
    assert block_rows(20_000, gpu, 256) == 256
    rows = block_rows(2_000, gpu, 256)  # 15 featurising tasks: at least 4 blocks each, and bundles of one batch
    assert MIN_BLOCK_ROWS <= rows <= math.ceil(2_000 / (15 * BLOCKS_PER_WORKER)) and 256 % rows == 0
    assert 256 % block_rows(2_000, cpu, 256) == 0 and block_rows(2_000, cpu, 256) > 64
    assert block_rows(40, cpu, 256) == MIN_BLOCK_ROWS  # small inputs keep today's 16-item blocks
    assert block_rows(20_000, cpu, 4) == 4  # never more than an actor's batch
    videos = plan([2], 0, None, videos=True)
    assert block_rows(20_000, videos, 256) == MIN_BLOCK_ROWS  # a block is one extraction actor's work


def test_the_driver_plans_a_run_without_importing_torch(tmp_path, poses_dir, model_dir):
    """Listing the input and reading the model's spec is the driver's whole share of the model: importing torch
    there cost every run 3 s before its first actor started."""
    import subprocess
    import sys

    code = ("import sys; from signclip.jobs import embed; "
            "items = embed.list_items(sys.argv[1]); spec = embed.model_spec(sys.argv[2]); "
            "print(len(items), spec['model_name'], 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(poses_dir), str(model_dir)], capture_output=True,
                         text=True, timeout=120, check=True)
    assert out.stdout.split() == [str(len(list(poses_dir.glob("*.pose")))), "tiny", "False"]


# --- stages, without Ray -------------------------------------------------------------------------------

def test_an_item_the_model_embeds_as_nan_is_failed_not_written(tmp_path, poses_dir, model_dir, monkeypatch):
    batch = {"id": np.array(["a", "b"], dtype=object), "kind": np.array(["pose"] * 2, dtype=object),
             "source": np.array([str(poses_dir / "library.pose"), str(poses_dir / "sad-colin.pose")], dtype=object),
             "text": np.array([""] * 2, dtype=object)}
    spec = spec_for(model_dir, tmp_path / "out")
    actor = EmbedActor(spec)
    real = actor.embedder.embed_features

    def poisoned(clips):  # as a model does on features it was never trained for (e.g. float32 max values)
        out = real(clips)
        out[0, 3] = np.nan
        return out

    monkeypatch.setattr(actor.embedder, "embed_features", poisoned)
    out = actor(featurize(batch, spec))
    assert list(out["status"]) == ["failed", "ok"]
    assert out["error"][0] == "embedding failed: the model gave non-finite values (NaN or inf)"


def test_stages_isolate_bad_inputs_and_match_the_embedder(tmp_path, poses_dir, model_dir):
    bad = bad_inputs(tmp_path / "bad", poses_dir)
    rows = {**{k: poses_dir / f"{k}.pose" for k in LABELLED}, **bad}
    batch = {"id": np.array(list(rows), dtype=object), "kind": np.array(["pose"] * len(rows), dtype=object),
             "source": np.array([str(p) for p in rows.values()], dtype=object),
             "text": np.array([""] * len(rows), dtype=object)}
    spec = spec_for(model_dir, tmp_path / "out", npy_dir=str(tmp_path / "npy"))
    out = EmbedActor(spec)(featurize(batch, spec))
    status = dict(zip(out["id"], out["status"]))
    error = dict(zip(out["id"], out["error"]))
    assert {k for k, s in status.items() if s == "ok"} == set(LABELLED) | {"long"}
    assert "not a readable .pose" in error["garbage"] and "empty file" in error["empty"]
    assert "zero frames" in error["zero-frames"] and "no such file" in error["missing"]
    assert all("not a MediaPipe Holistic pose" in error[k] for k in ("reduced-holistic-178", "openpose-137"))
    ok = [i for i, s in enumerate(out["status"]) if s == "ok"]
    expected = signclip.Embedder(signclip.load(model_dir)).embed_poses([str(out["source"][i]) for i in ok])
    np.testing.assert_allclose(out["embedding"][ok], expected, atol=1e-5)

    summary = write_shard(out, spec)
    table = pq.read_table(summary["shard"][0])
    assert table.schema == embedding_store.schema(spec.embedding_dim)
    assert table.num_rows == len(rows) and summary["ok"][0] == len(ok)
    failed = table.filter(table.column("status").to_numpy(zero_copy_only=False) == "failed")
    assert failed.column("embedding").null_count == failed.num_rows
    assert sorted(p.stem for p in (tmp_path / "npy").glob("*.npy")) == sorted(set(LABELLED) | {"long"})


def test_a_cpu_actor_writes_its_batch_as_shards_the_writer_task_would_write(tmp_path, poses_dir, model_dir):
    """With ``shard_rows`` (on CPU) the actor writes its own shards, with a failed row among them, and returns
    one summary row per shard; the rows are those the actor + writer task pair writes."""
    rows = {**{k: poses_dir / f"{k}.pose" for k in LABELLED}, "missing": tmp_path / "missing.pose"}
    batch = {"id": np.array(list(rows), dtype=object), "kind": np.array(["pose"] * len(rows), dtype=object),
             "source": np.array([str(p) for p in rows.values()], dtype=object)}
    two_stages = spec_for(model_dir, tmp_path / "tasks")
    write_shard(EmbedActor(two_stages)(batch), two_stages)
    spec = spec_for(model_dir, tmp_path / "actor")
    summary = EmbedActor(spec, shard_rows=2)(batch)
    assert list(summary["rows"]) == [2] * (len(rows) // 2) + [1] * (len(rows) % 2)
    assert int(summary["failed"].sum()) == 1 and int(summary["ok"].sum()) == len(LABELLED)
    assert sorted(summary["shard"]) == sorted(embedding_store.list_shards(str(tmp_path / "actor")))
    columns = ("id", "status", "error", "frames", "embedding")
    written, expected = (embedding_store.read_index(str(tmp_path / out), columns=columns).set_index("id").sort_index()
                         for out in ("actor", "tasks"))
    assert "no such file" in written.loc["missing", "error"]
    pd.testing.assert_frame_equal(written, expected)


# --- the shard store -------------------------------------------------------------------------------------

def _rows(spec: RunSpec, ids: list[str], status: str, value: float) -> dict:
    n = len(ids)
    return {"id": np.array(ids, dtype=object), "kind": np.array(["pose"] * n, dtype=object),
            "source": np.array([f"{i}.pose" for i in ids], dtype=object),
            "status": np.array([status] * n, dtype=object), "error": np.array([""] * n, dtype=object),
            "frames": np.full(n, 10), "segments": np.full(n, 1),
            "embedding": np.full((n, spec.embedding_dim), value, dtype=np.float32)}


def test_readers_keep_one_row_per_id_and_ignore_partial_files(tmp_path, model_dir):
    out = tmp_path / "emb"
    spec = spec_for(model_dir, out)
    embedding_store.write_shard(to_table(_rows(spec, ["a", "b"], "failed", 0), spec), str(out), "r1", "x")
    embedding_store.write_shard(to_table(_rows(spec, ["b", "c"], "ok", 2.0), spec), str(out), "r2", "x")
    embedding_store.write_shard(to_table(_rows(spec, ["c"], "failed", 0), spec), str(out), "r3", "x")
    (out / "shards" / "part-r4-y.parquet.tmp-0123").write_bytes(b"half a shard")  # a write cut short
    index = embedding_store.read_index(str(out))
    assert dict(zip(index["id"], index["status"])) == {"a": "failed", "b": "ok", "c": "ok"}
    corpus = embedding_store.load(str(out))
    assert list(corpus.meta["id"]) == ["b", "c"]
    np.testing.assert_array_equal(corpus.embeddings, np.full((2, spec.embedding_dim), 2.0, dtype=np.float32))
    assert corpus.meta["frames"].dtype == pd.Int64Dtype()


def test_a_loaded_corpus_keeps_each_clips_own_embedding_across_shards(tmp_path, model_dir):
    """Rows are gathered shard by shard into one array: every id must get its own row's vector."""
    out = tmp_path / "emb"
    spec = spec_for(model_dir, out)
    value = {}
    for run, ids in enumerate([["a", "b", "c"], ["d"], ["b", "e"], ["f", "g"]]):
        rows = _rows(spec, ids, "ok", 0)
        for n, clip in enumerate(ids):
            value[clip] = 10 * run + n + 1
            rows["embedding"][n] = value[clip]
        if run == 1:
            rows["kind"][:] = "text"  # a shard that contributes nothing to a corpus of clips
        if run == 3:
            rows["status"][1], rows["error"][1] = "failed", "x"  # g failed
        embedding_store.write_shard(to_table(rows, spec), str(out), f"r{run}", "x")
    corpus = embedding_store.load(str(out), kinds=("pose",))
    assert list(corpus.meta["id"]) == ["a", "c", "b", "e", "f"]  # b's newer row, in shard order
    np.testing.assert_array_equal(corpus.embeddings[:, 0], [value[i] for i in corpus.meta["id"]])
    assert corpus.embeddings.shape == (5, spec.embedding_dim) and corpus.embeddings.dtype == np.float32
    nothing = embedding_store.load(str(out), kinds=("video",))
    assert nothing.embeddings.shape == (0, spec.embedding_dim)


def _corpus_of_runs(spec: RunSpec, output: str, runs: int) -> None:
    """``runs`` shards of three rows each, every vector its row's own (run * 10 + row), one id rewritten."""
    for run in range(runs):
        ids = [f"r{run}-{n}" for n in range(3)] + (["r0-0"] if run == runs - 1 else [])
        rows = _rows(spec, ids, "ok", 0)
        rows["embedding"][:, 0] = [run * 10 + n for n in range(len(ids))]
        embedding_store.write_shard(to_table(rows, spec), output, f"r{run:02d}", "x")


def test_shards_in_an_object_store_are_read_several_at_once_and_give_what_one_at_a_time_gives(
        tmp_path, model_dir, s3_bucket, monkeypatch):
    import threading
    import time

    output = f"{s3_bucket}/emb"
    spec = spec_for(model_dir, tmp_path)
    _corpus_of_runs(spec, output, runs=6)
    read_one, lock, active, most = embedding_store._read_one, threading.Lock(), [0], [0]

    def counted(*args, **kwargs):
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        try:
            time.sleep(0.05)  # a round trip long enough for the other readers to start
            return read_one(*args, **kwargs)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(embedding_store, "_read_one", counted)
    together, index = embedding_store.load(output), embedding_store.read_index(output)
    assert most[0] > 1
    monkeypatch.setattr(embedding_store, "REMOTE_READERS", 1)
    most[0] = 0
    alone = embedding_store.load(output)
    assert most[0] == 1
    pd.testing.assert_frame_equal(together.meta, alone.meta)
    np.testing.assert_array_equal(together.embeddings, alone.embeddings)
    assert list(together.meta["id"]).count("r0-0") == 1 and len(together) == 18 == len(index)
    np.testing.assert_array_equal(together.embeddings[:, 0], [int(i[1]) * 10 + int(i[3]) if i != "r0-0" else 53
                                                             for i in together.meta["id"]])


@pytest.mark.parametrize("damage", ["junk", "other parquet", "other width"])
def test_a_damaged_shard_is_named_when_a_corpus_is_read(tmp_path, model_dir, damage):
    import pyarrow as pa

    out = tmp_path / "emb"
    spec = spec_for(model_dir, out)
    _corpus_of_runs(spec, str(out), runs=2)
    bad = out / "shards" / "part-r99-x.parquet"
    if damage == "junk":
        bad.write_bytes(b"PAR1 cut short by a copy tool")
        says = "not a readable embedding shard"
    elif damage == "other parquet":
        pq.write_table(pa.table({"id": ["z"], "score": [1.0]}), bad)
        says = "not an embedding shard (it has no column 'kind'"
    else:
        wider = dataclasses.replace(spec, embedding_dim=spec.embedding_dim + 1)
        embedding_store.write_shard(to_table(_rows(wider, ["z"], "ok", 1.0), wider), str(out), "r99", "x")
        says = f"embeddings of {spec.embedding_dim + 1} values, the other shards' have {spec.embedding_dim}"
    with pytest.raises(ValueError, match=re.escape(f"{bad}: {says}")):
        embedding_store.load(str(out))
    if damage != "other width":  # the index (what a rerun skips) reads no embedding
        with pytest.raises(ValueError, match=re.escape(f"{bad}: ")):
            embedding_store.read_index(str(out))


def test_a_damaged_shard_in_an_object_store_is_named_too(tmp_path, model_dir, s3_bucket):
    from signclip.io import storage

    output = f"{s3_bucket}/damaged"
    _corpus_of_runs(spec_for(model_dir, tmp_path), output, runs=2)
    bad = f"{output}/shards/part-r99-x.parquet"
    storage.write_bytes_atomic(bad, b"PAR1 cut short by a copy tool")
    for read in (embedding_store.load, embedding_store.read_index):
        with pytest.raises(ValueError, match=re.escape(f"{bad}: not a readable embedding shard")):
            read(output)


def test_npy_path_layout(tmp_path):
    embedding_store.write_npy(str(tmp_path), "a/b", np.arange(4, dtype=np.float64))
    arr = np.load(tmp_path / "a" / "b.npy")
    assert arr.shape == (4,) and arr.dtype == np.float32


def test_npy_names_for_pose_evaluation(tmp_path, model_dir, poses_dir):
    """``--npy-name '{id}-using-model-{model}.npy'``: the files pose-evaluation's dataset tools look for."""
    spec = spec_for(model_dir, tmp_path / "out", npy_dir=str(tmp_path / "npy"),
                    npy_name="{id}-using-model-{model}.npy")
    batch = {"id": np.array(["sub/house-colin-1"], dtype=object), "kind": np.array(["pose"], dtype=object),
             "source": np.array([str(poses_dir / "house-colin-1.pose")], dtype=object),
             "text": np.array([""], dtype=object)}
    out = EmbedActor(spec)(featurize(batch, spec))
    write_shard(out, spec)
    arr = np.load(tmp_path / "npy" / "sub" / f"house-colin-1-using-model-{spec.model_name}.npy")
    assert arr.shape == (spec.embedding_dim,) and spec.model_name == "tiny"
    np.testing.assert_array_equal(arr, out["embedding"][0])
    for bad, says in (("{id}", "ending in .npy"), ("x.npy", "{id} (required)"), ("{id}-{name}.npy", "'name'"),
                      ("a/{id}.npy", "without folders")):
        with pytest.raises(ValueError, match=re.escape(says)):
            embedding_store.check_npy_name(bad)


def test_embed_refuses_a_bad_npy_name_before_any_work(tmp_path, model_dir, capsys):
    from signclip.jobs import embed

    rc = embed.main(["--model", str(model_dir), "--input", str(tmp_path), "--output", str(tmp_path / "o"),
                     "--npy-dir", str(tmp_path / "n"), "--npy-name", "{id}.txt"])
    assert rc == 2 and "--npy name '{id}.txt': a file name ending in .npy" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_pending_skips_written_ids_and_retries_failed_ones_on_request(tmp_path, model_dir):
    from signclip.jobs.embed import EmbedOptions, pending

    out = tmp_path / "emb"
    spec = spec_for(model_dir, out)
    embedding_store.write_shard(to_table(_rows(spec, ["a"], "ok", 1.0), spec), str(out), "r1", "x")
    embedding_store.write_shard(to_table(_rows(spec, ["b"], "failed", 0), spec), str(out), "r1", "y")
    items = [embed_items.Item(id=i, kind="pose", source=f"{i}.pose") for i in "abc"]
    fields = model_spec(str(model_dir))
    opts = EmbedOptions(model=str(model_dir), output=str(out))
    assert [i.id for i in pending(items, opts, fields)] == ["c"]
    opts.retry_failed = True
    assert [i.id for i in pending(items, opts, fields)] == ["b", "c"]
    opts.flip = True
    with pytest.raises(InputError, match="made with flip=False, this run uses flip=True"):
        pending(items, opts, fields)
    # the window stride counts only for windowed clips: a truncating rerun with another stride adds to the corpus
    opts.flip, opts.retry_failed, opts.window_stride = False, False, 64
    assert [i.id for i in pending(items, opts, fields)] == ["c"]
    window = spec_for(model_dir, tmp_path / "windowed", long_clips="window", window_stride=128)
    embedding_store.write_shard(to_table(_rows(window, ["a"], "ok", 1.0), window), str(tmp_path / "windowed"),
                                "r1", "x")
    opts = EmbedOptions(model=str(model_dir), output=str(tmp_path / "windowed"), long_clips="window",
                        window_stride=64)
    with pytest.raises(InputError, match="made with window_stride=128, this run uses window_stride=64"):
        pending(items, opts, fields)


def test_the_summary_line_says_where_the_failures_are_explained():
    from signclip.jobs.embed import EmbedSummary

    summary = EmbedSummary(run_id="r", output="s3://b/emb", model="m", model_name="tiny", model_hash="h", items=7,
                           skipped=0, ok=5, failed=2, seconds=3.8, clips_per_s=1.8, shards=3, total_ok=5,
                           total_failed=2, resources={})
    assert summary.line().endswith("holds 5 ok / 2 failed; why each failed: s3://b/emb/manifest.parquet "
                                   "(error column)")
    clean = dataclasses.replace(summary, failed=0, total_failed=0, ok=7, total_ok=7)
    assert clean.line().endswith("holds 7 ok / 0 failed")
