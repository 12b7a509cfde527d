"""The README's main command: the end-to-end demo on the real sample data, as a user runs it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.ray


@pytest.mark.timeout(1200)
def test_demo_runs_end_to_end(tmp_path):
    run = tmp_path / "demo"
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    # the tiny preset: the same five stages in less time than the default's (small) training
    done = subprocess.run([sys.executable, "-m", "signclip.jobs.demo", "--output", str(run), "--port", "18765",
                           "--preset", "tiny"],
                          env=env, capture_output=True, text=True, timeout=1100,
                          cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for step in range(1, 6):
        assert f"[{step}/5]" in done.stdout
    assert (run / "poses" / "manifest.parquet").exists()
    assert (run / "train" / "best" / "model.safetensors").exists()
    results = json.loads((run / "evaluation" / "results.json").read_text())
    assert 0.0 <= results["v2t"]["R1"] <= 1.0
    for plot in ("similarity_heatmap.png", "recall_at_k.png", "embedding_map.png"):
        assert (run / "evaluation" / plot).stat().st_size > 0
    embedded = done.stdout.split("[3/5]")[1].split("[4/5]")[0]
    assert "expected: the sample data's unusable poses are reported" in embedded  # each refused pose, with why
    assert "openpose-137:" in embedded
    assert "(raylet)" not in done.stdout  # Ray's shutdown noise is filtered on stdout too (ray_noise.py)
    table = done.stdout.split("[5/5]")[1]
    assert "<en> <ase> house" in table and "house-colin-1" in table
    assert "the dictionary page over the sample poses: http://127.0.0.1:18765/" in table
    assert "dictionary search for '<en> <ase> house': " in table and "serving until Ctrl-C" not in table
    # a successful run shows nothing that reads as trouble (Ray's known noise is filtered, see ray_noise.py)
    alarming = [line for line in done.stderr.splitlines()
                if re.search(r"\b(WARNING|ERROR|CRITICAL|Traceback|[Ee]rror:|failed)\b", line)]
    assert not alarming, "\n".join(alarming[:20])

