"""Distributed contrastive training on Ray Train, with Ray Data feeding featurised, augmented poses.

    .venv/bin/python -m signclip.jobs.train --train train.parquet --val val.parquet --output runs/small \\
        --preset small --epochs 5 --batch-size 32 --workers 2 --cpus-per-worker 0.5

Every worker computes the same per-epoch plan of global batches (``signclip.training.batching``), takes its slice
of each, and streams it through a Ray Data featurisation stage (CPU tasks anywhere in the cluster).
The loss gathers embeddings from all workers with gradients. Checkpoints (native model + optimiser
state) go through ``ray.train.report``; rerunning the same command continues from the latest one, and
``--max-failures`` restarts lost workers from it. The run directory holds the checkpoints, ``best/``
(lowest validation loss), ``metrics.csv``, ``metrics.json``, ``curves.png`` and ``rejected.csv``.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import logging
import os
import sys
import tempfile
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from signclip.io import storage
from signclip.jobs import contract
from signclip.pose.augment import Augmentation
from signclip.training.batching import plan_epoch
from signclip.training.data import decode_frames, featurize_rows, row_blocks
from signclip.training.pairs import read_pairs
from signclip.training.recipes import RECIPES, recipe
from signclip.training.step import TrainConfig, loss_mode

if TYPE_CHECKING:
    from signclip.model.config import ModelConfig
    from signclip.model.network import SignCLIP

log = logging.getLogger("signclip.jobs.train")

# Clips one featurisation task takes at least: a task's start costs about as much as featurising dozens of clips
# (more where Ray ends idle workers and a task must start a new one), so small batches share a task.
TASK_ROWS = 64
CHECK_IN_DRIVER_ROWS = 256  # manifests this small are checked in the driver: faster than starting tasks


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="signclip train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", required=True, help="training manifest (Parquet/CSV, local or s3://)")
    p.add_argument("--val", required=True, help="validation manifest")
    contract.add_output(p, help="run directory (local or s3://); rerun to resume", old="--out")
    p.add_argument("--recipe", choices=sorted(RECIPES), help="one of the paper's configurations: sets the "
                   "defaults of the options below (explicit options still win)")
    model = p.add_argument_group("model")
    model.add_argument("--preset", default="small", help="preset of a new model (default: small)")
    model.add_argument("--init", help="a native model to fine-tune: a directory or URL (e.g. an imported SignCLIP)")
    model.add_argument("--bert", help="a BERT directory to start the towers from, local or a URL (on a cluster a URL: "
                       "each worker fetches it; default: the preset's)")
    model.add_argument("--feature-set", help="override the preset's feature set")
    model.add_argument("--video-layers", type=contract.positive_int, help="override the preset's video-tower depth")
    model.add_argument("--prompt-template", help='build prompts from gloss columns with a sentence, e.g. '
                       '\'Sign the sign "{gloss}" in {language}.\' (default: "<en> <ase> gloss")')
    model.add_argument("--dropout", type=float, help="override the towers' dropout")
    opt = p.add_argument_group("optimisation (defaults: the reference's)")
    opt.add_argument("--epochs", type=contract.positive_int, default=25)
    opt.add_argument("--batch-size", type=contract.positive_int, default=32, help="global batch size, over all workers")
    opt.add_argument("--lr", type=float, default=5e-5)
    opt.add_argument("--warmup-steps", type=contract.count, default=1000)
    opt.add_argument("--clip-grad-norm", type=float, default=2.0)
    opt.add_argument("--weight-decay", type=float, default=0.0)
    opt.add_argument("--loss", choices=["auto", "reference", "clip"], default="auto")
    opt.add_argument("--unique-texts", action="store_true", help="no prompt twice in a global batch")
    opt.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto")
    opt.add_argument("--seed", type=int, default=0)
    aug = p.add_argument_group("augmentation")
    aug.add_argument("--temporal-std", type=float, default=0.2, help="speed change (E7.2: 0.2; 0: off)")
    aug.add_argument("--rotation-std", type=float, default=0.0)
    aug.add_argument("--shear-std", type=float, default=0.0)
    aug.add_argument("--scale-std", type=float, default=0.0)
    aug.add_argument("--noise-std", type=float, default=0.0)
    ray_ = p.add_argument_group("Ray")
    ray_.add_argument("--workers", type=contract.positive_int, default=1)
    ray_.add_argument("--gpu", action="store_true", help="one GPU per worker (nccl); CPU workers use gloo")
    ray_.add_argument("--cpus-per-worker", type=contract.positive_number, default=1.0)
    ray_.add_argument("--data-cpus", type=contract.positive_number, default=0.25, help="CPUs per featurisation task")
    ray_.add_argument("--checkpoint-every", type=contract.count, default=0, help="also checkpoint every N steps")
    ray_.add_argument("--keep-checkpoints", type=contract.positive_int, default=2)
    ray_.add_argument("--max-failures", type=contract.count, default=3, help="worker-group restarts before giving up")
    contract.add_address(ray_, help="Ray address (default: a local Ray, or the one already running)")
    args = p.parse_args(argv)
    if args.recipe:
        p.set_defaults(**recipe(args.recipe).train_defaults())
        args = p.parse_args(argv)
    contract.check_output(p, args)
    return args


def train_config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        preset=args.preset, init=args.init, feature_set=args.feature_set, video_layers=args.video_layers,
        bert=args.bert, epochs=args.epochs,
        global_batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
        warmup_steps=args.warmup_steps, clip_grad_norm=args.clip_grad_norm, loss=args.loss,
        unique_texts=args.unique_texts, seed=args.seed, checkpoint_every=args.checkpoint_every,
        precision=args.precision, dropout=args.dropout,
        augment=Augmentation(temporal_std=args.temporal_std, rotation_std=args.rotation_std,
                             shear_std=args.shear_std, scale_std=args.scale_std, noise_std=args.noise_std))


# -- inside each training worker ------------------------------------------------------------------------
def new_model(cfg: TrainConfig) -> SignCLIP:
    """The model a run starts from: --init, else the preset (with --feature-set, --video-layers), --dropout applied."""
    import signclip

    if cfg.init:
        model = signclip.load(cfg.init)
    else:
        model_cfg = signclip.preset(cfg.preset, **({"feature_set": cfg.feature_set} if cfg.feature_set else {}))
        if cfg.video_layers:
            model_cfg.video.num_layers = cfg.video_layers
        model = signclip.create(model_cfg, bert=cfg.bert, seed=cfg.seed)
    return with_dropout(model, cfg.dropout)


def resumed_model(cfg: TrainConfig, checkpoint_dir: str) -> SignCLIP:
    """The model of a training checkpoint, with this run's --dropout (a model's saved config keeps its own)."""
    import signclip

    return with_dropout(signclip.load(checkpoint_dir), cfg.dropout)


def with_dropout(model: SignCLIP, p: float | None) -> SignCLIP:
    """``model`` with every dropout (attention and ``nn.Dropout``) at ``p``; unchanged for None."""
    if p is not None:
        for module in model.modules():
            if hasattr(module, "dropout_p"):
                module.dropout_p = p
            if module.__class__.__name__ == "Dropout":
                module.p = p
    return model


def _write_json_lines(path: str, rows: list[dict[str, Any]]) -> None:
    storage.write_bytes_atomic(path, "".join(json.dumps(r) + "\n" for r in rows).encode())


def _read_json_lines(path: str) -> list[dict[str, Any]]:
    if not storage.exists(path):
        return []
    return [json.loads(line) for line in storage.read_bytes(path).decode().splitlines() if line.strip()]


def train_loop(config: dict[str, Any]) -> None:
    """The per-worker training function (Ray Train calls it on every worker)."""
    import ray
    import ray.train
    import ray.train.torch
    import torch

    from signclip.training.batching import shard
    from signclip.training.step import (
        Stepper,
        batch_tensors,
        load_train_state,
        loss_for,
        make_optimizer,
        save_checkpoint,
        validate,
    )

    cfg = TrainConfig.from_dict(config["train"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    torch.set_num_threads(max(1, int(config["cpus_per_worker"])))
    train_pairs: pd.DataFrame = ray.get(config["train_pairs"])
    val_pairs: pd.DataFrame = ray.get(config["val_pairs"])
    run_dir = config["run_dir"]

    progress = {"epoch": 0, "batch_in_epoch": 0, "step": 0, "best_val_loss": float("inf")}
    checkpoint = ray.train.get_checkpoint()
    state = None
    if checkpoint:
        with checkpoint.as_directory() as d:
            model = resumed_model(cfg, d)
            state = load_train_state(d)
        progress = state["progress"]
        log.info("rank %d: resuming at epoch %d, batch %d (step %d)", rank, progress["epoch"],
                 progress["batch_in_epoch"], progress["step"])
    else:
        model = new_model(cfg)
    # dropout's random stream: this run's seed, this worker, and the step it starts (or resumes) at
    torch.manual_seed(int(np.random.SeedSequence([cfg.seed, rank, progress["step"]]).generate_state(1)[0]))
    model.to(device)
    ddp = ray.train.torch.prepare_model(model)  # DDP on >1 workers: call ddp(...), never its towers
    optimizer, scheduler = make_optimizer(ddp, cfg)
    step = Stepper(ddp, loss_for(model, cfg), optimizer, scheduler, cfg, device)
    if state:
        step.load_state_dict(state)

    local_batch = cfg.global_batch_size // world
    texts = train_pairs["text"].tolist()
    val_clips = decode_frames(ray.get(config["val_features"]), model.cfg.feature_dim) if rank == 0 else []
    history = _read_json_lines(storage.join(run_dir, "metrics.jsonl")) if rank == 0 else []
    # rows logged after the checkpoint we resume from belong to a run that died before persisting it
    history = [h for h in history if h["step"] <= progress["step"]]
    data_context = ray.data.DataContext.get_current()
    data_context.execution_options.preserve_order = True  # batch i of the stream = batch i of the plan
    data_context.enable_progress_bars = False

    def report(metrics: dict[str, Any], with_checkpoint: bool) -> None:
        if rank == 0:
            history.append(metrics)
            _write_json_lines(storage.join(run_dir, "metrics.jsonl"), history)
        if not with_checkpoint:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory() as tmp:
            if rank == 0:
                save_checkpoint(tmp, model, step, dict(progress))
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp) if rank == 0 else None)

    for epoch in range(progress["epoch"], cfg.epochs):
        plan = plan_epoch(texts, cfg.global_batch_size, cfg.seed, epoch, cfg.unique_texts)
        start = progress["batch_in_epoch"] if epoch == progress["epoch"] else 0
        mine = np.concatenate([shard(b, rank, world) for b in plan[start:]]) if plan[start:] else np.array([], int)
        rows = train_pairs.iloc[mine][["pose", "text"]].assign(row=mine).reset_index(drop=True)
        per_task = max(local_batch, TASK_ROWS // local_batch * local_batch)  # whole batches per task
        stream = ray.data.from_blocks(row_blocks(rows, per_task)).map_batches(
            featurize_rows, batch_size=per_task, num_cpus=config["data_cpus"],
            fn_kwargs={"feature_set": model.cfg.feature_set, "augment": dataclasses.asdict(cfg.augment),
                       "seed": cfg.seed, "epoch": epoch})
        losses, started = [], time.perf_counter()
        for i, batch in enumerate(stream.iter_batches(batch_size=local_batch, batch_format="numpy",
                                                      prefetch_batches=4)):
            bad = [e for e in batch["error"] if e]
            if bad:  # a file changed since the input check: nothing sensible to train on
                raise RuntimeError(f"featurising a training batch failed: {bad[0]}")
            clips = decode_frames(batch, model.cfg.feature_dim)
            losses.append(step(batch_tensors(model, clips, batch["text"], device)))
            progress.update(step=progress["step"] + 1, batch_in_epoch=start + i + 1)
            last_of_epoch = progress["batch_in_epoch"] == len(plan)  # the epoch's checkpoint follows
            if cfg.checkpoint_every and progress["step"] % cfg.checkpoint_every == 0 and not last_of_epoch:
                report({"step": progress["step"], "epoch": epoch, "train_loss": losses[-1],
                        "lr": scheduler.get_last_lr()[0]}, with_checkpoint=True)
        progress.update(epoch=epoch + 1, batch_in_epoch=0)
        metrics: dict[str, Any] = {"step": progress["step"], "epoch": epoch + 1,
                                   "train_loss": float(np.mean(losses)) if losses else float("nan"),
                                   "lr": scheduler.get_last_lr()[0],
                                   "samples_per_s": len(losses) * cfg.global_batch_size /
                                   max(time.perf_counter() - started, 1e-9)}
        if rank == 0:
            metrics.update(validate(model, val_clips, val_pairs["text"].tolist(), cfg, cfg.global_batch_size))
            if metrics["val_loss"] < progress["best_val_loss"]:
                progress["best_val_loss"] = metrics["val_loss"]
                model.save(storage.join(run_dir, "best"))
            log.info("epoch %d: %s", epoch + 1, {k: round(v, 4) for k, v in metrics.items()})
        report(metrics, with_checkpoint=True)


# -- on the driver ---------------------------------------------------------------------------------------
def check_inputs(pairs: pd.DataFrame, feature_set: str, data_cpus: float,
                 keep_features: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Featurise every row once (no augmentation): the usable rows (with their features, unless
    ``keep_features`` is false: a training corpus's features would not fit in the driver), and the rejected ones."""
    import ray.data

    rows = pairs[["pose", "text"]].assign(row=np.arange(len(pairs)))
    options = {"feature_set": feature_set, "augment": None, "seed": 0, "epoch": 0}
    if len(rows) <= CHECK_IN_DRIVER_ROWS:
        out = pd.DataFrame(featurize_rows({c: rows[c].to_numpy() for c in rows}, **options))
    else:
        featurized = ray.data.from_blocks(row_blocks(rows, TASK_ROWS)).map_batches(
            featurize_rows, batch_size=TASK_ROWS, num_cpus=data_cpus, fn_kwargs=options)
        out = (featurized if keep_features else featurized.drop_columns(["frames"])).to_pandas()
    out = out.sort_values("row").reset_index(drop=True)
    ok = out["error"] == ""
    rejected = pairs.loc[~ok.values, ["pose", "text"]].assign(error=out.loc[~ok, "error"].values)
    return out[ok].reset_index(drop=True), rejected


