"""The model and the embedder: batch independence, the true-length shortcut, long clips, save/load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import signclip
from signclip.model import factory
from signclip.model.checkpoint import CheckpointError
from signclip.model.embedder import CPU_BATCH_FRAMES, Embedder
from signclip.model.factory import minilm_dir
from signclip.model.long_clips import windows
from signclip.pose.features import collate, pose_features

VALID = ["house-colin-1", "house-spreadthesign", "sad-colin", "library", "refined-face-553"]


@pytest.fixture(scope="module")
def tiny():
    return signclip.create("tiny", seed=1)


@pytest.fixture(scope="module")
def tiny_dot():
    return signclip.create("tiny", seed=2, similarity="dot")


@pytest.fixture(scope="module")
def paths(poses_dir):
    return [str(poses_dir / f"{n}.pose") for n in VALID]


def test_embedding_does_not_depend_on_the_batch(tiny_dot, paths):
    together = tiny_dot.embed_poses(paths)
    for i, p in enumerate(paths):
        np.testing.assert_allclose(tiny_dot.embed_poses([p])[0], together[i], atol=1e-5)
    texts = ["<en> <ase> house", "a much longer prompt with many more word pieces than the first", "sad"]
    together = tiny_dot.embed_texts(texts)
    for i, t in enumerate(texts):
        np.testing.assert_allclose(tiny_dot.embed_texts([t])[0], together[i], atol=1e-5)


def test_true_length_equals_padding_to_256(tiny_dot, paths):
    """The shortcut (SEP at 257 without computing padding) against the reference's 258 positions."""
    clips = [pose_features(p) for p in paths]
    short = tiny_dot.embed_poses(paths)
    frames, mask = collate(clips, max_frames=256)
    with torch.no_grad():
        padded = tiny_dot.encode_pose(torch.from_numpy(frames), torch.from_numpy(mask)).numpy()
    np.testing.assert_allclose(short, padded, atol=1e-5)


def test_sep_position_matters(tiny_dot, paths):
    """Guards the shortcut: SEP at T+1 would give other numbers (what a naive implementation does)."""
    clip = pose_features(paths[0])
    model = tiny_dot
    frames, mask = torch.from_numpy(clip[None]), torch.ones(1, clip.shape[0], dtype=torch.bool)
    with torch.no_grad():
        right = model.encode_pose(frames, mask)
        saved = model.cfg.max_frames
        model.cfg.max_frames = clip.shape[0]  # puts SEP at T+1
        try:
            wrong = model.encode_pose(frames, mask)
        finally:
            model.cfg.max_frames = saved
    assert (right - wrong).abs().max() > 1e-3


def test_long_clips_truncate_after_normalisation(tiny_dot, poses_dir):
    clip = pose_features(str(poses_dir / "house-colin-1.pose"))
    long_clip = np.concatenate([clip] * 4)  # 372 frames
    emb = Embedder(tiny_dot).embed_features([long_clip])
    np.testing.assert_allclose(emb, Embedder(tiny_dot).embed_features([long_clip[:256]]), atol=1e-6)


def test_long_clips_window_mean(tiny_dot, poses_dir):
    clip = pose_features(str(poses_dir / "house-colin-1.pose"))
    long_clip = np.concatenate([clip] * 4)  # 372 frames
    assert windows(372, 256, 128) == [(0, 256), (116, 372)]
    assert windows(100, 256, 128) == [(0, 100)]
    assert windows(600, 256, 128) == [(0, 256), (128, 384), (256, 512), (344, 600)]
    embedder = Embedder(tiny_dot, long_clips="window")
    parts = Embedder(tiny_dot).embed_features([long_clip[0:256], long_clip[116:372]])
    np.testing.assert_allclose(embedder.embed_features([long_clip])[0], parts.mean(0), atol=1e-5)
    very_long = np.concatenate([clip] * 20)  # 1860 frames: never a crash on length
    assert embedder.embed_features([very_long, clip]).shape == (2, tiny_dot.cfg.embedding_dim)


