"""Dictionary search as a service, in one process (LocalBackend, no Ray): the routes, their refusals, the page,
and the approximate index's recall against exact search."""

from __future__ import annotations

import asyncio
import base64
import sys
import threading

import numpy as np
import pytest

import signclip
from signclip.api import LocalBackend, ServiceSettings, backend, create_app
from signclip.search.index import VectorIndex, exact_top_k
from signclip.search.lookup import SignSearch
from tests.embed_helpers import LABELLED, tiny_model, warped_copies, write_corpus
from tests.test_search import embed_corpus

QUERY = "<en> <ase> house"


@pytest.fixture(scope="module")
def index(tmp_path_factory, poses_dir) -> dict:
    work = tmp_path_factory.mktemp("search-service")
    model_dir = tiny_model(work / "tiny")
    return {"dir": write_corpus(work, poses_dir, model_dir), "model": model_dir, "work": work}


def _client(settings: dict):
    from fastapi.testclient import TestClient

    settings = ServiceSettings.from_mapping(settings)
    return TestClient(create_app(LocalBackend(settings), settings, token="s3cret"))


@pytest.fixture(scope="module")
def client(index):
    return _client({"models": {"default": str(index["model"])}, "indexes": {"asl": index["dir"]},
                    "enable_video": False, "max_upload_bytes": 4 << 20, "max_k": 20})


AUTH = {"Authorization": "Bearer s3cret"}


def test_indexes_and_text_search_rank_as_the_offline_search(client, index):
    listed = client.get("/v1/indexes", headers=AUTH).json()["data"]
    assert [(i["name"], i["clips"], i["mode"]) for i in listed] == [("asl", len(LABELLED), "exact")]
    reply = client.get("/v1/search", params={"q": QUERY, "k": 3, "index": "asl"}, headers=AUTH).json()
    offline = SignSearch.load(index["dir"]).search(QUERY, k=3)
    assert [h["id"] for h in reply["hits"]] == [h.id for h in offline] and reply["query"] == QUERY
    assert [h["rank"] for h in reply["hits"]] == [1, 2, 3] and reply["glosses"] == []
    np.testing.assert_allclose([h["score"] for h in reply["hits"]], [h.score for h in offline], atol=1e-5)
    first = reply["hits"][0]
    assert first["gloss"] == LABELLED[first["id"]] and first["pose_url"] == f"v1/poses/asl/{first['id']}"
    default_index = client.get("/v1/search", params={"q": QUERY}, headers=AUTH).json()
    assert default_index["index"] == "asl" and len(default_index["hits"]) == len(LABELLED)


@pytest.mark.parametrize("how", ["multipart", "json"])
def test_search_by_sign_finds_itself_and_its_gloss(client, index, poses_dir, how):
    pose = (poses_dir / "sad-colin.pose").read_bytes()
    if how == "multipart":
        r = client.post("/v1/search", files={"file": ("clip.pose", pose)}, data={"k": "3", "index": "asl"},
                        headers=AUTH)
    else:
        r = client.post("/v1/search", json={"pose": base64.b64encode(pose).decode(), "k": 3}, headers=AUTH)
    assert r.status_code == 200, r.text
    reply = r.json()
    assert reply["hits"][0]["id"] == "sad-colin" and reply["hits"][0]["score"] == pytest.approx(1.0, abs=1e-5)
    search = SignSearch.load(index["dir"])
    expected = search.recognize(search.embed_clips([pose]), k=3)[0]
    assert [(g["label"], g["language"]) for g in reply["glosses"]] == [(g.label, g.language) for g in expected]
    assert {g["label"] for g in reply["glosses"]} <= set(LABELLED.values()) | {QUERY}


def test_search_answers_are_what_the_published_schema_says(client, poses_dir):
    """Every field of each answer is declared in ``signclip.api.schema`` (its response models forbid others)."""
    from pydantic import ValidationError

    from signclip.api import schema

    pose = base64.b64encode((poses_dir / "sad-colin.pose").read_bytes()).decode()
    schema.IndexList.model_validate(client.get("/v1/indexes", headers=AUTH).json())
    schema.SearchAnswer.model_validate(client.get("/v1/search", params={"q": QUERY, "k": 2}, headers=AUTH).json())
    by_sign = client.post("/v1/search", json={"pose": pose, "k": 2}, headers=AUTH).json()
    assert schema.SearchAnswer.model_validate(by_sign).glosses
    schema.Skeleton.model_validate(client.get("/v1/skeleton", headers=AUTH).json())
    schema.Health.model_validate(client.get("/health").json())
    with pytest.raises(ValidationError, match="extra"):  # a field the schema does not publish
        schema.SearchAnswer.model_validate({**by_sign, "debug": 1})


