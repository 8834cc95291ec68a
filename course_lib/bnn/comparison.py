"""The report's methods compared as an ablation (issues 16 and 24): every method of
:data:`~.methods.METHODS` trained by :func:`~.methods.train_method` from the same start
(chapter 5's trained full-precision twin, also the teacher of the distilled methods) on the
same data, with the same epochs and recipe, for every seed of the settings; then, where the
settings ask for them, further seeds for the methods that end within a point of another
one, while the stated budget allows. Every method's first-seed network is tested against
plain STE's on the same test images (McNemar's paired test); every trained binary network
(first seed) runs in the packed engine on the test images (``packed``: its predictions
against the PyTorch model's), and DA-BNN's amplitudes are timed against the plain network
(``amplitude_cost``, :func:`~.benchmark.amplitude_benchmark`).

The result is the chapter's metrics dict (the layout of ``results/bnn_methods.json``):
``methods`` (one entry per method: ``test_accuracy_mean`` as a fraction, ``seeds``,
``epochs``, ``minutes`` (mean training minutes per seed), the mean curves ``val_accuracy``,
``flips`` and ``latent_accuracy`` (on the validation split) measured at ``val_epochs``
(epochs trained; older results measured once per epoch and have no ``val_epochs``), and
``runs``, one entry per seed with its final ``test_accuracy``; results saved before
2026-12-07 have per-epoch *test* curves under ``test_accuracy`` instead),
``start_accuracy`` (the common start's test accuracy, a fraction),
``budget_minutes`` (the stated budget), ``minutes`` (this run's total), ``close`` (the
methods within ``close_within`` of another after the first seeds), ``skipped`` (second
seeds the budget did not allow), ``packed`` (per binary method: images, same-prediction
fraction, max logit difference, packed accuracy) and ``amplitude_cost``. Every method's
entry also has ``test_images`` and, but for plain STE's, ``paired``: McNemar's test of its
first seed's network against plain STE's first seed on the same test images
(:func:`course_lib.uncertainty.mcnemar`: images each gets right alone, the p-value).
"""

from __future__ import annotations

import time
from functools import partial

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..chapter import Run, section
from ..cluster import map_tasks
from ..data import Loaders
from ..uncertainty import mcnemar
from .benchmark import amplitude_benchmark
from .engine import PackedResNet
from .experiment import logit_agreement, test_logits
from .methods import METHODS, NEED_TEACHER, MethodRun, check_method, train_method
from .settings import MethodsSettings

#: Two methods whose mean test accuracies differ by less than this (a fraction, one
#: point) get a further seed each.
CLOSE_WITHIN = 0.01


def training_order(methods: tuple[str, ...]) -> list[str]:
    """``methods`` in the order given, each checked to be one of :data:`~.methods.METHODS`.
    (The distilled methods' teacher is the common start, trained before the comparison.)"""
    return [check_method(m) for m in methods]


def method_rank(method: str) -> tuple[int, str]:
    """A method's fixed place: its position in :data:`~.methods.METHODS` (unknown names
    after them, by name). Used to break ties, so that no result depends on the order in
    which a dict happened to be filled."""
    return (METHODS.index(method), "") if method in METHODS else (len(METHODS), method)


def close_methods(means: dict[str, float], within: float = CLOSE_WITHIN) -> list[str]:
    """The methods whose mean accuracy lies within ``within`` of another method's,
    closest pair first; equal gaps are ordered by :func:`method_rank` (the chapter's method
    list), never by the order of ``means``. Tiny runs often end with equal accuracies, and
    the order in which methods were trained differs from the chapter's list."""
    gaps = {}
    for a in means:
        for b in means:
            if a != b and abs(means[a] - means[b]) < within:
                gaps[a] = min(gaps.get(a, within), abs(means[a] - means[b]))
    return sorted(gaps, key=lambda m: (gaps[m], method_rank(m)))


def run_entry(run: MethodRun) -> dict:
    """One seed's curves (fractions and counts per epoch), final test accuracy and
    training minutes."""
    return {
        "seed": run.seed,
        "val_epochs": run.val_epochs,
        "val_accuracy": run.val_accuracy,
        "test_accuracy": run.test_accuracy,
        "flips": run.flips,
        "latent_accuracy": run.latent_accuracy,
        "minutes": sum(run.epoch_time_s) / 60,
    }


def mean_curve(runs: list[dict], key: str) -> list[float] | None:
    curves = [r[key] for r in runs]
    return None if curves[0] is None else np.mean(curves, axis=0).tolist()


@torch.no_grad()
def correct_on_test(model: nn.Module, loaders: Loaders) -> torch.Tensor:
    """One boolean per test image, in the loader's order: whether ``model`` (eval mode)
    classifies it correctly."""
    model.eval()
    return torch.cat([model(x).argmax(1) == y for x, y in loaders.test])


def paired_against(correct: dict[str, torch.Tensor], baseline: str = "ste") -> dict[str, dict]:
    """McNemar's test of every method's per-image results against ``baseline``'s."""
    if baseline not in correct:
        return {}
    return {m: mcnemar(c, correct[baseline]).as_dict() for m, c in correct.items() if m != baseline}


def method_entry(runs: list[dict], epochs: int, estimate_min: float | None) -> dict:
    """A method's entry of ``metrics["methods"]``: means over its seeds."""
    return {
        "test_accuracy_mean": float(np.mean([r["test_accuracy"] for r in runs])),
        "seeds": [r["seed"] for r in runs],
        "epochs": epochs,
        "minutes": float(np.mean([r["minutes"] for r in runs])),
        "estimate_min": estimate_min,
        "val_epochs": runs[0]["val_epochs"],
        "val_accuracy": mean_curve(runs, "val_accuracy"),
        "flips": mean_curve(runs, "flips"),
        "latent_accuracy": mean_curve(runs, "latent_accuracy"),
        "runs": runs,
    }


