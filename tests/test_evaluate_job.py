"""``signclip evaluate``: from a model + manifest (embedding on the shared Ray) and from embeddings.

The clips are time-warped copies of the real labelled poses (3 per file: house 6, sad 3, library 3);
the library clips are tagged as another sign language to exercise the per-language breakdown.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import signclip
from signclip.evaluation import metrics
from signclip.evaluation.report import clip_prompts
from signclip.io import embedding_store
from signclip.jobs import evaluate
from tests.embed_helpers import LABELLED, manifest_csv, tiny_model, warped_copies

SHOTS = (1, 2)


@pytest.fixture(scope="module")
def evaluated(ray_local, poses_dir, tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("evaluate")
    model_dir = tiny_model(work / "tiny")
    rows = []  # in the columns `signclip manifest` writes (`pose`, `sign_language`), as the README's recipe runs
    for seed, (name, gloss) in enumerate(LABELLED.items()):
        for path in warped_copies(poses_dir / f"{name}.pose", work / "clips", 3, seed):
            rows.append({"id": path.stem, "pose": str(path), "gloss": gloss, "split": "test",
                         "sign_language": "bfi" if gloss == "library" else "ase"})
    rows.append({"id": "train-only", "pose": str(poses_dir / "sad-colin.pose"), "gloss": "sad",
                 "sign_language": "ase", "split": "train"})
    out = work / "eval"
    rc = evaluate.main(["--model", str(model_dir), "--manifest", str(manifest_csv(work / "clips.csv", rows)),
                        "--output", str(out), "--flip", "--split", "test", "--shots", ",".join(map(str, SHOTS))])
    return {"rc": rc, "out": out, "model": model_dir, "rows": [r for r in rows if r["split"] == "test"]}


@pytest.mark.ray
@pytest.mark.timeout(180)
def test_writes_results_and_plots(evaluated):
    assert evaluated["rc"] == 0
    out: Path = evaluated["out"]
    for name in (evaluate.RESULTS_JSON, evaluate.RESULTS_CSV, *evaluate.PLOTS):
        assert (out / name).stat().st_size > 0, name
    for name in evaluate.PLOTS:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = pd.read_csv(out / evaluate.RESULTS_CSV)
    assert list(table["scope"]) == ["all", "language=ase", "language=bfi"]
    results = json.loads((out / evaluate.RESULTS_JSON).read_text())
    assert set(results["v2t"]) == {"R1", "R5", "R10", "MedianR", "MeanR"}
    assert set(results["t2v"]) == {"R1", "R5", "R10", "P1", "P5", "P10", "MedianR", "MeanR"}
    assert table.loc[0, "v2t_R1"] == pytest.approx(results["v2t"]["R1"], abs=1e-6)
    assert results["variant"]["flip"] is True and results["n_clips"] == 12 and results["n_texts"] == 3


@pytest.mark.ray
@pytest.mark.timeout(60)
def test_numbers_equal_signclip_metrics_on_the_same_embeddings(evaluated):
    results = json.loads((evaluated["out"] / evaluate.RESULTS_JSON).read_text())
    corpus = embedding_store.load(str(evaluated["out"] / "embeddings"))
    clips = corpus.select(corpus.meta["split"].eq("test").to_numpy())
    flipped = signclip.Embedder(signclip.load(evaluated["model"]), flip=True)
    np.testing.assert_allclose(clips.embeddings, flipped.embed_poses(list(clips.meta["source"])), atol=1e-5)

    prompts = clip_prompts(clips.meta)
    assert sorted(set(prompts)) == ["<en> <ase> house", "<en> <ase> sad", "<en> <bfi> library"]
    uniq, gold = metrics.unique_texts(prompts)
    text_emb = flipped.embed_texts(uniq)
    v2t = metrics.video_to_text(clips.embeddings, text_emb, gold)
    t2v = metrics.text_to_video(text_emb, clips.embeddings, gold)
    for key, ref_key in (("R@1", "R1"), ("R@5", "R5"), ("R@10", "R10"), ("median_rank", "MedianR"),
                         ("mean_rank", "MeanR")):
        assert results["v2t"][ref_key] == pytest.approx(v2t[key])
        assert results["t2v"][ref_key] == pytest.approx(t2v[key])
    assert results["t2v"]["P1"] == pytest.approx(t2v["P@1"])
    assert results["recognition_accuracy"] == pytest.approx(v2t["R@1"])
    few = metrics.few_shot_report(clips.embeddings, np.asarray(prompts, dtype=object), SHOTS)
    assert results["few_shot"] == pytest.approx(few) and "probe@2" in few
    bfi = np.flatnonzero(clips.meta["language"].eq("bfi").to_numpy())
    sub = metrics.video_to_text(clips.embeddings[bfi], text_emb[[uniq.index("<en> <bfi> library")]],
                                np.zeros(len(bfi), dtype=int))
    assert results["by_language"]["bfi"]["v2t"]["R1"] == pytest.approx(sub["R@1"]) == 1.0
    assert results["by_language"]["ase"]["n_clips"] == 9


@pytest.mark.ray
@pytest.mark.timeout(60)
def test_from_embeddings_gives_the_same_results(evaluated, tmp_path):
    source = evaluated["out"]
    rc = evaluate.main(["--embeddings", str(source / "embeddings"), "--output", str(tmp_path), "--split", "test",
                        "--shots", ",".join(map(str, SHOTS))])
    assert rc == 0
    again, first = (json.loads((d / evaluate.RESULTS_JSON).read_text()) for d in (tmp_path, source))
    for key in ("v2t", "t2v", "few_shot", "by_language", "variant", "model_hash"):
        assert again[key] == first[key]


@pytest.mark.ray
@pytest.mark.timeout(60)
def test_test_time_options_apply_when_embedding_only(evaluated, tmp_path, capsys):
    rc = evaluate.main(["--embeddings", str(evaluated["out"] / "embeddings"), "--output", str(tmp_path),
                        "--anonymized"])
    assert rc == 2 and "made without it" in capsys.readouterr().err
