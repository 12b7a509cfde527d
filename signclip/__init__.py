"""SignCLIP: one embedding space for text and sign-language pose sequences (no Ray at import).

    import signclip
    m = signclip.from_fairseq("checkpoint_best.pt", bert="dir/with/config.json+vocab.txt")
    m.save("models/e7.2"); m = signclip.load("models/e7.2")
    m.embed_poses(["clip.pose"])            # float32 [N, 768]
    m.embed_texts(["<en> <ase> house"])     # float32 [N, 768]
"""

from signclip.checkpoint import CheckpointError, create, from_fairseq, load
from signclip.config import PRESETS, ModelConfig, TowerConfig, preset
from signclip.embedder import Embedder
from signclip.features import FEATURE_SETS, PoseInputError, pose_features
from signclip.holistic_layout import PoseLayoutError
from signclip.model import SignCLIP
from signclip.prompts import build_prompt

__all__ = ["CheckpointError", "Embedder", "FEATURE_SETS", "ModelConfig", "PRESETS", "PoseInputError",
           "PoseLayoutError", "SignCLIP", "TowerConfig", "build_prompt", "create", "from_fairseq", "load",
           "pose_features", "preset"]