def test_cosine_models_give_unit_vectors(tiny, paths):
    emb = tiny.embed_poses(paths)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    windowed = Embedder(tiny, long_clips="window").embed_features([np.concatenate([pose_features(paths[0])] * 3)])
    assert np.linalg.norm(windowed) == pytest.approx(1, abs=1e-5)


def test_embedder_uses_eval_mode_and_gives_training_back(paths):
    model = signclip.create("tiny", seed=3)
    expected = Embedder(model).embed_poses(paths[:2])
    model.train()  # e.g. a validation pass in the middle of training: dropout must not apply, and training resumes
    np.testing.assert_array_equal(Embedder(model).embed_poses(paths[:2]), expected)
    assert model.training and all(m.training for m in model.modules())
    model.eval()
    walked = []
    model.train = lambda mode=True: walked.append(mode)  # an eval model is used as it is: no walk over its modules
    Embedder(model).embed_poses(paths[:2])
    assert walked == []


def test_embedder_rejects_bad_features(tiny):
    with pytest.raises(ValueError, match=r"clip 0: features of shape \(0, 609\)"):
        Embedder(tiny).embed_features([np.zeros((0, 609), np.float32)])
    with pytest.raises(ValueError, match=r"clip 1: features of shape \(4, 63\)"):
        Embedder(tiny).embed_features([np.zeros((4, 609), np.float32), np.zeros((4, 63), np.float32)])
    with pytest.raises(ValueError, match="long_clips"):
        Embedder(tiny, long_clips="crash")
    with pytest.raises(TypeError, match="must be a str"):
        tiny.embed_texts(["ok", 3])


def test_empty_inputs_give_empty_arrays(tiny):
    assert tiny.embed_poses([]).shape == (0, 32)
    assert tiny.embed_texts([]).shape == (0, 32)


def test_bf16_stays_close(tiny, paths):
    full = tiny.embed_poses(paths)
    low = tiny.embed_poses(paths, precision="bf16")
    assert np.abs(full - low).max() < 0.05


def test_save_load_round_trip(tiny, paths, tmp_path):
    tiny.save(tmp_path / "m")
    loaded = signclip.load(tmp_path / "m")
    assert loaded.cfg == tiny.cfg
    np.testing.assert_array_equal(loaded.embed_poses(paths), tiny.embed_poses(paths))
    np.testing.assert_array_equal(loaded.embed_texts(["<en> <ase> house"]), tiny.embed_texts(["<en> <ase> house"]))
    # loading builds the model without initialising it and adopts the file's tensors: nothing is left unloaded
    params = dict(loaded.named_parameters())
    assert all(p.device.type == "cpu" and p.requires_grad for p in params.values())
    assert all(torch.equal(params[k], v) for k, v in tiny.state_dict().items())
    assert Embedder(loaded).max_batch_frames == CPU_BATCH_FRAMES * (768 // 32)  # narrow: more frames a pass


def test_a_save_interrupted_midway_leaves_the_model_that_was_there(tmp_path, monkeypatch):
    """Training rewrites best/ whenever validation improves: a crash, or a reader, mid-save must meet a whole
    model, never weights cut short."""
    import safetensors.torch

    from signclip.model import checkpoint

    saved = tmp_path / "best"
    first, second = signclip.create("tiny", seed=1), signclip.create("tiny", seed=2)
    first.save(saved)
    texts = ["<en> <ase> house"]

    def crash(state, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"\0" * 1000)  # part of the file, then the node dies
        raise OSError("No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", crash)
    with pytest.raises(OSError, match="No space left"):
        second.save(saved)
    np.testing.assert_array_equal(signclip.load(saved).embed_texts(texts), first.embed_texts(texts))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]  # no staging folder left behind
    monkeypatch.undo()
    inode = (saved / checkpoint.WEIGHTS).stat().st_ino
    second.save(saved)
    assert (saved / checkpoint.WEIGHTS).stat().st_ino != inode  # replaced in one rename, not rewritten in place
    np.testing.assert_array_equal(signclip.load(saved).embed_texts(texts), second.embed_texts(texts))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]
    assert not [p.name for p in saved.iterdir() if p.name.startswith(".")]


