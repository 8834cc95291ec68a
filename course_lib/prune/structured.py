"""Structured (channel) pruning with torch-pruning: remove whole channels, get a smaller model.

Removing output channel ``k`` of a convolution is not a local edit: the BatchNorm after it
loses its ``k``-th scale, shift and running statistics, and the next convolution (or, after
``Flatten``, the next linear layer) loses the input slice that read channel ``k``.
torch-pruning traces the model once into a **dependency graph** and, for every prunable
layer, collects such coupled slices into a **group** that is always removed together.

- An **importance** (``tp.importance.*``) scores every channel of a group, e.g. the L2 norm
  of all the weights the group would remove (:data:`IMPORTANCES`).
- A **pruner** (``tp.pruner.*``) ranks channels by importance and removes the lowest ones,
  ``pruning_ratio`` of each layer's channels, optionally in ``iterative_steps`` steps
  (10 %, 20 %, ... of the original channels). The sparsity-training pruners
  (:data:`PRUNERS`) add a regularizer to the gradients during a training phase before
  pruning, pushing unimportant groups towards zero so that removing them hurts less.

Depthwise convolutions (MobileNet) and grouped ones (ResNeXt) are pruned too: a depthwise
layer loses the same input and output channels, a grouped one the same positions in every
block (:func:`conv_kind`); the few cases torch-pruning 1.6 gets wrong are refused with the
reason (:func:`check_supported`, :func:`check_grouped`).

The result is a plain dense model with fewer channels: fewer parameters, fewer MACs, and
a speed-up on any hardware, unlike unstructured zeros.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn

from ..train import TrainConfig, make_optimizer, make_scheduler
from .unstructured import check_ratio

IMPORTANCES: dict[str, Callable[[], tp.importance.Importance]] = {
    "l1_filter": lambda: tp.importance.GroupMagnitudeImportance(
        p=1, group_reduction="first", normalizer=None
    ),
    "l1_group": lambda: tp.importance.GroupMagnitudeImportance(p=1),
    "l2_group": lambda: tp.importance.GroupMagnitudeImportance(p=2),
    "taylor": lambda: tp.importance.GroupTaylorImportance(),
    "hessian": lambda: tp.importance.GroupHessianImportance(),
    "bn_scale": lambda: tp.importance.BNScaleImportance(),
    "lamp": lambda: tp.importance.LAMPImportance(p=2),
    "fpgm": lambda: tp.importance.FPGMImportance(p=2),
    "random": lambda: tp.importance.RandomImportance(),
}
"""Channel importance criteria by name. ``l1_filter`` is the classic per-filter L1 norm
(Li et al., 2017), the ``*_group`` ones sum the norm over every coupled slice of a group."""

GRADIENT_IMPORTANCES = ("taylor", "hessian")
"""Importances that read ``.grad``: :func:`estimate_gradients` must run before each step."""


class GroupNormPruner(tp.pruner.GroupNormPruner):
    """DepGraph's group-norm sparsity (Fang et al., 2023), whatever importance ranks the
    channels.

    torch-pruning 1.6 weighs each group's penalty by ``sqrt(importance)`` of the *ranking*
    importance. For ``hessian`` (``w**2 * grad`` on the current gradients) that is negative
    for some channels, the square root is NaN, and the group is silently skipped: the
    "regularized" pruner then trains exactly like the plain one. The penalty belongs to the
    group's weights, not to the ranking, so here it always uses the L2 norm of the group
    (mean of each member's sum of squares, then the square root), as DepGraph defines it.

    Depthwise convolutions: torch-pruning 1.6's importances and this regularizer have no
    case for a depthwise layer's pruning function, so its filters count neither in the
    group's norm nor in the penalty (in MobileNetV2 the penalty reaches a group's expansion
    convolution, its BatchNorms and the projection's inputs, not the depthwise filters); the
    pruning itself removes them correctly.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.norm_importance = tp.importance.GroupMagnitudeImportance(p=2, normalizer=None)

    def regularize(self, model: nn.Module, alpha: float = 2**4, bias: bool = False) -> None:
        ranking, self.importance = self.importance, self.norm_importance
        try:
            super().regularize(model, alpha=alpha, bias=bias)
        finally:
            self.importance = ranking


PRUNERS: dict[str, type[tp.pruner.BasePruner]] = {
    "plain": tp.pruner.BasePruner,
    "bn_scale": tp.pruner.BNScalePruner,
    "group_norm": GroupNormPruner,
}
"""``plain`` prunes by importance only; ``bn_scale`` (network slimming, Liu et al. 2017: an
L1 penalty on the BatchNorm scales) and ``group_norm`` (DepGraph's group-norm sparsity,
:class:`GroupNormPruner`) also regularize during a sparsity-training phase."""

REGULARIZING = ("bn_scale", "group_norm")
"""The pruners whose ``regularize`` changes the gradients."""

SUPPORTED_LAYERS = (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d)


def conv_kind(conv: nn.Conv2d) -> str:
    """How a convolution connects its channels, as far as channel pruning is concerned.

    - ``"dense"``: ``groups == 1``, every output channel reads every input channel;
    - ``"depthwise"``: ``groups == in_channels == out_channels`` (MobileNet's 3x3 layers),
      output channel ``k`` reads input channel ``k`` only, so removing one removes the other:
      torch-pruning puts both in the same dependency group, with the layer before and the
      BatchNorm after, and the layer stays depthwise (``groups`` shrinks with the channels);
    - ``"grouped"``: ``groups`` blocks of at least 2 input and 2 output channels each
      (ResNeXt); every block must keep the same width, so torch-pruning removes the same
      positions from every block (it averages the importance over the blocks);
    - ``"multiplier"`` (one input channel per group, several outputs: a depthwise
      convolution with a channel multiplier) and ``"shrinking"`` (one output channel per
      group, several inputs): shapes torch-pruning 1.6 cannot prune, see
      :func:`check_supported`.
    """
    if conv.groups == 1:
        return "dense"
    if conv.groups == conv.in_channels == conv.out_channels:
        return "depthwise"
    if conv.groups == conv.in_channels:
        return "multiplier"
    if conv.groups == conv.out_channels:
        return "shrinking"
    return "grouped"


UNSUPPORTED_CONVS = {
    "multiplier": "a convolution with one input channel per group and several output channels "
    "per group (a depthwise convolution with a channel multiplier): torch-pruning 1.6 scores "
    "its input channels on a weight that holds one input channel per group as if it held "
    "all of them, and fails",
    "shrinking": "a convolution with one output channel per group and several input channels "
    "per group: torch-pruning 1.6 takes every convolution whose groups equal its output "
    "channels for a depthwise one and removes as many input channels as output channels, "
    "which leaves this layer inconsistent",
}
"""The convolution shapes (:func:`conv_kind`) that channel pruning refuses, and why."""

GROUPED_LIMITS = {
    "round_to": "torch-pruning 1.6 rounds a grouped convolution's per-block count of removed "
    "channels against the layer's whole width, which gives wrong widths (or none removed)",
    "fpgm": "torch-pruning 1.6's FPGM importance fails on the input channels of a grouped "
    "convolution (its per-channel scores cannot be tiled over the blocks)",
    "group_norm": "torch-pruning 1.6's group-norm regularizer indexes the input channels of a "
    "grouped convolution past its per-block weight and fails",
}
"""What torch-pruning 1.6 gets wrong with ``"grouped"`` convolutions (not depthwise ones):
``round_to``, the ``fpgm`` importance and the ``group_norm`` pruner are refused with them."""


def check_supported(model: nn.Module) -> None:
    """``ValueError`` unless every layer with parameters is a ``Conv2d`` (dense, depthwise or
    grouped, see :func:`conv_kind`), a ``Linear`` or a ``BatchNorm``, and no
    ``torch.nn.utils.prune`` mask is attached."""
    for name, module in model.named_modules():
        if hasattr(module, "weight_mask"):
            raise ValueError(
                f"layer {name!r} carries an unstructured pruning mask: call "
                f"unstructured.make_permanent(model) before channel pruning"
            )
        if not list(module.parameters(recurse=False)):
            continue
        if not isinstance(module, SUPPORTED_LAYERS):
            raise ValueError(
                f"layer {name!r} is a {type(module).__name__}, which this channel pruning does "
                f"not support (supported: {', '.join(t.__name__ for t in SUPPORTED_LAYERS)})"
            )
        if isinstance(module, nn.Conv2d) and conv_kind(module) in UNSUPPORTED_CONVS:
            raise ValueError(
                f"layer {name!r} ({module.in_channels} -> {module.out_channels} channels in "
                f"{module.groups} groups) is {UNSUPPORTED_CONVS[conv_kind(module)]}"
            )
    if not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        raise ValueError(f"{type(model).__name__} has no Conv2d layer to prune channels from")


def check_grouped(
    channel_pruner: tp.pruner.BasePruner,
    model: nn.Module,
    round_to: int | None,
    importance: str,
    pruner: str,
) -> None:
    """``ValueError`` where ``model``'s grouped convolutions would be pruned wrongly.

    With a grouped convolution, ``round_to``, the ``fpgm`` importance and the ``group_norm``
    pruner are refused (:data:`GROUPED_LIMITS`). Then, for every dependency group of
    ``channel_pruner`` that contains grouped convolutions: their group counts must divide
    each other (torch-pruning removes the same positions from each of the largest count's
    blocks, which is the same pattern in every block of a divisor count only), and every
    block must keep at least 2 channels at the final ratio (a block of one channel makes
    the layer depthwise-shaped halfway, see :data:`UNSUPPORTED_CONVS`).
    """
    modules = dict(model.named_modules())
    grouped = {n: modules[n] for n, kind in conv_kinds(model).items() if kind == "grouped"}
    if not grouped:
        return
    chosen = {"round_to": round_to is not None, "fpgm": importance == "fpgm"}
    chosen["group_norm"] = pruner == "group_norm"
    refused = [option for option, used in chosen.items() if used]
    if refused:
        raise ValueError(
            f"{' and '.join(refused)} with the grouped convolution {next(iter(grouped))!r} "
            f"is refused: " + "; ".join(GROUPED_LIMITS[option] for option in refused)
        )
    names = {module: name for name, module in model.named_modules()}
    ratio = channel_pruner.per_step_pruning_ratio[-1]
    graph = channel_pruner.DG
    for group in graph.get_all_groups(
        ignored_layers=channel_pruner.ignored_layers,
        root_module_types=channel_pruner.root_module_types,
    ):
        counts = {
            names[dep.target.module]: dep.target.module.groups
            for dep, _ in group
            if dep.target.module in grouped.values()
        }
        if not counts:
            continue
        blocks = max(counts.values())
        if any(blocks % count for count in counts.values()):
            raise ValueError(
                f"the grouped convolutions {counts} share channels but their group counts do "
                f"not divide each other: no removal keeps every block of all of them equal"
            )
        root = group[0].dep.target.module
        width = graph.get_out_channels(root) // blocks
        kept = int(width * (1 - ratio))
        if kept < 2:
            raise ValueError(
                f"ratio {ratio:g} leaves {kept} channel(s) in each of the {blocks} blocks of the "
                f"grouped convolution(s) {sorted(counts)} ({width} per block before pruning, in "
                f"the output channels of {names[root]!r}); at least 2 are needed (one channel per block makes "
                f"the layer depthwise-shaped halfway, which torch-pruning 1.6 then mis-prunes)"
            )


def check_consistent(model: nn.Module, kinds: dict[str, str]) -> None:
    """``RuntimeError`` if a pruning step left a convolution whose weight does not match its
    channel counts, or changed its :func:`conv_kind` from ``kinds`` (taken before pruning)."""
    for name, module in model.named_modules():
        if not isinstance(module, nn.Conv2d):
            continue
        shape = (module.out_channels, module.in_channels // module.groups)
        if (
            tuple(module.weight.shape[:2]) != shape
            or module.in_channels % module.groups
            or module.out_channels % module.groups
            or conv_kind(module) != kinds[name]
        ):
            raise RuntimeError(
                f"channel pruning left layer {name!r} inconsistent ({module}, weight "
                f"{tuple(module.weight.shape)}, was {kinds[name]}): a torch-pruning case this "
                f"course does not handle; the model was changed in place"
            )


def conv_kinds(model: nn.Module) -> dict[str, str]:
    """:func:`conv_kind` of every convolution of ``model``, by name."""
    return {n: conv_kind(m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}


def output_layer(model: nn.Module) -> nn.Module:
    """The last ``Conv2d`` or ``Linear`` of ``model``: its outputs are the classes, never pruned."""
    return [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)][-1]


def make_importance(name: str) -> tp.importance.Importance:
    if name not in IMPORTANCES:
        raise ValueError(f"unknown importance {name!r}: use one of {', '.join(IMPORTANCES)}")
    return IMPORTANCES[name]()


def make_pruner(
    model: nn.Module,
    ratio: float,
    steps: int = 1,
    importance: str = "l2_group",
    pruner: str = "plain",
    reg: float | None = None,
    round_to: int | None = None,
    input_shape: tuple[int, ...] = (1, 3, 32, 32),
) -> tp.pruner.BasePruner:
    """A torch-pruning pruner that removes ``ratio`` of the channels of every layer (except the
    output layer) in ``steps`` equal steps. ``reg`` is the regularization strength of the
    sparsity-training pruners (ignored by ``plain``). ``round_to=8`` rounds every layer's
    remaining channels *down* to a multiple of 8 (it may remove a few more than ``ratio``):
    widths that match the CPU's vector registers run faster (see :func:`channel_widths`).

    Depthwise and grouped convolutions are pruned too (:func:`conv_kind`); what torch-pruning
    1.6 would get wrong is refused with a ``ValueError`` (:func:`check_supported`,
    :func:`check_grouped`)."""
    ratio = check_ratio(ratio, "channel pruning ratio")
    check_supported(model)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if pruner not in PRUNERS:
        raise ValueError(f"unknown pruner {pruner!r}: use one of {', '.join(PRUNERS)}")
    if round_to is not None and (isinstance(round_to, bool) or round_to < 1):
        raise ValueError(f"round_to must be None or a positive channel count, got {round_to!r}")
    extra = {} if pruner == "plain" or reg is None else {"reg": reg}
    device = next(model.parameters()).device
    channel_pruner = PRUNERS[pruner](
        model,
        torch.randn(input_shape, device=device),
        importance=make_importance(importance),
        pruning_ratio=ratio,
        iterative_steps=steps,
        ignored_layers=[output_layer(model)],
        round_to=round_to,
        **extra,
    )
    check_grouped(channel_pruner, model, round_to, importance, pruner)
    return channel_pruner


def estimate_gradients(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    importance: str,
    max_samples: int = 256,
) -> None:
    """Fill ``.grad`` for the gradient-based importances, in eval mode (BatchNorm frozen).

    ``taylor`` needs the loss gradient (summed over ``batches``); ``hessian`` the diagonal
    Fisher approximation of the Hessian, the mean of per-sample squared gradients over the
    first ``max_samples`` samples. (torch-pruning's own ``accumulate_grad`` keys its
    accumulator inconsistently in 1.6 and keeps only the last sample, hence this loop.)
    """
    if importance not in GRADIENT_IMPORTANCES:
        return
    was_training = model.training
    model.eval()
    model.zero_grad(set_to_none=True)
    params = [p for p in model.parameters() if p.requires_grad]
    squares = [torch.zeros_like(p) for p in params]
    seen = 0
    for x, y in batches:
        if importance == "taylor":
            nn.functional.cross_entropy(model(x), y).backward()
            continue
        for xi, yi in zip(x[: max_samples - seen], y[: max_samples - seen], strict=True):
            model.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(xi[None]), yi[None]).backward()
            for square, p in zip(squares, params, strict=True):
                square += p.grad.pow(2)
            seen += 1
        if seen >= max_samples:
            break
    if importance == "hessian":
        for square, p in zip(squares, params, strict=True):
            p.grad = square / max(seen, 1)
    model.train(was_training)


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]
) -> None:
    """Re-estimate every BatchNorm's running mean and variance on ``batches`` (no training).

    Removing channels changes what the next layers receive, so the statistics their
    BatchNorms recorded on the dense model are stale; in eval mode that alone costs much
    of the accuracy lost "right after pruning". A few forward passes in train mode, with
    a cumulative average (``momentum=None``), fix them without touching a weight.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    was_training = model.training
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    model.train()
    for x, _ in batches:
        model(x)
    for norm, momentum in zip(norms, momenta, strict=True):
        norm.momentum = momentum
    model.train(was_training)


@dataclass
class RegularizationHooks:
    """Counts how often the pruner's regularizer ran (one call per optimizer step)."""

    calls: int = 0


