"""The pruning chapter's experiments: one function per section, each taking the run's
:class:`Context` and returning the part of the metrics dict it measured.

The notebook calls them in order and draws every table and figure from the dict they fill
(:mod:`.summary`, :mod:`.plots`), so a quick run and the saved full run go through the
same code. Every model starts from the same trained weights (chapter 1's baseline); every
choice is made on the validation split, the test set only reports.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from .. import chapter, data, measure, models, paths
from ..formatting import pct, ratio_text
from ..train import Finetuner, accuracy_on_test, default_device, evaluate, seed_everything
from . import benchmark, storage, structured, summary, unstructured
from .settings import ChannelSchedule, PruningSettings, pruning_settings

NOTEBOOK = "notebooks/02_pruning.ipynb"


@dataclass
class Context:
    """What every section shares: the chapter's :class:`~course_lib.chapter.Run` (settings,
    seed, section timings, the metrics saved at the end), data, the trained dense model and
    the models a later section reuses (``kept``)."""

    run: chapter.Run
    device: torch.device
    cifar: data.Cifar10
    loaders: data.Loaders
    dense: nn.Module
    checkpoint: Path
    kept: dict[str, nn.Module] = field(default_factory=dict)

    @property
    def profile(self) -> str:
        return self.run.profile

    @property
    def seed(self) -> int:
        return self.run.seed

    @property
    def settings(self) -> PruningSettings:
        return self.run.settings

    def fresh(self) -> nn.Module:
        """A new copy of the trained baseline: every experiment starts from the same weights."""
        return copy.deepcopy(self.dense)

    def val_accuracy(self, model: nn.Module) -> float:
        return evaluate(model, self.loaders.val)[1]

    def test_accuracy(self, model: nn.Module) -> float:
        return accuracy_on_test(model, self.loaders)

    def calibration(self, loader: data.TensorLoader | None = None) -> list:
        """The first training batches: BatchNorm recalibration and gradient importances."""
        return calibration_batches(loader or self.loaders.train, self.settings)


def calibration_batches(loader: data.TensorLoader, settings: PruningSettings) -> list:
    """The first ``settings.structured.calibration_batches`` batches of ``loader``."""
    return list(itertools.islice(loader, settings.structured.calibration_batches))


def setup(profile: str, seed: int = 0) -> Context:
    """The chapter's run in ``profile`` (an unknown profile stops here), CIFAR-10 loaders and
    chapter 1's trained baseline."""
    run = chapter.start("pruning", NOTEBOOK, profile, seed, pruning_settings)
    seed_everything(seed)
    device = default_device()
    cifar = data.load_cifar10()
    checkpoint = paths.checkpoint(paths.BASELINE_CHECKPOINT, profile)
    dense = models.load_baseline_cnn(checkpoint).to(device).eval()
    loaders = data.make_loaders(cifar, run.settings.data, seed=seed, device=device)
    return Context(run, device, cifar, loaders, dense, checkpoint)


SECTIONS: list[str] = []
"""The names of the timed sections, in the order they are defined (the keys of the
profiles' ``estimate_min``)."""


def section(name: str) -> Callable:
    """Time a section function in ``ctx.run`` (:func:`course_lib.chapter.section`) and
    list its name in :data:`SECTIONS`."""
    SECTIONS.append(name)
    return chapter.section(name)


def key(value: float) -> str:
    """The metrics key of a sparsity or ratio: ``0.2 -> "0.2"``, ``0.95 -> "0.95"``."""
    return f"{value:g}"


# --- the baseline and unstructured pruning -------------------------------------------------


@section("baseline")
def baseline(ctx: Context) -> dict:
    """The dense model measured like every pruned one, plus its validation accuracy."""
    latency = ctx.settings.latency
    row = benchmark.describe(ctx.dense, ctx.loaders.test, None, latency.protocol, latency.warmup)
    images = len(ctx.loaders.test.labels)
    return {**row, "val_accuracy": ctx.val_accuracy(ctx.dense), "test_images": images}


@section("scope comparison")
def scope_comparison(ctx: Context) -> dict:
    """Validation accuracy right after layer-wise and global L1 pruning (no fine-tuning) at
    every sparsity, the per-layer sparsity global pruning chose, and the better scope."""
    table, per_layer = {}, {}
    for sparsity in tqdm(ctx.settings.unstructured.sparsities, desc="scope comparison"):
        table[key(sparsity)] = {}
        for scope in unstructured.SCOPES:
            model = unstructured.prune_to(ctx.fresh(), sparsity, scope)
            table[key(sparsity)][scope] = ctx.val_accuracy(model)
            if scope == "global":
                rows = unstructured.layer_sparsity(model)
                per_layer[key(sparsity)] = {r.name: r.sparsity for r in rows}
    homework = [key(s) for s in ctx.settings.unstructured.sparsities if s <= 0.8]
    scope = max(unstructured.SCOPES, key=lambda s: sum(table[k][s] for k in homework))
    return {
        "scope_comparison": table,
        "global_layer_sparsity": per_layer,
        "unstructured_scope": scope,
    }


