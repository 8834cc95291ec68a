"""Checks and settings of the Taylor-pruning assignment (``assignments/source/taylor``).

Students write Molchanov's criterion with hooks (per image, the magnitude of the mean over
positions of activation x gradient; averaged over the batch; summed over batches), the
layer-wise L2
normalization, and one prune-and-fine-tune round through torch-pruning's dependency graph.
Every check compares their function with the course's own (:mod:`course_lib.taylor`) on
fixed networks and tensors. Exact checks: which filters a round removes, the shapes and
weights of the pruned network. Floating point within ``RTOL`` / ``ATOL``: scores and
normalized scores, and then their ranking exactly. Tolerance band: the accuracy of the
quick-profile run (``TAYLOR_MIN_ACCURACY``), a floor that random ranking does not reach.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..data import DataSettings
from ..profiles import check_profile
from ..taylor.criterion import lowest_filters, normalize_per_layer, taylor_scores
from ..taylor.loop import remove_filters
from ..taylor.network import SmallVGG16, conv_widths
from ..taylor.settings import finetune_config
from ..train import TrainConfig
from .checks import CheckFailed

#: Relative and absolute tolerance of scores (float32 sums over thousands of products).
RTOL, ATOL = 1e-4, 1e-10

#: Test accuracy (a fraction, on the quick profile's 600 test images of automobile vs truck)
#: the pruned network must reach. Measured with the committed source network:
#: - 2-core Intel Xeon (bfloat16 autocast, 2026-11-27): the Taylor ranking 84.7, 88.0 and
#:   86.0 % (data seeds 0-2); a random ranking 80.3, 74.2 and 50.5 % (seeds 0-2);
#: - 2-core AMD EPYC (AVX2, float32, 2026-12-07, data seed 0): the Taylor ranking 83.3 %;
#:   a random ranking 83.3, 76.2, 50.2, 80.2, 65.5, 69.7, 54.7, 78.0 % (seeds 0-7, mean 69.7).
#: A working criterion clears the floor on both machines (by 8 images of 600 on the AMD
#: one); random rankings stay below it on average, though a lucky draw may reach it, which
#: is why the criterion itself is checked exactly (check_taylor_criterion) and this floor
#: is worth only the accuracy test's points. tests/test_grading_taylor.py checks both sides.
TAYLOR_MIN_ACCURACY = 0.82

Scores = dict[str, torch.Tensor]


@dataclass(frozen=True)
class TaylorHomework:
    """What the assignment runs: the target task's data, the transfer fine-tuning, and
    ``rounds`` rounds that each remove ``filters_per_round`` filters and fine-tune."""

    data: DataSettings
    transfer: TrainConfig
    finetune: TrainConfig
    rounds: int
    filters_per_round: int


TAYLOR_HOMEWORK = {
    # graded: a few minutes on a laptop CPU
    "quick": TaylorHomework(
        data=DataSettings(train_per_class=313, val_per_class=50, test_per_class=300, batch_size=64),
        transfer=finetune_config(4, lr=0.05),
        finetune=finetune_config(2, lr=0.02),
        rounds=2,
        filters_per_round=300,
    ),
    # all 2,000 test images, the chapter's fine-tuning (about 10 minutes on 2 cores)
    "full": TaylorHomework(
        data=DataSettings(
            train_per_class=313, val_per_class=None, test_per_class=None, batch_size=64
        ),
        transfer=finetune_config(15, lr=0.05),
        finetune=finetune_config(5, lr=0.02),
        rounds=2,
        filters_per_round=300,
    ),
}


def taylor_homework(profile: str) -> TaylorHomework:
    """The settings of the assignment for ``profile`` ("quick" or "full")."""
    return TAYLOR_HOMEWORK[check_profile(profile)]


# --- fixed networks and batches ----------------------------------------------------------


def homework_network(seed: int = 0, width_divisor: int = 16, num_classes: int = 3) -> nn.Module:
    """A small :class:`SmallVGG16` (4 ... 32 filters by default) with random BatchNorm
    statistics and affine parameters, in eval mode: fixed weights to check functions on."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = SmallVGG16(num_classes=num_classes, width_divisor=width_divisor, hidden=16)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=generator) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=generator) * 0.1)
    return model.eval()


