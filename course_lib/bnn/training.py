"""Training a binary network: the recipe, as one resumable loop.

What differs from :func:`course_lib.train.fit` (SGD for real-valued networks), and why:

- **Adam, no weight decay on the latent weights**, learning rate warmed up then decayed to
  zero (cosine). Latent weights only matter through their sign, so decay would only pull
  them towards the flip point; Adam's per-weight step size copes with the very uneven
  gradients of binarized layers (Liu et al., 2021, "How do Adam and training strategies help
  BNNs optimization?"; ReActNet, Liu et al., 2020).
- **Distillation** from the trained full-precision twin (optional): the loss is
  ``(1 - distill) * CE(labels) + distill * T^2 * KL(teacher || student)`` at temperature
  ``T`` (Hinton et al., 2015); ReActNet's distributional loss is ``distill = 1, T = 1``.
- **Two stages** (optional), in the papers' order (Real-to-Bin, Martinez et al., 2020;
  ReActNet; Liu et al., 2021): the first ``stage1_epochs`` train with binary activations
  and *real* weights, the rest with both binary. (Until 2026-12-07 the option ran the
  reverse order; the saved run of 2026-11-27 did not use it, that of 2026-12-07 used five.)
  By default the two stages share one learning-rate and ``tau`` schedule over all steps;
  ``restart_schedule=True`` gives each stage its own warm-up and cosine decay, as those
  papers train each stage to the end of its own schedule, and ``stage1_clamp=False`` leaves
  the real weights of stage 1 unclamped (``tau = 1``; ReCU's clamp is there for the signs
  of binary weights); ``stage1_lr_scale`` scales the learning rate of stage 1 (Adam's steps
  change a real weight's value, where with binary weights only a sign change matters).
- **The ReCU schedule** (eq. 28): ``tau`` rises from ``tau_start`` to ``tau_end`` over all
  steps.
- ``compile=True`` runs the step through ``torch.compile``: a binary layer is a chain of
  small element-wise operations (threshold, sign, clamp, scaling) that the compiler fuses;
  on a 2-core CPU that makes an epoch about twice as fast, after a compilation of a minute
  or two.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from ..train import (
    History,
    record_epoch,
    resume_training_state,
    save_training_state,
    use_autocast,
)
from .layers import binary_layers, set_binary_weights, set_tau
from .recu import check_tau, tau_schedule


@dataclass(frozen=True)
class BinaryTrainConfig:
    """Hyper-parameters of :func:`fit_binary` (``lr``: Adam's peak learning rate)."""

    epochs: int = 40
    lr: float = 2e-3
    warmup_epochs: float = 1.0
    weight_decay: float = 0.0  # on the latent binary weights
    real_weight_decay: float = 5e-5  # on the full-precision stem, shortcuts and classifier
    distill: float = 0.0
    temperature: float = 1.0
    stage1_epochs: int = 0
    restart_schedule: bool = False
    stage1_clamp: bool = True
    stage1_lr_scale: float = 1.0
    tau_start: float = 0.85
    tau_end: float = 0.99
    label_smoothing: float = 0.0
    compile: bool = False
    autocast: bool | None = None
    channels_last: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if not 0.0 <= self.distill <= 1.0:
            raise ValueError(f"distill is a weight in [0, 1], got {self.distill}")
        if not 0 <= self.stage1_epochs < self.epochs:
            raise ValueError(
                f"stage1_epochs must be in [0, epochs), got {self.stage1_epochs} of {self.epochs}"
            )
        if not self.stage1_lr_scale > 0.0:
            raise ValueError(f"stage1_lr_scale must be positive, got {self.stage1_lr_scale}")
        check_tau(self.tau_start)
        check_tau(self.tau_end)


def stage_span(step: int, total: int, stage1: int, restart: bool) -> tuple[int, int]:
    """``(step, total)`` within the schedule that ``step`` belongs to: all ``total`` steps
    share one schedule, or (``restart``) the first ``stage1`` steps have theirs and the rest
    another."""
    if not restart or stage1 == 0:
        return step, total
    return (step, stage1) if step < stage1 else (step - stage1, total - stage1)


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to zero at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def make_adam(model: nn.Module, config: BinaryTrainConfig) -> torch.optim.Adam:
    """Adam with two groups: latent binary weights (``weight_decay``) and everything else
    (``real_weight_decay`` on conv/linear weights, none on BN, thresholds and slopes)."""
    latent = {id(layer.weight) for layer in binary_layers(model)}
    binary, decayed, plain = [], [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if id(p) in latent:
                binary.append(p)
            elif name == "weight" and isinstance(module, nn.Conv2d | nn.Linear):
                decayed.append(p)
            else:
                plain.append(p)
    groups = [
        {"params": binary, "weight_decay": config.weight_decay},
        {"params": decayed, "weight_decay": config.real_weight_decay},
        {"params": plain, "weight_decay": 0.0},
    ]
    return torch.optim.Adam([g for g in groups if g["params"]], lr=config.lr)


def distillation_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    config: BinaryTrainConfig,
) -> torch.Tensor:
    """``(1 - distill) CE + distill T^2 KL(softmax(teacher / T) || softmax(student / T))``."""
    logits = logits.float()
    ce = F.cross_entropy(logits, labels, label_smoothing=config.label_smoothing)
    if teacher_logits is None or config.distill == 0.0:
        return ce
    kd = kd_divergence(logits, teacher_logits, config.temperature)
    return (1 - config.distill) * ce + config.distill * kd


def kd_divergence(
    logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """Hinton's distillation term ``T^2 KL(softmax(teacher / T) || softmax(student / T))``,
    averaged over the batch (0 when the two sets of logits agree)."""
    t = temperature
    kl = F.kl_div(
        F.log_softmax(logits.float() / t, dim=1),
        F.log_softmax(teacher_logits.float() / t, dim=1),
        log_target=True,
        reduction="batchmean",
    )
    return t * t * kl


#: A training objective: ``(model, x, y, teacher_logits) -> (loss, logits)``; the default is
#: the distillation mix of :func:`distillation_loss` on ``model(x)``.
Objective = Callable[
    [nn.Module, torch.Tensor, torch.Tensor, torch.Tensor | None],
    tuple[torch.Tensor, torch.Tensor],
]


class Step:
    """One training step's forward and backward (compiled or not): returns the loss and
    the logits. The optimizer runs outside, so the compiled graph holds no optimizer state."""

    def __init__(
        self,
        model,
        teacher,
        config: BinaryTrainConfig,
        autocast: bool,
        device,
        objective: Objective | None = None,
    ):
        self.model, self.teacher, self.config = model, teacher, config
        self.objective = objective
        self.autocast, self.device = autocast, device
        self.compiled = torch.compile(self.forward_backward) if config.compile else None

    def fn(self, x: torch.Tensor, y: torch.Tensor):
        if self.compiled is None:
            return self.forward_backward(x, y)
        try:
            return self.compiled(x, y)
        except Exception as error:  # the compiler's failures come in many types
            if not self.model.training or any(p.grad is not None for p in self.model.parameters()):
                raise
            warnings.warn(
                f"torch.compile failed ({type(error).__name__}: {str(error).splitlines()[0][:200]}); "
                f"training continues without it, about 3-4x slower per epoch on a CPU. "
                f"torch.compile needs a working C++ compiler.",
                RuntimeWarning,
                stacklevel=2,
            )
            self.compiled = None
            return self.forward_backward(x, y)

    def forward_backward(self, x: torch.Tensor, y: torch.Tensor):
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            teacher_logits = None
            if self.teacher is not None and (self.config.distill > 0 or self.objective):
                with torch.no_grad():
                    teacher_logits = self.teacher(x)
            if self.objective is not None:
                loss, logits = self.objective(self.model, x, y, teacher_logits)
            else:
                logits = self.model(x)
                loss = distillation_loss(logits, y, teacher_logits, self.config)
        loss.backward()
        return loss.detach(), logits.detach()


def scheduled_tau(step: int, total: int, stage1: int, config: BinaryTrainConfig) -> float:
    """ReCU's ``tau`` at ``step`` (eq. 28): over all steps, or over the second stage's with
    ``restart_schedule``; ``1`` (no clamp) during stage 1 with ``stage1_clamp=False``."""
    if step < stage1 and not config.stage1_clamp:
        return 1.0
    if step < stage1 and config.restart_schedule:  # a clamped stage 1 of its own: start value
        return config.tau_start
    span_step, span_total = stage_span(step, total, stage1, config.restart_schedule)
    return tau_schedule(span_step, span_total, config.tau_start, config.tau_end)


def scheduled_lr(
    step: int, total: int, warmup: int, stage1: int, config: BinaryTrainConfig
) -> float:
    """The factor of ``config.lr`` at ``step``: warm-up and cosine decay over the schedule
    ``step`` belongs to (:func:`stage_span`), times ``stage1_lr_scale`` during stage 1."""
    factor = lr_factor(*stage_span(step, total, stage1, config.restart_schedule), warmup)
    return factor * config.stage1_lr_scale if step < stage1 else factor


def fit_binary(
    model: nn.Module,
    train_loader,
    config: BinaryTrainConfig,
    teacher: nn.Module | None = None,
    val_loader=None,
    seed: int = 0,
    checkpoint: str | Path | None = None,
    progress: bool = True,
    objective: Objective | None = None,
    step_end: Callable[[int], None] | None = None,
) -> History:
    """Train the binary ``model`` in place with the recipe of ``config``; returns its
    :class:`~course_lib.train.History`. With ``checkpoint=path`` the state is written after
    every epoch and a rerun with the same config resumes there. ``teacher`` (needed when
    ``config.distill > 0``) is used in eval mode and never changed; its logits go to
    ``objective`` (see :data:`Objective`; default: :func:`distillation_loss`) when one is
    given. ``step_end(step)`` after every optimizer step (``step`` counts from 0 over all epochs),
    and the model is back in training mode after it, so it may evaluate."""
    if config.distill > 0 and teacher is None:
        raise ValueError("config.distill > 0 needs a teacher (the trained full-precision twin)")
    device = next(model.parameters()).device
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    if teacher is not None:
        teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    optimizer = make_adam(model, config)
    steps_per_epoch = len(train_loader)
    total = config.epochs * steps_per_epoch
    warmup = int(config.warmup_epochs * steps_per_epoch)
    stage1 = config.stage1_epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: scheduled_lr(step, total, warmup, stage1, config)
    )
    history, start_epoch = History(), 0
    if checkpoint is not None and Path(checkpoint).exists():
        start_epoch, history = resume_training_state(
            checkpoint, config, model, optimizer, scheduler
        )
    step_fn = Step(model, teacher, config, use_autocast(config, device), device, objective)
    epochs = tqdm(range(start_epoch, config.epochs), desc="epochs (binary)", disable=not progress)
    for epoch in epochs:
        torch.manual_seed(seed * 1_000_003 + epoch)
        set_binary_weights(model, epoch >= config.stage1_epochs)
        if hasattr(train_loader, "set_epoch"):
            train_loader.set_epoch(epoch)
        start = time.perf_counter()
        model.train()
        total_loss, correct, seen = 0.0, 0, 0
        for i, (x, y) in enumerate(train_loader):
            step = epoch * steps_per_epoch + i
            set_tau(model, scheduled_tau(step, total, stage1, config))
            optimizer.zero_grad(set_to_none=True)
            loss, logits = step_fn.fn(x, y)
            optimizer.step()
            scheduler.step()
            total_loss += loss.item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            seen += len(y)
            if step_end is not None:
                step_end(step)
                model.train()
        record_epoch(history, total_loss / seen, correct / seen, model, val_loader, start, epochs)
        if checkpoint is not None:
            save_training_state(checkpoint, epoch + 1, config, model, optimizer, scheduler, history)
    set_binary_weights(model, True)
    set_tau(model, config.tau_end)
    return history
