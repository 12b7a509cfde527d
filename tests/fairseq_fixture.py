"""Tiny fairseq-style SignCLIP checkpoints for tests, in the released key layout (CHECKPOINT.md).

``make_fairseq_checkpoint`` writes ``checkpoint_best.pt`` (fp16 weights, every key prefixed ``mmmodel.``) and a
BERT folder (``config.json`` + a small CASED WordPiece ``vocab.txt``, as bert-base-cased is for E7.2).
``make_code_checkpoint`` writes a checkpoint whose pickle would run a shell command when unpickled unsafely.
"""

from __future__ import annotations

import json
import os
import string
from pathlib import Path

import torch

PREFIX = "mmmodel."
FEAT_DIM = 609

# Special tokens deliberately NOT at bert-base-cased's ids (CLS 101, SEP 102): an importer must read them.
_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_PUNCT = list("<>.,!?'\"-()")
_WORDS = ["en", "ase", "gsg", "bfi", "fsl", "house", "House", "sad", "Sad", "library", "Library", "police",
          "random", "text", "the", "The", "letter", "in", "German", "Sign", "Language", "Fingerspell"]
_LETTERS = list(string.ascii_lowercase) + list(string.ascii_uppercase)


def vocab_tokens() -> list[str]:
    """The fixture's cased WordPiece vocabulary, in id order (no duplicates)."""
    pieces = [f"##{c}" for c in _LETTERS] + ["##s", "##ing", "##ed"]
    tokens = _SPECIAL + _PUNCT + _WORDS + _LETTERS + pieces
    seen: list[str] = []
    for t in tokens:
        if t not in seen:
            seen.append(t)
    return seen