@section("one-shot sweep")
def oneshot_sweep(ctx: Context, scope: str = "global") -> dict:
    """One-shot pruning to every sparsity, then ``unstructured.finetune`` epochs."""
    out, config = {}, ctx.settings.unstructured.finetune
    for sparsity in tqdm(ctx.settings.unstructured.sparsities, desc="one-shot sweep"):
        model = unstructured.prune_to(ctx.fresh(), sparsity, scope)
        accuracy_pruned = ctx.test_accuracy(model)
        finetune = Finetuner(ctx.loaders.train, config, ctx.seed)
        finetune(model)
        out[key(sparsity)] = {
            "sparsity": unstructured.global_sparsity(model),
            "accuracy_pruned": accuracy_pruned,
            "finetune_epochs": finetune.epochs,
            "finetune_wall_time_s": finetune.wall_time_s,
            **benchmark.describe(model, ctx.loaders.test),
        }
        ctx.kept[f"one-shot {key(sparsity)}"] = model
    return out


@section("iterative sweep")
def iterative_sweep(ctx: Context, scope: str = "global") -> dict:
    """Iterative pruning to every sparsity in ``rounds`` prune / fine-tune rounds, the
    same total epochs as one-shot."""
    out, settings = {}, ctx.settings.unstructured
    for sparsity in tqdm(settings.sparsities, desc="iterative sweep"):
        model = ctx.fresh()
        finetune = Finetuner(ctx.loaders.train, settings.round_finetune, ctx.seed)
        unstructured.prune_iteratively(model, sparsity, settings.rounds, finetune, scope)
        out[key(sparsity)] = {
            "sparsity": unstructured.global_sparsity(model),
            "rounds": settings.rounds,
            "schedule": unstructured.linear_schedule(sparsity, settings.rounds),
            "finetune_epochs": finetune.epochs,
            "finetune_wall_time_s": finetune.wall_time_s,
            **benchmark.describe(model, ctx.loaders.test),
        }
        ctx.kept[f"iterative {key(sparsity)}"] = model
    return out


@section("storage and latency")
def unstructured_latency(ctx: Context, sparsities: tuple[float, ...] = (0.8, 0.95)) -> dict:
    """The iterative models at ``sparsities`` timed interleaved with the dense model: as
    fine-tuned (masks attached) for the first, and after ``prune.remove`` (what one deploys)."""
    first = key(sparsities[0])
    candidates = {"dense": ctx.dense}
    candidates[f"{first} sparse, masks attached"] = unstructured.copy_model(
        ctx.kept[f"iterative {first}"]
    )
    for sparsity in sparsities:
        name = f"{key(sparsity)} sparse, prune.remove"
        model = unstructured.copy_model(ctx.kept[f"iterative {key(sparsity)}"])
        candidates[name] = unstructured.make_permanent(model)
    latency = ctx.settings.latency
    return benchmark.compare(candidates, latency.protocol, latency.warmup, baseline="dense")


# --- structured pruning ------------------------------------------------------------------


@section("alignment")
def alignment_curve(ctx: Context, importance: str = "l2_group") -> dict:
    """Speed-up over dense of every channel ratio, widths as torch-pruning leaves them and
    rounded down to multiples of ``round_to``, all timed in one interleaved comparison
    (ONNX Runtime, one thread). Latency does not depend on the weights: no fine-tuning."""
    round_to = ctx.settings.structured.round_to or 8
    variants = {"unaligned": None, "aligned": round_to}
    candidates, rows = {"dense": ctx.dense}, {name: {} for name in variants}
    dense_channels = sum(structured.channel_widths(ctx.dense)[:-1])
    for ratio in ctx.settings.structured.ratios:
        for name, rounding in variants.items():
            model = ctx.fresh()
            structured.prune_channels_gradually(model, ratio, 1, importance, round_to=rounding)
            widths = structured.channel_widths(model)
            candidates[f"{name} {key(ratio)}"] = model
            rows[name][key(ratio)] = {
                "widths": widths,
                "channels_removed": 1 - sum(widths[:-1]) / dense_channels,
                "macs": measure.count_macs(model),
            }
    latency = ctx.settings.latency
    protocol = {1: (latency.alignment_rounds, latency.protocol[1][1])}
    protocol.update({b: rc for b, rc in latency.protocol.items() if b != 1})
    table = benchmark.compare(candidates, protocol, latency.warmup, "dense", runtimes=("onnx",))
    for setting, ratios in table["speedup"].items():
        for name, ratio_rows in rows.items():
            for k, row in ratio_rows.items():
                row.setdefault("speedup", {})[setting] = ratios[f"{name} {k}"]
    dense_latency = {s: t["dense"] for s, t in table["latency_ms"].items()}
    return {"round_to": round_to, **rows, "dense_latency_ms": dense_latency}


