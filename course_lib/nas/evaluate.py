"""Judge one architecture the way the paper does: retrain it from scratch (the second
training) for several seeds and report test accuracy (mean and spread), MACs, and batch-1
latency (the course's interleaved protocol, median and interval) under ONNX Runtime (whole graph) and under the
path-parallel executor (one path per core).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import data, measure, train
from ..data import DataSettings
from ..paths import atomic_path
from .costs import architecture_cost
from .network import ParallelNet
from .parallel import PathExecutor, executor_runner
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
    latency_ms: dict[str, dict]
    parallel_speedup: dict
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
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps({"key": key, "value": value}))
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
    loaders = data.make_loaders(cifar, data_settings, seed=seed, device=device)
    train.seed_everything(seed)
    net = ParallelNet(space, arch).to(device)
    history = train.fit(net, loaders.train, config, loaders.val, seed=seed, progress=progress)
    return net, history, train.evaluate(net, loaders.test)[1]


def latencies(
    net: ParallelNet, rounds: int, calls: int = 10, warmup: int = 10
) -> measure.Comparison:
    """Batch-1 latency, interleaved (:func:`course_lib.measure.compare`): ``onnx`` (whole
    graph, ONNX Runtime, one thread), ``parallel`` (:class:`PathExecutor`, one path per
    core) and ``sequential`` (the same per-path sessions one after another on one core)."""
    with PathExecutor(net) as par, PathExecutor(net, parallel=False) as seq:
        runners = {
            "onnx": measure.onnx_runner(net, 1),
            "parallel": executor_runner(par),
            "sequential": executor_runner(seq),
        }
        return measure.compare(runners, rounds=rounds, calls=calls, warmup=warmup)


def assess(
    space: SearchSpace,
    arch: Architecture,
    cifar: data.Cifar10,
    data_settings: DataSettings,
    config: train.TrainConfig,
    seeds: tuple[int, ...],
    rounds: int = 30,
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
        "latency_rounds": rounds,
    }

    def compute() -> dict:
        return _assess(space, arch, cifar, data_settings, config, seeds, rounds, progress).as_dict()

    return Assessment(**cached(cache, key, compute))


def _assess(space, arch, cifar, data_settings, config, seeds, rounds, progress):
    accuracies, val_accuracies, seconds = [], [], 0.0
    for seed in seeds:
        net, history, accuracy = retrain(space, arch, cifar, data_settings, config, seed, progress)
        accuracies.append(accuracy)
        val_accuracies.append(history.val_accuracy[-1])
        seconds += history.wall_time_s
    lat = latencies(net, rounds)
    return Assessment(
        structure=arch.describe(),
        architecture=arch.as_dict(),
        accuracies=accuracies,
        accuracy_mean=statistics.fmean(accuracies),
        accuracy_std=statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
        val_accuracy_mean=statistics.fmean(val_accuracies),
        macs=architecture_cost(space, arch).mults,
        params=measure.count_params(net),
        latency_ms={name: latency.as_dict() for name, latency in lat.latencies.items()},
        parallel_speedup=lat.speedup("parallel", "sequential").as_dict(),
        train_time_s=seconds,
    )
