"""The GPU bundle (tests/benchmarks/gpu_bundle.py) must hold what this project needs beyond the GPU image."""

from __future__ import annotations

import importlib.util
import re
import sys
from importlib import metadata
from pathlib import Path


def load(name: str):  # noqa: ANN201
    spec = importlib.util.spec_from_file_location(name, Path(__file__).parent / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


gpu_bundle, gpu_check = load("gpu_bundle"), load("gpu_check")

CHECKED_EXTRAS = ("", "extract", "jobs", "serve")  # search (FAISS) and the test tools are not part of the check


def requirement_names(extra: str) -> set[str]:
    names = set()
    for requirement in metadata.requires("signclip") or []:
        spec, _, marker = requirement.partition(";")
        wanted = re.search(r'extra == "([^"]+)"', marker)
        if (wanted.group(1) if wanted else "") == extra:
            names.add(gpu_bundle.normalised(re.match(r"[A-Za-z0-9_.-]+", spec.strip()).group(0)))
    return names


def test_every_requirement_of_the_checked_parts_travels_or_is_in_the_image():
    bundled = gpu_bundle.BUNDLED + gpu_bundle.VIDEO_BUNDLED
    covered = set(gpu_bundle.IMAGE) | {gpu_bundle.normalised(name) for name in bundled}
    covered |= set(gpu_bundle.LEFT_OUT)
    required = set().union(*(requirement_names(extra) for extra in CHECKED_EXTRAS)) - {"signclip"}
    assert "ray" in required and "torch" in required  # the parse found the extras
    assert required - covered == set()


def test_the_bundle_neither_duplicates_the_image_nor_names_an_uninstalled_package():
    names = gpu_bundle.BUNDLED + gpu_bundle.VIDEO_BUNDLED
    bundled = {gpu_bundle.normalised(name) for name in names}
    assert len(bundled) == len(names)
    assert bundled & set(gpu_bundle.IMAGE) == set()
    pins = gpu_bundle.pinned(names)  # raises PackageNotFoundError for a name that is not installed here
    assert len(pins) == len(names) and all("==" in pin for pin in pins)


def test_the_calls_share_out_the_checks_parts_and_fit_the_command_limit():
    parts = [part for call in gpu_bundle.CALLS for part in call.parts]
    assert sorted(parts) == sorted(gpu_check.parts(None, 16))
    for call in gpu_bundle.CALLS:
        assert call.folder in gpu_bundle.command(call) and len(gpu_bundle.command(call)) <= 2000
