"""The native model format: a directory with ``model.safetensors`` (float32), ``config.json`` (``ModelConfig``)
and the tokenizer files, local or at any fsspec URL. Loading is strict: every missing or unexpected tensor is
reported by name.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from signclip.io import storage
from signclip.model.config import ModelConfig

if TYPE_CHECKING:
    import torch

    from signclip.model.network import SignCLIP

FORMAT = "signclip-native-v1"
WEIGHTS = "model.safetensors"
CONFIG = "config.json"


class CheckpointError(ValueError):
    """A model file that cannot be loaded; the message names the file and the offending keys."""


def key_list(keys: list[str], limit: int = 8) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:limit]) + (f" (and {len(keys) - limit} more)" if len(keys) > limit else "")


def load_state_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str,
                      assign: bool = False) -> None:
    """Load ``state`` into ``model`` or raise ``CheckpointError`` naming every mismatch.

    ``assign``: the tensors of ``state`` become the parameters (for a model built without initialising them).
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})" for k, v in expected.items()
             if k in state and tuple(state[k].shape) != tuple(v.shape)]
    problems = []
    if missing:
        problems.append(f"missing keys: {key_list(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {key_list(unexpected)}")
    if wrong:
        problems.append(f"wrong shapes: {key_list(wrong)}")
    if problems:
        raise CheckpointError(f"{source}: " + "; ".join(problems))
    import torch

    model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()}, strict=True, assign=assign)


def read_config(location: str | os.PathLike) -> ModelConfig:
    """The ``ModelConfig`` of a native model (local directory or URL), read without touching its weights.

    Raises ``CheckpointError`` naming the location when it holds no native model.
    """
    where = os.fspath(location)
    config_file = storage.join(where, CONFIG)
    try:
        meta: Any = json.loads(storage.read_bytes(config_file))
    except FileNotFoundError:
        raise CheckpointError(f"{where}: not a SignCLIP model directory (no {CONFIG}); import released fairseq "
                              "checkpoints with `signclip import-checkpoint`") from None
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{config_file}: unreadable ({type(e).__name__}: {e})") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"{config_file}: format {found!r}, expected {FORMAT!r}")
    try:
        return ModelConfig.from_dict(meta["model"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{config_file}: not a usable model config ({type(e).__name__}: {e})") from e


def save(model: "SignCLIP", directory: str | os.PathLike) -> None:
    """Write ``model`` in the native format to ``directory`` (local, created if absent, or an fsspec URL)."""
    if model.tokenizer is None:
        raise ValueError("cannot save a model without a tokenizer")
    if storage.is_remote(str(directory)):
        with tempfile.TemporaryDirectory() as tmp:
            _write_files(model, Path(tmp))
            storage.put_dir(tmp, str(directory))
    else:
        _save_local(model, Path(directory))


def _save_local(model: "SignCLIP", target: Path) -> None:
    """Written into a staging folder inside ``target``, then moved in file by file: a reader, or a crash, in
    the middle of a save (training rewrites ``best/`` each time validation improves) meets each file whole,
    the old one or the new one, never part of one. The weights move last, after the config and vocabulary
    they go with. Staged inside, not beside: ``target`` may be a mount point or sit in a read-only folder,
    and a rename only works within one file system."""
    target.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".saving-", dir=target))
    try:
        _write_files(model, staging)
        for name in sorted(os.listdir(staging), key=lambda n: n == WEIGHTS):
            os.replace(staging / name, target / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_files(model: "SignCLIP", target: Path) -> None:
    import torch
    from safetensors.torch import save_file

    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(target / WEIGHTS), metadata={"format": FORMAT})
    (target / CONFIG).write_text(json.dumps({"format": FORMAT, "model": model.cfg.to_dict()}, indent=2))
    model.tokenizer.save(target)