@contextlib.contextmanager
def sparsity_regularization(
    model: nn.Module, pruner: tp.pruner.BasePruner
) -> Iterator[RegularizationHooks]:
    """Apply ``pruner.regularize(model)`` after every backward pass while inside the block.

    torch-pruning's sparsity-training pruners add their penalty to ``.grad`` between
    ``loss.backward()`` and ``optimizer.step()``. This context does that for any training
    loop, here :func:`course_lib.train.fit`, without changing it: a post-accumulate-grad hook
    on every parameter counts the gradients and, when the last one of a backward pass has
    arrived, calls the regularizer. Raises ``RuntimeError`` if the block trained but the
    regularizer never ran.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    state = RegularizationHooks()
    arrived = 0

    def hook(_param: torch.Tensor) -> None:
        nonlocal arrived
        arrived += 1
        if arrived == len(params):
            arrived = 0
            pruner.regularize(model)
            state.calls += 1

    handles = [p.register_post_accumulate_grad_hook(hook) for p in params]
    try:
        yield state
    finally:
        for handle in handles:
            handle.remove()
    if state.calls == 0:
        raise RuntimeError("the sparsity regularizer never ran: was the model trained?")


def channel_widths(model: nn.Module) -> list[int]:
    """Output channels of every conv and output features of every linear layer, in order."""
    return [
        m.out_channels if isinstance(m, nn.Conv2d) else m.out_features
        for m in model.modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
    ]


def lr_integral(config: TrainConfig, steps: int) -> float:
    """The sum of the learning rate over ``steps`` optimizer steps of ``config``'s schedule.

    A sparsity penalty is added to the gradient, so what it does to the weights scales with
    strength x this sum (for a fixed momentum): the "dose" of regularization."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    weight = torch.zeros(1, requires_grad=True)
    optimizer = make_optimizer([weight], config)
    scheduler = make_scheduler(optimizer, config, steps)
    total = 0.0
    for _ in range(steps):
        total += optimizer.param_groups[0]["lr"]
        optimizer.step()
        scheduler.step()
    return total


