"""One training loop for every chapter: seeded, resumable, with a progress bar and a history.

``fit`` trains with SGD + Nesterov momentum under a one-cycle or cosine schedule (stepped per
batch), optional label smoothing, channels-last memory format and bfloat16 autocast where
the hardware has it. With ``checkpoint=path`` it writes the full training state after every
epoch (write-then-rename, so a crash never leaves a half-written file) and, called again
with the same path and config, resumes where it stopped with the same final weights.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .paths import atomic_path


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of :func:`fit`. ``lr`` is the peak learning rate."""

    epochs: int = 30
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = True
    label_smoothing: float = 0.0
    schedule: str = "onecycle"  # "onecycle", "cosine" or "constant"
    autocast: bool | None = None  # None: use bfloat16 where the hardware runs it natively
    channels_last: bool = True

    def __post_init__(self) -> None:
        if self.schedule not in ("onecycle", "cosine", "constant"):
            raise ValueError(
                f"unknown schedule {self.schedule!r}: use onecycle, cosine or constant"
            )
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")


@dataclass
class History:
    """Per-epoch metrics: lists of equal length (losses in nats, accuracies as fractions)."""

    train_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    epoch_time_s: list[float] = field(default_factory=list)

    @property
    def wall_time_s(self) -> float:
        return float(sum(self.epoch_time_s))


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (CPU and CUDA) generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True on x86 CPUs with AVX512-BF16 or AMX (where bfloat16 autocast is a speed-up)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def use_autocast(config: TrainConfig, device: torch.device) -> bool:
    if config.autocast is not None:
        return config.autocast
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return cpu_has_native_bf16()


def make_optimizer(params, config: TrainConfig) -> torch.optim.SGD:
    """SGD with the config's momentum, Nesterov flag and weight decay at its peak ``lr``."""
    return torch.optim.SGD(
        params,
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        nesterov=config.nesterov and config.momentum > 0,
    )


def make_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """The config's learning-rate schedule over ``total_steps`` optimizer steps (one-cycle
    with a 25 % warm-up, cosine decay to zero, or constant)."""
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=total_steps, pct_start=0.25
        )
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def evaluate(
    model: nn.Module, loader: Iterable[tuple[torch.Tensor, torch.Tensor]]
) -> tuple[float, float]:
    """Mean cross-entropy (nats) and accuracy (fraction) of ``model`` on ``loader``, in fp32."""
    logits, labels = predict(model, loader)
    loss = nn.functional.cross_entropy(logits, labels).item()
    return loss, (logits.argmax(1) == labels).float().mean().item()


def accuracy_on_test(model: nn.Module, loaders) -> float:
    """Top-1 accuracy (a fraction) of ``model`` on ``loaders.test`` (``loaders``: a
    :class:`~course_lib.data.Loaders`), the one helper every chapter scores its test split with."""
    return evaluate(model, loaders.test)[1]


