"""Unstructured (weight) magnitude pruning with ``torch.nn.utils.prune``.

``torch.nn.utils.prune`` never deletes a weight. Pruning ``module.weight`` moves the trained
values to a parameter ``weight_orig``, stores a 0/1 buffer ``weight_mask``, and registers a
forward pre-hook that recomputes ``weight = weight_orig * weight_mask`` before every forward
pass. Gradients reach ``weight_orig`` only through the mask, so pruned weights stay zero
while the model is fine-tuned. ``prune.remove`` makes the pruning permanent: it writes the
masked tensor back as a plain ``weight`` parameter and deletes the hook, the mask and
``weight_orig`` (the zeros stay, the bookkeeping goes).

Sparsity here is the fraction of *prunable* weights (conv and linear weights; biases and
BatchNorm are not pruned) that are masked. Counts are exact: pruning to sparsity ``r``
leaves exactly ``round(r * n)`` masked weights, over the whole model (``scope="global"``) or
in every layer (``scope="layer"``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import prune

PRUNABLE_TYPES = (nn.Conv2d, nn.Linear)
SCOPES = ("global", "layer")


def check_ratio(ratio: float, name: str = "ratio") -> float:
    """Return ``ratio`` as a float if it lies strictly between 0 and 1, else ``ValueError``."""
    if isinstance(ratio, bool) or not isinstance(ratio, int | float):
        raise ValueError(f"{name} must be a number in (0, 1), got {ratio!r}")
    if not (0.0 < float(ratio) < 1.0) or math.isnan(ratio):
        raise ValueError(f"{name} must be strictly between 0 and 1, got {ratio}")
    return float(ratio)


def prunable_layers(
    model: nn.Module, layers: Iterable[nn.Module] | None = None
) -> list[tuple[str, nn.Module]]:
    """(name, layer) of the layers whose ``weight`` is pruned: every ``Conv2d`` and ``Linear``
    of ``model``, or the given ``layers``. Raises ``ValueError`` for any other layer type."""
    names = {module: name for name, module in model.named_modules()}
    if layers is None:
        chosen = [(n, m) for n, m in model.named_modules() if isinstance(m, PRUNABLE_TYPES)]
        if not chosen:
            raise ValueError(
                f"{type(model).__name__} has no Conv2d or Linear layer: unstructured pruning "
                f"here supports only {', '.join(t.__name__ for t in PRUNABLE_TYPES)} weights"
            )
        return chosen
    chosen = []
    for layer in layers:
        if not isinstance(layer, PRUNABLE_TYPES):
            raise ValueError(
                f"cannot prune a {type(layer).__name__}: supported layers are "
                f"{', '.join(t.__name__ for t in PRUNABLE_TYPES)}"
            )
        if layer not in names:
            raise ValueError(f"the {type(layer).__name__} given is not part of the model")
        chosen.append((names[layer], layer))
    return chosen


def weight_mask(layer: nn.Module) -> torch.Tensor:
    """The layer's 0/1 mask (all ones if the layer is not pruned)."""
    mask = getattr(layer, "weight_mask", None)
    return mask if mask is not None else torch.ones_like(layer.weight)


def masked_count(layer: nn.Module) -> int:
    """Number of weights of ``layer`` that its mask sets to zero."""
    return int((weight_mask(layer) == 0).sum())


def effective_weight(layer: nn.Module) -> torch.Tensor:
    """The weight the next forward pass uses: ``weight_orig * weight_mask`` when pruned."""
    if hasattr(layer, "weight_orig"):
        return layer.weight_orig.detach() * layer.weight_mask
    return layer.weight.detach()


