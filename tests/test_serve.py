"""The embedding service running on Ray Serve (signclip/jobs/serve.py), over HTTP on 127.0.0.1.

Two apps on the shared local Ray: ``signclip`` at ``/`` (small limits, CORS, a VideoToPose that takes one
request and queues one) and ``bp`` at ``/bp`` (a bearer token, a Gateway that takes one request and queues one).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest

import signclip
from signclip.api import schema
from signclip.io.model_cache import fingerprint
from signclip.search.lookup import SignSearch
from tests.embed_helpers import write_corpus

# Each test is bounded; the bound includes starting Ray and both apps for whichever test runs first.
pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

TOKEN = "test-token-5f2c"
VALID = ["house-colin-1", "house-spreadthesign", "sad-colin", "library", "refined-face-553"]
SMALL = dict(max_items=8, max_poses=4, max_text_chars=200, max_body_bytes=6 << 20, max_upload_bytes=3 << 20,
             max_video_seconds=1.0, cors_origins=["http://allowed.example"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("serve-model")
    signclip.create("tiny").save(directory)
    return directory


@pytest.fixture(scope="module")
def offline(model_dir):
    """The batch embedder over the same weights: what every served vector must equal."""
    return signclip.Embedder(signclip.load(model_dir))


@pytest.fixture(scope="module")
def poses(poses_dir) -> dict[str, bytes]:
    return {p.stem: p.read_bytes() for p in poses_dir.glob("*.pose")}


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory, poses_dir, model_dir) -> str:
    return write_corpus(tmp_path_factory.mktemp("serve-index"), poses_dir, model_dir)


@pytest.fixture(scope="module")
def service(ray_local, model_dir, index_dir):
    from ray import serve

    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        yield _deploy(serve, port, model_dir, index_dir)
    finally:
        serve.shutdown()


def _deploy(serve, port: int, model_dir: Path, index_dir: str) -> SimpleNamespace:
    from signclip.api import ServiceSettings
    from signclip.service import make_app

    one = {"autoscaling_config": {"min_replicas": 1, "max_replicas": 1, "target_ongoing_requests": 8}}
    # two layouts: "signclip" gives the models their own deployments, "bp" keeps them in its Gateway (the default)
    main = ServiceSettings.from_mapping({"models": {"default": str(model_dir), "second": str(model_dir)},
                                         "layout": "split", **SMALL})
    serve.run(make_app(main, {"Gateway": {**one, "ray_actor_options": {"num_cpus": 0.1}},
                              "TextEmbedder": {**one, "ray_actor_options": {"num_cpus": 0.25}},
                              "PoseEmbedder": {**one, "ray_actor_options": {"num_cpus": 0.25}},
                              "VideoToPose": {"num_replicas": 1, "autoscaling_config": None,
                                              "max_ongoing_requests": 1, "max_queued_requests": 1,
                                              "ray_actor_options": {"num_cpus": 0.25}}}),
              name="signclip", route_prefix="/")
    guarded = ServiceSettings.from_mapping({"models": {"default": str(model_dir)}, "enable_video": False,
                                            "indexes": {"samples": index_dir}})
    env = {"runtime_env": {"env_vars": {"SIGNCLIP_API_TOKEN": TOKEN}}}
    serve.run(make_app(guarded, {"Gateway": {"num_replicas": 1, "max_ongoing_requests": 1, "max_queued_requests": 1,
                                             "ray_actor_options": {"num_cpus": 0.25, **env}},
                                 "SearchIndex": {**one, "ray_actor_options": {"num_cpus": 0.1}}}),
              name="bp", route_prefix="/bp")
    base = f"http://127.0.0.1:{port}"
    return SimpleNamespace(url=base, bp=f"{base}/bp", serve=serve)


def _metrics(url: str) -> dict[str, float]:
    lines = httpx.get(f"{url}/metrics").text.splitlines()
    return {k: float(v) for k, _, v in (line.rpartition(" ") for line in lines if line and not line.startswith("#"))}


def _embed_pose(url: str, data: list[bytes], **kw) -> httpx.Response:
    return httpx.request("GET", f"{url}/api/embed/pose", json={"pose": [_b64(d) for d in data], **kw}, timeout=60)


# --- routes ------------------------------------------------------------------------------------------

def test_health_ready_info_models(service, model_dir):
    assert httpx.get(f"{service.url}/health").json() == {"status": "ok"}
    ready = httpx.get(f"{service.url}/ready", timeout=30)
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert ready.json()["components"] == {"text": "ready", "pose": "ready", "video": "ready"}
    info = httpx.get(f"{service.url}/info").json()
    assert set(info["models"]) == {"default", "second"} and info["default_model"] == "default"
    model = info["models"]["default"]
    assert model["embedding_dim"] == 32 and model["feature_dim"] == 609 and model["preset"] == "tiny"
    assert model["fingerprint"] == fingerprint(model_dir)
    assert {"signclip", "torch", "ray"} <= set(info["versions"]) and info["limits"]["max_poses"] == 4
    assert str(model_dir) not in json.dumps(info)  # no server paths disclosed
    listed = httpx.get(f"{service.url}/v1/models").json()
    assert [m["id"] for m in listed["data"]] == ["default", "second"]


def test_original_clients_get_with_json_body(service, offline, poses):
    # The original client: requests.get(url, json={...}); both a single item and a list, with and without a model.
    r = httpx.request("GET", f"{service.url}/api/embed/text", json={"text": "<en> <ase> house"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    np.testing.assert_allclose(r.json()["embeddings"], offline.embed_texts(["<en> <ase> house"]), atol=1e-5)
    texts = ["house", "<en> <ase> library", ""]
    r = httpx.request("GET", f"{service.url}/api/embed/text", json={"text": texts, "model_name": "default"})
    np.testing.assert_allclose(r.json()["embeddings"], offline.embed_texts(texts), atol=1e-5)
    r = httpx.request("GET", f"{service.url}/api/embed/pose", json={"pose": _b64(poses["library"])})
    assert r.status_code == 200 and len(r.json()["embeddings"]) == 1
    np.testing.assert_allclose(r.json()["embeddings"], offline.embed_poses([poses["library"]]), atol=1e-5)
    r = httpx.post(f"{service.url}/api/embed/pose", json={"pose": [_b64(poses["sad-colin"])], "model_name": "second"})
    np.testing.assert_allclose(r.json()["embeddings"], offline.embed_poses([poses["sad-colin"]]), atol=1e-5)


def test_embeddings_equal_batch_embedder_whatever_shares_the_batch(service, offline, poses):
    expected = {name: offline.embed_poses([poses[name]])[0] for name in VALID}
    requests = [[VALID[i % 5]] if i % 3 else [VALID[i % 5], VALID[(i + 2) % 5], VALID[(i + 4) % 5]]
                for i in range(24)]
    texts = [[f"<en> <ase> word{i}", "house" * (i % 7 + 1)] for i in range(24)]

    def pose_call(names):
        return names, _embed_pose(service.url, [poses[n] for n in names])

    def text_call(items):
        return items, httpx.request("GET", f"{service.url}/api/embed/text", json={"text": items}, timeout=60)

    before = _metrics(service.url)
    with ThreadPoolExecutor(12) as pool:
        pose_results = list(pool.map(pose_call, requests))
        text_results = list(pool.map(text_call, texts))
    after = _metrics(service.url)
    for names, r in pose_results:
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(r.json()["embeddings"], [expected[n] for n in names], atol=1e-5)
    for items, r in text_results:
        np.testing.assert_allclose(r.json()["embeddings"], offline.embed_texts(items), atol=1e-5)
    # Requests shared batches: the batch sizes they report add up to more than their own items.
    items_key, batch_key = 'signclip_embedded_items_total{model="default",tower="pose"}', \
        'signclip_batch_items_sum{tower="pose"}'
    items = after[items_key] - before.get(items_key, 0)
    batch_sum = after[batch_key] - before.get(batch_key, 0)
    assert items == sum(len(n) for n in requests) and batch_sum > items
    metrics = httpx.get(f"{service.url}/metrics").text
    assert 'signclip_http_request_duration_seconds_bucket{le="0.5",route="/api/embed/pose"}' in metrics
    assert 'signclip_http_requests_total{method="GET",route="/api/embed/pose",status="200"}' in metrics


def test_openai_embeddings(service, offline):
    texts = ["<en> <ase> house", "sad"]
    r = httpx.post(f"{service.url}/v1/embeddings", json={"input": texts, "model": "default"})
    body = r.json()
    assert r.status_code == 200 and body["object"] == "list" and body["model"] == "default"
    assert [d["index"] for d in body["data"]] == [0, 1] and body["usage"]["prompt_tokens"] > 0
    np.testing.assert_allclose([d["embedding"] for d in body["data"]], offline.embed_texts(texts), atol=1e-5)
    r = httpx.post(f"{service.url}/v1/embeddings",
                   json={"input": "sad", "model": "second", "encoding_format": "base64"})
    vector = np.frombuffer(base64.b64decode(r.json()["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(vector, offline.embed_texts(["sad"])[0], atol=1e-5)
    r = httpx.post(f"{service.url}/v1/embeddings", json={"input": "sad", "dimensions": 32})
    assert r.status_code == 200


def test_uploads_of_pose_files_and_a_video(service, offline, poses, videos_dir):
    files = [("file", ("a.pose", poses["house-colin-1"])), ("file", ("b.pose", poses["refined-face-553"]))]
    r = httpx.post(f"{service.url}/v1/embed/pose", files=files, data={"model_name": "second"}, timeout=60)
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["embeddings"],
                               offline.embed_poses([poses["house-colin-1"], poses["refined-face-553"]]), atol=1e-5)
    video = (videos_dir / "sample_video.mp4").read_bytes()
    r = httpx.post(f"{service.url}/v1/embed/video", files=[("file", ("clip.mp4", video))],
                   data={"return_pose": "true"}, timeout=120)
    assert r.status_code == 200, r.text
    body = r.json()
    schema.VideoEmbedding.model_validate(body)
    assert body["frames"] == 9 and body["fps"] == pytest.approx(24.0)
    np.testing.assert_allclose(body["embeddings"], offline.embed_poses([base64.b64decode(body["pose"])]), atol=1e-5)
    # Duration limit (1 s here): test_video.mp4 is 58 frames at 29.92 fps.
    r = httpx.post(f"{service.url}/v1/embed/video", files=[("file", ("long.mp4", (videos_dir / "test_video.mp4")
                                                                     .read_bytes()))], timeout=60)
    assert r.status_code == 422 and r.json()["error"]["code"] == "video_too_long"
    r = httpx.post(f"{service.url}/v1/embed/video", files=[("file", ("x.mp4", b"\x00not a video" * 50))], timeout=60)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_video"


def test_score_is_pose_by_text_dot_product(service, offline, poses):
    texts = ["<en> <ase> house", "<en> <ase> sad", "random text"]
    r = httpx.post(f"{service.url}/score", json={"pose": [_b64(poses["house-colin-1"]), _b64(poses["sad-colin"])],
                                                "text": texts})
    assert r.status_code == 200, r.text
    expected = offline.embed_poses([poses["house-colin-1"], poses["sad-colin"]]) @ offline.embed_texts(texts).T
    np.testing.assert_allclose(r.json()["scores"], expected, atol=1e-5)
    assert r.json()["similarity"] == "cosine"


def test_cors_origins(service):
    allowed = httpx.get(f"{service.url}/health", headers={"Origin": "http://allowed.example"})
    assert allowed.headers.get("access-control-allow-origin") == "http://allowed.example"
    assert "access-control-allow-origin" not in httpx.get(f"{service.url}/health",
                                                          headers={"Origin": "http://evil.example"}).headers
    preflight = httpx.options(f"{service.url}/api/embed/text", headers={
        "Origin": "http://allowed.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert preflight.status_code == 200


# --- bad input ---------------------------------------------------------------------------------------

def _bad_requests(poses: dict[str, bytes]) -> list[tuple[str, str, str, dict, int, str]]:
    """(id, method, path, httpx kwargs, status, error code)."""
    text, pose = "/api/embed/text", "/api/embed/pose"
    return [
        ("malformed-json", "GET", text, {"content": b'{"text": ["a",'}, 400, "malformed_json"),
        ("not-utf8", "POST", text, {"content": b"\xff\xfe{}"}, 400, "malformed_json"),
        ("empty-body", "GET", text, {"content": b""}, 400, "empty_body"),
        ("array-body", "POST", text, {"json": ["house"]}, 400, "wrong_type"),
        ("text-number", "POST", text, {"json": {"text": 5}}, 400, "wrong_type"),
        ("text-list-with-null", "POST", text, {"json": {"text": ["a", None]}}, 400, "wrong_type"),
        ("missing-text", "POST", text, {"json": {"txt": "a"}}, 400, "missing_field"),
        ("empty-text-list", "POST", text, {"json": {"text": []}}, 400, "empty_input"),
        ("too-many-texts", "POST", text, {"json": {"text": ["a"] * 9}}, 400, "too_many_items"),
        ("over-long-text", "POST", text, {"json": {"text": ["ok", "x" * 201]}}, 400, "text_too_long"),
        ("unknown-model", "POST", text, {"json": {"text": "a", "model_name": "e9"}}, 404, "model_not_found"),
        ("model-not-string", "POST", text, {"json": {"text": "a", "model_name": 3}}, 400, "wrong_type"),
        ("bad-base64", "GET", pose, {"json": {"pose": "not base64!"}}, 400, "invalid_base64"),
        ("pose-object", "POST", pose, {"json": {"pose": {"path": "/etc/passwd"}}}, 400, "wrong_type"),
        ("pose-path", "POST", pose, {"json": {"pose": "/work/shared/data/poses/library.pose"}}, 400, "invalid_base64"),
        ("pose-path-b64-valid", "POST", pose, {"json": {"pose": "/tmp/poses/abcde"}}, 422, "invalid_pose"),
        ("pose-not-a-pose", "POST", pose, {"json": {"pose": [_b64(b"GIF89a not a pose at all")]}}, 422,
         "invalid_pose"),
        ("pose-empty", "POST", pose, {"json": {"pose": [""]}}, 422, "invalid_pose"),
        ("pose-openpose", "POST", pose, {"json": {"pose": [_b64(poses["library"]), _b64(poses["openpose-137"])]}},
         422, "unsupported_pose_layout"),
        ("pose-reduced", "POST", pose, {"json": {"pose": _b64(poses["reduced-holistic-178"])}}, 422,
         "unsupported_pose_layout"),
        ("empty-pose-list", "POST", pose, {"json": {"pose": []}}, 400, "empty_input"),
        ("too-many-poses", "POST", pose, {"json": {"pose": ["AAAA"] * 5}}, 400, "too_many_items"),
        ("too-large-body", "POST", pose, {"content": b" " * (6 << 20 | 1)}, 413, "body_too_large"),
        ("openai-tokens", "POST", "/v1/embeddings", {"json": {"input": [[1, 2, 3]]}}, 400, "unsupported_input"),
        ("openai-format", "POST", "/v1/embeddings", {"json": {"input": "a", "encoding_format": "int8"}}, 400,
         "invalid_value"),
        ("openai-dimensions", "POST", "/v1/embeddings", {"json": {"input": "a", "dimensions": 7}}, 400,
         "invalid_value"),
        ("score-missing-text", "POST", "/score", {"json": {"pose": "AAAA"}}, 400, "missing_field"),
        ("upload-not-multipart", "POST", "/v1/embed/pose", {"json": {"pose": "AAAA"}}, 415, "unsupported_media_type"),
        ("upload-no-file", "POST", "/v1/embed/pose", {"files": [("other", ("a.pose", b"x"))]}, 400, "missing_field"),
        ("upload-too-many", "POST", "/v1/embed/pose", {"files": [("file", (f"{i}.pose", b"x")) for i in range(5)]},
         400, "invalid_multipart"),
        ("upload-not-a-pose", "POST", "/v1/embed/pose", {"files": [("file", ("a.pose", b"plain text"))]}, 422,
         "invalid_pose"),
        ("upload-too-large", "POST", "/v1/embed/video", {"files": [("file", ("v.mp4", b"\0" * (3 << 20)))]}, 413,
         "body_too_large"),
        ("unknown-route", "GET", "/api/embed/video", {}, 404, "not_found"),
        ("wrong-method", "DELETE", text, {}, 405, "method_not_allowed"),
    ]


@pytest.fixture(scope="module")
def bad_requests(poses):
    return _bad_requests(poses)


def test_every_bad_input_is_a_4xx_json_error_naming_it(service, bad_requests):
    for name, method, path, kwargs, status, code in bad_requests:
        r = httpx.request(method, f"{service.url}{path}", timeout=30, **kwargs)
        assert r.status_code == status, (name, r.status_code, r.text[:300])
        error = r.json()["error"]
        assert error["code"] == code and error["message"], (name, error)
    r = httpx.post(f"{service.url}/api/embed/pose", json={"pose": ["AAAA", _b64(b"junk")]})
    assert r.json()["error"]["param"] == "pose[0]" and r.json()["error"]["message"].startswith("pose[0]: ")
    r = httpx.post(f"{service.url}/api/embed/text", json={"text": ["ok", "x" * 201]})
    assert r.json()["error"]["param"] == "text[1]" and "201 characters" in r.json()["error"]["message"]


def test_hundreds_of_bad_requests_then_a_good_one(service, bad_requests, offline, poses):
    cheap = [b for b in bad_requests if b[0] not in ("too-large-body", "upload-too-large")]

    def send(i: int) -> int:
        _, method, path, kwargs, _, _ = cheap[i % len(cheap)]
        return httpx.request(method, f"{service.url}{path}", timeout=60, **kwargs).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(send, range(320)))
    assert all(400 <= s < 500 for s in statuses), sorted(set(statuses))
    assert httpx.get(f"{service.url}/health").status_code == 200
    r = _embed_pose(service.url, [poses["house-spreadthesign"]])
    np.testing.assert_allclose(r.json()["embeddings"], offline.embed_poses([poses["house-spreadthesign"]]), atol=1e-5)


# --- security and overload ---------------------------------------------------------------------------

def test_bearer_token_on_every_route_but_health(service):
    assert httpx.get(f"{service.bp}/health").status_code == 200
    for method, path in [("GET", "/ready"), ("GET", "/info"), ("GET", "/metrics"), ("POST", "/api/embed/text"),
                         ("POST", "/v1/embeddings"), ("GET", "/v1/models")]:
        r = httpx.request(method, f"{service.bp}{path}", json={"text": "a", "input": "a"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized", (path, r.text)
        assert r.headers["www-authenticate"] == "Bearer"
    wrong = httpx.post(f"{service.bp}/api/embed/text", json={"text": "a"}, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "invalid" in wrong.json()["error"]["message"]
    right = httpx.post(f"{service.bp}/api/embed/text", json={"text": "a"},
                       headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
    assert right.status_code == 200 and len(right.json()["embeddings"][0]) == 32


def _concurrently(n: int, send) -> list[httpx.Response]:
    barrier = threading.Barrier(n)

    def go(_: int) -> httpx.Response:
        barrier.wait()
        return send()

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(go, range(n)))


def test_overloaded_model_deployment_answers_503_json_with_retry_after(service, videos_dir):
    # VideoToPose here takes one request and queues one (max_ongoing_requests=1, max_queued_requests=1);
    # each extraction takes about a second, so most of a burst must be refused at once, not queued.
    video = (videos_dir / "sample_video.mp4").read_bytes()
    responses = _concurrently(12, lambda: httpx.post(f"{service.url}/v1/embed/video",
                                                     files=[("file", ("v.mp4", video))], timeout=120))
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 503} and statuses.count(200) >= 1 and statuses.count(503) >= 6, statuses
    rejected = next(r for r in responses if r.status_code == 503)
    assert rejected.headers["retry-after"] == "1" and rejected.json()["error"]["code"] == "overloaded"
    assert httpx.post(f"{service.url}/v1/embed/video", files=[("file", ("v.mp4", video))],
                      timeout=120).status_code == 200


def test_overloaded_gateway_answers_503_with_retry_after(service, poses):
    # The bp Gateway takes one request and queues one: Serve's proxy refuses the rest (backpressure_config).
    headers = {"Authorization": f"Bearer {TOKEN}"}
    body = {"pose": [_b64(poses["house-colin-1"])] * 4}
    responses = _concurrently(16, lambda: httpx.post(f"{service.bp}/api/embed/pose", json=body, headers=headers,
                                                     timeout=120))
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 503} and statuses.count(200) >= 1 and statuses.count(503) >= 8, statuses
    assert next(r for r in responses if r.status_code == 503).headers["retry-after"] == "1"
    assert httpx.post(f"{service.bp}/api/embed/pose", json=body, headers=headers, timeout=60).status_code == 200


def test_pose_replica_killed_mid_load_recovers(service, offline, poses):
    handle = service.serve.get_deployment_handle("PoseEmbedder", app_name="signclip")
    pid = handle.ready.remote().result(timeout_s=30)["pid"]
    expected = offline.embed_poses([poses["sad-colin"]])
    statuses: list[int] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            statuses.append(_embed_pose(service.url, [poses["sad-colin"]]).status_code)

    workers = [threading.Thread(target=load) for _ in range(4)]
    for w in workers:
        w.start()
    while 200 not in statuses:  # the load is being served (the test's timeout bounds the wait)
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:  # a new replica replaces the dead one
        try:
            new_pid = handle.ready.remote().result(timeout_s=5)["pid"]
        except Exception:  # noqa: BLE001 - the replica is still being replaced
            new_pid = pid
        if new_pid != pid:
            break
        time.sleep(1)
    stop.set()
    for w in workers:
        w.join(60)
    assert new_pid != pid, "the killed replica was not replaced"
    assert set(statuses) <= {200, 503}, sorted(set(statuses))  # a failure is a clean 503, never a hang or 500
    for _ in range(5):
        r = _embed_pose(service.url, [poses["sad-colin"]])
        assert r.status_code == 200
        np.testing.assert_allclose(r.json()["embeddings"], expected, atol=1e-5)


# --- dictionary search on Serve ------------------------------------------------------------------------

def test_search_routes_and_page_on_serve(service, index_dir, poses):
    """The SearchIndex deployment answers as the offline search does; the page works below a route prefix."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    query = "<en> <ase> sad"
    r = httpx.get(f"{service.bp}/v1/search", params={"q": query, "k": 3}, headers=auth, timeout=60)
    assert r.status_code == 200, r.text
    offline = SignSearch.load(index_dir).search(query, k=3)
    assert [h["id"] for h in r.json()["hits"]] == [h.id for h in offline]
    r = httpx.post(f"{service.bp}/v1/search", files={"file": ("c.pose", poses["house-colin-1"])}, headers=auth,
                   timeout=60)
    assert r.status_code == 200 and r.json()["hits"][0]["id"] == "house-colin-1" and r.json()["glosses"]
    pose = httpx.get(f"{service.bp}/v1/poses/samples/sad-colin", headers=auth, timeout=60)
    assert pose.status_code == 200 and pose.content == poses["sad-colin"]
    assert httpx.get(f"{service.bp}/v1/search", params={"q": query}, timeout=60).status_code == 401
    page = httpx.get(f"{service.bp}/", timeout=60)  # public; its scripts are found relative to the prefix
    assert page.status_code == 200 and 'src="static/app.js"' in page.text
    assert httpx.get(f"{service.bp}/static/pose.js", timeout=60).status_code == 200
    ready = httpx.get(f"{service.bp}/ready", headers=auth, timeout=60).json()
    assert ready["ready"] and ready["components"]["search"] == "ready"
    assert httpx.get(f"{service.url}/v1/search", params={"q": query}, timeout=60).json()["error"]["code"] == \
        "no_index"


def test_serving_on_a_cluster_warns_about_each_local_path(caplog):
    from signclip.api.settings import ServiceSettings
    from signclip.jobs.serve import warn_about_local_paths

    settings = ServiceSettings(models={"default": "/home/me/models/e7.2", "remote": "s3://m/e7.2"},
                               indexes={"asl": "s3://e/asl"}, index_models={"asl": "/data/models/asl"})
    with caplog.at_level("WARNING", logger="signclip.jobs.serve"):
        warn_about_local_paths(settings)
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 2, warned
    assert warned[0].startswith("model default=/home/me/models/e7.2 is a local path: every replica reads it")
    assert warned[1].startswith("index model asl=/data/models/asl is a local path")
