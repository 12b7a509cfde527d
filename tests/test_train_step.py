"""One optimisation step and its checkpoint, without Ray: a resumed stepper continues as the one it replaced."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import signclip
from signclip.training.step import (
    Stepper,
    TrainConfig,
    batch_tensors,
    load_train_state,
    loss_for,
    make_optimizer,
    save_checkpoint,
)

CPU = torch.device("cpu")
TEXTS = ["<en> <ase> house", "<en> <ase> sad", "<en> <ase> library", "<en> <ase> thank you"]


def _stepper(model: signclip.SignCLIP, cfg: TrainConfig) -> Stepper:
    return Stepper(model, loss_for(model, cfg, distributed=False), *make_optimizer(model, cfg), cfg, CPU)


def _batch(model: signclip.SignCLIP) -> tuple[torch.Tensor, ...]:
    rng = np.random.default_rng(0)
    clips = [rng.normal(size=(n, model.cfg.feature_dim)).astype(np.float32) for n in (12, 20, 7, 16)]
    return batch_tensors(model, clips, TEXTS, CPU)


@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_a_resumed_stepper_takes_the_step_the_original_would_have(tmp_path, precision):
    """Weights, Adam's moments, the schedule and (fp16) the loss scale all come back: a scale reset to its
    default after a restart would overflow again for steps, each skipped."""
    cfg = TrainConfig(preset="tiny", precision=precision, warmup_steps=4, lr=1e-3)
    model = signclip.create("tiny", seed=0)
    original = _stepper(model, cfg)
    tensors = _batch(model)
    original(tensors)
    if precision == "fp16":
        original.scaler.update(1024.0)  # as after overflows backed the scale off from the default 65536
    save_checkpoint(str(tmp_path), model, original, {"step": 1})

    resumed_model = signclip.load(tmp_path)
    resumed = _stepper(resumed_model, cfg)
    resumed.load_state_dict(load_train_state(str(tmp_path)))
    if precision == "fp16":
        assert resumed.scaler.get_scale() == 1024.0
    assert resumed.scheduler.get_last_lr() == original.scheduler.get_last_lr()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    losses = []
    for stepper in (original, resumed):
        torch.manual_seed(7)  # the same dropout masks in both
        losses.append(stepper(tensors))
    assert losses[0] == losses[1]
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items()), "the step was skipped"
    for (name, a), b in zip(model.state_dict().items(), resumed_model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_an_fp16_step_that_overflowed_is_not_counted_by_the_schedule():
    cfg = TrainConfig(preset="tiny", precision="fp16", warmup_steps=10, lr=1e-3)
    model = signclip.create("tiny", seed=0)
    stepper = _stepper(model, cfg)
    stepper.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 40)  # beyond fp16: gradients overflow
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stepper(_batch(model))
    assert stepper.scaler.get_scale() < 2.0 ** 40
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert stepper.scheduler.last_epoch == 0 and stepper.scheduler.get_last_lr() == [1e-4]
    stepper.scaler.update(1024.0)
    stepper(_batch(model))
    assert stepper.scheduler.last_epoch == 1 and stepper.scheduler.get_last_lr() == [2e-4]


def test_a_checkpoint_without_a_loss_scale_resumes_with_the_default(tmp_path):
    """Checkpoints written before the scale was saved, or by a run without fp16, resume an fp16 run."""
    cfg = TrainConfig(preset="tiny", precision="fp32", warmup_steps=4)
    model = signclip.create("tiny", seed=0)
    fp32 = _stepper(model, cfg)
    fp32(_batch(model))
    save_checkpoint(str(tmp_path), model, fp32, {"step": 1})
    state = load_train_state(str(tmp_path))
    assert state["scaler"] == {}  # a disabled scaler saves nothing
    fp16 = _stepper(model, TrainConfig(preset="tiny", precision="fp16", warmup_steps=4))
    fp16.load_state_dict({k: v for k, v in state.items() if k != "scaler"})
    fp16.load_state_dict(state)
    assert fp16.scaler.get_scale() == 65536.0
