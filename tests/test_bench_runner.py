"""``make bench``'s runner and the prepared GPU check: the scripts they run exist and take the options given, and
the GPU bundle holds what this project needs beyond the GPU image."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

HERE = Path(__file__).resolve().parent / "benchmarks"


def _runner(name: str = "run_all"):
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_quick_settings_are_options_of_existing_scripts():
    runner = _runner()
    for name, options in runner.QUICK.items():
        script = HERE / f"bench_{name}.py"
        assert script.is_file(), name
        shown = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120)
        assert shown.returncode == 0, shown.stderr
        for option in (o for o in options if o.startswith("--")):
            assert option in shown.stdout, f"{script.name} has no {option}"


def test_unknown_benchmark_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        _runner().main(["--only", "nope"])
    assert info.value.code == 2 and "unknown benchmark(s) ['nope']" in capsys.readouterr().err


@pytest.mark.parametrize("smoke", [False, True])
def test_gpu_check_parts_name_real_scripts_and_options(tmp_path, smoke):
    plan = _runner("gpu_check").parts(tmp_path, 16, smoke)
    assert set(plan) == {"train", "embed", "serve", "extract"}
    if not smoke:
        assert sum(limit for _, limit in plan.values()) < 8 * 60, "the whole check fits in 8 minutes"
    for name, (command, _) in plan.items():
        script = Path(command[1])
        assert script.is_file(), name
        shown = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120)
        assert shown.returncode == 0, shown.stderr
        for option in (o for o in command[2:] if o.startswith("--")):
            assert option in shown.stdout, f"{script.name} has no {option}"


CHECKED_EXTRAS = ("", "extract", "jobs", "serve")  # search (FAISS) and the test tools are not part of the check


def requirement_names(extra: str) -> set[str]:
    requirements = [Requirement(r) for r in metadata.requires("signclip") or []]
    return {canonicalize_name(r.name) for r in requirements
            if (r.marker.evaluate({"extra": extra}) if r.marker else extra == "")}


def test_every_requirement_of_the_gpu_checks_parts_travels_or_is_in_the_image():
    bundle = _runner("gpu_bundle")
    covered = set(bundle.IMAGE) | set(bundle.LEFT_OUT)
    covered |= {canonicalize_name(name) for name in bundle.BUNDLED + bundle.VIDEO_BUNDLED}
    required = set().union(*(requirement_names(extra) for extra in CHECKED_EXTRAS)) - {"signclip"}
    assert "ray" in required and "torch" in required  # the parse found the extras
    assert required - covered == set()


def test_the_gpu_bundle_neither_duplicates_the_image_nor_names_an_uninstalled_package():
    bundle = _runner("gpu_bundle")
    names = bundle.BUNDLED + bundle.VIDEO_BUNDLED
    bundled = {canonicalize_name(name) for name in names}
    assert len(bundled) == len(names)
    assert bundled & set(bundle.IMAGE) == set()
    pins = bundle.pinned(names)  # raises PackageNotFoundError for a name that is not installed here
    assert len(pins) == len(names) and all("==" in pin for pin in pins)


def test_the_gpu_bundles_calls_share_out_the_checks_parts_and_fit_the_command_limit():
    bundle = _runner("gpu_bundle")
    parts = [part for call in bundle.CALLS for part in call.parts]
    assert sorted(parts) == sorted(_runner("gpu_check").parts(None, 16))
    for call in bundle.CALLS:
        assert call.folder in bundle.command(call) and len(bundle.command(call)) <= 2000
