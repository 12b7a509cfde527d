"""Importing fairseq checkpoints: every problem is a CheckpointError naming the offending key or file;
pickles are never executed; ``...embeddings.position_ids`` buffers are ignored; weights end up float32."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import signclip
from signclip.model.checkpoint import CheckpointError
from tests.fairseq_fixture import make_code_checkpoint, make_fairseq_checkpoint

P = "mmmodel."


def _load(ckpt, bert):
    return signclip.from_fairseq(ckpt, bert=bert)


def test_checkpoint_error_is_a_value_error():
    assert issubclass(CheckpointError, ValueError)


@pytest.mark.parametrize("key", ["text_encoder.encoder.layer.1.output.LayerNorm.bias",
                                 "video_encoder.videomlp.linear2.bias",
                                 "video_encoder.bert.embeddings.word_embeddings.weight"])
def test_missing_key(tmp_path, key):
    ckpt, bert = make_fairseq_checkpoint(tmp_path, drop_keys=[P + key])
    with pytest.raises(CheckpointError, match=re.escape(key)):
        _load(ckpt, bert)


@pytest.mark.parametrize("key", ["video_encoder.projection.weight",
                                 "text_encoder.cls.predictions.bias",
                                 "video_encoder.videomlp.position_ids"])  # position_ids only under embeddings
def test_unexpected_key(tmp_path, key):
    ckpt, bert = make_fairseq_checkpoint(tmp_path, extra_keys={P + key: torch.zeros(32, dtype=torch.float16)})
    with pytest.raises(CheckpointError, match=re.escape(key)):
        _load(ckpt, bert)


def test_key_without_mmmodel_prefix(tmp_path):
    ckpt, bert = make_fairseq_checkpoint(tmp_path, extra_keys={"decoder.weight": torch.zeros(2, 2)})
    with pytest.raises(CheckpointError, match=re.escape("decoder.weight")):
        _load(ckpt, bert)


@pytest.mark.parametrize("key, shape", [("text_encoder.encoder.layer.0.attention.self.query.bias", (31,)),
                                        ("video_encoder.bert.encoder.layer.1.intermediate.dense.weight", (48, 32))])
def test_wrong_shape(tmp_path, key, shape):
    ckpt, bert = make_fairseq_checkpoint(tmp_path, bad_shapes={P + key: shape})
    with pytest.raises(CheckpointError, match=re.escape(key)):
        _load(ckpt, bert)


def test_code_payload_really_runs_when_unpickled_unsafely(tmp_path):
    """Guards the next test: the payload is live (so 'marker absent' there means it was refused)."""
    marker = tmp_path / "pwned"
    path = make_code_checkpoint(tmp_path / "evil.pt", marker)
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_pickle_carrying_code_is_refused_without_running_it(tmp_path):
    _, bert = make_fairseq_checkpoint(tmp_path / "tiny")
    marker = tmp_path / "pwned"
    path = make_code_checkpoint(tmp_path / "evil_checkpoint.pt", marker)
    with pytest.raises(CheckpointError, match="evil_checkpoint.pt"):
        _load(path, bert)
    assert not marker.exists(), "the checkpoint's pickled code was executed"


def test_not_a_checkpoint(tmp_path):
    _, bert = make_fairseq_checkpoint(tmp_path / "tiny")
    path = tmp_path / "notes_not_a_checkpoint.pt"
    path.write_text("just some text, not a torch file\n")
    with pytest.raises(CheckpointError, match="notes_not_a_checkpoint.pt"):
        _load(path, bert)


def test_truncated_checkpoint(tmp_path):
    ckpt, bert = make_fairseq_checkpoint(tmp_path / "tiny")
    cut = tmp_path / "cut_checkpoint.pt"
    cut.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="cut_checkpoint.pt"):
        _load(cut, bert)


def test_dict_without_model_entry(tmp_path):
    _, bert = make_fairseq_checkpoint(tmp_path / "tiny")
    path = tmp_path / "no_model.pt"
    torch.save({"args": None, "cfg": {}, "extra_state": {}}, path)
    with pytest.raises(CheckpointError, match="model"):
        _load(path, bert)


def test_state_dict_entry_is_accepted(tmp_path):
    a = _load(*make_fairseq_checkpoint(tmp_path / "a", seed=3))
    b = _load(*make_fairseq_checkpoint(tmp_path / "b", seed=3, model_key="state_dict"))
    texts = ["<en> <ase> house"]
    assert np.array_equal(a.embed_texts(texts), b.embed_texts(texts))


def test_position_ids_buffers_are_ignored(tmp_path):
    ids = torch.arange(512)[None]
    extra = {P + "video_encoder.bert.embeddings.position_ids": ids, P + "text_encoder.embeddings.position_ids": ids}
    plain = _load(*make_fairseq_checkpoint(tmp_path / "plain", seed=5))
    with_ids = _load(*make_fairseq_checkpoint(tmp_path / "ids", seed=5, extra_keys=extra))
    texts = ["<en> <ase> house", "House"]
    assert np.array_equal(plain.embed_texts(texts), with_ids.embed_texts(texts))


def _float_tensors(model):
    """The model's floating-point tensors, whatever object from_fairseq returns."""
    for obj in (model, getattr(model, "model", None), getattr(model, "module", None)):
        if isinstance(obj, torch.nn.Module):
            return [t for t in obj.state_dict().values() if t.is_floating_point()]
    pytest.fail("from_fairseq returned no torch module to inspect")


