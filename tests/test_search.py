"""Text-to-sign search over an embedded corpus (signclip.search.lookup and `signclip search`), without Ray.

The corpus is written by the embed job's own stages called in-process (the same code the Ray pipeline
runs), so these tests need no cluster.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import signclip
from signclip import cli
from signclip.evaluation import metrics
from signclip.io import embedding_store
from signclip.jobs import search as search_job
from signclip.search.index import VectorIndex
from signclip.search.lookup import SignSearch
from tests.embed_helpers import LABELLED, long_clip, tiny_model, write_corpus

QUERY = "<en> <ase> house"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, poses_dir) -> dict:
    work = tmp_path_factory.mktemp("search")
    model_dir = tiny_model(work / "tiny")
    paths = [str(poses_dir / f"{name}.pose") for name in LABELLED]
    return {"dir": write_corpus(work, poses_dir, model_dir), "model": model_dir, "paths": paths}


def test_ranking_is_the_models_similarity_order(corpus):
    index = SignSearch.load(corpus["dir"])
    hits = index.search(QUERY, k=3)
    embedder = signclip.Embedder(signclip.load(corpus["model"]))
    scores = metrics.similarity(embedder.embed_texts([QUERY]), embedder.embed_poses(corpus["paths"]))[0]
    order = np.argsort(-scores, kind="stable")
    assert [h.id for h in hits] == [list(LABELLED)[i] for i in order[:3]]
    assert [h.rank for h in hits] == [1, 2, 3]
    np.testing.assert_allclose([h.score for h in hits], scores[order[:3]], atol=1e-5)
    assert hits[0].gloss == LABELLED[hits[0].id]


def test_only_embedded_clips_are_searched(corpus):
    hits = SignSearch.load(corpus["dir"]).search(QUERY, k=50)
    assert sorted(h.id for h in hits) == sorted(LABELLED)  # no failed clip, no prompt row


def test_cli_table_and_json(corpus, capsys):
    assert cli.main(["search", "--embeddings", corpus["dir"], QUERY, "-k", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{QUERY}  (4 clips)") and len(out.strip().splitlines()) == 3
    assert search_job.main(["--embeddings", corpus["dir"], QUERY, "<en> <ase> sad", "-k", "4", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [x["query"] for x in lines] == [QUERY, "<en> <ase> sad"]
    assert all(len(x["hits"]) == 4 for x in lines)
    scores = [h["score"] for h in lines[0]["hits"]]
    assert scores == sorted(scores, reverse=True)


def test_refuses_a_model_that_did_not_make_the_embeddings(corpus, tmp_path: Path, capsys):
    other = tmp_path / "other"
    signclip.create("tiny", seed=3).save(str(other))
    assert search_job.main(["--embeddings", corpus["dir"], "--model", str(other), QUERY]) == 2
    assert "the embeddings were made with" in capsys.readouterr().err
    assert search_job.main(["--embeddings", str(tmp_path / "none"), QUERY]) == 2
    assert "no embedding shards" in capsys.readouterr().err


def embed_corpus(output: Path, model_dir: Path, clips: dict[str, tuple[Path, str, str]],
                 spoken: dict[str, str] | None = None, **options) -> str:
    """An embedding directory of ``clips`` (id -> (pose file, gloss, language)), written by the embed job's own
    stages in-process; ``spoken``: a clip's spoken language where it is not English; ``options`` are the run's
    (e.g. ``long_clips``, ``window_stride``)."""
    from signclip.embedding.stages import EmbedActor, RunSpec, featurize, model_spec, write_shard

    n = len(clips)
    batch = {"id": np.array(list(clips), dtype=object), "kind": np.array(["pose"] * n, dtype=object),
             "source": np.array([str(path) for path, _, _ in clips.values()], dtype=object),
             "text": np.array([""] * n, dtype=object),
             "gloss": np.array([gloss for _, gloss, _ in clips.values()], dtype=object),
             "language": np.array([language for _, _, language in clips.values()], dtype=object),
             "spoken_language": np.array([(spoken or {}).get(c, "") for c in clips], dtype=object)}
    spec = RunSpec(**model_spec(str(model_dir)), output=str(output), run_id="r1", **options)
    write_shard(EmbedActor(spec)(featurize(batch, spec)), spec)
    return str(output)


def _labelled(poses_dir: Path, changes: dict[str, tuple[str, str]]) -> dict[str, tuple[Path, str, str]]:
    """The labelled sample clips as ``embed_corpus`` takes them, some with another (gloss, language)."""
    return {name: (poses_dir / f"{name}.pose", *changes.get(name, (gloss, "ase"))) for name, gloss in LABELLED.items()}


def test_a_label_whose_prompt_cannot_be_built_is_left_out_of_recognition(corpus, tmp_path, poses_dir, caplog):
    clips = _labelled(poses_dir, {"house-colin-1": ("house", "ASL")})  # not an ISO 639-3 code: no prompt
    search = SignSearch.load(embed_corpus(tmp_path / "emb", corpus["model"], clips))
    with caplog.at_level("WARNING", logger="signclip.search.lookup"):
        glosses = search.recognize(search.embed_clips([poses_dir / "sad-colin.pose"]), k=5)[0]
        assert [(e.label, e.language, e.clips) for e in search.labels] == [("house", "ase", 1), ("sad", "ase", 1),
                                                                           ("library", "ase", 1)]
    assert sorted(g.label for g in glosses) == ["house", "library", "sad"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "1 clip(s)" in warnings[0] and "'house-colin-1'" in warnings[0], warnings
    assert "'ASL'" in warnings[0]
    assert "house-colin-1" in [h.id for h in search.search("<en> <ase> house", k=4)]  # still found by text


def test_labels_the_model_cannot_tell_apart_are_one_label(corpus, tmp_path, poses_dir):
    """Glosses spelled 'house', 'HOUSE ' and 'house ' are one prompt to an uncased model: one label, 3 clips."""
    clips = _labelled(poses_dir, {"house-spreadthesign": ("HOUSE ", "ase"), "library": ("house ", "ase")})
    search = SignSearch.load(embed_corpus(tmp_path / "emb", corpus["model"], clips))
    assert sorted((e.label, e.prompt, e.clips) for e in search.labels) == [
        ("house", "<en> <ase> house", 3), ("sad", "<en> <ase> sad", 1)]
    glosses = search.recognize(search.embed_clips([poses_dir / "house-colin-1.pose"]), k=5)[0]
    assert sorted((g.label, g.clips) for g in glosses) == [("house", 3), ("sad", 1)]


def test_a_gloss_is_recognised_by_its_prompt_in_its_own_spoken_language(corpus, tmp_path, poses_dir):
    """Training built a German gloss's prompt as '<de> <gsg> Haus': recognition must embed that, not '<en> ...'."""
    clips = _labelled(poses_dir, {"house-colin-1": ("Haus", "gsg"), "library": ("house", "ase")})
    search = SignSearch.load(embed_corpus(tmp_path / "emb", corpus["model"], clips, spoken={"house-colin-1": "de"}))
    assert sorted((e.label, e.language, e.prompt, e.clips) for e in search.labels) == [
        ("Haus", "gsg", "<de> <gsg> Haus", 1), ("house", "ase", "<en> <ase> house", 2),
        ("sad", "ase", "<en> <ase> sad", 1)]
    [best] = search.recognize(search.embed_clips([poses_dir / "house-colin-1.pose"]), k=1)[0]
    expected = search.embedder.embed_texts([e.prompt for e in search.labels])
    query = search.embed_clips([poses_dir / "house-colin-1.pose"])
    assert best.prompt == search.labels[int(np.argmax(metrics.similarity(query, expected)[0]))].prompt


