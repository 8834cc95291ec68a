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
from .criterion import CRITERIA
from .loop import Budget


@dataclass(frozen=True)
class SourceSettings:
    """Pretraining of the 8-class source network (:mod:`.pretrain`): all training images of
    the source classes, ``train`` (one-cycle SGD), seeded with ``seed``."""

    data: DataSettings
    train: TrainConfig
    seed: int = 0


SOURCE = SourceSettings(
    data=DataSettings(batch_size=128),
    train=TrainConfig(epochs=12, lr=0.1, label_smoothing=0.1),
)
"""12 epochs over 36,000 images: about 20 minutes on the quiet 2-core CPU (estimated from
~365 training images per second measured on a lightly loaded machine). 6 epochs reached
only 77 % test accuracy on the 8 classes: too weak a source."""


def finetune_config(epochs: int, lr: float = 0.01) -> TrainConfig:
    """Fine-tuning after transfer and after every pruning round: SGD with Nesterov momentum,
    cosine decay from ``lr`` (10x below the source's peak), weight decay 5e-4."""
    return TrainConfig(epochs=epochs, lr=lr, schedule="cosine")


@dataclass(frozen=True)
class TaylorSettings:
    """One run of the chapter.

    ``data``: the target task (the held-out pair; ``train_per_class`` images per class to
    learn from, the validation and test images to measure on). ``transfer``: fine-tuning of
    the whole network after the head swap (the seed: 15 epochs). ``finetune``: after every
    pruning round (the seed: 10 epochs). ``filters_per_round``: filters removed per round
    over the whole network (the seed: 512 of VGG16's 4,224, 12 %). ``budget``: when to stop.
    ``criteria`` x ``seeds``: the comparison (``seeds`` are offsets added to the notebook's
    seed; each one transfers and prunes anew). ``check_layer``, ``check_filters``: the
    first-order check (which conv, how many of its filters). ``latency_*``: the protocol of
    :func:`course_lib.measure.compare`. ``estimate_min``: minutes per section of the
    notebook on the course's 2-core CPU.
    """

    data: DataSettings
    transfer: TrainConfig
    finetune: TrainConfig
    filters_per_round: int
    budget: Budget
    criteria: tuple[str, ...]
    seeds: tuple[int, ...]
    check_layer: str
    check_filters: int
    latency_rounds: int
    latency_calls: int
    latency_warmup: int
    estimate_min: dict[str, float]


SEED_BUDGET = Budget(keep=0.17, measure="params")
"""The seed's result: about 83 % of the parameters removed."""

# The transfer starts the new two-class head from scratch, so it takes a larger step than the
# fine-tuning after a pruning round: with the committed source network and the quick data,
# 4 epochs at lr 0.01 reached 68.2 % test accuracy, at 0.05 84.2 % (seed 0, 600 images).
TAYLOR = {
    "quick": TaylorSettings(
        data=DataSettings(
            train_per_class=313, val_per_class=100, test_per_class=300, batch_size=64
        ),
        transfer=finetune_config(4, lr=0.05),
        finetune=finetune_config(2),
        filters_per_round=256,
        budget=SEED_BUDGET,
        criteria=CRITERIA,
        seeds=(0,),
        check_layer="features.7",
        check_filters=16,
        latency_rounds=10,
        latency_calls=10,
        latency_warmup=5,
        estimate_min={
            "transfer": 0.2,  # 4 epochs
            "first-order check": 0.2,
            "criteria": 2.5,  # 5 criteria x 1 seed, ~3 rounds of 2 epochs
            "latency and size": 0.3,
        },
    ),
    "full": TaylorSettings(
        data=DataSettings(
            train_per_class=313, val_per_class=None, test_per_class=None, batch_size=64
        ),
        transfer=finetune_config(15, lr=0.05),
        finetune=finetune_config(10),
        filters_per_round=128,
        budget=SEED_BUDGET,
        criteria=CRITERIA,
        seeds=(0, 1, 2),
        check_layer="features.7",
        check_filters=32,
        latency_rounds=40,
        latency_calls=20,
        latency_warmup=20,
        estimate_min={
            "transfer": 1.5,  # 3 seeds x 15 epochs
            "first-order check": 0.5,
            "criteria": 50.0,  # 5 criteria x 3 seeds, ~7 rounds of 10 epochs
            "latency and size": 1.0,
        },
    ),
}


def taylor_settings(profile: str) -> TaylorSettings:
    """The settings of ``profile`` ("quick" or "full")."""
    return TAYLOR[check_profile(profile)]
