"""The search: train the supernet's weights and decision variables with two optimizers.

Two schemes:

- ``"joint"`` (the paper's, and the chapter's default): every training batch updates the
  weights *and* the decision variables from the same loss ``alpha * CE + beta * cost``
  (eq. 12), each with its own SGD optimizer and learning rate. One forward and backward
  pass per batch, so a search costs about one supernet training.
- ``"alternating"`` (first-order DARTS): each step first updates the decision variables on a
  batch of the *validation* split, then the weights on a training batch. It keeps the
  architecture from fitting the training set, at twice the compute.

The cost term does not depend on the weights, so the weights only see ``alpha * CE``.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from ..train import TrainConfig, evaluate, make_optimizer, make_scheduler, use_autocast
from .costs import cost_tables, ops_loss, sync_loss, total_loss
from .supernet import SuperNet

SCHEMES = ("joint", "alternating")


@dataclass(frozen=True)
class SearchConfig:
    """``weights``: the weights' optimizer and schedule (SGD, as :func:`course_lib.train.fit`);
    ``arch_lr`` / ``arch_momentum``: plain SGD on the decision variables (constant rate).
    ``sync_costs``: ``C_sync`` per sync point in op-FLOP equivalents (a measured time, see
    :func:`course_lib.nas.costs.measured_sync_costs`); ``None`` counts the merges' FLOPs."""

    weights: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=10, lr=0.1))
    arch_lr: float = 0.1
    arch_momentum: float = 0.0
    alpha: float = 0.28
    beta: float = 0.01
    scheme: str = "joint"
    sync_costs: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise ValueError(f"unknown scheme {self.scheme!r}: use one of {', '.join(SCHEMES)}")
        if self.alpha < 0 or self.beta < 0:
            raise ValueError(f"alpha and beta must be >= 0, got {self.alpha}, {self.beta}")
        if self.sync_costs is not None and any(c < 0 for c in self.sync_costs):
            raise ValueError(f"sync_costs must be >= 0, got {self.sync_costs}")


@dataclass
class SearchHistory:
    """Per-epoch means (losses in nats or normalized cost units) and the decision
    variables' probabilities at the end of each epoch (nested lists)."""

    loss: list[float] = field(default_factory=list)
    cross_entropy: list[float] = field(default_factory=list)
    ops_loss: list[float] = field(default_factory=list)
    sync_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    op_probs: list[list] = field(default_factory=list)
    sync_probs: list[list] = field(default_factory=list)
    epoch_time_s: list[float] = field(default_factory=list)

    @property
    def wall_time_s(self) -> float:
        return float(sum(self.epoch_time_s))


def search(
    model: SuperNet,
    train_loader,
    config: SearchConfig,
    val_loader=None,
    seed: int = 0,
    progress: bool = True,
) -> SearchHistory:
    """Search in place and return the :class:`SearchHistory`. ``val_loader`` feeds the
    decision variables in the alternating scheme, and reports the supernet's accuracy after
    every epoch in both schemes."""
    if config.scheme == "alternating" and val_loader is None:
        raise ValueError("the alternating scheme needs a val_loader for the decision variables")
    wc = config.weights
    device = next(model.parameters()).device
    if wc.channels_last:
        model.to(memory_format=torch.channels_last)
    w_opt = make_optimizer(model.weight_parameters(), wc)
    a_opt = torch.optim.SGD(
        model.arch_parameters(), lr=config.arch_lr, momentum=config.arch_momentum
    )
    scheduler = make_scheduler(w_opt, wc, wc.epochs * len(train_loader))
    op_table, sync_table, sync_scale = cost_tables(model.space, config.sync_costs)
    op_table, sync_table = op_table.to(device), sync_table.to(device)
    ce_fn = nn.CrossEntropyLoss(label_smoothing=wc.label_smoothing)
    autocast = use_autocast(wc, device)
    history = SearchHistory()
    val_batches = itertools.cycle(val_loader) if config.scheme == "alternating" else None

    def losses(x, y):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = model(x)
            ce = ce_fn(logits, y)
        l_ops = ops_loss(model.op_probs(), op_table)
        l_sync = sync_loss(model.sync_probs(), sync_table, sync_scale)
        return logits, ce, l_ops, l_sync

    for epoch in tqdm(range(wc.epochs), desc="search", disable=not progress):
        torch.manual_seed(seed * 1_000_003 + epoch)
        if hasattr(train_loader, "set_epoch"):
            train_loader.set_epoch(epoch)
        model.train()
        start, sums, seen, correct = time.perf_counter(), torch.zeros(4), 0, 0
        for x, y in train_loader:
            if val_batches is not None:  # decision variables on validation data
                _, ce_v, l_ops, l_sync = losses(*next(val_batches))
                a_opt.zero_grad(set_to_none=True)
                total_loss(ce_v, l_ops, l_sync, config.alpha, config.beta).backward()
                a_opt.step()
            logits, ce, l_ops, l_sync = losses(x, y)
            loss = total_loss(ce, l_ops, l_sync, config.alpha, config.beta)
            w_opt.zero_grad(set_to_none=True)
            a_opt.zero_grad(set_to_none=True)
            loss.backward()
            w_opt.step()
            if val_batches is None:
                a_opt.step()
            scheduler.step()
            sums += torch.tensor([loss.item(), ce.item(), l_ops.item(), l_sync.item()]) * len(y)
            seen += len(y)
            correct += (logits.argmax(1) == y).sum().item()
        means = (sums / seen).tolist()
        for name, value in zip(
            ("loss", "cross_entropy", "ops_loss", "sync_loss"), means, strict=True
        ):
            getattr(history, name).append(value)
        history.train_accuracy.append(correct / seen)
        if val_loader is not None:
            history.val_accuracy.append(evaluate(model, val_loader)[1])
        history.op_probs.append(model.op_probs().tolist())
        history.sync_probs.append(model.sync_probs().tolist())
        history.epoch_time_s.append(time.perf_counter() - start)
    return history