def test_a_windowed_corpus_is_queried_with_its_own_long_clip_policy_and_stride(corpus, tmp_path, poses_dir):
    long = long_clip(poses_dir / "house-colin-1.pose", tmp_path / "long.pose", repeats=5)  # 465 frames
    clips = {"long": (long, "house", "ase"), "sad-colin": (poses_dir / "sad-colin.pose", "sad", "ase")}
    emb = embed_corpus(tmp_path / "emb", corpus["model"], clips, long_clips="window", window_stride=64)
    assert pq.read_table(embedding_store.list_shards(emb)[0]).column("window_stride").to_pylist() == [64, 64]
    search = SignSearch.load(emb)
    assert (search.embedder.long_clips, search.embedder.window_stride) == ("window", 64)
    hit = search.search_clips(search.embed_clips([long.read_bytes()]), k=1)[0][0]
    assert hit.id == "long" and hit.score == pytest.approx(1.0, abs=1e-5)


def test_shards_written_before_the_stride_was_recorded_read_as_the_default_stride(corpus, tmp_path):
    old, new = tmp_path / "old", tmp_path / "mixed"
    [shard] = embedding_store.list_shards(corpus["dir"])
    legacy = pq.read_table(shard).drop_columns(["window_stride", "spoken_language"])  # as older versions wrote it
    embedding_store.write_shard(legacy, str(old), "r0", "old")
    embedding_store.write_shard(legacy, str(new), "r0", "old")
    embedding_store.write_shard(pq.read_table(shard).slice(0, 1), str(new), "r1", "new")  # a rerun's shard
    assert set(embedding_store.read_index(str(old))["window_stride"]) == {embedding_store.DEFAULT_WINDOW_STRIDE}
    assert set(embedding_store.load(str(old)).meta["spoken_language"]) == {""}
    assert list(embedding_store.load(str(old)).meta.columns) == list(embedding_store.load(corpus["dir"]).meta.columns)
    assert len(embedding_store.load(str(new))) == len(embedding_store.load(corpus["dir"]))
    search = SignSearch.load(str(old))
    assert search.embedder.window_stride == embedding_store.DEFAULT_WINDOW_STRIDE
    assert [h.id for h in search.search(QUERY, k=4)] == [h.id for h in SignSearch.load(corpus["dir"]).search(QUERY, 4)]


