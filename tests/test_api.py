"""The HTTP API without Ray: settings, the Serve config, the CLI's parsing, error mapping, and the app in-process."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

import signclip
from signclip.api import ApiError, LocalBackend, ServiceSettings, create_app
from signclip.api.settings import parse_models

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("api-model")
    signclip.create("tiny").save(directory)
    return directory


# --- settings ----------------------------------------------------------------------------------------

def test_parse_models_forms_and_errors():
    assert parse_models("a=x, b=y") == {"a": "x", "b": "y"}
    assert parse_models(["a=x"]) == {"a": "x"} and parse_models({"a": "x"}) == {"a": "x"}
    with pytest.raises(ValueError, match="NAME=DIRECTORY"):
        parse_models(["nodir"])
    with pytest.raises(ValueError, match="given twice"):
        parse_models("a=x,a=y")


def test_settings_pin_each_model_as_it_is_when_the_app_is_built(tmp_path, s3_bucket, monkeypatch):
    """Every replica loads the model the settings were made with: one started after a model was replaced in
    place (an autoscaled replica, a restarted one, one on another node) refuses to start, never serves another."""
    from signclip.io import model_cache, storage

    monkeypatch.setenv("SIGNCLIP_CACHE", str(tmp_path / "cache"))
    local, url = tmp_path / "local", f"{s3_bucket}/models/served"
    signclip.create("tiny", seed=1).save(str(local))
    storage.put_dir(str(local), url)
    first = model_cache.fingerprint(local)
    settings = ServiceSettings.from_mapping({"models": {"default": url, "here": str(local)}, "enable_video": False})
    assert settings.model_fingerprints == {"default": first, "here": first}
    signclip.create("tiny", seed=2).save(str(local))
    storage.put_dir(str(local), url)
    second = model_cache.fingerprint(local)
    with pytest.raises(model_cache.ModelFetchError, match=f"{local} now holds model {second}, not the expected"):
        LocalBackend(settings)
    # this node's cache still holds the pinned model, so a replica here serves it; a fresh node cannot
    remote_only = dataclasses.replace(settings, models={"default": url},
                                      model_fingerprints={"default": first})
    assert asyncio.run(LocalBackend(remote_only).models())["default"].fingerprint == first
    shutil.rmtree(tmp_path / "cache")
    with pytest.raises(model_cache.ModelFetchError, match=f"{url} now holds model {second}, not the expected {first}"):
        LocalBackend(remote_only)
    # a config may pin a model itself: nothing is fetched to hash it, and the pin is kept
    shutil.rmtree(tmp_path / "cache")
    pinned = ServiceSettings.from_mapping({"models": {"default": url}, "model_fingerprints": {"default": first}})
    assert pinned.model_fingerprints == {"default": first} and not (tmp_path / "cache").exists()
    with pytest.raises(ValueError, match=r"model_fingerprints name models that are not served: \['other'\]"):
        ServiceSettings.from_mapping({"models": {"default": url}, "model_fingerprints": {"other": first}})


def test_settings_from_mapping_and_environment(model_dir, tmp_path):
    s = ServiceSettings.from_mapping({}, environ={"SIGNCLIP_MODELS": f"asl={model_dir}",
                                                  "SIGNCLIP_CORS_ORIGINS": "http://a.example, http://b.example"})
    assert s.models == {"asl": str(model_dir.resolve())} and s.default_model == "asl"
    assert s.cors_origins == ["http://a.example", "http://b.example"]
    s = ServiceSettings.from_mapping({"models": {"x": model_dir.name, "default": str(model_dir)}},
                                     base_dir=model_dir.parent)
    assert s.default_model == "default" and s.models["x"] == str(model_dir.resolve())
    with pytest.raises(ValueError, match="unknown service setting"):
        ServiceSettings.from_mapping({"models": {"a": str(model_dir)}, "max_itmes": 3})
    with pytest.raises(ValueError, match="holds no native SignCLIP model"):
        ServiceSettings.from_mapping({"models": {"a": str(tmp_path)}})
    with pytest.raises(ValueError, match="no models to serve"):
        ServiceSettings.from_mapping({}, environ={})
    with pytest.raises(ValueError, match="default_model"):
        ServiceSettings.from_mapping({"models": {"a": str(model_dir)}, "default_model": "b"})
    for name, value, words in (("max_video_seconds", 0, "> 0"), ("request_timeout_s", -1.5, "> 0"),
                               ("retry_after_s", -1, ">= 0"), ("max_k", 0, "at least 1")):
        with pytest.raises(ValueError, match=rf"^{name} must be {words}, not {value}$"):
            ServiceSettings.from_mapping({"models": {"a": str(model_dir)}, name: value})
    assert s.api_token({"SIGNCLIP_API_TOKEN": "t"}) == "t" and s.api_token({}) is None


# --- the Serve config, the app builder and the CLI ---------------------------------------------------

def test_serve_config_is_valid_and_matches_the_app(model_dir):
    from ray.serve.schema import ServeDeploySchema

    from signclip.service import DEPLOYMENTS, MODEL_DEPLOYMENTS, build_app, read_serve_config

    config = yaml.safe_load((ROOT / "cluster" / "serve.yaml").read_text())
    ServeDeploySchema.model_validate(config)
    app = config["applications"][0]
    assert app["import_path"] == "signclip.service:build_app"
    assert config["http_options"]["host"] == "127.0.0.1"
    deployments = {d["name"]: d for d in app["deployments"]}
    assert app["args"]["layout"] == "combined"
    assert set(deployments) == set(DEPLOYMENTS) - set(MODEL_DEPLOYMENTS), "every deployment the layout makes"
    for d in deployments.values():
        assert {"autoscaling_config", "max_ongoing_requests", "max_queued_requests"} <= set(d), d["name"]
        assert d["autoscaling_config"]["min_replicas"] <= d["autoscaling_config"]["max_replicas"]
    assert deployments["Gateway"]["backpressure_config"]["status_code"] == 503
    args, options, http = read_serve_config(str(ROOT / "cluster" / "serve.yaml"))
    assert options["Gateway"]["max_queued_requests"] == 512 and http["port"] == 8000
    assert options["Gateway"]["max_ongoing_requests"] >= 128, "a full text batch can be in flight"
    build_app({**args, "models": {"default": str(model_dir)}})  # every arg is a valid setting


def test_module_level_app_reads_models_from_environment(model_dir, monkeypatch):
    from ray.serve import Application

    import signclip.service

    monkeypatch.setenv("SIGNCLIP_MODELS", f"default={model_dir}")
    assert isinstance(signclip.service.app, Application)
    monkeypatch.delenv("SIGNCLIP_MODELS")
    with pytest.raises(ValueError, match="no models to serve"):
        signclip.service.app  # noqa: B018
    with pytest.raises(ValueError, match="unknown deployment"):
        signclip.service.make_app(ServiceSettings(models={"default": str(model_dir)}), {"Gatway": {}})


def _deployments(app) -> set[str]:
    """The names of every deployment an application binds (the ingress and what its arguments bind)."""
    from ray.serve import Application

    ingress = app._bound_deployment  # noqa: SLF001
    return {ingress.name}.union(*(_deployments(a) for a in ingress.init_args if isinstance(a, Application)))


def test_layouts_decide_which_deployments_exist(model_dir):
    from signclip.service import make_app

    combined = ServiceSettings(models={"default": str(model_dir)}, enable_video=False)
    assert combined.layout == "combined"
    with pytest.raises(ValueError, match="the models are in the Gateway's replicas, set its options"):
        make_app(combined, {"PoseEmbedder": {"num_replicas": 2}})
    assert _deployments(make_app(combined)) == {"Gateway"}
    split = ServiceSettings(models={"default": str(model_dir)}, enable_video=False, layout="split")
    assert _deployments(make_app(split, {"PoseEmbedder": {"num_replicas": 2}})) == {"Gateway", "TextEmbedder",
                                                                                    "PoseEmbedder"}
    with pytest.raises(ValueError, match="layout 'both': expected one of"):
        ServiceSettings(models={"default": str(model_dir)}, layout="both")


def test_a_fixed_replica_count_replaces_the_default_autoscaling(model_dir):
    from signclip.service import make_app

    settings = ServiceSettings(models={"default": str(model_dir)}, enable_video=False)
    gateway = make_app(settings, {"Gateway": {"num_replicas": 3}})._bound_deployment  # noqa: SLF001
    assert gateway.num_replicas == 3 and gateway._deployment_config.autoscaling_config is None  # noqa: SLF001
    assert gateway.ray_actor_options["num_cpus"] == 1, "the models' CPU comes with them into the Gateway"
    gpu = make_app(settings, {"Gateway": {"ray_actor_options": {"num_gpus": 1}}})._bound_deployment  # noqa: SLF001
    assert gpu.ray_actor_options["num_gpus"] == 1 and gpu.ray_actor_options["num_cpus"] == 1


def test_cli_rejects_bad_models_before_starting_ray(model_dir, tmp_path, capsys):
    from signclip.jobs.serve import main, parse_args

    assert main(["--model", "nodir"]) == 2
    assert main(["--model", f"a={tmp_path}"]) == 2
    assert "holds no native SignCLIP model" in capsys.readouterr().err
    args = parse_args(["--model", f"a={model_dir}", "--model", "b=y", "--port", "9000"])
    assert args.model == [f"a={model_dir}", "b=y"] and args.host is None and args.port == 9000
    assert args.serve_mode == "fast" and args.layout is None and args.gpus is None


def test_cli_gpus_go_to_the_replicas_that_hold_models(model_dir):
    from signclip.jobs.serve import with_gpus

    combined = ServiceSettings(models={"default": str(model_dir)})
    split = ServiceSettings(models={"default": str(model_dir)}, layout="split")
    given = {"Gateway": {"ray_actor_options": {"num_cpus": 2}}}
    assert with_gpus(given, combined, 1) == {"Gateway": {"ray_actor_options": {"num_cpus": 2, "num_gpus": 1}}}
    assert given == {"Gateway": {"ray_actor_options": {"num_cpus": 2}}}, "the config's options are not changed"
    assert set(with_gpus(given, split, 0.5)) == {"Gateway", "TextEmbedder", "PoseEmbedder"}
    assert with_gpus(given, split, 0.5)["Gateway"] == given["Gateway"]
    assert with_gpus(given, combined, None) is given


# --- how the gateway reports Ray's failures ----------------------------------------------------------

def _await_error(exc: BaseException, timeout_s: float = 5.0) -> ApiError:
    from signclip.service.gateway import ServeBackend

    settings = ServiceSettings(models={"a": "x"}, retry_after_s=2)
    backend = ServeBackend(None, None, None, None, settings)  # type: ignore[arg-type]

    async def failing() -> None:
        if isinstance(exc, asyncio.TimeoutError):
            await asyncio.sleep(10)
        raise exc

    async def run() -> ApiError:
        with pytest.raises(ApiError) as info:
            await backend._await(asyncio.ensure_future(failing()),  # cancellable, like a DeploymentResponse
                                 timeout_s=0.05 if isinstance(exc, asyncio.TimeoutError) else timeout_s)
        return info.value

    return asyncio.run(run())


def test_ray_failures_become_503_or_504_json_errors():
    from ray.exceptions import ActorDiedError
    from ray.serve.exceptions import BackPressureError

    e = _await_error(BackPressureError(num_queued_requests=1, max_queued_requests=1))
    assert (e.status, e.code, e.headers) == (503, "overloaded", {"Retry-After": "2"})
    e = _await_error(ActorDiedError())
    assert (e.status, e.code, e.headers["Retry-After"]) == (503, "unavailable", "2")
    assert _await_error(TimeoutError()).status == 504


def test_models_in_the_gateways_replica_answer_or_time_out():
    from signclip.service.gateway import ServeBackend

    class Towers:  # layout "combined": the towers are an object in the gateway's own replica
        def info(self) -> dict:
            return {"a": "info"}

        async def embed(self, model: str, texts: list[str]) -> str:
            if texts == ["slow"]:
                await asyncio.sleep(10)
            return f"{model}:{texts[0]}"

    settings = ServiceSettings(models={"a": "x"}, request_timeout_s=0.05)
    backend = ServeBackend(Towers(), Towers(), None, None, settings)

    async def run() -> tuple:
        answered = await backend.embed_texts("a", ["house"])
        with pytest.raises(ApiError) as info:
            await backend.embed_texts("a", ["slow"])
        return answered, await backend.models(), info.value, asyncio.all_tasks()

    answered, models, error, tasks = asyncio.run(run())
    assert answered == "a:house" and models == {"a": "info"}
    assert (error.status, error.code) == (504, "timeout")
    assert len(tasks) == 1  # nothing of the timed-out call is left running


def test_json_answers_match_the_standard_librarys_and_take_what_orjson_refuses():
    import json

    from signclip.api.calls import json_response, rows

    vectors = np.random.default_rng(0).standard_normal((3, 32)).astype(np.float32)
    payload = {"embeddings": rows(vectors), "model": "é"}
    assert json.loads(json_response(payload).body) == json.loads(json.dumps(payload))
    assert np.array_equal(np.array(json.loads(json_response(payload).body)["embeddings"], dtype=np.float32), vectors)
    odd = {"gloss": "\ud800"}  # a lone surrogate: orjson refuses it, the standard library escapes it
    answer = json_response(odd, 201)
    assert answer.status_code == 201 and json.loads(answer.body) == odd


def test_metrics_count_each_series_apart():
    from signclip.api.prometheus import ServiceMetrics

    metrics = ServiceMetrics()
    for status in (200, 200, 422):
        metrics.observe_request("POST", "/api/embed/text", status, 0.002)
    metrics.observe_batch("text", "a", 3, 8)
    metrics.observe_batch("text", "b", 1, 8)
    text = metrics.render().decode()
    assert 'signclip_http_requests_total{method="POST",route="/api/embed/text",status="200"} 2.0' in text
    assert 'signclip_http_requests_total{method="POST",route="/api/embed/text",status="422"} 1.0' in text
    assert 'signclip_http_request_duration_seconds_count{route="/api/embed/text"} 3.0' in text
    assert 'signclip_embedded_items_total{model="a",tower="text"} 3.0' in text
    assert 'signclip_embedded_items_total{model="b",tower="text"} 1.0' in text
    assert 'signclip_batch_items_count{tower="text"} 2.0' in text


# --- the app in-process (LocalBackend) ---------------------------------------------------------------

@pytest.fixture(scope="module")
def local_client(model_dir):
    from fastapi.testclient import TestClient

    settings = ServiceSettings.from_mapping({"models": {"default": str(model_dir)}, "max_body_bytes": 4096})
    backend = LocalBackend(settings)
    return TestClient(create_app(backend, settings, token="s3cret")), backend


def test_local_app_answers_like_the_served_one(local_client, poses_dir):
    client, backend = local_client
    auth = {"Authorization": "Bearer s3cret"}
    assert client.get("/health").status_code == 200
    assert client.get("/info").status_code == 401
    r = client.request("GET", "/api/embed/text", json={"text": ["house"]}, headers=auth)
    offline = backend._models["default"].embedder
    np.testing.assert_allclose(r.json()["embeddings"], offline.embed_texts(["house"]), atol=1e-6)
    pose = (poses_dir / "library.pose").read_bytes()
    r = client.post("/v1/embed/pose", files=[("file", ("a.pose", pose))], headers=auth)
    np.testing.assert_allclose(r.json()["embeddings"], offline.embed_poses([pose]), atol=1e-6)
    r = client.post("/api/embed/pose", json={"pose": base64.b64encode(pose).decode()}, headers=auth)
    assert r.status_code == 413  # 4096-byte JSON limit


def test_streamed_body_over_the_limit_is_413(local_client):
    client, _ = local_client

    def chunks():  # no Content-Length: the limit must hold while the body streams in
        for _ in range(10):
            yield b'{"text": "' + b"x" * 1000

    r = client.post("/api/embed/text", content=chunks(), headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"


def test_openapi_schema_documents_every_route_and_matches_the_answers(model_dir, poses_dir):
    from fastapi.testclient import TestClient
    from openapi_spec_validator import validate

    from signclip.api import schema

    settings = ServiceSettings.from_mapping({"models": {"default": str(model_dir)}})
    client = TestClient(create_app(LocalBackend(settings), settings, token="s3cret"))
    auth = {"Authorization": "Bearer s3cret"}
    doc = client.get("/openapi.json").json()  # public, like /health
    validate(doc)
    assert client.get("/docs").status_code == 200
    routes = {r.path.replace(":path}", "}") for r in client.app.routes if getattr(r, "include_in_schema", False)}
    assert routes == set(doc["paths"]) and len(routes) >= 15
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            ok = op["responses"]["200"]["content"]
            assert ok, f"{method.upper()} {path}: no documented answer"
            if method == "post":
                for media in op["requestBody"]["content"].values():
                    name = media["schema"]["$ref"].rsplit("/", 1)[1]
                    assert name in doc["components"]["schemas"], f"{path}: request model {name} not published"
    # what the routes answer is what the schema says
    pose = base64.b64encode((poses_dir / "sad-colin.pose").read_bytes()).decode()
    schema.Embeddings.model_validate(client.post("/api/embed/text", json={"text": "house"}, headers=auth).json())
    schema.Info.model_validate(client.get("/info", headers=auth).json())
    schema.OpenAIEmbeddingResponse.model_validate(
        client.post("/v1/embeddings", json={"input": ["a", "b"]}, headers=auth).json())
    schema.OpenAIModelList.model_validate(client.get("/v1/models", headers=auth).json())
    schema.Scores.model_validate(client.post("/score", json={"pose": pose, "text": "house"}, headers=auth).json())
    schema.Readiness.model_validate(client.get("/ready", headers=auth).json())
    schema.Error.model_validate(client.post("/score", json={"pose": "!", "text": "x"}, headers=auth).json())


def test_base64_poses_decode_as_the_standard_library_does(poses_dir):
    import binascii

    from signclip.api.parsing import decode_pose

    for path in sorted(poses_dir.glob("*.pose")):
        data = path.read_bytes()
        assert decode_pose(base64.b64encode(data).decode(), "pose") == data
        assert decode_pose(base64.encodebytes(data).decode(), "pose") == data  # line-wrapped (MIME)
    for text in ("abc", "ab!=", "YWJj====x", "a", "not base64!", "/data/poses/library.pose", "éé=="):
        with pytest.raises((binascii.Error, ValueError)) as std:
            base64.b64decode(text, validate=True)
        with pytest.raises(ApiError) as ours:
            decode_pose(text, "pose[2]")
        assert ours.value.status == 400 and ours.value.message == f"pose[2]: not valid base64 ({std.value})"


@pytest.mark.parametrize("raw", [b'{"pose": "YWJj", "model_name": "default"}', b'{"a": NaN}',
                                 '{"text": "\u00e9"}'.encode("utf-16"), b'{"s": "\\ud800"}', b"  ", b"", b"[1, 2]",
                                 b'{"text": "house"', b"\xff\xfe\x00", b"[" * 5000 + b"]" * 5000])
def test_json_bodies_read_as_the_standard_library_reads_them(raw):
    import json

    from signclip.api.parsing import read_json

    class Body:
        async def body(self) -> bytes:
            return raw

    try:
        expected: object = json.loads(raw)
    except (ValueError, RecursionError) as e:
        expected = e
    try:
        got: object = asyncio.run(read_json(Body()))
    except ApiError as e:
        assert e.status == 400 and e.code in ("empty_body", "malformed_json", "wrong_type"), e.body()
        assert isinstance(expected, BaseException) or not isinstance(expected, dict), (raw[:40], expected)
        if isinstance(expected, json.JSONDecodeError) and raw.strip():
            assert e.message == f"malformed JSON: {expected.msg} at line {expected.lineno} column {expected.colno}"
        return
    assert isinstance(expected, dict) and repr(got) == repr(expected)  # repr: NaN is not equal to itself


@pytest.mark.parametrize("inline_bytes", [2 << 20, 0])  # small requests on the event loop; larger ones in a thread
def test_pose_replica_embeds_alike_on_the_loop_and_in_a_thread(model_dir, poses_dir, monkeypatch, inline_bytes):
    from signclip.api.backend import load_models
    from signclip.service import deployments

    monkeypatch.setattr(deployments, "INLINE_FEATURIZE_BYTES", inline_bytes)
    settings = ServiceSettings.from_mapping({"models": {"default": str(model_dir)}, "enable_video": False})
    models = load_models(settings.models)
    replica = deployments.PoseEmbedder.func_or_class(settings, models)

    async def one_request_batch(request):  # serve.batch needs a Serve replica; its batching is test_serve's
        return deployments.embed_grouped(models, "pose", [request])[0]

    replica._batch = one_request_batch
    poses = [(poses_dir / name).read_bytes() for name in ("library.pose", "sad-colin.pose")]
    answer = asyncio.run(replica.embed("default", poses))
    np.testing.assert_allclose(answer.vectors, models["default"].embedder.embed_poses(poses), atol=1e-6)
    rejected = asyncio.run(replica.embed("default", [poses[0], b"not a pose"]))
    assert rejected.index == 1 and rejected.code == "invalid_pose"


def test_model_batches_run_on_the_loop_once_known_to_be_short(model_dir, monkeypatch):
    """A replica's first batch goes to a thread; a batch the last one says is short runs on the event loop (the
    hand-off cost a cheap model more than the batch); a slow one, or a much larger one, goes to a thread."""
    import threading
    import time

    from signclip.api.backend import load_models
    from signclip.service import deployments

    settings = ServiceSettings.from_mapping({"models": {"default": str(model_dir)}, "enable_video": False})
    models = load_models(settings.models)
    replica = deployments.TextEmbedder.func_or_class(settings, models)
    ran_in, delay, embed_grouped = [], [0.0], deployments.embed_grouped

    def recorded(*args):
        ran_in.append(threading.get_ident())
        time.sleep(delay[0])
        return embed_grouped(*args)

    monkeypatch.setattr(deployments, "embed_grouped", recorded)
    monkeypatch.setattr(deployments, "INLINE_BATCH_S", 0.25)  # a tiny-model batch is far below it, even on a busy CI
    requests = [("default", ["hello"]), ("default", ["good morning", "thank you"])]
    answers = [asyncio.run(replica._embed_batch("text", requests)) for _ in range(2)]
    delay[0] = 4 * deployments.INLINE_BATCH_S
    answers += [asyncio.run(replica._embed_batch("text", requests)) for _ in range(2)]
    delay[0] = 0.0
    answers += [asyncio.run(replica._embed_batch("text", requests)) for _ in range(2)]
    many = [("default", ["hello"] * 4000)]  # 1333x the last batch's items: expected far beyond the bound
    assert len(asyncio.run(replica._embed_batch("text", many))[0].vectors) == 4000
    loop = threading.get_ident()  # asyncio.run runs its loop in this thread
    assert [t == loop for t in ran_in] == [False, True, True, False, False, True, False]
    for delay[0] in (0.0, 1.0):  # the next batch waits a tenth of the last one's time, at most BATCH_WAIT_S
        asyncio.run(replica._embed_batch("text", requests))
        took, wait = replica._last_batch[1], replica._batch._get_batch_wait_timeout_s()  # Serve's own accessor
        assert wait == min(deployments.BATCH_WAIT_S, deployments.BATCH_WAIT_SHARE * took)
    assert took >= 1.0 and wait == deployments.BATCH_WAIT_S
    expected = models["default"].embedder.embed_texts(["hello", "good morning", "thank you"])
    for first, rest in answers:
        np.testing.assert_allclose(np.concatenate([first.vectors, rest.vectors]), expected, atol=1e-6)
    replica._batch.set_batch_wait_timeout_s(deployments.BATCH_WAIT_S)  # the wrapper is the class's, shared