def other_network(seed: int = 0) -> nn.Module:
    """A different layout for the hidden tests: conv-ReLU without BatchNorm, a conv with a
    bias, a 5x5 kernel, two poolings, and a head of two linear layers."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 6, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 10, 3, padding=1, bias=False),
        nn.BatchNorm2d(10),
        nn.ReLU(),
        nn.Conv2d(10, 7, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(7 * 8 * 8, 12),
        nn.ReLU(),
        nn.Linear(12, 4),
    ).eval()


def fixed_batches(
    sizes: tuple[int, ...], classes: int = 3, seed: int = 0, size: int = 32
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of standard-normal images and random labels, one per entry of ``sizes``."""
    generator = torch.Generator().manual_seed(seed)
    return [
        (
            torch.randn(n, 3, size, size, generator=generator),
            torch.randint(0, classes, (n,), generator=generator),
        )
        for n in sizes
    ]


# --- the criterion -----------------------------------------------------------------------


def _check_scores(got, want: Scores, what: str, hint: str) -> None:
    # the keys in any order: hooks on the backward pass meet the layers last to first
    if not isinstance(got, dict) or set(got) != set(want):
        keys = sorted(got, key=str) if isinstance(got, dict) else type(got).__name__
        raise CheckFailed(
            f"{what}: got {keys}, expected a dict with one entry per conv layer, {list(want)}"
        )
    for name, expected in want.items():
        value = got[name]
        if not isinstance(value, torch.Tensor) or value.shape != expected.shape:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise CheckFailed(
                f"{what}, layer {name!r}: got {shape}, expected a 1-D tensor of "
                f"{expected.numel()} scores (one per filter)"
            )
        value = value.detach().cpu().float()
        if not torch.allclose(value, expected, rtol=RTOL, atol=ATOL):
            worst = ((value - expected).abs() / expected.abs().clamp_min(ATOL)).max().item()
            raise CheckFailed(
                f"{what}, layer {name!r}: scores differ from the expected ones (largest "
                f"relative difference {worst:.3g}); {hint}"
            )


CRITERION_HINT = (
    "for every image, average activation x gradient over the positions of each feature map "
    "and take the absolute value; average those over the batch's images (the gradient you "
    "get is that of the batch's mean cross-entropy, 1/N of each image's own: the 1/N and the "
    "average's 1/N do not both belong), and add it up over the batches (eval mode)."
)
BATCH_MEAN_HINT = (
    "your scores equal the magnitude of the batch's mean (|mean over images and positions|), "
    "where Molchanov et al. take the magnitude per image before averaging over the batch: "
    "with the mean over images first, images that push the loss in opposite directions "
    "cancel."
)


def _check_not_the_batch_variant(got, want: Scores, model, batches, sizes) -> None:
    """Say so when ``got`` is the magnitude of the batch mean (where that differs from the
    paper's criterion: batches of one image give both)."""
    variant = taylor_scores(copy.deepcopy(model), batches, per_example=False)
    for scores in (want, got):
        try:
            _check_scores(scores, variant, "", "")
        except CheckFailed:
            continue  # these scores are not the variant's
        if scores is got:
            raise CheckFailed(f"criterion with batch sizes {list(sizes)}: {BATCH_MEAN_HINT}")
        return  # the paper's criterion equals the variant here: nothing to tell apart


def check_taylor_criterion(
    criterion: Callable[[nn.Module, list], Scores],
    model: nn.Module | None = None,
    sizes: tuple[int, ...] = (4, 4),
    seed: int = 0,
) -> None:
    """``criterion(model, batches)`` equals the course's :func:`taylor_scores` on fixed
    ``batches`` of the given ``sizes`` (default network: :func:`homework_network`), ranks
    the filters the same, and leaves no hook and no gradient behind."""
    model = homework_network(seed) if model is None else model
    classes = [m for m in model.modules() if isinstance(m, nn.Linear)][-1].out_features
    batches = fixed_batches(sizes, classes, seed)
    want = taylor_scores(copy.deepcopy(model), batches)
    got = criterion(model, batches)
    _check_not_the_batch_variant(got, want, model, batches, sizes)
    _check_scores(got, want, f"criterion with batch sizes {list(sizes)}", CRITERION_HINT)
    for name, expected in want.items():
        in_expected_order = got[name].detach().cpu().float()[expected.argsort()]
        slack = ATOL + RTOL * in_expected_order.abs()
        if (in_expected_order[:-1] > in_expected_order[1:] + slack[1:]).any():
            raise CheckFailed(f"criterion, layer {name!r}: the filters are ranked differently")
    hooks = [m for m in model.modules() if m._forward_hooks]
    if hooks:
        raise CheckFailed(
            f"{len(hooks)} module(s) still carry forward hooks after the criterion: remove "
            f"every handle (handle.remove()) when done, e.g. in a finally block"
        )
    if any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters()):
        raise CheckFailed(
            "the network's parameters keep gradients after the criterion: call "
            "model.zero_grad(set_to_none=True) when done"
        )