def compare_methods(
    loaders: Loaders,
    settings: MethodsSettings,
    start: nn.Module,
    seeds: tuple[int, ...] | None = None,
    methods: tuple[str, ...] = METHODS,
    progress: bool = True,
) -> dict:
    """Train every method of ``methods`` from the trained full-precision ``start`` for every
    seed of ``seeds`` (default ``settings.seeds``); ``start`` is also the teacher of
    :data:`NEED_TEACHER` and is never changed. The trainings are independent and go through
    :func:`~course_lib.cluster.map_tasks` (a local loop, or Ray tasks with
    ``$COURSE_RAY_ADDRESS``). Then ``settings.close_extra_seeds`` further seeds (the next
    integers after the largest of ``seeds``) for each method within :data:`CLOSE_WITHIN`
    of another, closest first, as long as the run's minutes plus the method's estimate stay
    within ``settings.budget_min``; these stay a loop here, each admitted by the minutes
    spent so far."""
    seeds = tuple(settings.seeds if seeds is None else seeds)
    if not seeds:
        raise ValueError("seeds is empty: give at least one seed")
    started = time.perf_counter()
    order = training_order(methods)
    start = start.eval()
    runs: dict[str, list[dict]] = {m: [] for m in order}
    packed: dict[str, dict] = {}
    first_models, correct = {}, {}
    jobs = [(m, s) for s in seeds for m in order]
    task = partial(train_job, loaders, settings, start)
    done = map_tasks(task, jobs, desc="methods", progress=progress)
    for (method, _), run in zip(jobs, [d.value for d in done], strict=True):
        if method == "fp" or method in correct:
            hits = correct_on_test(run.model, loaders)
        else:  # a binary method's first seed: the test images in PyTorch and packed
            logits, packed_logits, labels = test_logits(
                run.model, PackedResNet.from_model(run.model), loaders
            )
            packed[method] = logit_agreement(logits, packed_logits, labels)
            hits = logits.argmax(1) == labels
            first_models[method] = run.model
        correct.setdefault(method, hits)
        run.test_accuracy = float(hits.float().mean())
        runs[method].append(run_entry(run))
    paired = paired_against(correct)
    amplitude_cost = None
    if "dabnn" in first_models and "ste" in first_models:
        amplitude_cost = amplitude_benchmark(
            first_models["ste"], first_models["dabnn"], rounds=settings.latency_rounds
        )
    means = {m: float(np.mean([r["test_accuracy"] for r in runs[m]])) for m in order}
    close = close_methods(means)
    skipped = []
    more = range(max(seeds) + 1, max(seeds) + 1 + settings.close_extra_seeds)
    extra = [(m, s) for s in more for m in close]
    for method, seed in tqdm(extra, desc="second seeds", disable=not progress or not extra):
        spent = (time.perf_counter() - started) / 60
        if spent + settings.estimate_min.get(method, 0.0) > settings.budget_min:
            skipped.append({"method": method, "seed": seed})
            continue
        runs[method].append(run_entry(train_one(method, loaders, settings, seed, start)))
    epochs = settings.train.epochs
    entries = {m: method_entry(runs[m], epochs, settings.estimate_min.get(m)) for m in methods}
    for m, entry in entries.items():
        entry["test_images"] = len(loaders.test.labels)
        if m in paired:
            entry["paired"] = paired[m]
    return {
        "methods": entries,
        "start_accuracy": float(correct_on_test(start, loaders).float().mean()),
        "budget_minutes": settings.budget_min,
        "minutes": (time.perf_counter() - started) / 60,
        "close": close,
        "close_within": CLOSE_WITHIN,
        "skipped": skipped,
        "train_images": len(loaders.train.labels),
        "val_images": len(loaders.val.labels),
        "test_images": len(loaders.test.labels),
        "packed": packed,
        "amplitude_cost": amplitude_cost,
    }


@section("methods")
def compare(run: Run, loaders: Loaders, start: nn.Module, progress: bool = True) -> dict:
    """:func:`compare_methods` with the chapter run's settings and seed, timed as the run's
    section ``"methods"``. Returns ``run.metrics``, updated with the comparison's metrics."""
    run.metrics.update(
        compare_methods(loaders, run.settings, start, seeds=(run.seed,), progress=progress)
    )
    return run.metrics


def train_job(loaders: Loaders, settings: MethodsSettings, start, job: tuple[str, int]):
    """:func:`train_one` for ``job`` = (method, seed): one task of the map; its test
    accuracy is left to :func:`compare_methods`, which runs the test images once."""
    method, seed = job
    return train_one(method, loaders, settings, seed, start, test=False)


def train_one(
    method, loaders, settings: MethodsSettings, seed: int, start, test: bool = True
) -> MethodRun:
    """One method, one seed, from ``start`` (also the teacher of :data:`NEED_TEACHER`), with
    the settings' recipe (no inner progress bar); ``test``: as :func:`~.methods.train_method`."""
    return train_method(
        method,
        loaders,
        settings.train,
        settings.net,
        seed,
        options=settings.options,
        teacher=start if method in NEED_TEACHER else None,
        progress=False,
        start=start,
        evaluations_per_epoch=settings.evaluations_per_epoch,
        test=test,
    )
