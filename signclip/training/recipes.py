"""The paper's training configurations by name: model preset, features, augmentation, batching, prompts.

    signclip train --recipe fingerclip --train train.parquet --val val.parquet --output runs/fingerclip

A recipe fills the defaults of ``signclip train`` / ``signclip evaluate``; explicit flags still win.
Our towers start from the bundled all-MiniLM-L6-v2 (offline); the paper's started from bert-base
(pass ``--bert DIR`` with a local copy to match it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from signclip.pose.augment import AFFINE2D, TEMPORAL, Augmentation


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    preset: str  # model preset (signclip.model.config.PRESETS)
    model: dict[str, Any] = field(default_factory=dict)  # overrides of the preset's ModelConfig
    augment: Augmentation = TEMPORAL
    unique_texts: bool = False  # no prompt twice in a batch
    prompt_template: str | None = None  # None: "<en> <ase> gloss"; else sentence_prompt's template
    batch_size: int = 32

    def train_defaults(self) -> dict[str, Any]:
        """``signclip train`` argument defaults (argparse destinations)."""
        a = self.augment
        return {"preset": self.preset, "feature_set": self.model.get("feature_set"),
                "video_layers": self.model.get("video_layers"), "temporal_std": a.temporal_std,
                "rotation_std": a.rotation_std, "shear_std": a.shear_std, "scale_std": a.scale_std,
                "noise_std": a.noise_std, "unique_texts": self.unique_texts,
                "prompt_template": self.prompt_template, "batch_size": self.batch_size}


RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("fingerclip", "FingerCLIP: fingerspelling from the dominant (right) hand, 2-D augmentation, "
           "batches without repeated letters (RWTH German fingerspelling)", preset="small",
           model={"feature_set": "right_hand", "video_layers": 6}, augment=AFFINE2D, unique_texts=True,
           prompt_template="Fingerspell the letter {gloss} in {language}.", batch_size=32),
    Recipe("fingerclip-3d", "FingerCLIP with 3-D hand normalisation (the paper's ablation)", preset="small",
           model={"feature_set": "right_hand_3d", "video_layers": 6}, augment=AFFINE2D, unique_texts=True,
           prompt_template="Fingerspell the letter {gloss} in {language}.", batch_size=32),
    Recipe("islr-v0", "isolated signs (Google's ASL Signs): body, hands and the nose/lips/eyes face points",
           preset="small", model={"feature_set": "islr_face", "video_layers": 6}, augment=Augmentation(0.0),
           prompt_template='Sign the sign "{gloss}" in {language}.', batch_size=128),
    Recipe("signclip-v1", "E7.2: multilingual Spreadthesign, reduced face, temporal augmentation, "
           "'<en> <ase> gloss' prompts", preset="e7.2", model={"feature_set": "reduced_face"},
           augment=TEMPORAL, batch_size=448),
)}


def recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; known: {sorted(RECIPES)}")
    return RECIPES[name]
