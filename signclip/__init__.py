"""SignCLIP: one embedding space for text and sign-language pose sequences (no Ray, no MediaPipe at import).

    import signclip
    m = signclip.from_fairseq("checkpoint_best.pt", bert="dir/with/config.json+vocab.txt")
    m.save("models/e7.2"); m = signclip.load("models/e7.2")      # or signclip.load("s3://bucket/e7.2")
    m.embed_poses(["clip.pose"])            # float32 [N, 768]
    m.embed_texts(["<en> <ase> house"])     # float32 [N, 768]

The package follows the data (video -> pose -> features -> model -> embeddings -> metrics); each layer
imports only the layers above it in this list (``tests/test_layout.py`` checks it):

    io/          storage (local and s3:// alike), manifests, item statuses, inputs, model cache, embedding store
    pose/        .pose reading, the Holistic layout as data, feature sets, features, augmentation, variants
    model/       config, BERT towers, tokenizer, prompts, loss, checkpoints, the Embedder
    extraction/  video -> .pose with MediaPipe Holistic (the only place MediaPipe runs)
    datasets/    published dataset layouts -> manifests
    embedding/   the bulk-embedding job's items, stages and resource plan
    evaluation/  retrieval / recognition metrics, reports, plots
    search/      dictionary search over embedded corpora
    training/    training step, data, pairs, batching, recipes
    api/         the HTTP service's app (FastAPI), without Ray
    service/     that app on Ray Serve: the gateway and model deployments
    jobs/        one Ray entrypoint per job (``python -m signclip.jobs.<name>`` or ``signclip <name>``)

The names below are imported on first use (PEP 562), so ``import signclip`` costs nothing and
``signclip.load(dir).embed_texts(...)`` imports neither Ray nor MediaPipe.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "CheckpointError": "signclip.model.checkpoint",
    "create": "signclip.model.factory", "load": "signclip.model.factory",
    "from_fairseq": "signclip.model.fairseq",
    "PRESETS": "signclip.model.config", "ModelConfig": "signclip.model.config",
    "TowerConfig": "signclip.model.config", "preset": "signclip.model.config",
    "Embedder": "signclip.model.embedder",
    "SignCLIP": "signclip.model.network",
    "build_prompt": "signclip.model.prompts",
    "FEATURE_SETS": "signclip.pose.feature_sets",
    "PoseInputError": "signclip.pose.reader",
    "pose_features": "signclip.pose.features",
    "PoseLayoutError": "signclip.pose.layout",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from signclip.model.checkpoint import CheckpointError
    from signclip.model.config import PRESETS, ModelConfig, TowerConfig, preset
    from signclip.model.embedder import Embedder
    from signclip.model.factory import create, load
    from signclip.model.fairseq import from_fairseq
    from signclip.model.network import SignCLIP
    from signclip.model.prompts import build_prompt
    from signclip.pose.feature_sets import FEATURE_SETS
    from signclip.pose.features import pose_features
    from signclip.pose.layout import PoseLayoutError
    from signclip.pose.reader import PoseInputError


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'signclip' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