@torch.no_grad()
def predict(
    model: nn.Module, loader: Iterable[tuple[torch.Tensor, torch.Tensor]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """All logits and labels of ``loader`` (on CPU)."""
    was_training = model.training
    model.eval()
    outputs, targets = [], []
    for x, y in loader:
        outputs.append(model(x).float().cpu())
        targets.append(y.cpu())
    model.train(was_training)
    return torch.cat(outputs), torch.cat(targets)


def fit(
    model: nn.Module,
    train_loader,
    config: TrainConfig,
    val_loader=None,
    seed: int = 0,
    checkpoint: str | Path | None = None,
    progress: bool = True,
    on_epoch_end: Callable[[int, History], None] | None = None,
) -> History:
    """Train ``model`` in place and return its :class:`History`.

    ``train_loader`` is a :class:`course_lib.data.TensorLoader` (or any iterable of
    ``(x, y)`` batches with ``set_epoch`` and ``len``). Call :func:`seed_everything`
    before building the model so that its initialization is seeded too.
    """
    device = next(model.parameters()).device
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model.parameters(), config)
    scheduler = make_scheduler(optimizer, config, config.epochs * len(train_loader))
    history, start_epoch = History(), 0
    if checkpoint is not None and Path(checkpoint).exists():
        start_epoch, history = resume_training_state(
            checkpoint, config, model, optimizer, scheduler
        )
    autocast = use_autocast(config, device)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    epochs = tqdm(range(start_epoch, config.epochs), desc="epochs", disable=not progress)
    for epoch in epochs:
        torch.manual_seed(seed * 1_000_003 + epoch)
        if hasattr(train_loader, "set_epoch"):
            train_loader.set_epoch(epoch)
        start = time.perf_counter()
        train_loss, train_acc = _train_one_epoch(
            model, train_loader, optimizer, scheduler, loss_fn, autocast, device
        )
        record_epoch(history, train_loss, train_acc, model, val_loader, start, epochs)
        if checkpoint is not None:
            save_training_state(checkpoint, epoch + 1, config, model, optimizer, scheduler, history)
        if on_epoch_end is not None:
            on_epoch_end(epoch, history)
    return history


def _train_one_epoch(model, loader, optimizer, scheduler, loss_fn, autocast, device):
    model.train()
    total_loss, correct, seen = 0.0, 0, 0
    for x, y in loader:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = model(x)
            loss = loss_fn(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total_loss += loss.item() * len(y)
        correct += (logits.argmax(1) == y).sum().item()
        seen += len(y)
    return total_loss / seen, correct / seen


def record_epoch(
    history: History,
    train_loss: float,
    train_acc: float,
    model: nn.Module,
    val_loader,
    started: float,
    bar=None,
) -> None:
    """Append one finished epoch to ``history``: its training loss and accuracy, the
    validation loss and accuracy (when ``val_loader`` is given), and its time in seconds since
    ``started`` (a ``time.perf_counter()`` value); show loss and accuracy on the tqdm ``bar``."""
    history.train_loss.append(train_loss)
    history.train_accuracy.append(train_acc)
    if val_loader is not None:
        val_loss, val_acc = evaluate(model, val_loader)
        history.val_loss.append(val_loss)
        history.val_accuracy.append(val_acc)
    history.epoch_time_s.append(time.perf_counter() - started)
    if bar is not None:
        last_val = f"{history.val_accuracy[-1]:.3f}" if history.val_accuracy else "-"
        bar.set_postfix(loss=f"{train_loss:.3f}", val_acc=last_val)


def save_training_state(
    path, epochs_done: int, config, model, optimizer, scheduler, history: History
) -> None:
    """Write what a resumed run needs after ``epochs_done`` epochs (atomically: an
    interrupted write leaves the previous state). ``config``: the run's settings dataclass."""
    state = {
        "epoch": epochs_done,
        "config": asdict(config),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "history": asdict(history),
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def resume_training_state(path, config, model, optimizer, scheduler) -> tuple[int, History]:
    """Load a state written by :func:`save_training_state` into ``model``, ``optimizer`` and
    ``scheduler``; returns the epochs done and the history. A state written with other
    settings is refused and left untouched."""
    state = torch.load(path, map_location=next(model.parameters()).device, weights_only=True)
    if state["config"] != asdict(config):
        raise ValueError(
            f"checkpoint {path} was written with a different {type(config).__name__} "
            f"({state['config']}); it is left untouched. Pass another checkpoint path, or "
            f"delete this file to start over."
        )
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return state["epoch"], History(**state["history"])


class Finetuner:
    """``finetune(model)``: :func:`fit` for ``config.epochs`` epochs on ``loader``; the
    callback the pruning chapters call between pruning steps.

    Every call draws a new shuffle and augmentation (the loader's seed plus the call
    index), so ``k`` rounds of one epoch see as many different batches as one run of ``k``
    epochs. ``epochs`` and ``wall_time_s`` count what all calls spent: the fine-tuning
    budget, measured rather than assumed.
    """

    def __init__(self, loader, config: TrainConfig, seed: int = 0) -> None:
        self.loader, self.config, self.seed = loader, config, seed
        self.calls, self.epochs, self.wall_time_s = 0, 0, 0.0

    def __call__(self, model: nn.Module) -> History:
        loader = copy.copy(self.loader)
        loader.seed = self.loader.seed * 1_000 + self.calls
        history = fit(model, loader, self.config, seed=self.seed + self.calls, progress=False)
        self.calls += 1
        self.epochs += self.config.epochs
        self.wall_time_s += history.wall_time_s
        return history