def test_a_clips_pose_file_and_nothing_outside_the_index(client, poses_dir):
    r = client.get("/v1/poses/asl/library", headers=AUTH)
    assert r.status_code == 200 and r.content == (poses_dir / "library.pose").read_bytes()
    for bad in ("nowhere", "../../etc/passwd", "openpose-137", "prompt"):  # failed rows and prompts are no clips
        r = client.get(f"/v1/poses/asl/{bad}", headers=AUTH)
        assert r.status_code == 404 and r.json()["error"]["code"] in ("clip_not_found", "not_found"), bad


def test_a_clip_whose_pose_file_this_server_cannot_read_is_a_404_that_says_so(index, poses_dir, caplog):
    work = index["work"] / "moved"
    work.mkdir()
    gone = work / "gone.pose"  # e.g. a path on the embedding run's own disk, seen from another node
    gone.write_bytes((poses_dir / "library.pose").read_bytes())
    corpus = write_corpus(work, poses_dir, index["model"], extra={"gone": gone})
    gone.unlink()
    moved = _client({"models": {"default": str(index["model"])}, "indexes": {"moved": corpus}, "enable_video": False})
    with caplog.at_level("WARNING", logger="signclip.api.backend"):
        r = moved.get("/v1/poses/moved/gone", headers=AUTH)
    assert r.status_code == 404, r.text
    error = r.json()["error"]
    assert error["code"] == "pose_file_unreachable" and "clip 'gone'" in error["message"]
    assert str(gone) not in error["message"] and str(gone) in caplog.text  # the path is logged, not published
    assert moved.get("/v1/poses/moved/library", headers=AUTH).status_code == 200


@pytest.mark.parametrize("call,status,code", [
    (lambda c: c.get("/v1/search", params={"q": "  "}, headers=AUTH), 400, "empty_query"),
    (lambda c: c.get("/v1/search", params={"q": QUERY, "k": 0}, headers=AUTH), 400, "invalid_value"),
    (lambda c: c.get("/v1/search", params={"q": QUERY, "k": 21}, headers=AUTH), 400, "invalid_value"),
    (lambda c: c.get("/v1/search", params={"q": QUERY, "k": "ten"}, headers=AUTH), 400, "wrong_type"),
    (lambda c: c.get("/v1/search", params={"q": QUERY, "index": "bsl"}, headers=AUTH), 404, "index_not_found"),
    (lambda c: c.get("/v1/poses/bsl/library", headers=AUTH), 404, "index_not_found"),
    (lambda c: c.post("/v1/search", files={"file": ("x.pose", b"garbage")}, headers=AUTH), 422, "invalid_pose"),
    (lambda c: c.post("/v1/search", json={"pose": "!!"}, headers=AUTH), 400, "invalid_base64"),
    (lambda c: c.post("/v1/search", json={"k": 3}, headers=AUTH), 400, "missing_field"),
    (lambda c: c.post("/v1/search", json={"pose": ["AAAA"]}, headers=AUTH), 400, "invalid_pose"),
    (lambda c: c.post("/v1/search", files={"file": ("clip.mp4", b"\x00" * 100)}, headers=AUTH), 415,
     "unsupported_media_type"),
    (lambda c: c.post("/v1/search", files={"file": ("big.pose", b"\x00" * (5 << 20))}, headers=AUTH), 413,
     "body_too_large"),
    (lambda c: c.get("/v1/search", params={"q": QUERY}), 401, "unauthorized"),
])
def test_bad_searches_get_a_clear_4xx_and_the_service_keeps_answering(client, call, status, code):
    r = call(client)
    assert r.status_code == status and r.json()["error"]["code"] == code, r.text
    assert r.json()["error"]["message"]
    assert client.get("/v1/search", params={"q": QUERY, "k": 1}, headers=AUTH).status_code == 200


def test_a_pose_the_model_refuses_is_named(client, poses_dir):
    r = client.post("/v1/search", files={"file": ("openpose.pose", (poses_dir / "openpose-137.pose").read_bytes())},
                    headers=AUTH)
    assert r.status_code == 422 and r.json()["error"]["code"] == "unsupported_pose_layout"
    assert "not a MediaPipe Holistic pose" in r.json()["error"]["message"]


