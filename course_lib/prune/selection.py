"""Choosing the channel importance and the pruner for this network, on the validation split,
over several seeds (the subset, the shuffles and the calibration batches change with the
seed), so that a ranking is only believed where it holds across seeds.

1. :func:`screen_importances`: every importance prunes to the target ratio at once, no
   fine-tuning (BatchNorm recalibrated): a cheap first cut, and a check of which
   importances remove exactly the same channels (e.g. LAMP and L2 under local ranking);
2. :func:`compare_importances`: the best few run the chapter's schedule (scaled to the
   selection subset) with the plain pruner;
3. :func:`compare_pruners`: the pruners run the same schedule with the best importance.

Every candidate of one comparison costs the same: the same data, steps and epochs, and the
same architecture (candidates that keep more parameters are shown but not eligible). The
(candidate, seed) runs of steps 2 and 3 are independent: they go through
:func:`course_lib.cluster.map_tasks`, a loop here, or Ray tasks when ``$COURSE_RAY_ADDRESS``
is set (``course run ... --ray``); each run takes what it needs from :class:`Shared`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn
from tqdm.auto import tqdm

from .. import data
from ..cluster import map_tasks
from ..train import evaluate
from . import structured
from .experiment import Context, calibration_batches, run_schedule, section
from .ranking import eligible
from .ranking import verdict as verdict  # the chapter reads the selection's verdict here
from .settings import PruningSettings


@dataclass(frozen=True)
class Shared:
    """What every selection run reads: the data, chapter 1's trained network, the settings,
    the chapter's seed and device (a :class:`~.experiment.Context` without its run, so that it
    travels to a Ray worker with the task)."""

    cifar: data.Cifar10
    dense: nn.Module
    settings: PruningSettings
    seed: int
    device: torch.device

    @classmethod
    def of(cls, ctx: Context) -> Shared:
        return cls(ctx.cifar, ctx.dense, ctx.settings, ctx.seed, ctx.device)


@dataclass(frozen=True)
class Candidate:
    """One importance with one pruner (and the pruner's regularization strength)."""

    importance: str
    pruner: str
    reg: float | None = None


def selection_loaders(ctx: Context | Shared, offset: int) -> data.Loaders:
    """The selection subset drawn with seed ``ctx.seed + offset``."""
    settings = ctx.settings.selection.data
    return data.make_loaders(ctx.cifar, settings, seed=ctx.seed + offset, device=ctx.device)


def sparse_train_steps(ctx: Context) -> int:
    """Optimizer steps of the selection's sparsity training (for :func:`.experiment.final_reg`)."""
    epochs = ctx.settings.selection.schedule.sparse_train.epochs
    return epochs * len(selection_loaders(ctx, 0).train)


def _val(loaders: data.Loaders):
    return lambda model: evaluate(model, loaders.val)[1]


def _same_weights(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(
        x.shape == y.shape and torch.equal(x, y) for x, y in zip(a, b, strict=False)
    )


@section("importance screening")
def screen_importances(ctx: Context) -> dict:
    """Validation accuracy right after pruning ``ratio`` of the channels at once with every
    importance (plain pruner), per seed; ``same_as`` names an earlier importance that gave
    exactly the same pruned model (same channels kept) on the first seed."""
    sel, settings = ctx.settings.selection, ctx.settings.structured
    table = {name: {"val_accuracy": []} for name in sel.importances}
    weights: dict[str, list[torch.Tensor]] = {}
    for offset in range(sel.seeds):
        loaders = selection_loaders(ctx, offset)
        calibration = ctx.calibration(loaders.train)
        for name in tqdm(sel.importances, desc=f"screening, seed {offset + 1}/{sel.seeds}"):
            model = ctx.fresh()
            torch.manual_seed(ctx.seed + offset)  # the random importance
            (record,) = structured.prune_channels_gradually(
                model,
                sel.schedule.ratio,
                1,
                name,
                evaluate=_val(loaders),
                calibration=calibration,
                hessian_samples=settings.hessian_samples,
                round_to=settings.round_to,
            )
            table[name]["val_accuracy"].append(record.accuracy_pruned)
            table[name].update(params=record.params, macs=record.macs)
            if offset == 0:
                weights[name] = [t.detach().cpu().clone() for t in model.state_dict().values()]
    for i, name in enumerate(sel.importances):
        earlier = [n for n in sel.importances[:i] if _same_weights(weights[n], weights[name])]
        table[name]["same_as"] = earlier[0] if earlier else None
    return table


def candidate_run(shared: Shared, job: tuple[Candidate, int]) -> dict:
    """One task of the map: ``job`` = (candidate, seed offset) through the selection
    schedule on that seed's subset, from a copy of the trained network; returns
    :func:`~.experiment.run_schedule`'s record."""
    candidate, offset = job
    sel, settings = shared.settings.selection, shared.settings.structured
    loaders = selection_loaders(shared, offset)
    return run_schedule(
        copy.deepcopy(shared.dense),
        sel.schedule,
        candidate.importance,
        candidate.pruner,
        loaders.train,
        _val(loaders),
        calibration_batches(loaders.train, shared.settings),
        shared.seed + offset,
        candidate.reg,
        settings.round_to,
        settings.hessian_samples,
    )


def _candidates(ctx: Context, candidates: dict[str, Candidate], desc: str) -> dict[str, dict]:
    """Every candidate through the selection schedule for every seed (one map over all the
    runs, candidate by candidate in order); one row per candidate."""
    seeds = ctx.settings.selection.seeds
    jobs = [(c, offset) for c in candidates.values() for offset in range(seeds)]
    done = map_tasks(partial(candidate_run, Shared.of(ctx)), jobs, desc=desc)
    rows = {}
    for i, (name, c) in enumerate(candidates.items()):
        runs = done[i * seeds : (i + 1) * seeds]
        last = [d.value["records"][-1] for d in runs]
        rows[name] = {
            "importance": c.importance,
            "pruner": c.pruner,
            "reg": c.reg,
            "val_accuracy_pruned": [r.accuracy_pruned for r in last],
            "val_accuracy_step": [d.value["accuracy_step"] for d in runs],
            "val_accuracy": [d.value["accuracy"] for d in runs],
            "params": last[0].params,
            "macs": last[0].macs,
            "epochs": runs[0].value["epochs"],
            "wall_time_s": sum(d.seconds for d in runs),
        }
    return rows


@section("importance comparison")
def compare_importances(ctx: Context, screening: dict) -> dict:
    """The ``finalists`` best eligible importances of the screening through the selection
    schedule with the plain pruner, every seed."""
    finalists = eligible(screening)[: ctx.settings.selection.finalists]
    candidates = {name: Candidate(name, "plain") for name in finalists}
    return _candidates(ctx, candidates, "importance comparison")


@section("pruner comparison")
def compare_pruners(ctx: Context, importances: dict, best_importance: str) -> dict:
    """Every pruner with ``best_importance`` (``group_norm`` also with ``l2_group``, its own
    norm); ``plain`` with the best importance is the importance comparison's run (the same
    schedule and seeds: the same numbers)."""
    sel = ctx.settings.selection
    names, candidates = [], {}
    for pruner in sel.pruners:
        choices = [best_importance] + (["l2_group"] if pruner == "group_norm" else [])
        for importance in dict.fromkeys(choices):
            name = f"{pruner} + {importance}"
            names.append(name)
            if not (pruner == "plain" and importance in importances):
                candidates[name] = Candidate(importance, pruner, sel.reg.get(pruner))
    rows = _candidates(ctx, candidates, "pruner comparison")
    return {n: rows[n] if n in rows else importances[best_importance] for n in names}