def test_a_save_writes_nothing_outside_the_model_directory(tmp_path, monkeypatch):
    """The directory may be a mount point (a volume, /dev/shm) or sit in a folder this process cannot write:
    staging beside it would fail there (a rename across file systems, or no write access)."""
    import safetensors.torch

    written = []
    save_file = safetensors.torch.save_file

    def recording(state, filename, metadata=None):
        written.append(Path(filename))
        return save_file(state, filename, metadata=metadata)

    monkeypatch.setattr(safetensors.torch, "save_file", recording)
    target = tmp_path / "volume"
    target.mkdir()
    signclip.create("tiny", seed=1).save(target)
    assert written and all(target in p.parents for p in written)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["volume"]
    assert signclip.load(target).cfg.name == "tiny"


def test_loading_skips_initialisation_without_changing_what_others_build(tiny, tmp_path, monkeypatch):
    """A load neither initialises weights it replaces nor imports ``torch._dynamo`` (2.3 s of CPU in each actor or
    replica that loads, when it built on the meta device), and leaves ``torch.nn.init`` as it found it, even when
    the build fails: a model created afterwards is initialised as ever."""
    import subprocess
    import sys

    tiny.save(tmp_path / "m")
    code = ("import sys, signclip; signclip.load(sys.argv[1]); "
            "print('torch._dynamo' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m")], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]
    before = {name: getattr(torch.nn.init, name) for name in ("normal_", "kaiming_uniform_", "ones_", "zeros_")}
    expected = signclip.create("tiny", seed=5).state_dict()
    signclip.load(tmp_path / "m")  # between two creates, which must agree

    def failing_build(cfg, tokenizer):
        assert torch.nn.init.normal_ is not before["normal_"]  # built without initialisers
        raise RuntimeError("the build failed")

    monkeypatch.setattr(factory, "SignCLIP", failing_build)
    with pytest.raises(RuntimeError, match="the build failed"):
        signclip.load(tmp_path / "m")
    monkeypatch.undo()
    assert {name: getattr(torch.nn.init, name) for name in before} == before
    created = signclip.create("tiny", seed=5).state_dict()
    assert all(torch.equal(created[k], v) for k, v in expected.items())
    assert float(created["video_encoder.bert.encoder.layer.0.attention.self.query.weight"].std()) > 0.01


def test_load_reports_missing_and_unexpected_tensors(tiny, tmp_path):
    from safetensors.torch import load_file, save_file

    tiny.save(tmp_path / "m")
    weights = load_file(str(tmp_path / "m" / "model.safetensors"))
    weights.pop("text_encoder.encoder.layer.1.output.dense.bias")
    weights["video_encoder.extra.weight"] = torch.zeros(2)
    save_file(weights, str(tmp_path / "m" / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"missing keys: text_encoder.encoder.layer.1.output.dense.bias.*"
                                              r"unexpected keys: video_encoder.extra.weight"):
        signclip.load(tmp_path / "m")


def test_load_refuses_other_directories(tmp_path):
    with pytest.raises(CheckpointError, match="not a SignCLIP model directory"):
        signclip.load(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"format": "other"}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="format 'other'"):
        signclip.load(tmp_path)


def test_small_text_tower_is_minilm(tmp_path):
    """Our BERT against Hugging Face's on the real MiniLM weights (a second implementation)."""
    from transformers import AutoModel

    small = signclip.create("small")
    hf = AutoModel.from_pretrained(str(minilm_dir())).eval()
    ids, mask = small.tokenizer.batch(small.tokenizer.ids(["<en> <ase> house", "a sign for library"]))
    with torch.no_grad():
        hidden = hf(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask).long()).last_hidden_state
    pool = torch.from_numpy(mask).float()
    pool[:, 0] = 0
    expected = torch.nn.functional.normalize((hidden * pool[..., None]).sum(1) / pool.sum(1, keepdim=True), dim=-1)
    np.testing.assert_allclose(small.embed_texts(["<en> <ase> house", "a sign for library"]), expected.numpy(),
                               atol=1e-5)


