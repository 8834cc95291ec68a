"""Checks and tolerances of the pruning assignment (``assignments/source/pruning``).

Exact checks (no tolerance): sparsity of unstructured pruning (to the weight), which
weights magnitude pruning removes, the layer shapes and parameter counts after structured
pruning. Tolerance bands: accuracies, which depend on the machine and the seed, are only
required to stay above a floor (``baseline accuracy - MAX_DROP[...]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..models import BaselineCNN
from ..train import TrainConfig
from .checks import CheckFailed

# --- tolerances --------------------------------------------------------------------------

#: Pruned weights may differ from ``round(ratio * total)`` by this many weights (floor
#: versus round when a student computes the count by hand); anything else is exact.
SPARSITY_COUNT_TOLERANCE = 1

#: Largest accepted accuracy drop from the unpruned baseline (fractions, on the validation
#: subset of the quick profile). Generous: they catch a wrong method, not a slow laptop.
MAX_DROP = {
    "one_shot_50": 0.10,  # global magnitude pruning to 50 %, no fine-tuning
    "iterative_80": 0.15,  # iterative magnitude pruning to 80 %, fine-tuned
    "structured_50": 0.40,  # torch-pruning 50 % of the channels, iteratively, fine-tuned
}

#: A pruned model must stay well above chance (10 % on CIFAR-10) whatever its baseline.
MIN_ACCURACY = 0.30

PRUNABLE_LAYERS = (nn.Conv2d, nn.Linear)


# --- the assignment's settings -----------------------------------------------------------


@dataclass(frozen=True)
class PruningHomework:
    """What the pruning assignment runs: data subsets, fine-tuning, and the sweeps."""

    train_per_class: int | None
    val_per_class: int | None
    test_per_class: int | None
    batch_size: int
    finetune: TrainConfig
    unstructured_ratios: tuple[float, ...] = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
    iterative_sparsity: float = 0.8
    iterative_steps: int = 3
    structured_ratios: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5)
    structured_ratio: float = 0.5
    structured_steps: int = 2


_FINETUNE = TrainConfig(epochs=1, lr=0.01, schedule="cosine", channels_last=False)
PRUNING_HOMEWORK = {
    # graded: minutes on a laptop CPU
    "quick": PruningHomework(
        train_per_class=100, val_per_class=50, test_per_class=50, batch_size=32, finetune=_FINETUNE
    ),
    # the homework's protocol on the whole validation and test sets (about an hour on 2 cores)
    "full": PruningHomework(
        train_per_class=None,
        val_per_class=None,
        test_per_class=None,
        batch_size=128,
        finetune=_FINETUNE,
        structured_steps=5,
    ),
}


def pruning_homework(profile: str) -> PruningHomework:
    """The settings of the pruning assignment for ``profile`` ("quick" or "full")."""
    if profile not in PRUNING_HOMEWORK:
        raise ValueError(f"unknown profile {profile!r}: use one of {', '.join(PRUNING_HOMEWORK)}")
    return PRUNING_HOMEWORK[profile]


# --- unstructured pruning ----------------------------------------------------------------


def prunable_weights(model: nn.Module) -> list[torch.Tensor]:
    """The weights that pruning is measured on: every Conv2d and Linear ``weight`` (with
    any ``torch.nn.utils.prune`` mask applied). Biases and BatchNorm are not counted."""
    return [m.weight.detach() for m in model.modules() if isinstance(m, PRUNABLE_LAYERS)]


def zero_count(model: nn.Module) -> tuple[int, int]:
    """(weights that are exactly zero, all weights) over :func:`prunable_weights`."""
    weights = prunable_weights(model)
    zeros = sum(int((w == 0).sum()) for w in weights)
    return zeros, sum(w.numel() for w in weights)


def sparsity(model: nn.Module) -> float:
    """Fraction of :func:`prunable_weights` that are exactly zero."""
    zeros, total = zero_count(model)
    return zeros / total


def check_sparsity(model: nn.Module, ratio: float, what: str = "the model") -> None:
    """Exactly ``round(ratio * total)`` prunable weights are zero (up to
    :data:`SPARSITY_COUNT_TOLERANCE`)."""
    zeros, total = zero_count(model)
    expected = round(ratio * total)
    if abs(zeros - expected) > SPARSITY_COUNT_TOLERANCE:
        raise CheckFailed(
            f"{what}: {zeros:,} of {total:,} conv/linear weights are zero (sparsity "
            f"{zeros / total:.4f}), expected {expected:,} (sparsity {ratio}). The ratio is "
            f"global and counts all Conv2d and Linear weights together, and it is the "
            f"model's total sparsity, not the fraction of the weights still left."
        )


def check_magnitude_criterion(original: nn.Module, pruned: nn.Module) -> None:
    """The zeroed weights of ``pruned`` are the smallest in magnitude of ``original``,
    ranked over all layers together (global magnitude pruning)."""
    before = [w.abs().flatten() for w in prunable_weights(original)]
    after = [w.flatten() for w in prunable_weights(pruned)]
    if [w.numel() for w in before] != [w.numel() for w in after]:
        raise CheckFailed("the pruned model's layers do not match the original model's layers")
    magnitude, removed = torch.cat(before), torch.cat(after) == 0
    was_zero = magnitude == 0
    if (removed & ~was_zero).sum() == 0:
        raise CheckFailed("no weight was pruned")
    largest_removed = magnitude[removed].max().item()
    smallest_kept = magnitude[~removed].min().item()
    if largest_removed > smallest_kept:
        raise CheckFailed(
            f"a weight of magnitude {largest_removed:.3g} was pruned while one of "
            f"{smallest_kept:.3g} was kept: global magnitude pruning removes the smallest "
            f"|w| over all layers at once (not a fixed fraction per layer, not random ones)."
        )


def check_schedule(recorded: Sequence[float], final: float, steps: int, total: int) -> None:
    """An iterative run of ``steps`` steps reached the sparsities ``final * k / steps``
    (k = 1..steps) in order, one fine-tuning after each; ``total`` is the number of weights."""
    expected = [final * (k + 1) / steps for k in range(steps)]
    if len(recorded) != steps:
        raise CheckFailed(
            f"fine-tuning ran {len(recorded)} times, expected {steps} (once after every "
            f"pruning step)"
        )
    tolerance = (SPARSITY_COUNT_TOLERANCE + 0.5) / total
    for k, (got, want) in enumerate(zip(recorded, expected, strict=True), start=1):
        if abs(got - want) > tolerance:
            raise CheckFailed(
                f"after step {k} of {steps} the sparsity was {got:.4f}, expected "
                f"{want:.4f}: step k prunes the model to final_sparsity * k / steps (a "
                f"cumulative target, not the same amount again)."
            )


# --- structured pruning ------------------------------------------------------------------


def pruned_channels(channels: int, ratio: float) -> int:
    """Channels left when torch-pruning removes ``ratio`` of ``channels`` in one layer
    (``int(channels * (1 - ratio))``, the rounding of torch-pruning 1.6)."""
    return int(channels * (1 - ratio))


def expected_structured(
    ratio: float, widths: tuple[int, int, int] = (32, 64, 128), hidden: int = 256
) -> BaselineCNN:
    """A fresh :class:`BaselineCNN` with the shape that uniform (local) structured pruning
    of ``BaselineCNN(widths, hidden)`` at ``ratio`` produces; the 10 outputs are kept."""
    stages = tuple(pruned_channels(w, ratio) for w in widths)
    return BaselineCNN(widths=stages, hidden=pruned_channels(hidden, ratio))


def layer_shapes(model: nn.Module) -> list[tuple[int, ...]]:
    """Weight shapes of every Conv2d and Linear layer, in order."""
    return [tuple(w.shape) for w in prunable_weights(model)]


def check_structured(model: nn.Module, ratio: float, what: str = "the pruned model") -> None:
    """Layer shapes and parameter count equal those of :func:`expected_structured`, and the
    model still maps a batch of images to 10 logits."""
    expected = expected_structured(ratio)
    got_shapes, want_shapes = layer_shapes(model), layer_shapes(expected)
    if got_shapes != want_shapes:
        raise CheckFailed(
            f"{what}: conv/linear weight shapes are {got_shapes}, expected {want_shapes} for "
            f"pruning {ratio:.0%} of the channels of every layer (local pruning, "
            f"global_pruning=False) with the output layer in ignored_layers."
        )
    params = sum(p.numel() for p in model.parameters())
    want_params = sum(p.numel() for p in expected.parameters())
    if params != want_params:
        raise CheckFailed(f"{what}: {params:,} parameters, expected {want_params:,}")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model(torch.zeros(2, 3, 32, 32, device=device))
    model.train(was_training)
    if tuple(out.shape) != (2, 10):
        raise CheckFailed(f"{what}: output shape {tuple(out.shape)} for 2 images, expected (2, 10)")


def check_steps(param_counts: Sequence[int], steps: int) -> None:
    """An iterative structured run fine-tuned ``steps`` times, with fewer parameters after
    every step (``param_counts`` recorded by the fine-tuning callback)."""
    if len(param_counts) != steps:
        raise CheckFailed(
            f"fine-tuning ran {len(param_counts)} times, expected {steps} (once after every "
            f"pruner.step())"
        )
    if not all(
        later < earlier for earlier, later in zip(param_counts, param_counts[1:], strict=False)
    ):
        raise CheckFailed(
            f"parameter counts after each step were {list(param_counts)}: every step must "
            f"remove channels (pass iterative_steps to the pruner, call pruner.step() once per "
            f"step)"
        )


# --- accuracy ----------------------------------------------------------------------------


def accuracy_floor(baseline_accuracy: float, key: str) -> float:
    """The accuracy a pruned model must reach: ``baseline - MAX_DROP[key]``, and at least
    :data:`MIN_ACCURACY`."""
    if key not in MAX_DROP:
        raise KeyError(f"unknown accuracy check {key!r}: use one of {sorted(MAX_DROP)}")
    return max(baseline_accuracy - MAX_DROP[key], MIN_ACCURACY)