def matched_reg(
    reg: float, reference: tuple[TrainConfig, int], target: tuple[TrainConfig, int]
) -> float:
    """The strength that gives ``target`` (config, optimizer steps) the same dose of
    regularization, strength x :func:`lr_integral`, as ``reg`` gives ``reference``.

    The selection runs sparsity training on a subset (few steps); the final run on all the
    data (several times more steps): the same strength there would shrink the network
    several times harder than the selection that chose it."""
    return reg * lr_integral(*reference) / lr_integral(*target)


@dataclass(frozen=True)
class ChannelStep:
    """One step of gradual channel pruning: target ratio, the fraction of hidden channels
    actually removed, parameters, MACs (conv + linear, one 32x32 image) and accuracy
    (a fraction) right after pruning and after the fine-tuning that followed."""

    step: int
    ratio: float
    channels_removed: float
    params: int
    macs: int
    accuracy_pruned: float | None
    accuracy: float | None


def prune_channels_gradually(
    model: nn.Module,
    ratio: float,
    steps: int,
    importance: str = "l2_group",
    pruner: str = "plain",
    finetune: Callable[[nn.Module], object] | None = None,
    evaluate: Callable[[nn.Module], float] | None = None,
    calibration: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None,
    sparse_train: Callable[[nn.Module], object] | None = None,
    reg: float | None = None,
    on_step: Callable[[ChannelStep, nn.Module], None] | None = None,
    evaluate_every_step: bool = True,
    hessian_samples: int = 256,
    round_to: int | None = None,
) -> list[ChannelStep]:
    """Remove ``ratio`` of the channels of every layer in ``steps`` prune / fine-tune steps.

    ``sparse_train(model)`` runs first (with the pruner's regularizer for the
    sparsity-training pruners, plainly for ``plain``, so every pruner gets the same budget).
    Each step then:

    1. scores the channels (``calibration`` batches feed the gradient-based importances;
       ``hessian`` takes their first ``hessian_samples`` images one at a time);
    2. removes the lowest-ranked ones (``pruner.step()``);
    3. re-estimates the BatchNorm statistics on ``calibration`` (:func:`recalibrate_batchnorm`);
    4. evaluates (``evaluate(model)`` -> accuracy "right after pruning"), fine-tunes
       (``finetune(model)``) and evaluates again; with ``evaluate_every_step=False`` only
       the last step is evaluated;
    5. calls ``on_step(record, model)`` (e.g. to measure or keep a copy).

    ``round_to``: see :func:`make_pruner`. Changes ``model`` in place; returns one
    :class:`ChannelStep` per step.
    """
    from ..measure import count_macs, count_params

    channel_pruner = make_pruner(model, ratio, steps, importance, pruner, reg, round_to)
    kinds = conv_kinds(model)
    if sparse_train is not None:
        if pruner == "plain":
            sparse_train(model)
        else:
            with sparsity_regularization(model, channel_pruner):
                sparse_train(model)
    original = sum(channel_widths(model)[:-1])
    records = []
    for step in range(1, steps + 1):
        if importance in GRADIENT_IMPORTANCES:
            if calibration is None:
                raise ValueError(f"importance {importance!r} needs calibration batches")
            estimate_gradients(model, calibration, importance, hessian_samples)
        channel_pruner.step()
        check_consistent(model, kinds)
        model.zero_grad(set_to_none=True)
        if calibration is not None:
            recalibrate_batchnorm(model, calibration)
        scored = evaluate if evaluate_every_step or step == steps else None
        accuracy_pruned = scored(model) if scored else None
        if finetune is not None:
            finetune(model)
        record = ChannelStep(
            step=step,
            ratio=channel_pruner.per_step_pruning_ratio[step],
            channels_removed=1 - sum(channel_widths(model)[:-1]) / original,
            params=count_params(model),
            macs=count_macs(model),
            accuracy_pruned=accuracy_pruned,
            accuracy=scored(model) if scored and finetune else accuracy_pruned,
        )
        records.append(record)
        if on_step is not None:
            on_step(record, model)
    return records
