"""Importing a released SignCLIP ``checkpoint_best.pt`` (fairseq) into the native model."""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
from pathlib import Path

import torch

from signclip.model.checkpoint import CheckpointError, key_list, load_state_strict
from signclip.model.config import ModelConfig, TowerConfig
from signclip.model.network import SignCLIP
from signclip.model.tokenizer import Tokenizer
from signclip.pose.feature_sets import FEATURE_SETS
from signclip.pose.feature_sets import feature_set as named_feature_set

log = logging.getLogger(__name__)

FAIRSEQ_PREFIX = "mmmodel."
# In released checkpoints but not used by SignCLIP's forward pass: dropped on import, by name.
_UNUSED = re.compile(r"^(video_encoder\.bert\.|text_encoder\.)(pooler\..*|embeddings\.position_ids)$")


def _read_fairseq(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path}: refused: unpickling it would need arbitrary code (only tensors and plain containers "
            f"are allowed; the file may be unsafe). Detail: {str(e).splitlines()[0]}") from e
    except Exception as e:  # noqa: BLE001 - torch raises many kinds on a file that is not a checkpoint
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: expected a fairseq checkpoint dict, found {type(ckpt).__name__}")
    state = ckpt.get("model", ckpt.get("state_dict"))
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: no 'model' (or 'state_dict') entry; top-level keys: {key_list(list(ckpt))}")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: entries that are not tensors: {key_list(bad)}")
    unprefixed = [k for k in state if not k.startswith(FAIRSEQ_PREFIX)]
    if unprefixed:
        raise CheckpointError(f"{path}: unexpected keys (not under '{FAIRSEQ_PREFIX}'): {key_list(unprefixed)}")
    return {k[len(FAIRSEQ_PREFIX):]: v for k, v in state.items() if not _UNUSED.match(k[len(FAIRSEQ_PREFIX):])}


def _tower_from_shapes(state: dict[str, torch.Tensor], prefix: str, heads: int, path: Path) -> TowerConfig:
    def shape(key: str) -> tuple[int, ...]:
        if prefix + key not in state:
            raise CheckpointError(f"{path}: missing keys: {prefix + key}")
        return tuple(state[prefix + key].shape)

    layers = {int(m.group(1)) for k in state if (m := re.match(re.escape(prefix) + r"encoder\.layer\.(\d+)\.", k))}
    vocab, hidden = shape("embeddings.word_embeddings.weight")
    return TowerConfig(hidden_size=hidden, num_layers=max(layers) + 1 if layers else 0, num_heads=heads,
                       intermediate_size=shape("encoder.layer.0.intermediate.dense.weight")[0],
                       vocab_size=vocab, max_position_embeddings=shape("embeddings.position_embeddings.weight")[0],
                       type_vocab_size=shape("embeddings.token_type_embeddings.weight")[0])


def from_fairseq(checkpoint: str | os.PathLike, bert: str | os.PathLike,
                 feature_set: str | None = None) -> SignCLIP:
    """Import a released SignCLIP ``checkpoint_best.pt``.

    ``bert`` is the directory of the BERT the model was built from (``config.json`` for the number of
    attention heads, ``vocab.txt`` for the tokenizer). Weights are float16 in the file, float32 here.
    ``feature_set``: the features the model was trained on; by default the one whose size its first layer
    takes, which is a ``CheckpointError`` when several have that size (``right_hand`` and ``right_hand_3d``,
    63): the checkpoint cannot tell them apart, and the wrong one gives wrong embeddings without an error.
    """
    path, bert_dir = Path(checkpoint), Path(bert)
    state = _read_fairseq(path)
    bert_config_file = bert_dir / "config.json"
    if not bert_config_file.is_file():
        raise CheckpointError(f"{bert_dir}: no config.json (the BERT config gives the number of attention heads)")
    heads = int(json.loads(bert_config_file.read_text())["num_attention_heads"])
    mlp = "video_encoder.videomlp.linear1.weight"
    if mlp not in state:
        raise CheckpointError(f"{path}: missing keys: {FAIRSEQ_PREFIX}{mlp}")
    feature_dim = state[mlp].shape[1]
    fitting = [name for name, fs in FEATURE_SETS.items() if fs.dim == feature_dim]
    if feature_set is not None:
        try:
            wanted = named_feature_set(feature_set)
        except ValueError as e:
            raise CheckpointError(str(e)) from None
        if wanted.dim != feature_dim:
            fits = f"; it fits {', '.join(fitting)}" if fitting else ""
            raise CheckpointError(f"{path}: {mlp} takes {feature_dim} features per frame, not the {wanted.dim} "
                                  f"of feature set {feature_set!r}{fits}")
    if not fitting:
        raise CheckpointError(f"{path}: {mlp} takes {feature_dim} features per frame; known feature sets: "
                              + ", ".join(f"{name} ({fs.dim})" for name, fs in FEATURE_SETS.items()))
    if feature_set is None and len(fitting) > 1:
        raise CheckpointError(f"{path}: {mlp} takes {feature_dim} features per frame, which fits "
                              f"{' and '.join(fitting)}: say which the model was trained on (--feature-set)")
    tokenizer = Tokenizer(bert_dir)
    cfg = ModelConfig(name=path.stem, feature_set=feature_set or fitting[0], similarity="dot",
                      video=_tower_from_shapes(state, "video_encoder.bert.", heads, path),
                      text=_tower_from_shapes(state, "text_encoder.", heads, path),
                      cls_token_id=tokenizer.cls_id, sep_token_id=tokenizer.sep_id, pad_token_id=tokenizer.pad_id)
    if tokenizer.vocab_size != cfg.text.vocab_size:
        raise CheckpointError(f"{bert_dir / 'vocab.txt'}: {tokenizer.vocab_size} word pieces, but the text tower "
                              f"of {path} has {cfg.text.vocab_size}: not the BERT this model was built from")
    model = SignCLIP(cfg, tokenizer)
    load_state_strict(model, state, str(path))
    log.info("imported %s: %s, %d+%d layers, hidden %d", path, cfg.feature_set, cfg.video.num_layers,
             cfg.text.num_layers, cfg.text.hidden_size)
    return model.eval()
