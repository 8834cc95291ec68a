"""The ``finetune(model)`` callback the pruning drivers call, built on ``train.fit``."""

from __future__ import annotations

import copy

from torch import nn

from ..data import TensorLoader
from ..train import TrainConfig, fit


class Finetuner:
    """``finetune(model)``: :func:`course_lib.train.fit` for ``config.epochs`` epochs.

    Every call draws a new shuffle and augmentation (the loader's seed plus the call
    index), so ``k`` rounds of one epoch see as many different batches as one run of ``k``
    epochs. ``epochs`` and ``wall_time_s`` count what all calls spent: the fine-tuning
    budget, measured rather than assumed.
    """

    def __init__(self, loader: TensorLoader, config: TrainConfig, seed: int = 0) -> None:
        self.loader, self.config, self.seed = loader, config, seed
        self.calls, self.epochs, self.wall_time_s = 0, 0, 0.0

    def __call__(self, model: nn.Module) -> None:
        loader = copy.copy(self.loader)
        loader.seed = self.loader.seed * 1_000 + self.calls
        history = fit(model, loader, self.config, seed=self.seed + self.calls, progress=False)
        self.calls += 1
        self.epochs += self.config.epochs
        self.wall_time_s += history.wall_time_s
