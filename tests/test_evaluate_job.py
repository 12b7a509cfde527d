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
from signclip.evaluation.report import clip_languages, clip_prompts
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
    assert set(results["t2v"]) == {"R1", "R5", "R10", "P1", "P5", "P10", "MedianR", "MeanR", "hit1", "hit5", "hit10"}
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


# --- from embeddings alone (no model, no Ray): the directory's own text rows embed the prompts ----------

def _embeddings(directory: Path, clips: list[dict], texts: dict[str, list[float]]) -> str:
    """An embedding directory of ``clips`` (id, text or gloss+language, split, status, embedding) plus one
    text row per prompt in ``texts``, in the shard schema ``signclip embed`` writes."""
    import pyarrow as pa

    rows = clips + [{"id": f"text-{n}", "kind": "text", "text": t, "embedding": v} for n, (t, v) in
                    enumerate(texts.items())]
    fixed = {"kind": "pose", "status": "ok", "flip": False, "anonymized": False, "window_stride": 128,
             "model": "m", "model_name": "tiny", "model_hash": "h", "feature_set": "e7.2", "long_clips": "truncate",
             "precision": "fp32", "run_id": "r1"}
    schema = embedding_store.schema(2)
    columns = {f.name: pa.array([r.get(f.name, fixed.get(f.name, None if f.name in ("frames", "segments") else ""))
                                 for r in rows], f.type) for f in schema}
    embedding_store.write_shard(pa.table(columns, schema=schema), str(directory), "r1", "x")
    return str(directory)


def _clip(clip_id: str, text: str, vector: list[float] | None, **kw) -> dict:
    return {"id": clip_id, "text": text, "split": "test", "embedding": vector,
            "status": "ok" if vector is not None else "failed", "error": "" if vector is not None else "boom", **kw}


TEXTS = {"<en> <ase> house": [1.0, 0.0], "<en> <ase> sad": [0.0, 1.0]}


def test_only_the_evaluated_splits_failures_count(tmp_path, caplog, capsys):
    clips = [_clip("a", "<en> <ase> house", [1.0, 0.1]), _clip("b", "<en> <ase> sad", [0.1, 1.0]),
             _clip("train-broken", "<en> <ase> sad", None, split="train")]
    emb = _embeddings(tmp_path / "emb", clips, TEXTS)
    assert evaluate.main(["--embeddings", emb, "--output", str(tmp_path / "out"), "--split", "test"]) == 0
    assert json.loads((tmp_path / "out" / "results.json").read_text())["failed_clips"] == 0
    emb = _embeddings(tmp_path / "emb2", clips + [_clip("test-broken", "<en> <ase> sad", None)], TEXTS)
    assert evaluate.main(["--embeddings", emb, "--output", str(tmp_path / "out2"), "--split", "test"]) == 1
    assert json.loads((tmp_path / "out2" / "results.json").read_text())["failed_clips"] == 1
    assert "1 clip(s) of split 'test' failed to embed and are left out of the metrics (e.g. test-broken: boom)" \
        in caplog.text


def test_unusable_inputs_and_outputs_are_named_before_any_work(tmp_path, capsys):
    emb = _embeddings(tmp_path / "emb", [_clip("a", "", [1.0, 0.0], gloss="house", language="ASE")], TEXTS)
    assert evaluate.main(["--embeddings", emb, "--output", str(tmp_path / "out")]) == 2
    assert f"error: {emb}: clip a: sign-language code 'ASE'" in capsys.readouterr().err
    (tmp_path / "a-file").write_text("x")
    good = _embeddings(tmp_path / "good", [_clip("a", "<en> <ase> house", [1.0, 0.0])], TEXTS)
    assert evaluate.main(["--embeddings", good, "--output", str(tmp_path / "a-file" / "out")]) == 2
    assert "a-file/out: cannot write there" in capsys.readouterr().err


def test_prompts_one_space_apart_are_one_and_dollars_are_drawn_as_written(tmp_path):
    texts = {"<en> <ase> thank you": [1.0, 0.0], "<en> <ase> 5$ bill": [0.0, 1.0]}
    clips = [_clip("a", "<en> <ase> thank  you", [1.0, 0.1]), _clip("b", "<en> <ase> thank you", [0.9, 0.2]),
             _clip("c", "<en> <ase> 5$ bill", [0.1, 1.0]), _clip("d", "<en> <ase> 5$ bill", [0.2, 0.9])]
    emb = _embeddings(tmp_path / "emb", clips, texts)
    assert evaluate.main(["--embeddings", emb, "--output", str(tmp_path / "out"), "--shots", "1"]) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["n_texts"] == 2 and results["v2t"]["R1"] == 1.0  # not three prompts, one split in two
    assert all((tmp_path / "out" / name).stat().st_size > 0 for name in evaluate.PLOTS)


def test_the_language_of_a_clip_whose_prompt_a_template_built_is_the_one_given():
    meta = pd.DataFrame({"id": ["a", "b"], "text": ["", "<en> <bfi> library"], "gloss": ["house", ""]})
    prompts = clip_prompts(meta, default_language="ase", template="Sign {gloss} in {language}.")
    assert clip_languages(meta, prompts, "ase") == ["ase", "bfi"]  # not "" for the template's sentence


def test_a_gloss_is_prompted_in_the_spoken_language_its_manifest_gave(tmp_path, poses_dir):
    """Training builds '<de> <gsg> Haus' from a manifest's spoken_language; evaluation must ask the same."""
    from signclip.embedding import items

    listed = items.from_manifest(str(manifest_csv(tmp_path / "m.csv", [
        {"pose": str(poses_dir / "library.pose"), "gloss": "Haus", "sign_language": "gsg",
         "spoken_language": "de"}])))
    assert listed[0].spoken_language == "de"  # embed carries it into the shards
    emb = _embeddings(tmp_path / "emb", [_clip("a", "", [1.0, 0.0], gloss="Haus", language="gsg",
                                               spoken_language="de")], {"<de> <gsg> Haus": [1.0, 0.0]})
    assert embedding_store.load(emb).meta["spoken_language"].tolist() == ["de", ""]
    assert evaluate.main(["--embeddings", emb, "--output", str(tmp_path / "out")]) == 0
    assert json.loads((tmp_path / "out" / "results.json").read_text())["n_texts"] == 1


def test_text_rows_embed_the_prompts_whatever_their_spacing(tmp_path):
    """A text row embedded as written ('thank  you') is the prompt 'thank you': the same tokens, so the row
    serves, and no model (here: none on disk) is needed."""
    texts = {"<en> <ase> thank  you": [1.0, 0.0], " <en> <ase> sad": [0.0, 1.0]}
    clips = [_clip("a", "<en> <ase> thank you", [1.0, 0.1]), _clip("b", "<en> <ase> sad", [0.1, 1.0])]
    emb = _embeddings(tmp_path / "emb", clips, texts)
    assert evaluate.main(["--embeddings", emb, "--output", str(tmp_path / "out")]) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["n_texts"] == 2 and results["v2t"]["R1"] == 1.0