def run_schedule(
    model: nn.Module,
    schedule: ChannelSchedule,
    importance: str,
    pruner: str,
    train_loader: data.TensorLoader,
    evaluate_fn: Callable[[nn.Module], float],
    calibration: list,
    seed: int,
    reg: float | None = None,
    round_to: int | None = None,
    hessian_samples: int = 256,
    on_step: Callable | None = None,
    evaluate_every_step: bool = False,
) -> dict:
    """``schedule`` on ``model`` (in place): sparsity training, ``steps`` prune / fine-tune
    steps, the final fine-tune. The one procedure behind the selection and the final run.
    Returns the step records, the accuracy before and after the final fine-tune and the
    fine-tuning budget (epochs and seconds, measured)."""
    sparse = Finetuner(train_loader, schedule.sparse_train, seed)
    steps = Finetuner(train_loader, schedule.step_finetune, seed + 1)
    final = Finetuner(train_loader, schedule.final_finetune, seed + 2)
    records = structured.prune_channels_gradually(
        model,
        schedule.ratio,
        schedule.steps,
        importance,
        pruner,
        finetune=steps,
        evaluate=evaluate_fn,
        calibration=calibration,
        sparse_train=sparse,
        reg=reg,
        on_step=on_step,
        evaluate_every_step=evaluate_every_step,
        hessian_samples=hessian_samples,
        round_to=round_to,
    )
    final(model)
    return {
        "records": records,
        "accuracy_step": records[-1].accuracy,
        "accuracy": evaluate_fn(model),
        "epochs": {"sparse_train": sparse.epochs, "steps": steps.epochs, "final": final.epochs},
        "wall_time_s": sparse.wall_time_s + steps.wall_time_s + final.wall_time_s,
    }


def final_reg(ctx: Context, pruner: str, selection_steps: int) -> dict | None:
    """The final run's regularization strength, matched to the selection's dose
    (strength x sum of the learning rate over the sparsity-training steps)."""
    if pruner not in structured.REGULARIZING:
        return None
    selection = ctx.settings.selection
    final = ctx.settings.structured.schedule.sparse_train
    reference = (selection.schedule.sparse_train, selection_steps)
    target = (final, final.epochs * len(ctx.loaders.train))
    reg = structured.matched_reg(selection.reg[pruner], reference, target)
    return {
        "selection": selection.reg[pruner],
        "final": reg,
        "selection_dose": selection.reg[pruner] * structured.lr_integral(*reference),
        "final_dose": reg * structured.lr_integral(*target),
        "selection_steps": reference[1],
        "final_steps": target[1],
    }


@section("channel pruning")
def channel_pruning(ctx: Context, importance: str, pruner: str, selection_steps: int) -> dict:
    """The chosen importance and pruner on the chapter's training data: the structured
    schedule, aligned widths, every step measured (test accuracy, size, latency
    interleaved with the dense model); the last step also after the final fine-tune."""
    settings, latency = ctx.settings.structured, ctx.settings.latency
    reg = final_reg(ctx, pruner, selection_steps)
    steps: dict[str, dict] = {}

    def record(step: structured.ChannelStep, model: nn.Module) -> None:
        row = benchmark.describe(
            model, None, ctx.dense, latency.protocol, latency.warmup, accuracy=step.accuracy
        )
        steps[key(round(step.ratio, 4))] = {
            **asdict(step),
            **row,
            "accuracy_step": step.accuracy,
            "widths": structured.channel_widths(model),
        }
        print(
            f"step {step.step}: {pct(step.channels_removed, 1)} % of channels removed, "
            f"accuracy {pct(step.accuracy_pruned)} % -> {pct(step.accuracy)} % "
            f"after {settings.schedule.step_finetune.epochs} epochs; ONNX b1 speed-up "
            f"{ratio_text(row['speedup']['onnx_b1'])}"
        )

    model = ctx.fresh()
    run = run_schedule(
        model,
        settings.schedule,
        importance,
        pruner,
        ctx.loaders.train,
        ctx.test_accuracy,
        ctx.calibration(),
        ctx.seed,
        None if reg is None else reg["final"],
        settings.round_to,
        settings.hessian_samples,
        on_step=record,
        evaluate_every_step=True,
    )
    last = steps[key(settings.schedule.ratio)]
    last["accuracy"] = run["accuracy"]
    last["storage_bytes"] = storage.storage_report(model)
    ctx.kept["structured"] = model
    schedule = {
        "schedule": asdict(settings.schedule),
        "importance": importance,
        "pruner": pruner,
        "round_to": settings.round_to,
        "reg": reg,
        "epochs": run["epochs"],
        "wall_time_s": run["wall_time_s"],
    }
    return {"structured": steps, "structured_schedule": schedule}


# --- the end -----------------------------------------------------------------------------


def finish(ctx: Context, metrics: dict) -> tuple[dict, Path | None]:
    """End the run: the checkpoint and settings first, the sections' ``metrics``, the
    headline numbers (:func:`.summary.headline`) and the section times, in the saved (JSON)
    form; saved with provenance in the full profile. Returns (metrics, path or None)."""
    checkpoint = str(ctx.checkpoint.relative_to(paths.REPO_ROOT))
    ctx.run.metrics = {"checkpoint": checkpoint, "settings": asdict(ctx.settings), **metrics}
    saved = ctx.run.finish(summary.headline(ctx.run.metrics))
    return ctx.run.metrics, saved