def _starting_config(cfg: TrainConfig) -> ModelConfig:
    """The config of the model the run starts from (--init's, else the preset's), as far as the driver needs it."""
    import signclip
    from signclip.model.checkpoint import read_config

    return read_config(cfg.init) if cfg.init else signclip.preset(cfg.preset)


def write_curves(history: list[dict[str, Any]], run_dir: str) -> None:
    """``metrics.csv``, ``metrics.json`` and ``curves.png`` in the run directory."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = pd.DataFrame(history)
    storage.write_bytes_atomic(storage.join(run_dir, "metrics.csv"), df.to_csv(index=False).encode())
    storage.write_bytes_atomic(storage.join(run_dir, "metrics.json"), df.to_json(orient="records", indent=1).encode())
    epochs = df.dropna(subset=["val_loss"]) if "val_loss" in df else df.iloc[0:0]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(df["step"], df["train_loss"], ".-", label="train loss")
    if len(epochs):
        ax1.plot(epochs["step"], epochs["val_loss"], "o-", label="validation loss")
        ax2.plot(epochs["epoch"], epochs["val_R@1"], "o-", label="video->text R@1")
        ax2.plot(epochs["epoch"], epochs["val_R@5"], "s--", label="video->text R@5")
    ax1.set_xlabel("step"), ax1.set_title("loss"), ax1.legend()
    ax2.set_xlabel("epoch"), ax2.set_ylim(0, 1.05), ax2.set_title("validation retrieval"), ax2.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    storage.write_bytes_atomic(storage.join(run_dir, "curves.png"), buffer.getvalue())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    cfg = train_config(args)
    try:
        starting = _starting_config(cfg)
        loss_mode(cfg.loss, starting.similarity)
        train_pairs = read_pairs(args.train, prompt_template=args.prompt_template)
        val_pairs = read_pairs(args.val, prompt_template=args.prompt_template)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not ray.is_initialized():
        ray.init(address=args.address, configure_logging=False)
    cpus = ray.cluster_resources().get("CPU", 0)
    needed = args.workers * args.cpus_per_worker + args.data_cpus
    if not args.address and needed > cpus:
        print(f"error: {args.workers} workers x {args.cpus_per_worker} CPUs + {args.data_cpus} for featurisation "
              f"= {needed} CPUs, but this Ray has {cpus}: the data stage would starve. Lower --cpus-per-worker.",
              file=sys.stderr)
        return 2
    feature_set = cfg.feature_set or starting.feature_set
    train_ok, rejected = check_inputs(train_pairs, feature_set, args.data_cpus, keep_features=False)
    val_ok, val_rejected = check_inputs(val_pairs, feature_set, args.data_cpus)
    rejected = pd.concat([rejected.assign(manifest="train"), val_rejected.assign(manifest="val")])
    storage.makedirs(args.output)
    storage.write_bytes_atomic(storage.join(args.output, "rejected.csv"), rejected.to_csv(index=False).encode())
    for _, r in rejected.iterrows():
        log.warning("skipping %s: %s", r["pose"], r["error"])
    if len(train_ok) < cfg.global_batch_size or len(val_ok) == 0:
        print(f"error: {len(train_ok)} usable training rows (batch size {cfg.global_batch_size}) and "
              f"{len(val_ok)} usable validation rows; see {storage.join(args.output, 'rejected.csv')}", file=sys.stderr)
        return 2
    kept = train_pairs.iloc[train_ok["row"].to_numpy()].reset_index(drop=True)
    try:  # the workers plan the same way: a plan that cannot be made fails here, before they start
        if cfg.global_batch_size % args.workers:
            raise ValueError(f"batch size {cfg.global_batch_size} does not split over {args.workers} workers")
        plan_epoch(kept["text"].tolist(), cfg.global_batch_size, cfg.seed, 0, cfg.unique_texts)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    val_kept = val_pairs.iloc[val_ok["row"].to_numpy()].reset_index(drop=True)
    val_features = {"frames": val_ok["frames"].to_numpy(), "length": val_ok["length"].to_numpy()}

    run_dir = args.output.rstrip("/")
    storage_path, name = run_dir.rsplit("/", 1) if "/" in run_dir else (".", run_dir)
    if not storage.is_remote(storage_path):
        storage_path = os.path.abspath(storage_path)
    filesystem = storage.pyarrow_filesystem(run_dir)[0] if storage.is_remote(run_dir) else None
    if filesystem is not None:
        storage_path = storage.filesystem(storage_path)[1]
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"train": cfg.to_dict(), "train_pairs": ray.put(kept), "val_pairs": ray.put(val_kept),
                           "val_features": ray.put(val_features), "run_dir": run_dir,
                           "cpus_per_worker": args.cpus_per_worker, "data_cpus": args.data_cpus},
        scaling_config=ScalingConfig(num_workers=args.workers, use_gpu=args.gpu,
                                     resources_per_worker={"CPU": args.cpus_per_worker}),
        run_config=RunConfig(name=name, storage_path=storage_path, storage_filesystem=filesystem,
                             failure_config=FailureConfig(max_failures=args.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=args.keep_checkpoints)))
    started = time.perf_counter()
    result = trainer.fit()
    history = _read_json_lines(storage.join(run_dir, "metrics.jsonl"))
    if history:
        write_curves(history, run_dir)
    last = history[-1] if history else {}
    seconds = time.perf_counter() - started
    checkpoint = result.checkpoint.path if result.checkpoint else None
    contract.write_summary(run_dir, {"steps": last.get("step", 0), "epochs": last.get("epoch", 0),
                                     "val_loss": last.get("val_loss"), "val_R@1": last.get("val_R@1"),
                                     "seconds": round(seconds, 3), "rows": len(train_pairs) + len(val_pairs),
                                     "rejected": len(rejected), "latest_checkpoint": checkpoint,
                                     "best": storage.join(run_dir, "best")})
    print(f"training finished in {seconds:.0f}s: {last.get('step', 0)} steps, "
          f"val loss {last.get('val_loss', float('nan')):.4f}, val R@1 {last.get('val_R@1', float('nan')):.3f}; "
          f"latest checkpoint {checkpoint}, best model {storage.join(run_dir, 'best')}, "
          f"{len(rejected)} inputs rejected")
    return contract.exit_code(len(rejected))


if __name__ == "__main__":
    contract.command_line(main)
