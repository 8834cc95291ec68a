"""The seed's iterative loop: rank the filters, remove a fixed number, fine-tune, repeat
until a budget of parameters or MACs is met.

Why iterate, and why greedily? Choosing the best ``k`` of ``n`` weights at once means
comparing ``C(n, k)`` subsets (``C(10^6, 10) ~ 2.75e53`` for ten of a million), so the
seed (like Molchanov et al.) removes a batch of the filters the first-order criterion
ranks lowest, lets fine-tuning repair the damage, and ranks again on the repaired network.

Removing filter ``k`` of a convolution also removes the ``k``-th entry of the BatchNorm
after it and the ``k``-th input channel of the next convolution (or the matching inputs of
the next linear layer, after ``Flatten``). torch-pruning's dependency graph finds those
coupled slices (:func:`remove_filters`); the result is a plain, narrower network.

The loop saves its state after every round when given a ``checkpoint`` path (a plain
``state_dict`` of the pruned network and the records, written atomically); called again
with the same path it rebuilds the pruned structure (:func:`restore_pruned`), resumes after
the last finished round and ends with the same network as an uninterrupted run. (The state
is a plain ``state_dict`` rather than torch-pruning's ``tp.state_dict``, which pickles whole
modules and can only be read with ``torch.load(weights_only=False)``, i.e. by running
whatever code the file names.)
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch_pruning as tp
from torch import nn
from tqdm.auto import tqdm

from ..measure import count_macs, count_params
from ..paths import atomic_path
from ..train import TrainConfig, fit
from .criterion import CRITERIA, lowest_filters, score_filters
from .network import conv_layers, conv_widths

MEASURES = ("params", "macs")


@dataclass(frozen=True)
class Budget:
    """Stop pruning once the network keeps at most ``keep`` (a fraction) of the unpruned
    network's ``measure``: ``"params"`` (all parameters) or ``"macs"`` (conv + linear
    multiply-accumulates of one image)."""

    keep: float
    measure: str = "params"

    def __post_init__(self) -> None:
        if not 0.0 < self.keep < 1.0:
            raise ValueError(
                f"budget keep={self.keep!r} must be a fraction strictly between 0 and 1 "
                f"(e.g. 0.17 keeps 17 % and removes 83 %)"
            )
        if self.measure not in MEASURES:
            raise ValueError(
                f"unknown budget measure {self.measure!r}: use {' or '.join(MEASURES)}"
            )


@dataclass(frozen=True)
class PruneRound:
    """The network after round ``round`` (0: before pruning): conv widths, parameters,
    MACs (one image), the fractions of the unpruned network's parameters and MACs removed,
    and accuracy (a fraction) right after the removal and after fine-tuning."""

    round: int
    widths: list[int]
    params: int
    macs: int
    params_removed: float
    macs_removed: float
    accuracy_pruned: float | None
    accuracy: float | None
    time_s: float


@dataclass
class PruneRun:
    """Every round of one run, and why it stopped."""

    criterion: str
    rounds: list[PruneRound] = field(default_factory=list)
    stopped: str = ""

    @property
    def last(self) -> PruneRound:
        return self.rounds[-1]

    def as_dict(self) -> dict:
        return {
            "criterion": self.criterion,
            "stopped": self.stopped,
            "rounds": [asdict(r) for r in self.rounds],
        }


def remove_filters(
    model: nn.Module, filters: dict[str, list[int]], example_input: torch.Tensor
) -> None:
    """Remove the given filters (``{conv name: indices}``) and everything coupled to them
    (BatchNorm entries, input channels of the next conv or linear layer), in place."""
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example_input)
    convs = conv_layers(model)
    for name, indices in filters.items():
        conv = convs[name]
        if len(indices) >= conv.out_channels:
            raise ValueError(f"cannot remove all {conv.out_channels} filters of {name!r}")
        group = graph.get_pruning_group(conv, tp.prune_conv_out_channels, idxs=list(indices))
        if not graph.check_pruning_group(group):
            raise RuntimeError(f"torch-pruning refused to prune {name!r} (an empty layer?)")
        group.prune()


def restore_pruned(
    model: nn.Module, state_dict: dict[str, torch.Tensor], example_input: torch.Tensor
) -> nn.Module:
    """Give the unpruned ``model`` the widths of a pruned network's ``state_dict`` (by
    removing its last filters through the dependency graph), then load the weights."""
    surplus = {}
    for name, conv in conv_layers(model).items():
        key = f"{name}.weight"
        if key not in state_dict:
            raise ValueError(f"the state dict has no {key!r}: it is not from this network")
        kept = state_dict[key].shape[0]
        if kept < conv.out_channels:
            surplus[name] = list(range(kept, conv.out_channels))
    remove_filters(model, surplus, example_input)
    model.load_state_dict(state_dict)
    return model


def finetune_rounds(loader, config: TrainConfig, seed: int) -> Callable[[nn.Module, int], object]:
    """``finetune(model, round)``: :func:`course_lib.train.fit` with ``config`` on
    ``loader``, its shuffles and augmentations drawn from ``(seed, round)`` only, so a
    resumed run repeats them exactly. (A :class:`course_lib.data.TensorLoader` gets its own
    seed per round; a single-process ``DataLoader`` draws from the generator that ``fit``
    seeds every epoch.)"""

    def finetune(model: nn.Module, round_index: int):
        round_loader = loader
        if hasattr(loader, "seed"):
            round_loader = copy.copy(loader)
            round_loader.seed = loader.seed * 1_000 + round_index
        return fit(model, round_loader, config, seed=seed * 1_000 + round_index, progress=False)

    return finetune


def _describe(model, round_index, reference, input_shape, accuracy_pruned, accuracy, start):
    params, macs = count_params(model), count_macs(model, input_shape)
    return PruneRound(
        round=round_index,
        widths=conv_widths(model),
        params=params,
        macs=macs,
        params_removed=1 - params / reference["params"],
        macs_removed=1 - macs / reference["macs"],
        accuracy_pruned=accuracy_pruned,
        accuracy=accuracy,
        time_s=time.perf_counter() - start,
    )


def _kept(record: PruneRound, budget: Budget) -> float:
    removed = record.params_removed if budget.measure == "params" else record.macs_removed
    return 1.0 - removed


def _resume(
    checkpoint: Path, model: nn.Module, fingerprint: dict, example: torch.Tensor
) -> list[PruneRound]:
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if state["fingerprint"] != fingerprint:
        raise ValueError(
            f"{checkpoint} holds a pruning run with other settings ({state['fingerprint']}, "
            f"this run: {fingerprint}); it is left untouched. Pass another checkpoint path, "
            f"or delete the file to start over."
        )
    restore_pruned(model, state["model"], example)
    return [PruneRound(**r) for r in state["rounds"]]


def prune_iteratively(
    model: nn.Module,
    criterion: str,
    calibration: Iterable[tuple[torch.Tensor, torch.Tensor]],
    finetune: Callable[[nn.Module, int], object] | None,
    evaluate: Callable[[nn.Module], float] | None,
    budget: Budget,
    filters_per_round: int,
    seed: int = 0,
    checkpoint: str | Path | None = None,
    min_filters: int = 1,
    max_rounds: int = 100,
    input_shape: tuple[int, ...] = (1, 3, 32, 32),
    progress: bool = True,
) -> PruneRun:
    """Prune ``model`` in place, round after round, until ``budget`` is met.

    Every round scores the filters with ``criterion`` on the ``calibration`` batches
    (:func:`~.criterion.score_filters`, seeded with ``(seed, round)``), removes the
    ``filters_per_round`` lowest-ranked ones over the whole network (every layer keeps at
    least ``min_filters``), evaluates (``evaluate(model)`` -> accuracy), fine-tunes
    (``finetune(model, round)``) and evaluates again. Round 0 records the unpruned network.
    Stops when the budget is met, after ``max_rounds`` rounds, or when no filter can go.
    """
    if criterion not in CRITERIA:
        raise ValueError(f"unknown criterion {criterion!r}: use one of {', '.join(CRITERIA)}")
    if filters_per_round < 1:
        raise ValueError(f"filters_per_round must be >= 1, got {filters_per_round}")
    calibration = list(calibration)
    reference = {"params": count_params(model), "macs": count_macs(model, input_shape)}
    fingerprint = {
        "criterion": criterion,
        "budget": asdict(budget),
        "filters_per_round": filters_per_round,
        "seed": seed,
        "min_filters": min_filters,
        "unpruned": reference,
    }
    device = next(model.parameters()).device
    example = torch.zeros(input_shape, device=device)
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    if checkpoint is not None and checkpoint.exists():
        rounds = _resume(checkpoint, model, fingerprint, example)
    else:
        start = time.perf_counter()
        accuracy = evaluate(model) if evaluate else None
        rounds = [_describe(model, 0, reference, input_shape, accuracy, accuracy, start)]
    run = PruneRun(criterion, rounds)
    bar = tqdm(desc=f"{criterion} rounds", initial=len(rounds) - 1, disable=not progress)
    while True:
        if _kept(run.last, budget) <= budget.keep:
            run.stopped = (
                f"budget met: {100 * _kept(run.last, budget):.1f} % of the {budget.measure} kept"
            )
            break
        if run.last.round >= max_rounds:
            run.stopped = f"max_rounds={max_rounds} reached"
            break
        removable = sum(max(w - min_filters, 0) for w in run.last.widths)
        if removable == 0:
            run.stopped = f"every layer is down to {min_filters} filter(s)"
            break
        start, index = time.perf_counter(), run.last.round + 1
        scores = score_filters(model, criterion, calibration, seed=seed * 1_000 + index)
        chosen = lowest_filters(scores, min(filters_per_round, removable), min_filters)
        remove_filters(model, chosen, example)
        accuracy_pruned = evaluate(model) if evaluate else None
        if finetune is not None:
            finetune(model, index)
        accuracy = evaluate(model) if evaluate else None
        record = _describe(model, index, reference, input_shape, accuracy_pruned, accuracy, start)
        run.rounds.append(record)
        if checkpoint is not None:
            state = {
                "fingerprint": fingerprint,
                "model": model.state_dict(),
                "rounds": [asdict(r) for r in run.rounds],
            }
            with atomic_path(checkpoint) as tmp:
                torch.save(state, tmp)
        bar.update(1)
        bar.set_postfix(kept=f"{100 * _kept(record, budget):.1f}%", acc=record.accuracy)
    bar.close()
    return run