def check_normalization(normalize: Callable[[Scores], Scores], seed: int = 0) -> None:
    """``normalize(scores)`` divides every layer's scores by their L2 norm, leaves a layer
    of zeros at zero (no NaN), and does not change the input."""
    generator = torch.Generator().manual_seed(seed)
    scores = {
        "features.0": torch.rand(4, generator=generator) * 1e-4,
        "features.3": torch.rand(9, generator=generator) * 30,
        "features.7": torch.zeros(5),
        "features.10": torch.tensor([2.0]),
    }
    before = {k: v.clone() for k, v in scores.items()}
    got = normalize(scores)
    _check_scores(
        got,
        normalize_per_layer(before),
        "normalize_per_layer",
        "divide each layer's scores by the square root of the sum of that layer's squared "
        "scores; a layer whose scores are all zero stays zero",
    )
    if any(not torch.equal(scores[k], before[k]) for k in before):
        raise CheckFailed("normalize_per_layer changed its input: return new tensors")


# --- one prune-and-fine-tune round ---------------------------------------------------------

PruneRound = Callable[..., dict[str, list[int]]]


def expected_round(
    model: nn.Module, scores: Scores, count: int, example_input: torch.Tensor
) -> tuple[nn.Module, dict[str, list[int]]]:
    """The course's round on a copy of ``model``: the pruned copy and the removed filters."""
    reference = copy.deepcopy(model)
    chosen = lowest_filters(scores, count, min_filters=1)
    remove_filters(reference, chosen, example_input)
    return reference, chosen


def check_prune_round(
    prune_round: PruneRound,
    count: int = 20,
    model: nn.Module | None = None,
    scores: Scores | None = None,
    seed: int = 0,
) -> None:
    """``prune_round(model, scores, count, example_input, finetune)`` removes exactly the
    ``count`` lowest-scored filters of the whole network (each layer keeps at least one),
    with their BatchNorm entries and the next layers' inputs, calls ``finetune(model)``
    once after the removal, and returns the removed filters ``{conv name: indices}``."""
    model = homework_network(seed) if model is None else model
    example = torch.zeros(1, 3, 32, 32)
    if scores is None:
        generator = torch.Generator().manual_seed(seed)
        convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
        scores = {n: torch.rand(m.out_channels, generator=generator) for n, m in convs}
    reference, chosen = expected_round(model, scores, count, example)
    calls = []

    def finetune(m: nn.Module) -> None:
        calls.append(conv_widths(m))

    returned = prune_round(
        model, {k: v.clone() for k, v in scores.items()}, count, example, finetune
    )
    if conv_widths(model) != conv_widths(reference):
        raise CheckFailed(
            f"after the round the conv widths are {conv_widths(model)}, expected "
            f"{conv_widths(reference)}: remove the {count} lowest-scored filters of the whole "
            f"network (one ranking over all layers), keeping at least one per layer"
        )
    if calls != [conv_widths(reference)]:
        raise CheckFailed(
            f"finetune was called {len(calls)} time(s) with widths {calls}: call it once, "
            f"after removing the filters"
        )
    if (
        not isinstance(returned, dict)
        or {k: sorted(v) for k, v in returned.items() if len(v)} != chosen
    ):
        raise CheckFailed(
            f"prune_round returned {returned!r}, expected the removed filters {chosen}"
        )
    got, want = model.state_dict(), reference.state_dict()
    for key, value in want.items():
        if got[key].shape != value.shape or not torch.equal(got[key], value):
            raise CheckFailed(
                f"{key} differs from the expected pruned network: remove the filters with "
                f"torch-pruning's dependency graph, so that the BatchNorm after each conv and "
                f"the next layer's inputs lose the same channels"
            )
