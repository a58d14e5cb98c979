"""The training job (``python -m convattn.train``, see ``convattn.cli.train``): one
``TrainConfig`` in, a checkpoint written atomically after every epoch.

Runs on the GPU when there is one (bf16 autocast, channels_last, data kept on the GPU)
and on the CPU otherwise, under DistributedDataParallel when started by torchrun.
``resume`` continues a run to the same final weights as an uninterrupted run, or extends
it to more epochs.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from convattn.device import pick_device
from convattn.errors import DataError
from convattn.files.checkpoint import (
    CheckpointError,
    check_writable,
    make_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from convattn.files.data import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    ImageSet,
    load_split,
    resolve_data,
)
from convattn.files.loader import TensorLoader
from convattn.jobs.evaluation import predict
from convattn.jobs.options import (
    batch_size_option,
    check_config,
    data_option,
    device_option,
    download_option,
    flag_name,
)
from convattn.nn.models import count_parameters, create_model, list_models
from convattn.readout.attention import gamma_values


@dataclass
class TrainConfig:
    arch: str = field(default="seed", metadata={"help": "network from the registry",
                                                "choices": list_models()})
    data: str = data_option()
    download: bool = download_option()
    out: str = field(default="runs/model.pt", metadata={"help": "checkpoint to write"})
    resume: bool = field(default=False, metadata={
        "help": "continue from --out if it exists: the same run, or the run extended to a "
                "larger --epochs"})
    epochs: int = field(default=100, metadata={
        "help": "epochs to train; with --resume, more epochs than the run had extend it: "
                "the learning-rate schedule is rebuilt for the new total and resumed at "
                "the finished epoch's step (so a one-cycle rate rises again from there)",
        "min": 1})
    batch_size: int = batch_size_option(128, "global batch size")
    optimizer: str = field(default="adam", metadata={"help": "optimizer",
                                                     "choices": ["adam", "sgd"]})
    lr: float = field(default=1e-3, metadata={"help": "(peak) learning rate", "min": 0})
    schedule: str = field(default="constant", metadata={
        "help": "learning-rate schedule", "choices": ["constant", "onecycle"]})
    warmup_epochs: float = field(default=0.0, metadata={"help": "onecycle warm-up epochs",
                                                        "min": 0})
    momentum: float = field(default=0.9, metadata={"help": "SGD (Nesterov) momentum",
                                                   "min": 0, "max": 1})
    weight_decay: float = field(default=0.0, metadata={"help": "weight decay", "min": 0})
    label_smoothing: float = field(default=0.0, metadata={"help": "label smoothing",
                                                          "min": 0, "max": 1})
    cutout: int = field(default=0, metadata={"help": "side of a random square zeroed per "
                                                     "training image (0: off)",
                                             "min": 0, "max": 32})
    seed: int = field(default=0, metadata={"help": "seed for weights and data order",
                                           "min": 0, "max": 2**31 - 1})
    train_subset: int = field(default=0, metadata={"help": "use only this many training "
                                                           "images (0: all)", "min": 0})
    device: str = device_option("where to train")
    amp: bool = field(default=True, metadata={"help": "bf16 autocast on the GPU"})
    channels_last: bool = field(default=True, metadata={"help": "channels_last on the GPU"})
    compile: bool = field(default=False, metadata={"help": "torch.compile the model"})
    compile_mode: str = field(default="default", metadata={
        "help": "torch.compile's mode with --compile (reduce-overhead: CUDA graphs, which "
                "cut the kernel launches that bound small networks on a GPU)",
        "choices": ["default", "reduce-overhead", "max-autotune",
                    "max-autotune-no-cudagraphs"]})


PRESETS: dict[str, TrainConfig] = {
    "tutorial": TrainConfig(),
    "fast": TrainConfig(epochs=60, batch_size=512, optimizer="sgd", lr=0.4,
                        schedule="onecycle", warmup_epochs=12, weight_decay=5e-4,
                        label_smoothing=0.2, cutout=8),
}
PRESET_HELP = {
    "tutorial": "the source tutorial's recipe: Adam 1e-3, batch 128, 100 epochs",
    "fast": "Page (2018)'s ResNet-9 recipe, longer: Nesterov SGD, one-cycle to lr 0.4, "
            "batch 512, 60 epochs, label smoothing 0.2, cutout 8",
}
# Changing one of these between runs would make the saved optimizer state or the step
# count per epoch mean something else, so --resume refuses it.
SAME_ON_RESUME = ("arch", "optimizer", "batch_size", "train_subset")


def lr_factor(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Multiplier of cfg.lr at a step; a pure function of the step, so resume is exact."""
    if cfg.schedule == "constant":
        return 1.0
    t = step / steps_per_epoch
    if t < cfg.warmup_epochs:
        return t / cfg.warmup_epochs
    return max(0.0, (cfg.epochs - t) / max(cfg.epochs - cfg.warmup_epochs, 1e-8))


