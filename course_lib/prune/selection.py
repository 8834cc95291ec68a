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
same architecture (candidates that keep more parameters are shown but not eligible).
"""

from __future__ import annotations

import time

import torch
from tqdm.auto import tqdm

from .. import data
from ..train import evaluate
from . import structured
from .experiment import Context, run_schedule, section
from .ranking import eligible
from .ranking import verdict as verdict  # the chapter reads the selection's verdict here


def selection_loaders(ctx: Context, offset: int) -> data.Loaders:
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


def _candidate(ctx: Context, importance: str, pruner: str, reg: float | None, desc: str) -> dict:
    """One importance x pruner through the selection schedule, for every seed."""
    sel, settings = ctx.settings.selection, ctx.settings.structured
    row = {"importance": importance, "pruner": pruner, "reg": reg}
    runs = []
    for offset in tqdm(range(sel.seeds), desc=desc, leave=False):
        loaders = selection_loaders(ctx, offset)
        start = time.perf_counter()
        run = run_schedule(
            ctx.fresh(),
            sel.schedule,
            importance,
            pruner,
            loaders.train,
            _val(loaders),
            ctx.calibration(loaders.train),
            ctx.seed + offset,
            reg,
            settings.round_to,
            settings.hessian_samples,
        )
        runs.append((run, time.perf_counter() - start))
    last = [run["records"][-1] for run, _ in runs]
    row["val_accuracy_pruned"] = [r.accuracy_pruned for r in last]
    row["val_accuracy_step"] = [run["accuracy_step"] for run, _ in runs]
    row["val_accuracy"] = [run["accuracy"] for run, _ in runs]
    row.update(params=last[0].params, macs=last[0].macs, epochs=runs[0][0]["epochs"])
    row["wall_time_s"] = sum(seconds for _, seconds in runs)
    return row


@section("importance comparison")
def compare_importances(ctx: Context, screening: dict) -> dict:
    """The ``finalists`` best eligible importances of the screening through the selection
    schedule with the plain pruner, every seed."""
    finalists = eligible(screening)[: ctx.settings.selection.finalists]
    return {name: _candidate(ctx, name, "plain", None, f"importance {name}") for name in finalists}


@section("pruner comparison")
def compare_pruners(ctx: Context, importances: dict, best_importance: str) -> dict:
    """Every pruner with ``best_importance`` (``group_norm`` also with ``l2_group``, its own
    norm); ``plain`` with the best importance is the importance comparison's run (the same
    schedule and seeds: the same numbers)."""
    sel = ctx.settings.selection
    table = {}
    for pruner in sel.pruners:
        choices = [best_importance] + (["l2_group"] if pruner == "group_norm" else [])
        for importance in dict.fromkeys(choices):
            name = f"{pruner} + {importance}"
            if pruner == "plain" and importance in importances:
                table[name] = importances[importance]
                continue
            table[name] = _candidate(ctx, importance, pruner, sel.reg.get(pruner), name)
    return table