def test_presets_and_overrides():
    assert signclip.preset("e7.2").feature_dim == 609 and signclip.preset("e7.2").embedding_dim == 768
    assert signclip.preset("tiny", feature_set="right_hand").feature_dim == 63
    with pytest.raises(ValueError, match="unknown model preset"):
        signclip.preset("huge")
    with pytest.raises(ValueError, match="must share the embedding space"):
        signclip.ModelConfig(video=signclip.TowerConfig(hidden_size=64))


def test_towers_start_from_a_local_bert(tmp_path):
    tiny_from_minilm = signclip.preset("tiny")
    with pytest.raises(CheckpointError, match="wrong shapes.*does the preset's tower size match"):
        signclip.create(tiny_from_minilm, bert=minilm_dir())
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        signclip.create("tiny", bert=tmp_path)
    cfg = signclip.preset("small")
    cfg.video.num_layers = 2
    model = signclip.create(cfg, bert=minilm_dir())
    small = signclip.create("small")
    for name, value in small.text_encoder.state_dict().items():
        torch.testing.assert_close(model.text_encoder.state_dict()[name], value)
    assert len(model.video_encoder.bert.encoder.layer) == 2
    torch.testing.assert_close(model.video_encoder.bert.encoder.layer[1].output.dense.weight,
                               small.text_encoder.encoder.layer[1].output.dense.weight)


def test_towers_start_from_a_bert_in_object_storage(tmp_path, s3_bucket, monkeypatch):
    from signclip.io import storage

    # what a training worker on a node without the driver's disk does with --bert s3://...
    monkeypatch.setenv("SIGNCLIP_CACHE", str(tmp_path / "node-cache"))
    storage.put_dir(str(minilm_dir()), f"{s3_bucket}/bert/minilm")
    cfg = signclip.preset("small")
    cfg.video.num_layers = 2
    remote = signclip.create(cfg, bert=f"{s3_bucket}/bert/minilm", seed=3)
    local = signclip.create(cfg, bert=minilm_dir(), seed=3)
    for name, value in local.state_dict().items():
        torch.testing.assert_close(remote.state_dict()[name], value, msg=name)
    assert remote.tokenizer.vocab_size == local.tokenizer.vocab_size
    assert any((tmp_path / "node-cache" / "models").iterdir())


def test_recipes_fill_training_defaults():
    from signclip.jobs.train import parse_args

    args = parse_args(["--train", "t.csv", "--val", "v.csv", "--output", "r", "--recipe", "fingerclip"])
    assert args.feature_set == "right_hand" and args.unique_texts and args.rotation_std == 0.2
    assert args.prompt_template == "Fingerspell the letter {gloss} in {language}."
    args = parse_args(["--train", "t.csv", "--val", "v.csv", "--output", "r", "--recipe", "islr-v0",
                       "--batch-size", "8"])
    assert args.feature_set == "islr_face" and args.batch_size == 8 and args.temporal_std == 0.0


def test_pooling_averages_in_float32_under_bf16():
    from signclip.model.network import _masked_mean

    # 257 pooled positions (a full 256-frame clip + SEP): a count bf16 cannot hold (it rounds to 256)
    hidden = torch.ones(1, 258, 4, dtype=torch.bfloat16)
    hidden[0, 1] = 2.0
    mask = torch.ones(1, 258, dtype=torch.bool)
    mask[0, 0] = False  # e.g. [CLS], not pooled
    pooled = _masked_mean(hidden, mask)
    assert pooled.dtype == torch.float32
    torch.testing.assert_close(pooled, torch.full((1, 4), 258 / 257), rtol=0, atol=1e-6)


def test_creating_a_model_leaves_the_callers_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = signclip.create("tiny", seed=7)
    assert torch.equal(torch.rand(3), expected)
    b = signclip.create("tiny", seed=7)
    for name, value in a.state_dict().items():  # and the seed still decides the weights
        assert torch.equal(b.state_dict()[name], value), name
