"""The chapter's settings: the source network's pretraining, and the ``quick`` and ``full``
profiles of the notebook, one frozen dataclass each.

Budgets are in epochs over the chapter's small target training set (626 images) and in
filters removed per round. :data:`TAYLOR` ``["full"]`` must run in at most 90 minutes on
the course's 2-core CPU; its ``estimate_min`` says how it was sized.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..data import DataSettings
from ..profiles import check_profile
from ..train import TrainConfig


@dataclass(frozen=True)
class SourceSettings:
    """Pretraining of the 8-class source network (:mod:`.pretrain`): all training images of
    the source classes, ``train`` (one-cycle SGD), seeded with ``seed``."""

    data: DataSettings
    train: TrainConfig
    seed: int = 0


SOURCE = SourceSettings(
    data=DataSettings(batch_size=128),
    train=TrainConfig(epochs=10, lr=0.1, label_smoothing=0.1),
)
"""10 epochs over 36,000 images: about 17 minutes on the quiet 2-core CPU (estimated from
~365 training images per second measured on a lightly loaded machine)."""


def source_settings() -> SourceSettings:
    return SOURCE


def finetune_config(epochs: int, lr: float = 0.01) -> TrainConfig:
    """Fine-tuning after transfer and after every pruning round: SGD with Nesterov momentum,
    cosine decay from ``lr`` (10x below the source's peak), weight decay 5e-4."""
    return TrainConfig(epochs=epochs, lr=lr, schedule="cosine")


def check_settings_profile(profile: str) -> str:
    return check_profile(profile)
