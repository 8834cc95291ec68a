"""The pruning chapter's ``quick`` and ``full`` profiles, side by side.

Budgets are in epochs over the chapter's training subset (``full``: all 45,000 training
images). The ``full`` profile must run in at most 90 minutes on a quiet 2-core CPU; its
``estimate_min`` is the per-section estimate it was sized with (see its docstring).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..data import DataSettings
from ..profiles import check_profile
from ..train import TrainConfig

SPARSITIES = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
"""The homework's unstructured sweep (20 % to 80 % in steps of 10)."""
EXTREME_SPARSITY = 0.95
"""Where iterating is expected to pay: one-shot pruning to 95 % destroys the network."""
CHANNEL_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5)
"""The homework's structured sweep (10 % to 50 % of the channels in steps of 10)."""


@dataclass(frozen=True)
class UnstructuredSettings:
    """One-shot vs iterative magnitude pruning at equal sparsity and equal budget.

    One-shot pruning fine-tunes ``finetune.epochs`` epochs once; iterative pruning spends
    the same epochs in ``rounds`` prune / fine-tune rounds of ``finetune.epochs // rounds``.
    """

    finetune: TrainConfig
    rounds: int
    sparsities: tuple[float, ...] = (*SPARSITIES, EXTREME_SPARSITY)

    def __post_init__(self) -> None:
        if self.finetune.epochs % self.rounds:
            raise ValueError(
                f"{self.finetune.epochs} epochs do not split into {self.rounds} rounds"
            )

    @property
    def round_finetune(self) -> TrainConfig:
        return replace(self.finetune, epochs=self.finetune.epochs // self.rounds)


@dataclass(frozen=True)
class ChannelSchedule:
    """How channels are removed: ``ratio`` of every layer's channels in ``steps`` equal steps.

    1. ``sparse_train``: train the dense model (with the pruner's regularizer for the
       sparsity-training pruners, plainly for ``plain``, so every pruner gets the same
       budget);
    2. each step: prune, recalibrate BatchNorm, fine-tune ``step_finetune`` (recovery);
    3. after the last step: fine-tune ``final_finetune`` (the long run at the final width).
    """

    step_finetune: TrainConfig
    final_finetune: TrainConfig
    sparse_train: TrainConfig
    ratio: float = 0.5
    steps: int = 5


@dataclass(frozen=True)
class SelectionSettings:
    """The importance x pruner comparison, on ``data`` (a training subset; accuracy on the
    validation split), repeated for ``seeds`` seeds (subset, shuffles and calibration
    batches change with the seed).

    1. *screening*: every importance prunes the dense model to ``schedule.ratio`` at once,
       no fine-tuning (BatchNorm recalibrated), scored on validation: seconds per candidate;
    2. the ``finalists`` best equal-cost importances run ``schedule`` with the plain pruner;
    3. the pruners run ``schedule`` with the best importance (and ``group_norm`` also with
       ``l2_group``, the norm it was designed with).

    ``reg`` are the sparsity strengths of the regularizing pruners *for this schedule*; the
    final run scales them so that strength x (sum of the learning rate over the
    sparsity-training steps) is the same (:func:`course_lib.prune.structured.matched_reg`).
    They are far above torch-pruning's defaults (1e-5, 1e-4), which assume tens of epochs of
    sparsity training.
    """

    data: DataSettings
    schedule: ChannelSchedule
    importances: tuple[str, ...]
    pruners: tuple[str, ...]
    seeds: int = 3
    finalists: int = 3
    reg: dict[str, float] = field(default_factory=lambda: {"bn_scale": 1e-1, "group_norm": 4e-2})


@dataclass(frozen=True)
class StructuredSettings:
    """The final channel pruning on the chapter's training data: ``schedule`` with the
    chosen importance and pruner, widths rounded down to multiples of ``round_to``;
    ``calibration_batches`` training batches feed BatchNorm recalibration and the
    gradient-based importances (``hessian``: their first ``hessian_samples`` images, one at
    a time). ``ratios`` are the steps' targets (one result per step)."""

    schedule: ChannelSchedule
    round_to: int | None = 8
    calibration_batches: int = 4
    hessian_samples: int = 256

    @property
    def ratios(self) -> tuple[float, ...]:
        s = self.schedule
        return tuple(round(s.ratio * (k + 1) / s.steps, 4) for k in range(s.steps))


@dataclass(frozen=True)
class LatencySettings:
    """The measuring protocol (:func:`course_lib.measure.compare`, one thread): per batch
    size, ``(rounds, calls per round)``; ``warmup`` untimed calls. ``alignment_rounds``:
    rounds of the batch-1 alignment curve (many models at once, so many rounds are cheap)."""

    protocol: dict[int, tuple[int, int]]
    warmup: int
    alignment_rounds: int


@dataclass(frozen=True)
class PruningSettings:
    """Everything the chapter runs; ``estimate_min``: minutes per section, quiet 2-core CPU."""

    data: DataSettings
    unstructured: UnstructuredSettings
    selection: SelectionSettings
    structured: StructuredSettings
    latency: LatencySettings
    estimate_min: dict[str, float]


def finetune(epochs: int, lr: float = 0.01) -> TrainConfig:
    """Fine-tuning: cosine decay from ``lr`` (10x below the baseline's peak by default)."""
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

FULL_ESTIMATE_MIN = {
    "baseline": 0.5,
    "scope comparison": 1.2,
    "one-shot sweep": 17.5,
    "iterative sweep": 16.0,
    "storage and latency": 0.5,
    "alignment": 0.5,
    "importance screening": 1.5,
    "importance comparison": 6.5,
    "pruner comparison": 6.5,
    "channel pruning": 24.0,
}
"""Estimated minutes per section of the full profile (74.7 in all; the keys are the
sections the notebook times), from timings on the idle 2-core Intel Xeon (AMX, bfloat16
autocast) of the course machine, at two PyTorch threads:

- an epoch of 45,000 images: about 34 s for the dense (or masked) model; a narrower model
  about 34 s x (0.12 + 0.88 x its fraction of the dense MACs), e.g. 12 s at 50 % of the
  channels; 10,000 images: 7.6 s dense;
- one fp32 evaluation of the 10,000 test images 9 s (5,000 validation images 4 s);
- a latency comparison with the dense model, 4 runtime x batch settings: about 15 s;
- unstructured sweeps: 8 sparsities x (3 epochs + 1-2 test evaluations + storage);
- selection: 27 screening prunings; then per candidate and seed 1 + 5 x 1 + 3 epochs on
  10,000 images at shrinking widths, about 41 s; 3 importances and 2-3 pruners x 3 seeds;
- channel pruning: 1 + 5 x 2 epochs at shrinking widths, 60 epochs at 50 % (about 18 s
  each, measured), 5 measured steps.

With a 15-epoch final fine-tune the profile took 46.5 min on the idle Intel Xeon (commit
c448f1e); with the 60-epoch one 64.0 min (commit 278dc71). CPU-heavy jobs beside it slow
PyTorch's two-thread kernels many-fold: run the full profile on an otherwise idle
machine."""

PRUNING = {
    "quick": PruningSettings(
        data=DataSettings(train_per_class=100, val_per_class=50, test_per_class=100, batch_size=64),
        unstructured=UnstructuredSettings(finetune=finetune(2), rounds=2),
        selection=SelectionSettings(
            data=DataSettings(train_per_class=100, val_per_class=50, batch_size=64),
            schedule=ChannelSchedule(
                step_finetune=finetune(1), final_finetune=finetune(1), sparse_train=finetune(1)
            ),
            importances=ALL_IMPORTANCES,
            pruners=ALL_PRUNERS,
            seeds=3,
            finalists=2,
        ),
        structured=StructuredSettings(
            schedule=ChannelSchedule(
                step_finetune=finetune(1),
                final_finetune=finetune(2, lr=0.02),
                sparse_train=finetune(1, lr=0.02),
            ),
            hessian_samples=32,
        ),
        latency=LatencySettings(protocol={1: (10, 5), 64: (4, 1)}, warmup=2, alignment_rounds=10),
        estimate_min={"all sections (1,000 training images)": 6.0},
    ),
    "full": PruningSettings(
        data=DataSettings(),
        unstructured=UnstructuredSettings(finetune=finetune(3), rounds=3),
        selection=SelectionSettings(
            data=DataSettings(train_per_class=1000),
            schedule=ChannelSchedule(
                step_finetune=finetune(1),
                final_finetune=finetune(3),
                sparse_train=finetune(1, lr=0.02),
            ),
            importances=ALL_IMPORTANCES,
            pruners=ALL_PRUNERS,
        ),
        structured=StructuredSettings(
            schedule=ChannelSchedule(
                step_finetune=finetune(2),
                # Twice the baseline's 30 epochs, at a quarter of its MACs (about 15 dense
                # epochs of compute): 15 epochs from 0.02 recovered only to 3.13 points
                # below the dense model (commit c448f1e).
                final_finetune=finetune(60, lr=0.05),
                sparse_train=finetune(1, lr=0.02),
            )
        ),
        latency=LatencySettings(
            protocol={1: (100, 10), 64: (30, 2)}, warmup=10, alignment_rounds=200
        ),
        estimate_min=FULL_ESTIMATE_MIN,
    ),
}


def pruning_settings(profile: str) -> PruningSettings:
    return PRUNING[check_profile(profile)]
