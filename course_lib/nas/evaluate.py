"""Judge one architecture the way the paper does: train it again (the second training),
by default starting from the weights the search reached (:func:`course_lib.nas.derive.extract_network`),
or from scratch for comparison; report test accuracy (mean and spread over seeds), MACs, and
batch-1 latency (the course's interleaved protocol, median and interval) under ONNX Runtime
(whole graph, one thread) and with the paths forked one per core or run in sequence
(:class:`course_lib.nas.forked.ForkExecutor`).
"""

from __future__ import annotations

import hashlib
import json
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import data, measure, train
from ..data import DataSettings
from ..paths import atomic_path
from .costs import architecture_cost
from .forked import ForkExecutor, fork_runner
from .network import ParallelNet
from .space import Architecture, SearchSpace

RETRAIN = ("warm_start", "from_scratch")


@dataclass
class Assessment:
    """Accuracies are fractions of the test set, latencies milliseconds, MACs per image.
    ``retrain``: ``"warm_start"`` (from the search's weights) or ``"from_scratch"``."""

    retrain: str
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


def load_or_compute(path: str | Path | None, key: dict, compute: Callable[[], dict]) -> dict:
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


def digest(state: dict | None) -> str | None:
    """A short SHA-256 of a state dict's names and values (``None`` for ``None``): what a
    cache key holds of a warm start."""
    if state is None:
        return None
    h = hashlib.sha256()
    for name, tensor in state.items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def retrain(
    space: SearchSpace,
    arch: Architecture,
    cifar: data.Cifar10,
    data_settings: DataSettings,
    config: train.TrainConfig,
    seed: int,
    progress: bool = False,
    start: dict | None = None,
) -> tuple[ParallelNet, train.History, float]:
    """Train ``arch`` with ``seed``, from ``start`` (a state dict of the same network, e.g.
    the search's weights) or, when ``None``, from scratch; return the network, history and
    test accuracy."""
    device = train.default_device()
    loaders = data.make_loaders(cifar, data_settings, seed=seed, device=device)
    train.seed_everything(seed)
    net = ParallelNet(space, arch)
    if start is not None:
        net.load_state_dict(start)
    net = net.to(device)
    history = train.fit(net, loaders.train, config, loaders.val, seed=seed, progress=progress)
    return net, history, train.evaluate(net, loaders.test)[1]


def latencies(
    net: ParallelNet, rounds: int, calls: int = 10, warmup: int = 10
) -> measure.Comparison:
    """Batch-1 latency, interleaved (:func:`course_lib.measure.compare`): ``onnx`` (whole
    graph, ONNX Runtime, one thread), ``parallel`` (:class:`ForkExecutor`, the paths forked
    one per core) and ``sequential`` (the same frozen module, paths one after another)."""
    runners = {
        "onnx": measure.onnx_runner(net, 1),
        "parallel": fork_runner(ForkExecutor(net)),
        "sequential": fork_runner(ForkExecutor(net, parallel=False)),
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
    starts: list[dict] | None = None,
) -> Assessment:
    """Retrain ``arch`` once per seed and measure it (latency on the last seed's network).
    ``starts``: one state dict per seed to warm-start from (``None``: from scratch). Test
    accuracy reports; the validation accuracy (last epoch) is for choosing. With ``cache``
    (a JSON file), a finished assessment with the same inputs is reused."""
    if starts is not None and len(starts) != len(seeds):
        raise ValueError(f"{len(starts)} warm starts for {len(seeds)} seeds")
    key = {
        "space": asdict(space),
        "arch": arch.as_dict(),
        "data": asdict(data_settings),
        "config": asdict(config),
        "seeds": list(seeds),
        "starts": None if starts is None else [digest(s) for s in starts],
        "latency_rounds": rounds,
    }

    def compute() -> dict:
        return _assess(
            space, arch, cifar, data_settings, config, seeds, rounds, progress, starts
        ).as_dict()

    return Assessment(**load_or_compute(cache, key, compute))


def _assess(space, arch, cifar, data_settings, config, seeds, rounds, progress, starts):
    accuracies, val_accuracies, seconds = [], [], 0.0
    for i, seed in enumerate(seeds):
        start = None if starts is None else starts[i]
        net, history, accuracy = retrain(
            space, arch, cifar, data_settings, config, seed, progress, start
        )
        accuracies.append(accuracy)
        val_accuracies.append(history.val_accuracy[-1])
        seconds += history.wall_time_s
    lat = latencies(net, rounds)
    return Assessment(
        retrain="from_scratch" if starts is None else "warm_start",
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
