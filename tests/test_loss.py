"""The contrastive loss: hand-checked values, and 2 processes (gloo, DDP) == 1 process on the global batch."""

from __future__ import annotations

import math
import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from signclip.model.loss import ContrastiveLoss


def test_reference_loss_matches_hand_computation():
    v = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    t = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    # V T^T = [[1, 1], [0, 2]]; rows: CE([1,1],0) = log 2; CE([0,2],1) = log(1+e^-2)
    # T V^T = [[1, 0], [1, 2]]; CE([1,0],0) = log(1+e^-1); CE([1,2],1) = log(1+e^-1)
    expected = (math.log(2) + math.log(1 + math.exp(-2))) / 2 + math.log(1 + math.exp(-1))
    assert ContrastiveLoss("reference")(v, t).item() == pytest.approx(expected, rel=1e-6)


def test_clip_loss_is_scaled_mean():
    v = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    t = v.clone()
    # scaled logits 2*I: CE per row = log(1 + e^-2), both directions, averaged
    expected = math.log(1 + math.exp(-2))
    assert ContrastiveLoss("clip")(v, t, torch.tensor(2.0)).item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="logit scale"):
        ContrastiveLoss("clip")(v, t)
    with pytest.raises(ValueError, match="loss mode"):
        ContrastiveLoss("cosine")


class TwoTowers(nn.Module):
    """Like SignCLIP: a learnable scale only in "clip" mode (DDP needs every parameter used)."""

    def __init__(self, mode):
        super().__init__()
        torch.manual_seed(0)
        self.video = nn.Linear(6, 4)
        self.text = nn.Linear(5, 4)
        if mode == "clip":
            self.logit_scale = nn.Parameter(torch.tensor(2.0))

    def forward(self, x, y):
        scale = self.logit_scale.exp() if hasattr(self, "logit_scale") else None
        return self.video(x), self.text(y), scale


def _batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(8, 6, generator=g), torch.randn(8, 5, generator=g)


def _single(mode):
    model = TwoTowers(mode)
    x, y = _batch()
    loss = ContrastiveLoss(mode)(*model(x, y))
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()}


def _worker(rank, world, port, mode, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model = nn.parallel.DistributedDataParallel(TwoTowers(mode))
        x, y = _batch()
        shard = slice(rank * 4, rank * 4 + 4)
        loss = ContrastiveLoss(mode)(*model(x[shard], y[shard]))
        loss.backward()
        out[rank] = (loss.item(), {n.removeprefix("module."): p.grad.clone() for n, p in model.named_parameters()
                                   })
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["reference", "clip"])
def test_two_workers_equal_one_worker_on_global_batch(mode):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # a manager process started by fork (the default) copies this process's Ray client mid-flight, and Ray's
    # shutdown at the end of the session then hangs; spawned, and shut down here, it copies nothing
    with mp.get_context("spawn").Manager() as manager:
        shared = manager.dict()
        mp.spawn(_worker, args=(2, port, mode, shared), nprocs=2, join=True)
        out = dict(shared)
    loss, grads = _single(mode)
    assert len(grads) == (4 if mode == "reference" else 5)
    for rank in range(2):
        r_loss, r_grads = out[rank]
        assert set(r_grads) == set(grads)
        assert r_loss == pytest.approx(loss, rel=1e-6)
        for name, g in grads.items():
            np.testing.assert_allclose(r_grads[name].numpy(), g.numpy(), rtol=1e-5, atol=1e-6, err_msg=name)
