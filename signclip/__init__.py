"""SignCLIP: one embedding space for text and sign-language pose sequences (no Ray at import).

    import signclip
    m = signclip.from_fairseq("checkpoint_best.pt", bert="dir/with/config.json+vocab.txt")
    m.save("models/e7.2"); m = signclip.load("models/e7.2")
    m.embed_poses(["clip.pose"])            # float32 [N, 768]
    m.embed_texts(["<en> <ase> house"])     # float32 [N, 768]

The names below are imported on first use (PEP 562), so ``import signclip.extraction`` in a
pose-extraction worker does not pay for importing torch (seconds and ~300 MB per process).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "CheckpointError": "signclip.checkpoint", "create": "signclip.checkpoint",
    "from_fairseq": "signclip.checkpoint", "load": "signclip.checkpoint",
    "PRESETS": "signclip.config", "ModelConfig": "signclip.config", "TowerConfig": "signclip.config",
    "preset": "signclip.config",
    "Embedder": "signclip.embedder",
    "FEATURE_SETS": "signclip.features", "PoseInputError": "signclip.features", "pose_features": "signclip.features",
    "PoseLayoutError": "signclip.holistic_layout",
    "SignCLIP": "signclip.model",
    "build_prompt": "signclip.prompts",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from signclip.checkpoint import CheckpointError, create, from_fairseq, load
    from signclip.config import PRESETS, ModelConfig, TowerConfig, preset
    from signclip.embedder import Embedder
    from signclip.features import FEATURE_SETS, PoseInputError, pose_features
    from signclip.holistic_layout import PoseLayoutError
    from signclip.model import SignCLIP
    from signclip.prompts import build_prompt


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'signclip' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
