"""The Ray-free parts of training: configuration, optimiser and schedule, one step, validation, state.

``signclip/jobs/train.py`` wires these into Ray Train and Ray Data; tests drive them directly too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

import numpy as np
import torch
from torch import nn

from signclip.evaluation.metrics import unique_texts, video_to_text
from signclip.model.embedder import Embedder
from signclip.model.loss import ContrastiveLoss
from signclip.model.network import SignCLIP
from signclip.pose.augment import Augmentation
from signclip.pose.features import collate


@dataclass
class TrainConfig:
    """Training hyper-parameters; defaults are the reference's (E7.2) where it had one."""

    preset: str = "small"  # model preset for a new model (see signclip.model.config.PRESETS)
    init: str | None = None  # a native model directory to fine-tune instead of a new model
    feature_set: str | None = None  # override the preset's feature set (new models only)
    video_layers: int | None = None  # override the preset's video-tower depth (new models only)
    bert: str | None = None  # local BERT directory to start the towers from (default: the preset's)
    epochs: int = 25
    global_batch_size: int = 32  # across all workers; the reference used 448 on one GPU
    lr: float = 5e-5
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-8
    weight_decay: float = 0.0
    warmup_steps: int = 1000  # linear warm-up, then constant (the reference's schedule)
    clip_grad_norm: float = 2.0
    loss: Literal["auto", "reference", "clip"] = "auto"  # auto: reference for dot models, clip for cosine
    unique_texts: bool = False  # no prompt twice in a global batch (fingerspelling-style data)
    augment: Augmentation = field(default_factory=lambda: Augmentation(temporal_std=0.2))
    seed: int = 0
    checkpoint_every: int = 0  # also checkpoint every N steps (0: only at the end of each epoch)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16/fp16 on GPU, fp32 on CPU
    dropout: float | None = None  # override the towers' dropout (0 makes steps deterministic)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        d = dict(d)
        if isinstance(d.get("augment"), dict):
            d["augment"] = Augmentation(**d["augment"])
        if "betas" in d:
            d["betas"] = tuple(d["betas"])
        return cls(**d)


def loss_mode(loss: str, similarity: str) -> str:
    """The loss for a model of ``similarity``: ``auto`` picks the one it was made for. The reference loss (no
    temperature) on L2-normalised embeddings is refused: it collapses, and it leaves the model's logit scale
    without a gradient, which DDP rejects on more than one worker."""
    if loss == "auto":
        return "reference" if similarity == "dot" else "clip"
    if loss == "reference" and similarity == "cosine":
        raise ValueError("--loss reference on a model with cosine similarity: logits in [-1, 1] without a "
                         "temperature do not train (use --loss clip, or auto)")
    return loss


def loss_for(model: SignCLIP, cfg: TrainConfig, distributed: bool = True) -> ContrastiveLoss:
    return ContrastiveLoss(loss_mode(cfg.loss, model.cfg.similarity), distributed=distributed)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """Adam and a linear warm-up to ``lr`` over ``warmup_steps``, then constant."""
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=cfg.betas, eps=cfg.eps,
                                 weight_decay=cfg.weight_decay)
    warmup = max(1, cfg.warmup_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))
    return optimizer, scheduler


def autocast_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The mixed-precision dtype for this device, or None for full float32."""
    if cfg.precision == "fp32" or (cfg.precision == "auto" and device.type != "cuda"):
        return None
    if cfg.precision == "fp16":
        return torch.float16
    if cfg.precision == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def batch_tensors(model: SignCLIP, clips: Sequence[np.ndarray], texts: Sequence[str],
                  device: torch.device) -> tuple[torch.Tensor, ...]:
    """Padded frames + mask (clips longer than the model's limit keep their first frames) and token ids + mask."""
    frames, frame_mask = collate([c[: model.cfg.max_frames] for c in clips])
    ids, text_mask = model.tokenizer.batch(model.tokenizer.ids(list(texts)))
    return tuple(torch.from_numpy(a).to(device, non_blocking=True) for a in (frames, frame_mask, ids, text_mask))


class Stepper:
    """One optimisation step: forward through the (DDP-wrapped) model, loss, backward, clip, step."""

    def __init__(self, model: nn.Module, loss: ContrastiveLoss, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LambdaLR, cfg: TrainConfig, device: torch.device):
        self.model, self.loss, self.optimizer, self.scheduler, self.cfg = model, loss, optimizer, scheduler, cfg
        self.dtype = autocast_dtype(cfg, device)
        self.device = device
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype == torch.float16)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def __call__(self, tensors: Sequence[torch.Tensor]) -> float:
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            video, text, scale = self.model(*tensors)  # the wrapper's forward: DDP syncs gradients
        # outside autocast, which would run the logits' matmul in bf16 again (raw-dot logits near 100 then
        # move in steps of 0.5)
        loss = self.loss(video.float(), text.float(), scale.float())
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        if self.cfg.clip_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_grad_norm)
        scale = self.scaler.get_scale()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        # fp16: a step whose gradients overflowed was skipped (and the scale lowered); the schedule counts the
        # steps taken, so warm-up is not cut short by the first steps' overflows
        if self.scaler.get_scale() >= scale:
            self.scheduler.step()
        return float(loss.detach())

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs besides the weights: the optimiser, the schedule and fp16's loss scale."""
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        # empty from a run without fp16 (a disabled scaler saves nothing), absent from older checkpoints: a
        # resumed fp16 run then starts from the default scale, as a new one does
        if state.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])


def validate(model: SignCLIP, clips: Sequence[np.ndarray], texts: Sequence[str], cfg: TrainConfig,
             batch_size: int) -> dict[str, float]:
    """Validation loss (global-batch-sized chunks, in order) and video->text R@1/5/10 over unique prompts."""
    embedder = Embedder(model)
    video = torch.from_numpy(embedder.embed_features([c[: model.cfg.max_frames] for c in clips]))
    text = torch.from_numpy(embedder.embed_texts(list(texts)))
    loss_fn = loss_for(model, cfg, distributed=False)
    with torch.inference_mode():
        scale = model.scale().float().cpu()
        losses = [float(loss_fn(video[i:i + batch_size], text[i:i + batch_size], scale))
                  for i in range(0, len(clips), batch_size) if len(clips[i:i + batch_size]) > 1]
    unique, gold = unique_texts(texts)
    unique_emb = embedder.embed_texts(unique)
    report = video_to_text(video.numpy(), unique_emb, gold)
    return {"val_loss": float(np.mean(losses)) if losses else math.nan, "val_R@1": report["R@1"],
            "val_R@5": report["R@5"], "val_R@10": report["R@10"]}


STATE_FILE = "train_state.pt"


def save_checkpoint(directory: str, model: SignCLIP, stepper: Stepper, progress: dict[str, Any]) -> None:
    """A training checkpoint = a native model directory (``signclip.load`` opens it) + ``train_state.pt``."""
    model.save(directory)
    torch.save({**stepper.state_dict(), "progress": progress}, f"{directory}/{STATE_FILE}")


def load_train_state(directory: str) -> dict[str, Any]:
    """The stepper's state (:meth:`Stepper.state_dict`) and the progress of a checkpoint (plain tensors and
    containers only)."""
    return torch.load(f"{directory}/{STATE_FILE}", map_location="cpu", weights_only=True)