def test_fp16_weights_become_float32(tmp_path, poses_dir):
    model = _load(*make_fairseq_checkpoint(tmp_path))
    tensors = _float_tensors(model)
    assert tensors and all(t.dtype == torch.float32 for t in tensors)
    assert model.embed_texts(["house"]).dtype == np.float32
    assert model.embed_poses([str(poses_dir / "library.pose")]).dtype == np.float32


def test_the_import_command_writes_a_loadable_model_and_refuses_a_broken_checkpoint(tmp_path, capsys, caplog):
    from signclip.cli import import_checkpoint
    from signclip.model.factory import load

    ckpt, bert = make_fairseq_checkpoint(tmp_path)
    assert import_checkpoint([str(ckpt), "--bert", str(bert), "--output", str(tmp_path / "native")]) == 0
    assert f"wrote {tmp_path / 'native'}" in capsys.readouterr().out
    assert load(str(tmp_path / "native")).cfg.embedding_dim == _load(ckpt, bert).cfg.embedding_dim
    with caplog.at_level("WARNING"):  # the old spelling still works
        assert import_checkpoint([str(ckpt), "--bert", str(bert), "--out", str(tmp_path / "old")]) == 0
    assert (tmp_path / "old" / "config.json").is_file() and "--out is deprecated: use --output" in caplog.text
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    assert import_checkpoint([str(tmp_path / "broken.pt"), "--bert", str(bert), "--output", str(tmp_path / "b")]) == 2
    assert capsys.readouterr().err.startswith(f"error: {tmp_path / 'broken.pt'}")
    assert not (tmp_path / "b").exists()
    with pytest.raises(SystemExit) as usage:  # no output directory under either name
        import_checkpoint([str(ckpt), "--bert", str(bert)])
    assert usage.value.code == 2 and "--output" in capsys.readouterr().err


def test_import_checkpoint_writes_to_object_storage(tmp_path, s3_bucket, monkeypatch):
    from signclip.cli import import_checkpoint
    from signclip.model.factory import load

    monkeypatch.chdir(tmp_path)  # where a URL taken for a local path would land, as ./s3:/...
    ckpt, bert = make_fairseq_checkpoint(tmp_path / "release")
    assert import_checkpoint([str(ckpt), "--bert", str(bert), "--output", f"{s3_bucket}/models/e7"]) == 0
    assert not (tmp_path / "s3:").exists()
    reference = _load(ckpt, bert)
    model = load(f"{s3_bucket}/models/e7")
    for name, tensor in reference.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor.float()), name


def test_a_hand_only_checkpoint_needs_its_feature_set_named(tmp_path, poses_dir):
    # 63 features per frame fit right_hand and right_hand_3d: the weights cannot say which, the embeddings differ
    ckpt, bert = make_fairseq_checkpoint(tmp_path, feat_dim=63)
    with pytest.raises(CheckpointError, match=r"takes 63 features per frame, which fits right_hand and "
                                              r"right_hand_3d: say which the model was trained on \(--feature-set\)"):
        _load(ckpt, bert)
    plain = signclip.from_fairseq(ckpt, bert=bert, feature_set="right_hand")
    rotated = signclip.from_fairseq(ckpt, bert=bert, feature_set="right_hand_3d")
    assert (plain.cfg.feature_set, rotated.cfg.feature_set) == ("right_hand", "right_hand_3d")
    clip = [str(poses_dir / "sad-colin.pose")]  # a clip with its right hand seen (library.pose has none)
    assert not np.allclose(plain.embed_poses(clip), rotated.embed_poses(clip), atol=1e-4)
    with pytest.raises(CheckpointError, match=r"takes 63 features per frame, not the 609 of feature set "
                                              r"'reduced_face'; it fits right_hand, right_hand_3d"):
        signclip.from_fairseq(ckpt, bert=bert, feature_set="reduced_face")
    with pytest.raises(CheckpointError, match=r"unknown feature set 'left_hand'; known: \['full_body', 'islr_face'"):
        signclip.from_fairseq(ckpt, bert=bert, feature_set="left_hand")


def test_the_import_command_takes_the_feature_set(tmp_path, capsys):
    from signclip.cli import import_checkpoint
    from signclip.model.factory import load

    ckpt, bert = make_fairseq_checkpoint(tmp_path, feat_dim=63)
    assert import_checkpoint([str(ckpt), "--bert", str(bert), "--output", str(tmp_path / "m")]) == 2
    assert "--feature-set" in capsys.readouterr().err and not (tmp_path / "m").exists()
    assert import_checkpoint([str(ckpt), "--bert", str(bert), "--output", str(tmp_path / "m"),
                              "--feature-set", "right_hand"]) == 0
    assert load(str(tmp_path / "m")).cfg.feature_set == "right_hand"