def prune_to(
    model: nn.Module,
    sparsity: float,
    scope: str = "global",
    layers: Iterable[nn.Module] | None = None,
) -> nn.Module:
    """Mask the smallest-magnitude weights until exactly ``round(sparsity * n)`` are masked.

    ``scope="global"``: one ranking over all prunable weights (``prune.global_unstructured``
    with ``L1Unstructured``), so layers end up with different sparsities. ``scope="layer"``:
    every layer is pruned to ``sparsity`` on its own (``prune.l1_unstructured``).
    Already-pruned weights stay pruned, so calling this with increasing sparsities is
    iterative pruning. Returns ``model`` (changed in place, in contiguous memory format).
    """
    sparsity = check_ratio(sparsity, "sparsity")
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}: use one of {', '.join(SCOPES)}")
    chosen = [layer for _, layer in prunable_layers(model, layers)]
    # torch.nn.utils.prune flattens with .view(-1): channels-last tensors (fit's default)
    # must be made contiguous first; the scores are the weights the forward pass uses.
    model.to(memory_format=torch.contiguous_format)
    scores = {(layer, "weight"): effective_weight(layer).contiguous() for layer in chosen}
    if scope == "layer":
        for layer in chosen:
            numel = scores[(layer, "weight")].numel()
            extra = _extra_to_mask(sparsity, numel, masked_count(layer))
            prune.l1_unstructured(
                layer, "weight", amount=extra, importance_scores=scores[(layer, "weight")]
            )
        return model
    total = sum(score.numel() for score in scores.values())
    extra = _extra_to_mask(sparsity, total, sum(masked_count(layer) for layer in chosen))
    prune.global_unstructured(
        list(scores),
        pruning_method=prune.L1Unstructured,
        importance_scores=scores,
        amount=extra,
    )
    return model


def _extra_to_mask(sparsity: float, numel: int, already_masked: int) -> int:
    target = round(sparsity * numel)
    if target < already_masked:
        raise ValueError(
            f"cannot reach sparsity {sparsity}: {already_masked} of {numel} weights are already "
            f"masked (pruning never un-masks a weight)"
        )
    return target - already_masked


def linear_schedule(sparsity: float, rounds: int) -> list[float]:
    """Sparsity after each of ``rounds`` equal steps to ``sparsity``: 0.6, 3 -> [0.2, 0.4, 0.6]."""
    sparsity = check_ratio(sparsity, "sparsity")
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    return [sparsity * (i + 1) / rounds for i in range(rounds)]


def prune_iteratively(
    model: nn.Module,
    sparsity: float,
    rounds: int,
    finetune: Callable[[nn.Module], object],
    scope: str = "global",
) -> nn.Module:
    """Reach ``sparsity`` in ``rounds`` prune / fine-tune rounds (:func:`linear_schedule`).

    ``finetune(model)`` is called after every round (e.g. a short ``train.fit``), so with
    ``rounds=1`` this is one-shot pruning followed by fine-tuning.
    """
    for step_sparsity in linear_schedule(sparsity, rounds):
        prune_to(model, step_sparsity, scope)
        finetune(model)
    return model


def copy_model(model: nn.Module) -> nn.Module:
    """``copy.deepcopy`` that also works for a masked model after training (its computed
    ``weight`` is then a non-leaf tensor, which ``deepcopy`` refuses)."""
    with torch.no_grad():
        for module in model.modules():
            if hasattr(module, "weight_orig") and hasattr(module, "weight_mask"):
                module.weight = module.weight_orig * module.weight_mask
    return copy.deepcopy(model)


def make_permanent(model: nn.Module) -> nn.Module:
    """``prune.remove`` on every pruned weight: masked values become plain zeros in
    ``weight``; ``weight_orig``, ``weight_mask`` and the forward pre-hooks are deleted."""
    for module in model.modules():
        if prune.is_pruned(module) and hasattr(module, "weight_mask"):
            prune.remove(module, "weight")
    return model


@dataclass(frozen=True)
class LayerSparsity:
    """Masked (zero) weights of one prunable layer."""

    name: str
    numel: int
    zeros: int

    @property
    def sparsity(self) -> float:
        return self.zeros / self.numel


def layer_sparsity(model: nn.Module) -> list[LayerSparsity]:
    """Exact number of zero weights of every ``Conv2d`` / ``Linear`` (mask applied)."""
    rows = []
    for name, layer in prunable_layers(model):
        weight = effective_weight(layer)
        rows.append(LayerSparsity(name, weight.numel(), int((weight == 0).sum())))
    return rows


def global_sparsity(model: nn.Module) -> float:
    """Fraction of all conv and linear weights that are exactly zero."""
    rows = layer_sparsity(model)
    return sum(r.zeros for r in rows) / sum(r.numel for r in rows)


def nonzero_macs(model: nn.Module, input_size: tuple[int, ...] = (1, 3, 32, 32)) -> int:
    """MACs whose weight is non-zero (conv and linear layers, one forward pass of
    ``input_size``): what an ideal sparse kernel would compute. Dense kernels still do
    :func:`course_lib.measure.count_macs` of them."""
    from ..measure import layer_costs

    density = {row.name: 1 - row.sparsity for row in layer_sparsity(model)}
    return round(sum(c.macs * density.get(c.name, 1.0) for c in layer_costs(model, input_size)))
