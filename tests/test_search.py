"""Text-to-sign search over an embedded corpus (signclip.search.lookup and `signclip search`), without Ray.

The corpus is written by the embed job's own stages called in-process (the same code the Ray pipeline
runs), so these tests need no cluster.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import signclip
from signclip import cli
from signclip.evaluation import metrics
from signclip.jobs import search as search_job
from signclip.search.lookup import SignSearch
from tests.embed_helpers import LABELLED, tiny_model, write_corpus

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
