"""The pruning chapter's ``quick`` and ``full`` profiles, side by side.

Budgets are in epochs over the chapter's training subset (``full``: all 45,000 training
images). The ``full`` profile must run in at most 90 minutes on a 2-core CPU;
:data:`FULL_MINUTES` is the per-section estimate it was sized with.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..data import DataSettings
from ..profiles import check_profile
from ..train import TrainConfig

SPARSITIES = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
CHANNEL_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5)


@dataclass(frozen=True)
class UnstructuredSettings:
    """One-shot vs iterative magnitude pruning at equal sparsity and equal budget.

    One-shot pruning fine-tunes ``finetune.epochs`` epochs once; iterative pruning spends
    the same epochs in ``rounds`` prune / fine-tune rounds of ``finetune.epochs // rounds``.
    """

    finetune: TrainConfig
    rounds: int
    sparsities: tuple[float, ...] = SPARSITIES

    def __post_init__(self) -> None:
        if self.finetune.epochs % self.rounds:
            raise ValueError(
                f"{self.finetune.epochs} epochs do not split into {self.rounds} rounds"
            )

    @property
    def round_finetune(self) -> TrainConfig:
        return replace(self.finetune, epochs=self.finetune.epochs // self.rounds)


@dataclass(frozen=True)
class SelectionSettings:
    """The importance x pruner comparison: every candidate prunes the same dense model to
    ``ratio`` in ``steps`` steps, fine-tuning ``finetune`` after each, on ``data`` (a training
    subset; accuracy on the validation split). Sparsity-training pruners first train
    ``sparse_train`` with their regularizer (strength ``reg``); ``plain`` trains as long
    without one. The strengths are far above torch-pruning's defaults (1e-5 for BN-scale,
    1e-4 for group norm) because those assume tens of epochs of sparsity training, and we
    can afford one or two: the product of strength, learning rate and steps is what moves
    the weights."""

    data: DataSettings
    finetune: TrainConfig
    sparse_train: TrainConfig
    importances: tuple[str, ...]
    pruners: tuple[str, ...]
    reg: dict[str, float] = field(default_factory=lambda: {"bn_scale": 5e-2, "group_norm": 2e-2})
    ratio: float = 0.5
    steps: int = 5


@dataclass(frozen=True)
class StructuredSettings:
    """Gradual channel pruning to ``max(ratios)`` in ``len(ratios)`` steps, fine-tuning
    ``finetune`` after each step; ``calibration_batches`` training batches feed the
    gradient-based importances (``hessian``: their first ``hessian_samples`` images, one at
    a time). If a sparsity-training pruner is chosen, it first trains ``sparse_train`` with
    its regularizer."""

    finetune: TrainConfig
    sparse_train: TrainConfig
    ratios: tuple[float, ...] = CHANNEL_RATIOS
    calibration_batches: int = 4
    hessian_samples: int = 256


@dataclass(frozen=True)
class PruningSettings:
    data: DataSettings
    unstructured: UnstructuredSettings
    selection: SelectionSettings
    structured: StructuredSettings
    latency_repeats: int
    latency_warmup: int
    latency_batches: tuple[int, ...] = (1, 64)


def _finetune(epochs: int, lr: float = 0.01) -> TrainConfig:
    """Fine-tuning: cosine decay from a learning rate 10x below the baseline's peak."""
    return TrainConfig(epochs=epochs, lr=lr, schedule="cosine", label_smoothing=0.1)


ALL_IMPORTANCES = (
    "l1_filter",
    "l1_group",
    "l2_group",
    "taylor",
    "hessian",
    "bn_scale",
    "lamp",
    "fpgm",
    "random",
)
ALL_PRUNERS = ("plain", "bn_scale", "group_norm")

PRUNING = {
    "quick": PruningSettings(
        data=DataSettings(train_per_class=100, val_per_class=50, test_per_class=100, batch_size=64),
        unstructured=UnstructuredSettings(finetune=_finetune(2), rounds=2),
        selection=SelectionSettings(
            data=DataSettings(train_per_class=100, val_per_class=50, batch_size=64),
            finetune=_finetune(1),
            sparse_train=_finetune(1, lr=0.02),
            importances=ALL_IMPORTANCES,
            pruners=ALL_PRUNERS,
        ),
        structured=StructuredSettings(
            finetune=_finetune(1, lr=0.02), sparse_train=_finetune(1, lr=0.02), hessian_samples=32
        ),
        latency_repeats=5,
        latency_warmup=2,
    ),
    "full": PruningSettings(
        data=DataSettings(),
        unstructured=UnstructuredSettings(finetune=_finetune(3), rounds=3),
        selection=SelectionSettings(
            data=DataSettings(train_per_class=1000),
            finetune=_finetune(1),
            sparse_train=_finetune(2, lr=0.02),
            importances=ALL_IMPORTANCES,
            pruners=ALL_PRUNERS,
        ),
        structured=StructuredSettings(
            finetune=_finetune(4, lr=0.02), sparse_train=_finetune(2, lr=0.02)
        ),
        latency_repeats=100,
        latency_warmup=10,
    ),
}

FULL_MINUTES = {
    "baseline, and layer-wise vs global without fine-tuning (14 validations)": 1.5,
    "one-shot sweep: 7 x (3 epochs + measurements)": 16.0,
    "iterative sweep: 7 x (3 rounds of 1 epoch + measurements)": 15.5,
    "storage and latency of the unstructured models": 0.5,
    "importance comparison: 9 x 5 steps of 1 epoch on 10,000 images": 5.0,
    "pruner comparison: 4-5 x (2 + 5) epochs on 10,000 images": 4.0,
    "gradual channel pruning: 5 steps x 4 epochs (+1.5 min if sparsity training)": 9.5,
}
"""Estimated minutes per section of the full profile (about 52 in all), from timings on the
idle 2-core CPU: an epoch of 45,000 images takes about 39 s for the dense (or masked) model
and 12 s at 50 % of the channels; one test-set evaluation 7 s; one latency measurement
(4 settings x 110 runs) 7 s. Other CPU-heavy jobs on the machine slow PyTorch's two-thread
kernels several-fold: run the full profile on an otherwise idle machine."""


def pruning_settings(profile: str) -> PruningSettings:
    return PRUNING[check_profile(profile)]
