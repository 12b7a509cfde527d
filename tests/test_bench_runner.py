"""``make bench``'s runner and the prepared GPU check: the scripts they run exist and take the options given."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent / "benchmarks"


def _runner(name: str = "run_all"):
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
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


def test_gpu_check_parts_name_real_scripts_and_options(tmp_path):
    plan = _runner("gpu_check").parts(tmp_path, 16)
    assert set(plan) == {"train", "embed", "serve", "extract"}
    assert sum(limit for _, limit in plan.values()) < 8 * 60, "the whole check fits in 8 minutes"
    for name, (command, _) in plan.items():
        script = Path(command[1])
        assert script.is_file(), name
        shown = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120)
        assert shown.returncode == 0, shown.stderr
        for option in (o for o in command[2:] if o.startswith("--")):
            assert option in shown.stdout, f"{script.name} has no {option}"