def test_the_page_is_served_offline_and_public(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="query"' in page.text and "static/app.js" in page.text
    for script in ("app.js", "pose.js"):
        r = client.get(f"/static/{script}")
        assert r.status_code == 200 and "javascript" in r.headers["content-type"]
        assert "http://" not in r.text and "https://" not in r.text, f"{script} must not fetch from elsewhere"
    assert "https://" not in page.text and "http://" not in page.text
    limbs = client.get("/v1/skeleton", headers=AUTH).json()["limbs"]["FACE_LANDMARKS"]
    assert len(limbs) == 124 and all(0 <= a < 468 and 0 <= b < 468 for a, b in limbs)


def test_an_index_is_searched_only_with_its_own_model(index, tmp_path):
    other = tmp_path / "other"
    signclip.create("tiny", seed=5).save(str(other))  # same preset, other weights: another fingerprint
    with pytest.raises(ValueError, match="a query embedded with another model is not comparable"):
        LocalBackend(ServiceSettings.from_mapping({"models": {"default": str(other)}, "indexes": {"asl": index["dir"]},
                                                   "index_models": {"asl": str(other)}}))
    with pytest.raises(ValueError, match="holds no embeddings"):
        ServiceSettings.from_mapping({"models": {"default": str(other)}, "indexes": {"x": str(tmp_path)}})


def test_an_index_lists_the_model_it_is_searched_with(index, tmp_path):
    import shutil

    copy = tmp_path / "model-moved-here"
    shutil.copytree(index["model"], copy)  # the same model (fingerprint) in another place
    client = _client({"models": {"default": str(index["model"])}, "indexes": {"asl": index["dir"]},
                      "index_models": {"asl": str(copy)}, "enable_video": False})
    listed = client.get("/v1/indexes", headers=AUTH).json()["data"][0]
    assert listed["model"] == str(copy), listed


def test_an_index_without_a_searchable_clip_is_refused_before_the_service_starts(index, tmp_path):
    """It used to pass the settings and fail only inside the search replica, which Serve then restarts."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from signclip.io import embedding_store

    for n, path in enumerate(embedding_store.list_shards(index["dir"])):
        shard = pq.read_table(path)
        failed = shard.set_column(shard.schema.get_field_index("status"), "status",
                                  pa.array(["failed"] * shard.num_rows))
        embedding_store.write_shard(failed, str(tmp_path / "failed"), "r1", str(n))
    with pytest.raises(ValueError, match=r"holds no successfully embedded clips to search \(its \d+ rows"):
        ServiceSettings.from_mapping({"models": {"default": str(tiny_model(tmp_path / "m"))},
                                      "indexes": {"asl": str(tmp_path / "failed")}})


def test_approximate_search_recalls_what_exact_search_finds():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(200, 64)).astype(np.float32)
    vectors = centres[rng.integers(0, 200, 20_000)] + 0.3 * rng.normal(size=(20_000, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = vectors[rng.integers(0, 20_000, 200)] + 0.05 * rng.normal(size=(200, 64)).astype(np.float32)
    exact, approximate = VectorIndex(vectors, "exact"), VectorIndex(vectors, "approximate")
    assert (exact.mode, approximate.mode) == ("exact", "approximate")
    _, truth = exact.search(queries, 10)
    scores, found = approximate.search(queries, 10)
    recall = np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, found)])
    assert recall >= 0.95, recall
    assert np.all(np.diff(scores, axis=1) <= 1e-6), "best first"
    assert VectorIndex(vectors[:100], "auto", approximate_above=50).mode == "approximate"


def test_exact_search_in_steps_answers_as_in_one(monkeypatch):
    """Many queries against a large corpus are scored a slice of queries at a time, to bound memory."""
    from signclip.search import index as index_module

    rng = np.random.default_rng(1)
    vectors, queries = rng.normal(size=(1000, 16)).astype(np.float32), rng.normal(size=(37, 16)).astype(np.float32)
    whole = VectorIndex(vectors, "exact").search(queries, 7)
    monkeypatch.setattr(index_module, "EXACT_PAIRS_PER_STEP", 5000)  # 5 queries a step
    stepped = VectorIndex(vectors, "exact").search(queries, 7)
    np.testing.assert_array_equal(stepped[1], whole[1])
    np.testing.assert_allclose(stepped[0], whole[0], rtol=1e-5)  # BLAS sums a smaller product in another order
    assert stepped[0].shape == (37, 7)


def test_exact_top_k_keeps_corpus_order_on_ties():
    scores = np.array([[0.5, 0.9, 0.9, 0.1, 0.9]], dtype=np.float32)
    s, rows = exact_top_k(scores, 2)
    assert rows.tolist() == [[1, 2]] and s.tolist() == [[pytest.approx(0.9), pytest.approx(0.9)]]
    assert exact_top_k(scores, 5)[1].tolist() == [[1, 2, 4, 0, 3]]


def test_serve_cli_takes_indexes(index, capsys):
    from signclip.jobs.serve import main, parse_args

    args = parse_args(["--model", f"default={index['model']}", "--index", f"asl={index['dir']}",
                       "--search-mode", "exact"])
    assert args.index == [f"asl={index['dir']}"] and args.search_mode == "exact"
    assert main(["--model", f"default={index['model']}", "--index", "asl=/nowhere"]) == 2
    assert "holds no embeddings" in capsys.readouterr().err


def test_a_clip_whose_label_has_no_prompt_does_not_break_the_index(index, tmp_path, poses_dir):
    clips = {name: (poses_dir / f"{name}.pose", gloss, "ASL" if name == "library" else "ase")
             for name, gloss in LABELLED.items()}
    odd = embed_corpus(tmp_path / "emb", index["model"], clips)
    client = _client({"models": {"default": str(index["model"])}, "indexes": {"odd": odd}, "enable_video": False})
    listed = client.get("/v1/indexes", headers=AUTH)
    assert listed.status_code == 200 and listed.json()["data"][0]["labels"] == 2, listed.text  # house, sad
    pose = (poses_dir / "library.pose").read_bytes()
    r = client.post("/v1/search", files={"file": ("clip.pose", pose)}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json()["hits"][0]["id"] == "library" and {g["label"] for g in r.json()["glosses"]} == {"house", "sad"}


def test_listing_the_indexes_counts_labels_without_embedding_them_off_the_event_loop(index, monkeypatch):
    search = SignSearch.load(index["dir"])
    monkeypatch.setattr(search.embedder, "embed_texts", lambda texts: pytest.fail("index info embedded labels"))
    assert backend.index_info("asl", search).labels == len(set(LABELLED.values()))

    local = LocalBackend(ServiceSettings.from_mapping({"models": {"default": str(index["model"])},
                                                       "indexes": {"asl": index["dir"]}}))
    threads = []
    info = backend.index_info
    monkeypatch.setattr(backend, "index_info", lambda *a: threads.append(threading.get_ident()) or info(*a))

    async def listed():
        return threading.get_ident(), await local.indexes()

    loop_thread, found = asyncio.run(listed())
    assert found["asl"].labels == len(set(LABELLED.values())) and threads and loop_thread not in threads


def test_an_approximate_index_without_faiss_is_a_load_error_that_says_what_to_install(index, monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(ValueError, match=r"index 'asl' .*needs faiss.*pip install 'signclip\[search\]'"):
        LocalBackend(ServiceSettings.from_mapping({"models": {"default": str(index["model"])},
                                                   "indexes": {"asl": index["dir"]}, "search_mode": "approximate"}))


def test_a_hits_pose_url_leads_to_its_own_pose_whatever_its_id(index, poses_dir, tmp_path):
    ids = ["what?", "no#1", "100%", "a b", "café/é", "a+b&c=d"]  # ids the embed job accepts
    copies = warped_copies(poses_dir / "sad-colin.pose", tmp_path / "copies", len(ids), seed=0)
    odd = write_corpus(tmp_path, poses_dir, index["model"], extra=dict(zip(ids, copies)))
    client = _client({"models": {"default": str(index["model"])}, "indexes": {"odd": odd}, "enable_video": False})
    hits = client.get("/v1/search", params={"q": QUERY, "k": 20}, headers=AUTH).json()["hits"]
    assert set(ids) <= {h["id"] for h in hits}
    for hit in hits:
        r = client.get("/" + hit["pose_url"], headers=AUTH)
        expected = dict(zip(ids, copies)).get(hit["id"], poses_dir / f"{hit['id']}.pose")
        assert r.status_code == 200 and r.content == expected.read_bytes(), (hit["id"], hit["pose_url"], r.text)
