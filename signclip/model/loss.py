"""Symmetric InfoNCE over the whole global batch.

Each worker gathers every worker's embeddings WITH gradients and computes the loss of the global
batch; the all-gather's backward sums the gradients that reach a worker's own rows from every worker
(world_size x the single-process gradient), and DDP's averaging divides that back: parameter gradients
equal those of one process on the concatenated batch.

Modes:
- ``reference``: ``CE(V T^T) + CE(T V^T)`` summed, raw dot products, temperature 1 (SignCLIP's loss);
- ``clip``: the mean of the two, similarities multiplied by the model's learnable scale (open_clip).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

LossMode = Literal["reference", "clip"]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every worker in rank order, keeping the autograd graph."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)


class ContrastiveLoss(nn.Module):
    def __init__(self, mode: LossMode = "reference", distributed: bool = True):
        super().__init__()
        if mode not in ("reference", "clip"):
            raise ValueError(f"loss mode {mode!r}: expected 'reference' or 'clip'")
        self.mode = mode
        self.distributed = distributed  # False: this worker's batch only (e.g. validation on one rank)

    def forward(self, video: torch.Tensor, text: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        """``video``, ``text``: this worker's [B, E] embeddings, row i of each a positive pair."""
        if self.distributed:
            video, text = gather_with_grad(video), gather_with_grad(text)
        logits = video @ text.T
        if self.mode == "clip":
            if scale is None:
                raise ValueError("clip loss needs the model's logit scale")
            logits = scale * logits
        targets = torch.arange(logits.shape[0], device=logits.device)
        total = F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)
        return total if self.mode == "reference" else total / 2