def write_bert_dir(bert_dir: Path, *, hidden: int, layers: int, heads: int, intermediate: int) -> Path:
    bert_dir.mkdir(parents=True, exist_ok=True)
    vocab = vocab_tokens()
    (bert_dir / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    config = {
        "architectures": ["BertModel"], "model_type": "bert",
        "hidden_size": hidden, "num_attention_heads": heads, "intermediate_size": intermediate,
        "num_hidden_layers": layers, "vocab_size": len(vocab), "max_position_embeddings": 512,
        "type_vocab_size": 2, "layer_norm_eps": 1e-12, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1, "pad_token_id": 0,
    }
    (bert_dir / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return bert_dir


def _bert_keys(prefix: str, *, hidden: int, layers: int, intermediate: int, vocab: int) -> dict[str, tuple]:
    """Shapes of a plain HF BertModel state dict (embeddings, encoder layers, pooler), keys under ``prefix``."""
    h, i = hidden, intermediate
    shapes = {
        "embeddings.word_embeddings.weight": (vocab, h),
        "embeddings.position_embeddings.weight": (512, h),
        "embeddings.token_type_embeddings.weight": (2, h),
        "embeddings.LayerNorm.weight": (h,), "embeddings.LayerNorm.bias": (h,),
    }
    for n in range(layers):
        layer = f"encoder.layer.{n}."
        for name in ("query", "key", "value"):
            shapes[f"{layer}attention.self.{name}.weight"] = (h, h)
            shapes[f"{layer}attention.self.{name}.bias"] = (h,)
        shapes[f"{layer}attention.output.dense.weight"] = (h, h)
        shapes[f"{layer}attention.output.dense.bias"] = (h,)
        shapes[f"{layer}attention.output.LayerNorm.weight"] = (h,)
        shapes[f"{layer}attention.output.LayerNorm.bias"] = (h,)
        shapes[f"{layer}intermediate.dense.weight"] = (i, h)
        shapes[f"{layer}intermediate.dense.bias"] = (i,)
        shapes[f"{layer}output.dense.weight"] = (h, i)
        shapes[f"{layer}output.dense.bias"] = (h,)
        shapes[f"{layer}output.LayerNorm.weight"] = (h,)
        shapes[f"{layer}output.LayerNorm.bias"] = (h,)
    shapes["pooler.dense.weight"] = (h, h)
    shapes["pooler.dense.bias"] = (h,)
    return {prefix + k: v for k, v in shapes.items()}


def key_shapes(*, hidden: int, layers_video: int, layers_text: int, intermediate: int, vocab: int,
               feat_dim: int = FEAT_DIM) -> dict[str, tuple]:
    """Every key of the released layout (without ``mmmodel.``) -> shape."""
    h = hidden
    shapes = {
        "video_encoder.videomlp.linear1.weight": (h, feat_dim), "video_encoder.videomlp.linear1.bias": (h,),
        "video_encoder.videomlp.LayerNorm.weight": (h,), "video_encoder.videomlp.LayerNorm.bias": (h,),
        "video_encoder.videomlp.linear2.weight": (h, h), "video_encoder.videomlp.linear2.bias": (h,),
    }
    shapes |= _bert_keys("video_encoder.bert.", hidden=h, layers=layers_video, intermediate=intermediate, vocab=vocab)
    shapes |= _bert_keys("text_encoder.", hidden=h, layers=layers_text, intermediate=intermediate, vocab=vocab)
    return shapes


def _random(shape: tuple, key: str, gen: torch.Generator, scale: float) -> torch.Tensor:
    t = torch.randn(shape, generator=gen) * scale
    if key.endswith("LayerNorm.weight"):
        t = t + 1.0
    return t.to(torch.float16)


def make_fairseq_checkpoint(directory, *, hidden: int = 32, layers_video: int = 2, layers_text: int = 2,
                            heads: int = 4, intermediate: int = 64, vocab: int | None = None,
                            feat_dim: int = FEAT_DIM, seed: int = 0, extra_keys: dict | None = None,
                            drop_keys=None, bad_shapes: dict | None = None,
                            model_key: str = "model", scale: float = 0.02) -> tuple[Path, Path]:
    """Write ``checkpoint_best.pt`` and a BERT folder under ``directory``; return (checkpoint path, bert dir).

    Keys in ``extra_keys`` / ``drop_keys`` / ``bad_shapes`` are full checkpoint keys (with ``mmmodel.``).
    ``extra_keys`` maps key -> tensor, ``bad_shapes`` key -> shape to use instead of the right one.
    ``scale`` is the weights' standard deviation (LayerNorm weights are 1 + that noise); BERT's 0.02 keeps
    every activation near 0, where GELU variants and LayerNorm epsilons hardly differ: fidelity tests use more.
    The BERT config describes the TEXT tower (as a fairseq run's bert_name does).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    bert_dir = write_bert_dir(directory / "bert", hidden=hidden, layers=layers_text, heads=heads,
                              intermediate=intermediate)
    vocab = len(vocab_tokens()) if vocab is None else vocab
    shapes = {PREFIX + k: v for k, v in key_shapes(hidden=hidden, layers_video=layers_video,
                                                     layers_text=layers_text, intermediate=intermediate,
                                                     vocab=vocab, feat_dim=feat_dim).items()}
    shapes |= {k: tuple(v) for k, v in (bad_shapes or {}).items()}
    gen = torch.Generator().manual_seed(seed)
    state = {k: _random(shape, k, gen, scale) for k, shape in shapes.items()}
    for k in drop_keys or ():
        del state[k]
    state |= dict(extra_keys or {})
    ckpt = {"args": None, "cfg": {}, model_key: state, "optimizer_history": [], "extra_state": {}}
    path = directory / "checkpoint_best.pt"
    torch.save(ckpt, path)
    return path, bert_dir


class _RunsCode:
    """Unpickling this calls ``os.system(command)``: what an unsafe ``torch.load`` would execute."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def make_code_checkpoint(path, marker) -> Path:
    """A checkpoint whose pickle, if loaded unsafely, writes ``marker`` (a file that must never appear)."""
    path = Path(path)
    state = {PREFIX + "video_encoder.videomlp.linear1.bias": torch.zeros(4, dtype=torch.float16)}
    ckpt = {"args": None, "cfg": {}, "model": state, "optimizer_history": [],
            "extra_state": {"payload": _RunsCode(f"echo pwned > '{marker}'")}}
    torch.save(ckpt, path)
    return path
