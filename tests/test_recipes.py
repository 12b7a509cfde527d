"""The paper's configurations (``--recipe``): each one's model, features and augmentation take a training step
on real poses (in-process); one recipe trains and evaluates end to end on Ray (the jobs treat every recipe alike).

The clips are the real labelled poses and time-warped copies of them. FingerCLIP's clips get letters as
glosses (its batches may not repeat a text, so it needs as many distinct letters as the batch size).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import signclip
from signclip.evaluation.report import clip_prompts
from signclip.jobs import evaluate, train
from signclip.model.prompts import PromptError
from signclip.training.recipes import RECIPES, recipe
from tests.embed_helpers import LABELLED, manifest_csv, warped_copies

LETTERS = dict(zip(LABELLED, "ABCD"))


def _rows(poses_dir: Path, folder: Path, name: str, copies: int, language: str, glosses: dict[str, str]) -> list:
    rows = []
    for seed, stem in enumerate(LABELLED):
        for path in warped_copies(poses_dir / f"{stem}.pose", folder / name, copies, seed + 10 * copies):
            rows.append({"id": path.stem, "path": str(path), "gloss": glosses[stem], "sign_language": language})
    return rows


def test_recipe_prompt_sentences_apply_to_clips_given_by_gloss():
    import pandas as pd

    meta = pd.DataFrame({"id": ["a", "b"], "text": ["", "given text"], "gloss": ["A", "B"], "language": ["gsg"] * 2})
    assert clip_prompts(meta, template=recipe("fingerclip").prompt_template) == [
        "Fingerspell the letter A in German Sign Language.", "given text"]
    assert clip_prompts(meta) == ["<en> <gsg> A", "given text"]
    assert clip_prompts(meta.assign(gloss="house", language="ase"), template=recipe("islr-v0").prompt_template)[0] \
        == 'Sign the sign "house" in American Sign Language.'
    with pytest.raises(PromptError, match=r"prompt template 'Sign \{word\}\.'.*\{language\} and \{gloss\}"):
        clip_prompts(meta, template="Sign {word}.")
    with pytest.raises(PromptError, match="'xyz'"):
        clip_prompts(meta.assign(language="xyz"), template="Sign {gloss} in {language}.")


def test_train_refuses_a_bad_prompt_template(tmp_path, poses_dir, capsys):
    rows = manifest_csv(tmp_path / "m.csv", [{"path": str(poses_dir / "library.pose"), "gloss": "library",
                                              "sign_language": "ase"}])
    assert train.main(["--train", str(rows), "--val", str(rows), "--output", str(tmp_path / "run"),
                       "--prompt-template", "Sign {word}."]) == 2
    assert "row 1: prompt template 'Sign {word}.'" in capsys.readouterr().err


def test_evaluate_refuses_a_bad_prompt_template(tmp_path, capsys):
    # a usage error, before anything is embedded: exit 2 and the template named
    assert evaluate.main(["--embeddings", str(tmp_path / "none"), "--output", str(tmp_path / "out"),
                          "--prompt-template", "Sign {word}."]) == 2
    assert "error: prompt template 'Sign {word}.'" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_each_recipe_s_model_takes_a_training_step_on_real_poses(name, poses_dir):
    import numpy as np
    import torch

    from signclip.pose.features import pose_features
    from signclip.training.step import Stepper, batch_tensors, loss_for, make_optimizer

    chosen = recipe(name)
    cfg = train.train_config(train.parse_args(["--recipe", name, "--train", "t.csv", "--val", "v.csv",
                                               "--output", "run", "--batch-size", "4", "--warmup-steps", "1"]))
    model = train.new_model(cfg)
    expected = signclip.preset(chosen.preset, **{k: v for k, v in chosen.model.items() if k != "video_layers"})
    assert model.cfg.feature_set == expected.feature_set and model.cfg.feature_dim == expected.feature_dim
    assert model.cfg.video.num_layers == chosen.model.get("video_layers", expected.video.num_layers)
    assert model.cfg.video.hidden_size == expected.video.hidden_size
    assert cfg.augment == chosen.augment and cfg.unique_texts == chosen.unique_texts
    clips = [pose_features(str(poses_dir / f"{stem}.pose"), model.cfg.feature_set, augment=cfg.augment,
                           rng=np.random.default_rng(i)) for i, stem in enumerate(LABELLED)]
    texts = [f"<en> <ase> {gloss}" for gloss in LETTERS.values()]
    step = Stepper(model, loss_for(model, cfg, distributed=False), *make_optimizer(model, cfg), cfg,
                   torch.device("cpu"))
    before = model.video_encoder.videomlp.linear1.weight.detach().clone()
    assert math.isfinite(step(batch_tensors(model, clips, texts, torch.device("cpu"))))
    assert float((model.video_encoder.videomlp.linear1.weight - before).abs().max()) > 0, \
        "the step did not change the video tower's input projection"


@pytest.mark.ray
@pytest.mark.timeout(900)
def test_a_recipe_trains_and_evaluates_on_real_poses(ray_local, poses_dir, tmp_path):
    name = "fingerclip"  # letters as glosses, unique texts per batch, its own prompt sentence
    chosen = recipe(name)
    fingerspelling = name.startswith("fingerclip")
    language, glosses = ("gsg", LETTERS) if fingerspelling else ("ase", LABELLED)
    train_csv = manifest_csv(tmp_path / "train.csv", _rows(poses_dir, tmp_path, "train", 2, language, glosses))
    val_csv = manifest_csv(tmp_path / "val.csv", _rows(poses_dir, tmp_path, "val", 1, language, glosses))
    test_csv = manifest_csv(tmp_path / "test.csv", _rows(poses_dir, tmp_path, "test", 2, language, glosses))
    run = tmp_path / "run"
    # 8 training clips, batches of 4: two optimiser steps with the recipe's model, features and augmentation
    assert train.main(["--recipe", name, "--train", str(train_csv), "--val", str(val_csv), "--output", str(run),
                       "--epochs", "1", "--batch-size", "4", "--warmup-steps", "1", "--lr", "1e-3",
                       "--workers", "1", "--cpus-per-worker", "1"]) == 0

    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(h["step"] for h in history) == 2
    assert all(math.isfinite(h["train_loss"]) for h in history)
    config = json.loads((run / "best" / "config.json").read_text())["model"]
    expected = signclip.preset(chosen.preset, **{k: v for k, v in chosen.model.items() if k != "video_layers"})
    assert config["feature_set"] == expected.feature_set
    assert config["video"]["num_layers"] == chosen.model.get("video_layers", expected.video.num_layers)
    assert config["video"]["hidden_size"] == expected.video.hidden_size
    trained = signclip.load(run / "best")
    assert trained.cfg.feature_dim == expected.feature_dim
    fresh_cfg = signclip.preset(chosen.preset, feature_set=expected.feature_set)
    fresh_cfg.video.num_layers = config["video"]["num_layers"]
    fresh = signclip.create(fresh_cfg, seed=0)
    trained_w, fresh_w = trained.video_encoder.videomlp.linear1.weight, fresh.video_encoder.videomlp.linear1.weight
    moved = (trained_w - fresh_w).detach().abs()
    assert float(moved.max()) > 0, "training did not change the video tower's input projection"

    out = tmp_path / "eval"
    assert evaluate.main(["--model", str(run / "best"), "--manifest", str(test_csv), "--recipe", name,
                          "--output", str(out), "--shots", "1"]) == 0
    results = json.loads((out / evaluate.RESULTS_JSON).read_text())
    assert results["recipe"] == name and results["prompt_template"] == (chosen.prompt_template or "")
    assert results["variant"]["feature_set"] == expected.feature_set
    assert results["n_clips"] == 8 and results["n_texts"] == len(set(glosses.values()))
    assert 0.0 <= results["v2t"]["R1"] <= 1.0 and results["v2t"]["MedianR"] >= 1
    assert 0.0 <= results["few_shot"]["proto@1"] <= 1.0 and 0.0 <= results["few_shot"]["knn@1"] <= 1.0


def test_a_resumed_run_keeps_its_dropout(tmp_path):
    import torch

    cfg = train.train_config(train.parse_args(["--train", "t.csv", "--val", "v.csv", "--output", "run",
                                               "--preset", "tiny", "--dropout", "0"]))

    def dropouts(model) -> set[float]:
        return {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)} | \
            {m.dropout_p for m in model.modules() if hasattr(m, "dropout_p")}

    started = train.new_model(cfg)
    assert dropouts(started) == {0.0}
    started.save(str(tmp_path / "checkpoint"))  # the saved config keeps the preset's own dropout
    assert dropouts(signclip.load(str(tmp_path / "checkpoint"))) == {0.1}
    assert dropouts(train.resumed_model(cfg, str(tmp_path / "checkpoint"))) == {0.0}


def test_the_reference_loss_on_normalised_embeddings_is_refused_before_anything_runs(tmp_path, capsys):
    from signclip.training.step import loss_mode

    assert (loss_mode("auto", "dot"), loss_mode("auto", "cosine")) == ("reference", "clip")
    assert (loss_mode("clip", "dot"), loss_mode("reference", "dot"), loss_mode("clip", "cosine")) == \
        ("clip", "reference", "clip")
    with pytest.raises(ValueError, match="--loss reference on a model with cosine similarity"):
        loss_mode("reference", "cosine")
    # tiny and small are cosine models; the manifests need not exist: this is refused first
    assert train.main(["--train", str(tmp_path / "t.csv"), "--val", str(tmp_path / "v.csv"), "--output",
                       str(tmp_path / "run"), "--preset", "tiny", "--loss", "reference"]) == 2
    assert "--loss reference on a model with cosine similarity" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_mixed_precision_step_computes_its_loss_in_float32(poses_dir):
    import numpy as np
    import torch

    from signclip.pose.features import pose_features
    from signclip.training.step import Stepper, batch_tensors, loss_for, make_optimizer

    cfg = train.train_config(train.parse_args(["--train", "t.csv", "--val", "v.csv", "--output", "run",
                                               "--preset", "tiny", "--precision", "bf16", "--batch-size", "2"]))
    model = train.new_model(cfg)
    loss = loss_for(model, cfg, distributed=False)
    seen = []
    loss.register_forward_pre_hook(lambda module, inputs: seen.append(
        (torch.is_autocast_enabled("cpu"), [x.dtype for x in inputs])))
    step = Stepper(model, loss, *make_optimizer(model, cfg), cfg, torch.device("cpu"))
    assert step.dtype == torch.bfloat16
    clips = [pose_features(str(poses_dir / f"{stem}.pose")) for stem in ("sad-colin", "library")]
    assert np.isfinite(step(batch_tensors(model, clips, ["<en> <ase> sad", "<en> <bfi> library"], step.device)))
    assert seen == [(False, [torch.float32] * 3)]  # the towers ran in bf16, the logits do not
