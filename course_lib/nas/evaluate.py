"""Judge one architecture the way the paper does: retrain it from scratch (the second
training) for several seeds and report test accuracy (mean and spread), MACs, and batch-1
latency under ONNX Runtime (whole graph, mean and median of ``repeats`` runs) and under the
path-parallel executor (one path per core).
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .. import data, measure, train
from ..profiles import DataSettings
from .costs import architecture_cost
from .network import ParallelNet
from .parallel import PathExecutor, latency
from .space import Architecture, SearchSpace


@dataclass
class Assessment:
    """Accuracies are fractions of the test set, latencies milliseconds, MACs per image."""

    structure: list[str]
    architecture: dict
    accuracies: list[float]
    accuracy_mean: float
    accuracy_std: float
    val_accuracy_mean: float
    macs: int
    params: int
    latency_mean_ms: float
    latency_median_ms: float
    parallel_latency_mean_ms: float
    parallel_latency_median_ms: float
    sequential_latency_median_ms: float
    parallel_speedup: float
    train_time_s: float

    def as_dict(self) -> dict:
        return asdict(self)


def cached(path: str | Path | None, key: dict, compute: Callable[[], dict]) -> dict:
    """``compute()``, unless ``path`` holds the JSON result of an earlier call with the same
    ``key``; then that. ``path=None`` turns the cache off. It lets a long run that was
    interrupted resume where it stopped."""
    key = json.loads(json.dumps(key))
    if path is not None and Path(path).exists():
        saved = json.loads(Path(path).read_text())
        if saved["key"] == key:
            return saved["value"]
    value = compute()
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"key": key, "value": value}))
        os.replace(tmp, path)
    return value


def retrain(
    space: SearchSpace,
    arch: Architecture,
    cifar: data.Cifar10,
    data_settings: DataSettings,
    config: train.TrainConfig,
    seed: int,
    progress: bool = False,
) -> tuple[ParallelNet, train.History, float]:
    """Train ``arch`` from scratch with ``seed``; return the network, history, test accuracy."""
    device = train.default_device()
    loaders = data.make_loaders(
        cifar,
        data_settings.train_per_class,
        data_settings.val_per_class,
        data_settings.test_per_class,
        batch_size=data_settings.batch_size,
        seed=seed,
        device=device,
    )
    train.seed_everything(seed)
    net = ParallelNet(space, arch).to(device)
    history = train.fit(net, loaders.train, config, loaders.val, seed=seed, progress=progress)
    return net, history, train.evaluate(net, loaders.test)[1]


def latencies(net: ParallelNet, warmup: int, repeats: int) -> dict[str, measure.Latency]:
    """Batch-1 latency: ``onnx`` (whole graph, ONNX Runtime's default executor on all
    cores), ``parallel`` (:class:`PathExecutor`, one path per core) and ``sequential`` (the
    same per-path sessions one after another on one core)."""
    net = net.cpu().eval()
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32), dtype=np.float32)
    result = {"onnx": measure.onnx_latency(net, 1, warmup=warmup, repeats=repeats)}
    with PathExecutor(net) as par, PathExecutor(net, parallel=False) as seq:
        result["parallel"] = latency(par, x, warmup, repeats, net.space.paths, "path-parallel")
        result["sequential"] = latency(seq, x, warmup, repeats, 1, "paths sequential")
    return result


def assess(
    space: SearchSpace,
    arch: Architecture,
    cifar: data.Cifar10,
    data_settings: DataSettings,
    config: train.TrainConfig,
    seeds: tuple[int, ...],
    warmup: int = 10,
    repeats: int = 100,
    progress: bool = False,
    cache: str | Path | None = None,
) -> Assessment:
    """Retrain ``arch`` once per seed and measure it (latency on the last seed's network).
    Test accuracy reports; the validation accuracy (last epoch) is for choosing. With
    ``cache`` (a JSON file), a finished assessment with the same inputs is reused."""
    key = {
        "space": asdict(space),
        "arch": arch.as_dict(),
        "data": asdict(data_settings),
        "config": asdict(config),
        "seeds": list(seeds),
        "latency": [warmup, repeats],
    }

    def compute() -> dict:
        return _assess(
            space, arch, cifar, data_settings, config, seeds, warmup, repeats, progress
        ).as_dict()

    return Assessment(**cached(cache, key, compute))


def _assess(space, arch, cifar, data_settings, config, seeds, warmup, repeats, progress):
    accuracies, val_accuracies, seconds = [], [], 0.0
    for seed in seeds:
        net, history, accuracy = retrain(space, arch, cifar, data_settings, config, seed, progress)
        accuracies.append(accuracy)
        val_accuracies.append(history.val_accuracy[-1])
        seconds += history.wall_time_s
    lat = latencies(net, warmup, repeats)
    return Assessment(
        structure=arch.describe(),
        architecture=arch.as_dict(),
        accuracies=accuracies,
        accuracy_mean=statistics.fmean(accuracies),
        accuracy_std=statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
        val_accuracy_mean=statistics.fmean(val_accuracies),
        macs=architecture_cost(space, arch).mults,
        params=measure.count_params(net),
        latency_mean_ms=lat["onnx"].mean_ms,
        latency_median_ms=lat["onnx"].median_ms,
        parallel_latency_mean_ms=lat["parallel"].mean_ms,
        parallel_latency_median_ms=lat["parallel"].median_ms,
        sequential_latency_median_ms=lat["sequential"].median_ms,
        parallel_speedup=lat["sequential"].median_ms / lat["parallel"].median_ms,
        train_time_s=seconds,
    )