def _cutout(x: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    b, _, h, w = x.shape
    centre = torch.randint(0, h, (b, 2), generator=gen).to(x.device)
    ar = torch.arange(h, device=x.device)
    # The square spans [centre - size // 2, centre - size // 2 + size): size pixels a side.
    rows = ar[None] - (centre[:, :1] - size // 2)  # (B, H)
    cols = ar[None] - (centre[:, 1:] - size // 2)  # (B, W)
    inside_r = (rows >= 0) & (rows < size)
    inside_c = (cols >= 0) & (cols < size)
    keep = ~(inside_r[:, :, None] & inside_c[:, None, :])  # (B, H, W)
    return x * keep[:, None]


def _optimizer(cfg: TrainConfig, model: nn.Module, device: torch.device
               ) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        # The fused kernel updates every parameter in a few launches instead of dozens.
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                fused=device.type == "cuda")
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                           nesterov=True, weight_decay=cfg.weight_decay)


def _subset(data: ImageSet, n: int, seed: int) -> ImageSet:
    if not n or n >= len(data):
        return data
    keep = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n]
    keep = keep.numpy()
    return ImageSet(data.images[keep], data.labels[keep], data.classes,
                    [data.names[i] for i in keep.tolist()])


def train(cfg: TrainConfig, on_epoch_end: Callable[[int, dict], None] | None = None
          ) -> dict[str, Any]:
    """Train per ``cfg``; returns the final checkpoint dict (also written to cfg.out)."""
    check_config(cfg)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(cfg.device, local_rank)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
    amp = cfg.amp and device.type == "cuda"
    if cfg.batch_size % world:
        raise DataError(f"--batch-size {cfg.batch_size} does not split over {world} processes.")

    check_writable(cfg.out)  # before loading and training, not after the first epoch
    data = resolve_data(cfg.data, cfg.download)
    train_set = _subset(load_split(data, "train", cfg.download), cfg.train_subset, cfg.seed)
    test_set = load_split(data, "test", cfg.download)
    if len(train_set) < cfg.batch_size:
        raise DataError(f"--batch-size {cfg.batch_size} is larger than the training set "
                        f"({len(train_set)} images).")
    per_rank = cfg.batch_size // world
    loader = TensorLoader(train_set, per_rank, CIFAR10_MEAN, CIFAR10_STD, device,
                          train=True, seed=cfg.seed, rank=rank, world=world)
    test_loader = TensorLoader(test_set, 1000, CIFAR10_MEAN, CIFAR10_STD, device)

    torch.manual_seed(cfg.seed)
    model = create_model(cfg.arch, num_classes=len(train_set.classes)).to(device)
    opt = _optimizer(cfg, model, device)
    steps = len(loader)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(cfg, s, steps))
    history: list[dict[str, Any]] = []
    start_epoch, elapsed = 0, 0.0
    extended_from: int | None = None
    out = Path(cfg.out)
    if cfg.resume and out.is_file():
        ckpt = read_checkpoint(out)
        planned = _resumable_epochs(ckpt, cfg, out)
        model.load_state_dict(ckpt["state_dict"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        history, start_epoch = ckpt["history"], ckpt["epoch"]
        elapsed = ckpt.get("metrics", {}).get("train_seconds", 0.0)
        if cfg.epochs > planned:
            extended_from = planned
        # The stored rate is the old schedule's at this step; an extended run's schedule
        # is rebuilt for the new total, so its first step must use the new one's rate.
        for group, base in zip(opt.param_groups, sched.base_lrs):
            group["lr"] = base * lr_factor(cfg, sched.last_epoch, steps)
    if device.type == "cuda" and cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[local_rank] if device.type == "cuda" else None)
    if cfg.compile:
        net = torch.compile(net, mode=cfg.compile_mode)
    graphed = cfg.compile and cfg.compile_mode in ("reduce-overhead", "max-autotune")

    if rank == 0:
        where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
        print(f"{cfg.arch}: {count_parameters(model):,} parameters, {len(train_set)} train / "
              f"{len(test_set)} test images, {world} x {where}, epochs {start_epoch + 1}.."
              f"{cfg.epochs}", flush=True)
        if extended_from is not None:
            print(f"extending {out} from {extended_from} to {cfg.epochs} epochs; the "
                  f"{cfg.schedule} schedule now spans {cfg.epochs} epochs", flush=True)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        gen.manual_seed(cfg.seed * 1_000_003 + epoch)
        net.train()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        bar = tqdm(loader.epoch(epoch), total=steps, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   disable=None if rank == 0 else True, leave=False)
        for i, (x, y) in enumerate(bar):
            if cfg.cutout:
                x = _cutout(x, cfg.cutout, gen)
            if graphed:  # a new step: the graphs may reuse the last step's output memory
                torch.compiler.cudagraph_mark_step_begin()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits = net(x)
                loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.detach() * len(y)
            correct += (logits.argmax(1) == y).sum()
            seen += len(y)
            if i % 25 == 0 and not bar.disable:
                bar.set_postfix(loss=f"{loss_sum.item() / seen:.3f}",
                                acc=f"{100 * correct.item() / seen:.1f}%")
        stats = torch.stack([loss_sum, correct.float(), torch.tensor(seen, device=device)])
        if world > 1:
            dist.all_reduce(stats)
        train_seconds = time.perf_counter() - t0
        probs, labels = predict(net, test_loader, amp=amp)
        test_acc = 100.0 * (probs.argmax(1) == labels).float().mean().item()
        elapsed += time.perf_counter() - t0
        record = {
            "epoch": epoch + 1,
            "train_loss": stats[0].item() / stats[2].item(),
            "train_accuracy": 100.0 * stats[1].item() / stats[2].item(),
            "test_accuracy": test_acc,
            "lr": opt.param_groups[0]["lr"],
            "gammas": gamma_values(model),
            "train_seconds": train_seconds,
            "elapsed_seconds": elapsed,
        }
        if extended_from is not None and epoch == start_epoch:
            record["extended_from_epochs"] = extended_from  # the run's plan changed here
        history.append(record)
        if rank == 0:
            gam = " ".join(f"{k}={v:+.3f}" for k, v in record["gammas"].items())
            print(f"epoch {epoch + 1:3d}/{cfg.epochs}  loss {record['train_loss']:.4f}  "
                  f"train {record['train_accuracy']:5.2f}%  test {test_acc:5.2f}%  "
                  f"{train_seconds:5.1f}s  {gam}".rstrip(), flush=True)
            ckpt = make_checkpoint(
                model, cfg.arch, {}, train_set.classes, CIFAR10_MEAN, CIFAR10_STD,
                metrics={"test_accuracy": test_acc, "train_seconds": elapsed,
                         "parameters": count_parameters(model),
                         "device": where, "world_size": world},
                history=history, train_config=dataclasses.asdict(cfg), epoch=epoch + 1,
                optimizer=opt.state_dict(), scheduler=sched.state_dict(),
            )
            save_checkpoint(ckpt, out)
        if on_epoch_end is not None:
            on_epoch_end(epoch, record)
    if world > 1:
        dist.barrier()
    return read_checkpoint(out) if rank == 0 or world == 1 else {}


def _resumable_epochs(ckpt: dict[str, Any], cfg: TrainConfig, out: Path) -> int:
    """The epochs the run in ``ckpt`` was planned for, once it is clear that ``cfg`` may
    continue or extend it; CheckpointError (one sentence) if not."""
    old = ckpt.get("train_config") or {}
    if "optimizer" not in ckpt or "scheduler" not in ckpt or "epochs" not in old:
        raise CheckpointError(f"{out} holds no training state (a shipped or exported "
                              "checkpoint), so --resume cannot continue it.")
    for name in SAME_ON_RESUME:
        if old.get(name, getattr(cfg, name)) != getattr(cfg, name):
            raise CheckpointError(
                f"{out} was written by a different run ({flag_name(name)} {old[name]} there, "
                f"{getattr(cfg, name)} here); --resume needs the same configuration.")
    if cfg.epochs < old["epochs"]:
        raise CheckpointError(f"{out} is a run of {old['epochs']} epochs: --resume can "
                              f"continue or extend it (--epochs {old['epochs']} or more), "
                              f"not shorten it to {cfg.epochs}.")
    return int(old["epochs"])