def test_the_label_index_is_embedded_once_however_many_first_calls_race(corpus, poses_dir):
    search = SignSearch.load(corpus["dir"])
    query = search.embed_clips([poses_dir / "sad-colin.pose"])
    embed_texts, calls = search.embedder.embed_texts, []

    def slow_embed(texts):
        calls.append(len(texts))
        time.sleep(0.2)  # long enough for every thread to arrive while the labels are embedded
        return embed_texts(texts)

    search.embedder.embed_texts = slow_embed
    assert len(search.labels) == 3 and calls == []  # counting the labels embeds nothing
    start, answers = threading.Barrier(8), []

    def recognize():
        start.wait()
        answers.append([(g.label, g.score) for g in search.recognize(query, k=3)[0]])

    threads = [threading.Thread(target=recognize) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [3] and len(answers) == 8 and all(a == answers[0] for a in answers)


def test_hits_are_built_without_reading_the_table_row_by_row():
    n, queries, k = 20_000, 64, 100
    rng = np.random.default_rng(0)
    meta = pd.DataFrame({c: [f"{c}-{i}" for i in range(n)] for c in ("id", "source", "gloss", "text", "language",
                                                                        "pose_path")})
    vectors = rng.normal(size=(n, 16)).astype(np.float32)
    search = SignSearch(embedding_store.Corpus(meta, vectors), embedder=None, mode="exact")  # no model needed
    # pandas scalar reads cost ~110 us a hit (12,800 hits: 1.4 s, as long as the search): hits read plain lists
    search.corpus.meta = None
    hits = search.search_clips(vectors[:queries], k)
    assert len(hits) == queries and all(len(h) == k for h in hits)
    first = hits[0][0]
    row = int(first.id.split("-")[1])
    assert (first.id, first.source, first.gloss, first.text, first.language) == tuple(
        meta.loc[row, c] for c in ("id", "source", "gloss", "text", "language"))


def test_cli_searches_exactly_unless_told_and_names_a_missing_faiss(corpus, capsys, monkeypatch):
    assert search_job.parser().parse_args(["--embeddings", "x", QUERY]).search_mode == "exact"
    monkeypatch.setitem(sys.modules, "faiss", None)  # an install without signclip[search]
    with pytest.raises(ValueError, match=r"needs faiss.*pip install 'signclip\[search\]'"):
        VectorIndex(np.eye(4, dtype=np.float32), "approximate")
    assert search_job.main(["--embeddings", corpus["dir"], QUERY, "-k", "1"]) == 0
    capsys.readouterr()
    assert search_job.main(["--embeddings", corpus["dir"], QUERY, "--search-mode", "approximate"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "pip install 'signclip[search]'" in err and "Traceback" not in err


@pytest.mark.parametrize("query", ["", "   "])
def test_cli_refuses_an_empty_query_as_the_service_does(corpus, capsys, query):
    assert search_job.main(["--embeddings", corpus["dir"], QUERY, query]) == 2
    err = capsys.readouterr().err
    assert f"query 2 of 2 ({query!r}) is empty" in err and "Traceback" not in err
    with pytest.raises(ValueError, match="is empty"):
        SignSearch.load(corpus["dir"]).search(query)
